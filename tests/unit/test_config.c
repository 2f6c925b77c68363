/* Config loading: precedence, types, derived values and every error path. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static char err[1024];

static Config *load(const char *path, int n, char **ov)
{
    err[0] = 0;
    return config_load(path, n, ov, err, sizeof err);
}

static Config *load_base(int n, char **ov) { return load("configs/base.yml", n, ov); }

/* Write a config inheriting configs/base.yml; returns its path. */
static const char *write_cfg(const char *body)
{
    static char path[64];
    char cwd[512];
    snprintf(path, sizeof path, "/tmp/mtxc_test_%d.yml", (int)getpid());
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "base_config: %s/configs/base.yml\n%s", cwd, body);
    fclose(f);
    return path;
}

/* Loading `body` fails and the message contains `want`. */
static void expect_error(const char *body, int n, char **ov, const char *want)
{
    const char *path = write_cfg(body);
    Config *c = load(path, n, ov);
    unlink(path);
    ck_assert_msg(c == NULL, "expected an error containing '%s'", want);
    ck_assert_msg(strstr(err, want), "error '%s' lacks '%s'", err, want);
}

/* base_config: "base.yml" from a folder below the one that holds it (MaxText's
 * post_train/sft.yml): the nearest parent's file, as pyconfig's fallback to
 * its configs folder; none anywhere: an error at the key. */
START_TEST(base_config_in_a_parent)
{
    char top[] = "/tmp/mtxc_configs_XXXXXX", cwd[512], path[600];
    ck_assert_ptr_nonnull(mkdtemp(top));
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    snprintf(path, sizeof path, "%s/post_train", top);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    char base[600], models[600], base_target[600], models_target[600];
    snprintf(base, sizeof base, "%s/base.yml", top), snprintf(base_target, sizeof base_target, "%s/configs/base.yml", cwd);
    snprintf(models, sizeof models, "%s/models", top), snprintf(models_target, sizeof models_target, "%s/configs/models", cwd);
    ck_assert_int_eq(symlink(base_target, base), 0);
    ck_assert_int_eq(symlink(models_target, models), 0);
    snprintf(path, sizeof path, "%s/post_train/sft.yml", top);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "base_config: \"base.yml\"\nmodel_name: tiny\nsteps: 7\n");
    fclose(f);
    Config *c = load(path, 0, NULL);
    ck_assert_msg(c, "%s", err);
    ck_assert_int_eq(cfg_int(c, K_steps), 7);
    ck_assert_int_eq(c->d.emb_dim, 64);
    config_free(c);
    f = fopen(path, "w");
    fprintf(f, "base_config: \"nowhere.yml\"\n");
    fclose(f);
    ck_assert(load(path, 0, NULL) == NULL);
    ck_assert_msg(strstr(err, "base_config 'nowhere.yml': no such file in ") && strstr(err, "or a directory above it"),
                  "%s", err);
    unlink(path), unlink(base), unlink(models);
    snprintf(path, sizeof path, "%s/post_train", top);
    rmdir(path), rmdir(top);
}
END_TEST

START_TEST(base_defaults)
{
    Config *c = load_base(0, NULL);
    ck_assert_msg(c, "%s", err);
    ck_assert_int_eq(cfg_int(c, K_steps), 150001);
    ck_assert_double_eq_tol(cfg_float(c, K_adam_b2), 0.95, 1e-12);
    ck_assert_double_eq_tol(cfg_float(c, K_normalization_layer_epsilon), 1e-5, 1e-18);
    ck_assert_str_eq(cfg_str(c, K_opt_type), "adamw");
    ck_assert(c->v[K_max_num_checkpoints_to_keep].is_null);
    ck_assert(cfg_bool(c, K_enable_dropout));
    ck_assert_int_eq(c->v[K_mlp_activations].list.n, 2);
    ck_assert_str_eq(c->v[K_mlp_activations].list.items[1], "linear");
    ck_assert_int_eq(c->d.emb_dim, 2048);
    ck_assert_int_eq(c->d.num_devices, 1);
    ck_assert_int_eq(c->d.mesh_fsdp, 1);
    ck_assert_int_eq(c->d.global_batch, 12);
    ck_assert_int_eq(c->d.tokens_per_step, 12 * 2048);
    config_free(c);
}
END_TEST

