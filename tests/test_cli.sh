#!/bin/sh
# The command line: help, version, exit statuses and the values the
# foundation issue names. Usage: tests/test_cli.sh MTXC (from the source root)
MTXC=$1
fails=0
check() {   # check NAME EXPECTED_STATUS EXPECTED_TEXT COMMAND...
    name=$1; want_rc=$2; want=$3; shift 3
    out=$("$@" 2>&1); rc=$?
    if [ $rc -ne "$want_rc" ]; then echo "FAIL $name: exit $rc, want $want_rc"; fails=$((fails + 1)); return; fi
    case "$out" in *"$want"*) ;; *) printf 'FAIL %s: output lacks "%s":\n%s\n' "$name" "$want" "$out"; fails=$((fails + 1)) ;; esac
}
check help 0 "usage: mtxc COMMAND CONFIG" "$MTXC" --help
check run_help 0 "usage: mtxc run CONFIG" "$MTXC" run --help
check no_args 2 "usage: mtxc COMMAND" "$MTXC"
check version 0 "mtxc 0." "$MTXC" --version
check config_help 0 "usage: mtxc config CONFIG" "$MTXC" config --help
check unknown_cmd 2 "unknown command 'confg' (did you mean 'config'?)" "$MTXC" confg
check missing_config 2 "missing CONFIG" "$MTXC" config
check bad_option 2 "unknown option '--frobnicate'" "$MTXC" config configs/base.yml --frobnicate
check two_configs 2 "unexpected argument 'b.yml'" "$MTXC" config configs/base.yml b.yml
for kv in "emb_dim: 4096" "num_query_heads: 32" "num_kv_heads: 32" "mlp_dim: 11008" \
          "num_decoder_layers: 32" "vocab_size: 32000"; do
    check "llama2-7b $kv" 0 "$kv" "$MTXC" config configs/base.yml model_name=llama2-7b
done
for kv in "num_kv_heads: 8" "mlp_dim: 14336" "vocab_size: 128256" "rope_max_timescale: 500000.0"; do
    check "llama3-8b $kv" 0 "$kv" "$MTXC" config configs/base.yml model_name=llama3-8b
