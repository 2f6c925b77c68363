#!/usr/bin/env python3
"""MaxText's key set, for mtxc's schema.

    tools/maxtext_keys.py MAXTEXT_CONFIGS_DIR [--write]

Reads base.yml of a MaxText checkout (src/maxtext/configs/base.yml), and
the keys its models/*.yml presets set beyond it (defaults from types.py), and
compares it with mtxc's schema: runtime/keys/config_keys.def (the keys mtxc
implements) and compiler/maxtext_keys.def (MaxText's other keys, with their
defaults and class). Prints keys MaxText has and mtxc lacks, keys mtxc
lists that MaxText dropped, and defaults that changed. With --write,
regenerates compiler/maxtext_keys.def and tests/data/maxtext_base.yml (every
MaxText key at its default: the fixture of test_config) from base.yml.

Class of a key mtxc does not implement (see `classify`): IGNORED when it
has no effect on a CPU trainer (TPU, XLA, GCS, profilers, goodput, logging
services, kernel tile sizes, inference servers, input pipelines mtxc does
not read), else UNIMPLEMENTED (accepted only at MaxText's default).
Needs PyYAML (python3-yaml).
"""
import argparse
import ast
import glob
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Keys whose value cannot change what a CPU trainer computes or writes.
IGNORED = [
    # services, monitoring, logging, profilers, dumps
    r"gcs_metrics", r"enable_wandb", r"wandb_.*", r"save_config_to_gcs", r"enable_tensorboard",
    r"use_vertex_tensorboard", r"vertex_tensorboard_.*", r"enable_goodput_recording", r"monitor_goodput",
    r"goodput_.*", r"enable_pathways_goodput", r"monitor_step_time_deviation", r"step_deviation_.*",
    r"enable_gcp_.*", r"report_.*_for_gcp_monitoring", r"heartbeat_.*", r"managed_mldiagnostics.*",
    r"profiler", r"upload_all_profiler_results", r"skip_first_n_steps_for_profiler", r"profiler_steps",
    r"hide_profiler_step_metric", r"profile_.*", r"enable_tpu_profiling_options", r"tpu_num_.*", r"dump_.*",
    r"xprof_.*", r"enable_jax_profiler", r"jax_profiler_port", r"prometheus_port", r"log_config",
    r"debug_sharding", r"enable_checkpoint_cloud_logger", r"max_checkify", r"record_internal_nn_metrics",
    # JAX, XLA, TPU and mesh construction on TPU pods
    r"jax_.*", r"skip_jax_distributed_system", r"hardware", r"internal_compile.*", r"compile_xla_flags",
    r"compiled_trainstep_file", r"write_estimator_result", r"shardy", r"remove_size_one_mesh_axis_from_type",
    r"allow_split_physical_axes", r"optimize_mesh_for_tpu_v6e", r"enable_single_controller", r"subslice_shape",
    r"te_comm_gemm_overlap", r"sharding_tolerance", r"check_vma", r"enable_nnx", r"pure_nnx_decoder",
    r"optimizer_memory_host_offload", r"parameter_memory_host_offload", r"scan_layers", r"param_scan_axis",
    r"force_unroll", r"dcn_bandwidth_.*", r"max_inflight_computations",
    # TPU kernels: splash attention, megablox and ragged-gather tiles
    r"sa_.*", r"local_sa_.*", r"use_splash_scheduler", r"local_use_splash_scheduler", r"use_tokamax_splash",
    r"use_jax_splash", r"experimental_sa_quant_.*", r"use_max_logit_estimate", r"cost_estimate_flops_.*",
    r"dq_reduction_steps", r"ring_scan_unroll", r"ragged_block_size", r"force_q_layout", r"wi_tile_.*",
    r"wo_tile_.*", r"megablox", r"use_tokamax_gmm", r"use_gmm_v2", r"merge_gating_gmm", r"ragged_gather.*",
    r"use_gather_mosaic_kernel", r"use_custom_sort_vjp", r"use_ragged_sort", r"moe_chunk_barrier",
    r"use_mhc_pallas_kernel", r"mhc_pallas_kernel_.*",
    # where remat_policy "custom" puts each tensor (mtxc has no custom policy)
    r"decoder_layer_input", r"indexer_cutoff_threshold", r"context", r"mlpwi", r"mlpwi_0", r"mlpwi_1", r"mlpwo",
    r"moe_mlpwi_0", r"moe_mlpwi_1", r"moe_mlpwo", r"query_proj", r"key_proj", r"value_proj", r"kv_proj",
    r"qkv_proj", r"out_proj", r"query_wa_proj", r"kv_wa_proj", r"mla_q", r"mla_kv", r"attention_out", r"engram",
    # checkpoint storage formats of Orbax
    r"checkpoint_storage_.*", r"enable_orbax_v1", r"colocated_python_checkpointing",
    # inference servers and benchmarks
    r"inference_.*", r"prefill_slice", r"generate_slice", r"enable_model_warmup", r"enable_llm_inference_pool",
    r"stack_prefill_result_cache", r"prefill_cache_axis_order", r"ar_cache_axis_order", r"compute_axis_order",
    r"reshape_q", r"load_from_prefill_dir", r"prefill_cache_dir", r"autoregressive_decode_assert", r"vllm_.*",
    # input pipelines mtxc does not read (dataset_type tfds, hf, grain)
    r"hf_path", r"hf_name", r"hf_data_dir", r"hf_train_files", r"hf_eval_split", r"hf_eval_files",
    r"hf_access_token", r"grain_.*", r"olmo_.*", r"colocated_python_data_input", r"dataset_name",
    r"eval_dataset_name", r"train_split", r"eval_split", r"train_data_columns", r"eval_data_columns",
    r"train_image_column", r"eval_image_column", r"max_corpus_chars",
    # vision and audio encoders (use_multimodal and use_audio, unimplemented, are off)
    r".*_for_vit", r".*_for_audio", r"image_path", r"video_path", r"audio_path", r"image_placeholder",
    r"video_placeholder", r"audio_placeholder", r"use_audio_in_video", r"video_max_grid_.*",
    r"max_num_images_per_example", r"vision_output_length", r"vision_encoder_block", r"log_moe_bias_norms", r"freeze_vision_encoder_params",
    r"freeze_audio_encoder_params", r"dtype_mm", r"position_id_per_seconds",
    # mtxc always writes its first checkpoint at checkpoint_period (README says so)
    r"save_checkpoint_on_start",
]