START_TEST(preset_llama2_7b)
{
    char *ov[] = {"model_name=llama2-7b"};
    Config *c = load_base(1, ov);
    ck_assert_msg(c, "%s", err);
    ck_assert_int_eq(c->d.emb_dim, 4096);
    ck_assert_int_eq(c->d.num_query_heads, 32);
    ck_assert_int_eq(c->d.num_kv_heads, 32);
    ck_assert_int_eq(c->d.mlp_dim, 11008);
    ck_assert_int_eq(c->d.num_decoder_layers, 32);
    ck_assert_int_eq(cfg_int(c, K_vocab_size), 32000);
    /* The preset's rule comes first; base rules for other names are kept. */
    ck_assert_str_eq(c->v[K_logical_axis_rules].rules[0].name, "norm");
    ck_assert_str_eq(c->v[K_logical_axis_rules].rules[0].axes.items[0], "fsdp");
    ck_assert_int_eq(c->v[K_logical_axis_rules].nrules, 19);
    config_free(c);
}
END_TEST

START_TEST(preset_llama3_8b)
{
    char *ov[] = {"model_name=llama3-8b"};
    Config *c = load_base(1, ov);
    ck_assert_msg(c, "%s", err);
    ck_assert_int_eq(c->d.num_kv_heads, 8);
    ck_assert_int_eq(c->d.mlp_dim, 14336);
    ck_assert_int_eq(cfg_int(c, K_vocab_size), 128256);
    ck_assert_double_eq(cfg_float(c, K_rope_max_timescale), 500000.0);
    config_free(c);
}
END_TEST

START_TEST(precedence)
{
    /* base < preset < command line, whatever the order of the arguments; as
     * in MaxText, a key the preset sets takes another value on the command
     * line only with override_model_config (the same value is fine). */
    char *same[] = {"base_emb_dim=64", "model_name=tiny"};
    Config *c = load_base(2, same);
    ck_assert_msg(c, "%s", err);
    config_free(c);
    char *refused[] = {"base_emb_dim=256", "model_name=tiny"};
    expect_error("", 2, refused, "argument 'base_emb_dim=256': error: key 'base_emb_dim' is 64 in the preset of "
                 "model_name 'tiny'; as in MaxText, the command line may change it only with override_model_config=true");
    char *ov[] = {"base_emb_dim=256", "model_name=tiny", "steps=7", "override_model_config=true"};
    c = load_base(4, ov);
    ck_assert_msg(c, "%s", err);
    ck_assert_int_eq(c->d.emb_dim, 256);                 /* command line over preset */
    ck_assert_int_eq(c->d.mlp_dim, 128);                 /* preset over base */
    ck_assert_int_eq(cfg_int(c, K_steps), 7);
    ck_assert_double_eq_tol(cfg_float(c, K_adam_b1), 0.9, 1e-12);   /* base */
    ck_assert_ptr_null(c->v[K_base_emb_dim].loc.file);
    ck_assert_str_eq(c->v[K_base_emb_dim].loc.arg, "base_emb_dim=256");
    config_free(c);
    /* A user file sits between base and preset. */
    const char *path = write_cfg("model_name: tiny\nadam_b1: 0.5\nbase_mlp_dim: 99\n");
    c = load(path, 0, NULL);
    unlink(path);
    ck_assert_msg(c, "%s", err);
    ck_assert_double_eq(cfg_float(c, K_adam_b1), 0.5);
    ck_assert_int_eq(c->d.mlp_dim, 128);                 /* the preset wins over the file */
    config_free(c);
}
END_TEST