done
check derived_marked 0 "emb_dim: 768  # derived" "$MTXC" config configs/base.yml model_name=gpt2-124m
# Every preset resolves.
for f in configs/models/*.yml; do
    m=$(basename "$f" .yml)
    check "preset $m" 0 "model_name: \"$m\"" "$MTXC" config configs/base.yml model_name="$m"
done
# The compiler's commands.
check ir_help 0 "memplan" "$MTXC" ir --help
check ir_bad_pass 2 "unknown pass 'fusion' (see mtxc ir --help)" "$MTXC" ir configs/base.yml model_name=tiny --after fusion
for pass in build autodiff optimizer fuse memplan; do
    check "ir --after $pass" 0 "# mtxc IR after $pass: model tiny" "$MTXC" ir configs/base.yml model_name=tiny --after $pass
done
check ir_unsupported 2 "mtxc: error: weight_dtype bfloat16 is not supported yet" \
    "$MTXC" ir configs/base.yml model_name=tiny weight_dtype=bfloat16
check relu 0 "%layers.0.mlp.activation: bf16[8, 64, 128] = relu %layers.0.mlp.wi_0" \
    "$MTXC" ir configs/base.yml model_name=tiny override_model_config=true 'mlp_activations=[relu, linear]' --after build
check eval_batch 0 "input %inputs: i32[2, 64]" "$MTXC" ir configs/base.yml model_name=tiny eval_per_device_batch_size=2 --after build
check emit_needs_dir 2 "missing -o DIR" "$MTXC" emit configs/base.yml
check compile_only_help 0 "usage: mtxc compile-only CONFIG" "$MTXC" compile-only --help
check export_help 0 "usage: mtxc export CONFIG [load_parameters_path=STEP_DIR]" "$MTXC" export --help
check export_no_value 2 "option '-o' needs a value" "$MTXC" export configs/base.yml -o
check tokenize_help 0 "usage: mtxc tokenize CONFIG [key=value ...] [--lines] FILE" "$MTXC" tokenize --help
check tokenize_no_file 2 "missing FILE" "$MTXC" tokenize configs/tiny-text.yml
check tokenize_no_tokenizer 2 "mtxc tokenize: error: the config sets no tokenizer_path" \
    "$MTXC" tokenize configs/tiny-text.yml /usr/share/common-licenses/GPL-3
check tokenize_three 2 "unexpected argument 'c'" "$MTXC" tokenize configs/tiny-text.yml b c
printf '12 x' > /tmp/mtxc-cli-ids.$$
check tokenize_bad_ids 2 "'/tmp/mtxc-cli-ids.$$': 'x' is not a token id (0 to 151668)" \
    "$MTXC" tokenize --decode configs/tiny-qwen3-text.yml /tmp/mtxc-cli-ids.$$
printf '151669' > /tmp/mtxc-cli-ids.$$
check tokenize_big_id 2 "'151669' is not a token id (0 to 151668)" \
    "$MTXC" tokenize --decode configs/tiny-qwen3-text.yml /tmp/mtxc-cli-ids.$$
printf '9223372036854775808 1' > /tmp/mtxc-cli-ids.$$
check tokenize_huge_id 2 "'9223372036854775808' is not a token id" \
    "$MTXC" tokenize --decode configs/tiny-qwen3-text.yml /tmp/mtxc-cli-ids.$$
rm -f /tmp/mtxc-cli-ids.$$
check tokenize_missing 2 "mtxc tokenize: error: cannot read '/nonexistent': No such file or directory" \
    "$MTXC" tokenize configs/tiny-qwen3-text.yml /nonexistent
check compile_only_format 2 "unknown --format 'xml'" "$MTXC" compile-only configs/base.yml --format xml
check emit_mesh 2 "tensor parallelism 3 must divide num_query_heads 4, num_kv_heads 2 (or it is 1) and mlp_dim 128 to be lowered" \
    "$MTXC" emit configs/base.yml model_name=tiny compile_topology=cpu-3 ici_tensor_parallelism=3 -o /tmp/mtxc-never-written
check emit_rules 2 "argument 'logical_axis_rules=[[mlp, []]]': error: the backends lower this mesh with MaxText's default layout, which maps logical axis 'mlp' to mesh axis 'tensor'" \
    "$MTXC" emit configs/base.yml model_name=tiny compile_topology=cpu-2 ici_tensor_parallelism=2 'logical_axis_rules=[[mlp, []]]' -o /tmp/mtxc-never-written
check compile_only_rules 0 "mtxc's CPU trainer: this mesh is not lowered" \
    "$MTXC" compile-only configs/base.yml model_name=tiny compile_topology=cpu-2 ici_tensor_parallelism=2 'logical_axis_rules=[[mlp, []]]'
check emit_muon_fsdp 2 "opt_type muon with fsdp 2 x tensor 1 is not lowered" \
    "$MTXC" emit configs/base.yml model_name=tiny compile_topology=cpu-2 opt_type=muon -o /tmp/mtxc-never-written
check build_needs_path 2 "missing -o PATH" "$MTXC" build configs/base.yml
out_dir=$(mktemp -d)
for m in tiny gpt3-52k gpt2-124m llama-125m; do
    check "emit $m" 0 "wrote $out_dir/$m/step.c" "$MTXC" emit configs/base.yml model_name=$m -o "$out_dir/$m"
    grep -q "^void mtx_train_step(mtx_state \*s, const mtx_batch \*batch, mtx_rng_key rng, mtx_metrics \*out)" "$out_dir/$m/step.c" ||
        { echo "FAIL emit $m: no linen train step"; fails=$((fails + 1)); }
done
check "emit nnx" 0 "wrote" "$MTXC" emit configs/base.yml model_name=tiny pure_nnx=true -o "$out_dir/nnx"
grep -q "^void mtx_train_step(mtx_state \*s, const mtx_batch \*batch, mtx_metrics \*out);" "$out_dir/nnx/step.h" ||
    { echo "FAIL emit nnx: signature"; fails=$((fails + 1)); }
# A failed emit leaves the files already there intact.
cp "$out_dir/tiny/step.c" "$out_dir/before.c"
check "emit bad config" 2 "unknown key" "$MTXC" emit configs/base.yml model_name=tiny stepz=1 -o "$out_dir/tiny"
cmp -s "$out_dir/tiny/step.c" "$out_dir/before.c" || { echo "FAIL: failed emit changed step.c"; fails=$((fails + 1)); }
check "build gpt3-52k" 0 "wrote $out_dir/g52" "$MTXC" build configs/base.yml model_name=gpt3-52k -o "$out_dir/g52"
check "run gpt3-52k" 0 "done: 3 steps" "$out_dir/g52" steps=3 log_period=1
check "start line regions" 0 "threads for 116 parallel regions a step" "$out_dir/g52" steps=1
# Configs read once into memory: from a pipe as from a file; a FIFO with no
# writer reads as empty instead of hanging; bytes FF FE are not a UTF-16 mark;
# a 3 MB unknown model_name is named clipped and answered at once.
"$MTXC" config configs/base.yml > "$out_dir/file.yml"
cat configs/base.yml | "$MTXC" config /dev/stdin > "$out_dir/pipe.yml"
cmp -s "$out_dir/file.yml" "$out_dir/pipe.yml" || { echo "FAIL: a config from a pipe differs"; fails=$((fails + 1)); }
mkfifo "$out_dir/fifo"
check fifo_config 2 "$out_dir/fifo: error: config file is empty" timeout 300 "$MTXC" config "$out_dir/fifo"
check utf16_mark 2 "argument 'run_name=$(printf '\377\376')ab': error: key 'run_name' cannot read the value as YAML: invalid leading UTF-8 octet" \
    "$MTXC" config configs/base.yml "run_name=$(printf '\377\376')ab"
{ echo "base_config: $PWD/configs/base.yml"; printf 'model_name: '; head -c 3000000 /dev/zero | tr '\0' a; echo; } > "$out_dir/big.yml"
check long_model_name 2 "unknown model_name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' (presets in" \
    timeout 300 "$MTXC" config "$out_dir/big.yml"
# The documented limit of layers compiles (README: about 4 s quiet).
check layers_512 0 "generated C:" timeout 900 "$MTXC" compile-only configs/base.yml model_name=tiny \
    override_model_config=true base_num_decoder_layers=512
rm -rf "$out_dir"

echo "cli: $fails failures"
[ $fails -eq 0 ]