def classify(name):
    return "IGNORED" if any(re.fullmatch(p, name) for p in IGNORED) else "UNIMPLEMENTED"


def preset_only_keys(configs, base):
    """Keys MaxText's presets set that base.yml lacks, with types.py's defaults
    (MaxText accepts any field of its schema, configs/types.py)."""
    types = open(os.path.join(configs, "types.py")).read()
    out = {}
    for path in sorted(glob.glob(os.path.join(configs, "models", "*.yml"))):
        for name in yaml.safe_load(open(path)) or {}:
            if name in base or name in out:
                continue
            m = re.search(rf"^\s+{name}: [^=]+= Field\(\s*([^,]+),", types, re.M)
            if not m:
                sys.exit(f"{path}: key '{name}' is not in types.py")
            expr = m.group(1).strip()
            enum = re.fullmatch(r"(\w+)\.(\w+)", expr)
            if enum:           # an enum member: its value, from the class's definition in MaxText's sources
                value = find_enum(configs, *enum.groups())
            else:
                value = ast.literal_eval(expr)
            out[name] = value
    return out


def find_enum(configs, cls, member):
    for path in glob.glob(os.path.join(configs, "..", "**", "*.py"), recursive=True):
        text = open(path).read()
        m = re.search(rf"^class {cls}\b.*?^\s+{member} = \"([^\"]*)\"", text, re.M | re.S)
        if m:
            return m.group(1)
    sys.exit(f"cannot find {cls}.{member} in MaxText's sources")


def kind(value):
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, (int, float)):
        return "NUM"
    if isinstance(value, str):
        return "STR"
    if isinstance(value, list):
        return "SEQ"
    if isinstance(value, dict):
        return "MAP"
    return "ANY"          # None: the type is the value's, whichever it is