START_TEST(value_types)
{
    char *ov[] = {"checkpoint_period=1_000", "adam_eps=1.e-07", "pure_nnx=True",
                  "mlp_activations=[gelu]", "max_num_checkpoints_to_keep=3",
                  "run_name='a b: c'", "logical_axis_rules=[[embed, tensor], [mlp, [fsdp, data]]]"};
    Config *c = load_base(7, ov);
    ck_assert_msg(c, "%s", err);
    ck_assert_int_eq(cfg_int(c, K_checkpoint_period), 1000);
    ck_assert_double_eq_tol(cfg_float(c, K_adam_eps), 1e-7, 1e-20);
    ck_assert(cfg_bool(c, K_pure_nnx));
    ck_assert_int_eq(c->v[K_mlp_activations].list.n, 1);
    ck_assert(!c->v[K_max_num_checkpoints_to_keep].is_null);
    ck_assert_int_eq(cfg_int(c, K_max_num_checkpoints_to_keep), 3);
    ck_assert_str_eq(cfg_str(c, K_run_name), "a b: c");      /* strings are YAML too, quotes removed */
    const ConfigValue *r = &c->v[K_logical_axis_rules];
    ck_assert_str_eq(r->rules[0].name, "embed");
    ck_assert_str_eq(r->rules[1].axes.items[1], "data");
    /* Base rules named embed and mlp are overridden, the rest kept. */
    ck_assert_int_eq(r->nrules, 19);
    config_free(c);
}
END_TEST

START_TEST(parameter_scale)
{
    char *ov4[] = {"global_parameter_scale=4"};
    Config *c = load_base(1, ov4);
    ck_assert_msg(c, "%s", err);
    /* log2 = 2: heads, mlp and emb doubled, layers kept (MaxText's split). */
    ck_assert_int_eq(c->d.emb_dim, 4096);
    ck_assert_int_eq(c->d.num_query_heads, 32);
    ck_assert_int_eq(c->d.mlp_dim, 14336);
    ck_assert_int_eq(c->d.num_decoder_layers, 16);
    config_free(c);
    char *ov8[] = {"global_parameter_scale=8"};
    c = load_base(1, ov8);
    ck_assert_int_eq(c->d.emb_dim, 4096);
    ck_assert_int_eq(c->d.num_decoder_layers, 32);
    config_free(c);
}
END_TEST

START_TEST(mesh_and_batch)
{
    char *ov[] = {"compile_topology=cpu-8", "ici_tensor_parallelism=2",
                  "per_device_batch_size=0.5", "gradient_accumulation_steps=1"};
    Config *c = load_base(4, ov);
    ck_assert_msg(c, "%s", err);
    ck_assert_int_eq(c->d.num_devices, 8);
    ck_assert_int_eq(c->d.mesh_fsdp, 4);                 /* -1 fills the rest */
    ck_assert_int_eq(c->d.mesh_tensor, 2);
    ck_assert_int_eq(c->d.global_batch, 4);              /* tensor ranks share a slice: one sequence per fsdp rank */
    ck_assert_int_eq(c->d.micro_batch, 4);
    config_free(c);
    /* a microbatch of 2 sequences cannot split over the 4 fsdp ranks */
    ov[3] = "gradient_accumulation_steps=2";
    ck_assert_ptr_null(load_base(4, ov));
    ck_assert_msg(strstr(err, "a microbatch of 2 sequences (global batch 4 / gradient_accumulation_steps 2) does not "
                              "split over data x fsdp x expert = 4 devices"), "%s", err);
    char *ov2[] = {"compile_topology=cpu-4", "compile_topology_num_slices=2"};
    c = load_base(2, ov2);
    ck_assert_msg(c, "%s", err);
    ck_assert_int_eq(c->d.num_devices, 8);
    ck_assert_int_eq(c->d.mesh_data, 2);                 /* dcn data -1 takes the slices */
    config_free(c);
}
END_TEST