def flow(value):
    """The default as one line of YAML that PyYAML and libyaml read back the same."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if value == "None":          # written plain in base.yml: MaxText's pyconfig reads it as null
        return "None"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)}: {flow(v)}" for k, v in value.items()) + "}"


def our_keys():
    text = open(os.path.join(ROOT, "runtime/keys/config_keys.def")).read()
    return re.findall(r"^KEY\((\w+),", text, re.M)


def table_keys():
    path = os.path.join(ROOT, "compiler/maxtext_keys.def")
    if not os.path.exists(path):
        return {}
    out = {}
    for m in re.finditer(r'^MKEY\((\w+),\s*(\w+),\s*(\w+),\s*"((?:[^"\\]|\\.)*)"\)', open(path).read(), re.M):
        out[m.group(1)] = (m.group(2), m.group(3), json.loads('"' + m.group(4) + '"'))
    return out


def c_string(s):
    return json.dumps(s)        # JSON's escapes are C's for this text (ASCII)


def preset_kinds(configs):
    """Each key's kinds in MaxText's presets (a preset may give a list where
    base.yml has a number: gemma4's image_size_for_vit)."""
    kinds = {}
    for path in glob.glob(os.path.join(configs, "models", "*.yml")):
        for name, value in (yaml.safe_load(open(path)) or {}).items():
            kinds.setdefault(name, set()).add(kind(value))
    return kinds


def write_table(base, ours, kinds):
    lines = [
        "/* MaxText's keys that mtxc does not implement: MKEY(name, kind, class,",
        " * \"MaxText's default as one line of YAML\"). Written by tools/maxtext_keys.py",
        " * from MaxText's base.yml and presets (snapshot e591f30); the implemented keys are in",
        " * runtime/keys/config_keys.def. compiler/config_maxtext.c reads values of these.",
        " * kind:  BOOL NUM STR SEQ MAP ANY (the default is null: any value's type)",
        " * class: IGNORED        no effect on a CPU trainer: any value of the kind",
        " *        UNIMPLEMENTED  only MaxText's default is accepted */",
    ]
    for name, value in base.items():
        if name in ours or name == "base_config":
            continue
        k = kind(value)
        if kinds.get(name, {k}) - {k, "ANY"}:
            k = "ANY"
        lines.append(f"MKEY({name}, {k}, {classify(name)}, {c_string(flow(value))})")
    with open(os.path.join(ROOT, "compiler/maxtext_keys.def"), "w") as f:
        f.write("\n".join(lines) + "\n")


def write_fixture(base):
    lines = ["# Every key of MaxText's base.yml (snapshot e591f30) at MaxText's default,",
             "# in mtxc's own layout: sorted, one line each. Written by tools/maxtext_keys.py;",
             "# test_config loads it (with model_name=tiny) and checks what mtxc makes of it."]
    for name in sorted(base):
        if name != "base_config":
            lines.append(f"{name}: {flow(base[name])}")
    with open(os.path.join(ROOT, "tests/data/maxtext_base.yml"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", help="MaxText's src/maxtext/configs directory (base.yml, types.py, models/)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    base = yaml.safe_load(open(os.path.join(args.configs, "base.yml")))
    base.update(preset_only_keys(args.configs, base))
    ours, table = set(our_keys()), table_keys()
    if args.write:
        write_table(base, ours, preset_kinds(args.configs))
        write_fixture(base)
        table = table_keys()
    missing = [k for k in base if k not in ours and k not in table and k != "base_config"]
    dropped = [k for k in table if k not in base]
    changed = [k for k in table if k in base and flow(base[k]) != table[k][2]]
    for what, keys in (("MaxText keys mtxc does not know", missing), ("keys MaxText no longer has", dropped),
                       ("defaults that changed", changed)):
        if keys:
            print(f"{what}: {', '.join(keys)}")
    print(f"MaxText: {len(base)} keys; mtxc implements {len(ours & set(base))}, lists {len(table)} more "
          f"({sum(v[1] == 'IGNORED' for v in table.values())} ignored)")
    sys.exit(1 if missing or dropped or changed else 0)


if __name__ == "__main__":
    main()