START_TEST(errors_types_and_ranges)
{
    expect_error("steps: ten\n", 0, NULL, ":2:8: error: key 'steps' expects an integer, got 'ten'");
    expect_error("adam_b1: 1.0\n", 0, NULL, "key 'adam_b1' must be a value in [0, 1), got 1.0");
    expect_error("pure_nnx: 1\n", 0, NULL, "key 'pure_nnx' expects true or false, got '1'");
    expect_error("learning_rate: .nan\n", 0, NULL, "expects a number");
    expect_error("head_dim: [1]\n", 0, NULL, "key 'head_dim' expects a single value");
    expect_error("global_parameter_scale: 6\n", 0, NULL, "must be a power of 2, got 6");
    expect_error("eval_interval: -2\n", 0, NULL, "must be a positive value or -1, got -2");
    expect_error("mlp_activations: [silu, relu, linear]\n", 0, NULL, "one or two activations");
    char *bad[] = {"steps"};
    expect_error("", 1, bad, "argument 'steps': error: expected key=value");
    char *bad2[] = {"mlp_activations=[silu"};
    expect_error("", 1, bad2, "argument 'mlp_activations=[silu': error: key 'mlp_activations': cannot read the value as YAML");
    char *bad3[] = {"decoder_block=gpt4"};
    expect_error("", 1, bad3, "unknown decoder_block 'gpt4' (choices: llama2, mistral, mixtral, gpt3, gemma, gemma2, qwen2, qwen3) (did you mean 'gpt3'?)");
}
END_TEST

/* Every MaxText key at MaxText's default (a fixture in mtxc's layout, written
 * by tools/maxtext_keys.py from MaxText's base.yml) loads, and what mtxc
 * implements reads as MaxText means it. */
START_TEST(maxtext_base_fixture)
{
    char *ov[] = {"model_name=default"};
    Config *c = load("tests/data/maxtext_base.yml", 1, ov);
    ck_assert_msg(c, "%s", err);
    ck_assert_str_eq(cfg_str(c, K_decoder_block), "llama2");
    ck_assert_str_eq(cfg_str(c, K_dataset_type), "tfds");    /* the trainer refuses it; compile-only does not read data */
    ck_assert_int_eq(c->d.emb_dim, 2048);
    ck_assert_int_eq(c->d.num_devices, 1);
    ck_assert_int_eq(c->v[K_mesh_axes].list.n, 12);           /* MaxText's axes: all but data, fsdp, tensor of size 1 */
    ck_assert_int_eq(cfg_int(c, K_decode_sampling_seed), 1234); /* mtxc's own keys take their defaults */
    for (int m = 0; m < NUM_MAXTEXT_KEYS; m++)
        ck_assert_msg(c->mx[m].set, "fixture lacks %s", maxtext_keys[m].name);
    config_free(c);
}
END_TEST

/* MaxText's keys mtxc does not implement: ignored ones take any value of
 * their type; unimplemented ones only MaxText's default (however written);
 * other families' decoder blocks are named in one line. */
START_TEST(maxtext_key_classes)
{
    char *ok[] = {"scan_layers=false", "enable_goodput_recording=true", "profiler=xplane", "shared_experts=0.0",
                  "quantization=''", "mrope_section=[24, 20, 20]", "checkpoint_todelete_subdir=None",
                  "image_size_for_vit=[672, 960]"};
    Config *c = load_base(8, ok);
    ck_assert_msg(c, "%s", err);
    ck_assert_str_eq(c->mx[MK_scan_layers].text, "false");
    ck_assert_str_eq(c->mx[MK_profiler].text, "\"xplane\"");
    config_free(c);
    char *e1[] = {"shared_experts=2"};
    expect_error("", 1, e1, "argument 'shared_experts=2': error: key 'shared_experts' is MaxText's, which mtxc does not "
                 "implement yet: only MaxText's default 0 is accepted, not 2");
    char *e2[] = {"enable_goodput_recording=maybe"};
    expect_error("", 1, e2, "key 'enable_goodput_recording' expects true or false (MaxText's default: false)");
    char *e3[] = {"scan_layer=false"};
    expect_error("", 1, e3, "unknown key 'scan_layer' (did you mean 'scan_layers'?)");
    expect_error("decoder_block: deepseek\nshared_experts: 1\n", 0, NULL, ":2:16: error: decoder_block 'deepseek' is "
                 "MaxText's, which mtxc does not implement yet (mtxc has: llama2, mistral, mixtral, gpt3, gemma, gemma2, qwen2, "
                 "qwen3)");
    expect_error("mesh_axes: [data, stage, fsdp, tensor]\nici_pipeline_parallelism: 2\n", 0, NULL,
                 "key 'ici_pipeline_parallelism' is MaxText's, which mtxc does not implement yet");
    expect_error("mrope_section: {a: 1}\n", 0, NULL, "key 'mrope_section' expects a list");
}
END_TEST

START_TEST(errors_consistency)
{
    expect_error("base_emb_dim: 100\n", 0, NULL, "emb_dim 100 is not divisible by num_query_heads 16");
    expect_error("base_num_kv_heads: 3\n", 0, NULL, "num_query_heads 16 is not a multiple of num_kv_heads 3");
    expect_error("compile_topology: cpu-6\nici_data_parallelism: 4\n", 0, NULL,
                 "ici_fsdp_parallelism: 6 devices cannot be split by the other axes' product 4");
    expect_error("gradient_accumulation_steps: 5\n", 0, NULL,
                 "global batch 12 is not divisible by gradient_accumulation_steps 5");
    expect_error("decoder_block: gpt3\ntrainable_position_size: 100\n", 0, NULL,
                 "max_target_length 2048 exceeds trainable_position_size 100");
}
END_TEST

START_TEST(errors_files)
{
    Config *c = load("configs/nope.yml", 0, NULL);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(err, "configs/nope.yml: error: cannot read config file: No such file or directory");
    char *ov[] = {"model_name=tinny"};
    c = load_base(1, ov);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "argument 'model_name=tinny': error: unknown model_name 'tinny'"), "%s", err);
    ck_assert_msg(strstr(err, "(did you mean 'tiny'?)"), "%s", err);
    ck_assert_msg(strstr(err, "gpt2-124m, gpt3-175b"), "%s", err);
}
END_TEST

START_TEST(did_you_mean)
{
    const char *cands[] = {"learning_rate", "steps", "log_period"};
    ck_assert_str_eq(mtx_closest_word("learning_rat", cands, 3), "learning_rate");
    ck_assert_str_eq(mtx_closest_word("stepz", cands, 3), "steps");
    ck_assert_ptr_null(mtx_closest_word("zzzzzzzz", cands, 3));
    ck_assert_int_eq(mtx_edit_distance("kitten", "sitting"), 3);
    ck_assert_int_eq(mtx_edit_distance("", "abc"), 3);
}
END_TEST

START_TEST(print_roundtrip)
{
    /* The printed config reads back to the same values. */
    char *ov[] = {"model_name=gpt3-52k", "run_name=say \"hi\"", "adam_eps=1.5e-9", "override_model_config=true",
                  "scan_layers=false"};
    Config *c = load_base(5, ov);
    ck_assert_msg(c, "%s", err);
    char path[64];
    snprintf(path, sizeof path, "/tmp/mtxc_rt_%d.yml", (int)getpid());
    FILE *f = fopen(path, "w");
    config_print(f, c);
    fclose(f);
    /* Derived lines are comments-marked values: strip them before reading back. */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "sed -i '/# derived/,$d; s/^model_name:.*/model_name: default/' %s", path);
    ck_assert_int_eq(system(cmd), 0);
    Config *d = load(path, 0, NULL);
    unlink(path);
    ck_assert_msg(d, "%s", err);
    Pool *p = pool_new();
    for (int k = 0; k < NUM_KEYS; k++)
        if (k != K_model_name)
            ck_assert_str_eq(config_value_text(p, c, k), config_value_text(p, d, k));
    ck_assert_str_eq(d->mx[MK_scan_layers].text, "false");      /* MaxText keys set away from defaults */
    pool_free(p);
    config_free(c);
    config_free(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_set_timeout(tc, 300);   /* seconds, for a loaded 2-core machine */
    tcase_add_test(tc, base_defaults);
    tcase_add_test(tc, base_config_in_a_parent);
    tcase_add_test(tc, preset_llama2_7b);
    tcase_add_test(tc, preset_llama3_8b);
    tcase_add_test(tc, precedence);
    tcase_add_test(tc, value_types);
    tcase_add_test(tc, parameter_scale);
    tcase_add_test(tc, mesh_and_batch);
    tcase_add_test(tc, errors_types_and_ranges);
    tcase_add_test(tc, errors_consistency);
    tcase_add_test(tc, errors_files);
    tcase_add_test(tc, did_you_mean);
    tcase_add_test(tc, maxtext_base_fixture);
    tcase_add_test(tc, maxtext_key_classes);
    tcase_add_test(tc, print_roundtrip);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
