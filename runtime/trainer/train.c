/* The training loop of a built trainer: run-time keys, init, steps, logging. */
#include "run_config.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Checkpoint settings of a run (MaxText's keys). */
typedef struct {
    bool on, on_completion;
    bool async;                               /* async_checkpointing: a writer thread from the live state */
    bool writer;                              /* this rank saves (one rank per distinct state) */
    long long period, keep;                   /* keep 0: all */
    char dir[4096];                           /* {base_output_directory}/{run_name}/checkpoints */
    char load_params[4096], load_full[4096];
} Checkpointing;

/* The mesh axes that split the state, each rank holding its part. */
static const struct { const char *name; int axis; } state_axes[] = {{"fsdp", 1}, {"tensor", 2}, {"expert", 3}};
enum { STATE_AXES = sizeof state_axes / sizeof state_axes[0] };

static int mesh_size(const mtx_program *prog, int axis)
{
    return axis == 1 ? prog->mesh_fsdp : axis == 2 ? prog->mesh_tensor : prog->mesh_expert;
}

/* Does each rank hold its own part of the state? */
static bool sharded(const mtx_program *prog)
{
    for (int a = 0; a < STATE_AXES; a++)
        if (mesh_size(prog, state_axes[a].axis) > 1) return true;
    return false;
}

void mtx_shard_name(const mtx_program *prog, const int coord[4], char *out, size_t n)
{
    size_t len = 0;
    out[0] = 0;
    for (int a = 0; a < STATE_AXES; a++) {
        int size = mesh_size(prog, state_axes[a].axis);
        if (size > 1 && len < n)
            len += (size_t)snprintf(out + len, n - len, "%s%s-%d-of-%d", len ? "." : "", state_axes[a].name,
                                    coord[state_axes[a].axis], size);
    }
}

/* This rank's shard directory. */
static void shard_name(const mtx_program *prog, char *out, size_t n)
{
    int coord[4] = {0, mtx_mesh_coord(1), mtx_mesh_coord(2), mtx_mesh_coord(3)};
    mtx_shard_name(prog, coord, out, n);
}

/* "fsdp F x tensor T x expert E" of a mesh's state axes' sizes. */
static const char *mesh_text(const int size[STATE_AXES], char *out, size_t n)
{
    snprintf(out, n, "fsdp %d x tensor %d x expert %d", size[0], size[1], size[2]);
    return out;
}

static void program_sizes(const mtx_program *prog, int size[STATE_AXES])
{
    for (int a = 0; a < STATE_AXES; a++) size[a] = mesh_size(prog, state_axes[a].axis);
}

/* A decimal count 1 .. INT_MAX at *s, which moves past it. */
static bool read_count(const char **s, int *out)
{
    long long v = 0;
    const char *p = *s;
    if (*p < '1' || *p > '9') return false;
    for (; *p >= '0' && *p <= '9'; p++)
        if ((v = v * 10 + (*p - '0')) > INT_MAX) return false;
    *out = (int)v;
    *s = p;
    return true;
}

/* A shard directory's name, as shard_name writes it: '.'-joined
 * "AXIS-R-of-N" parts, each of a state axis. Gives each axis's N (1 where
 * absent); false for any other name. */
static bool parse_shard_name(const char *name, int size[STATE_AXES])
{
    for (int a = 0; a < STATE_AXES; a++) size[a] = 1;
    for (const char *p = name;;) {
        int a = 0, r = 0, n;
        while (a < STATE_AXES && strncmp(p, state_axes[a].name, strlen(state_axes[a].name))) a++;
        if (a == STATE_AXES) return false;
        p += strlen(state_axes[a].name);
        if (*p++ != '-') return false;
        if (*p == '0') p++;                                 /* the first shard: r = 0 */
        else if (!read_count(&p, &r)) return false;
        if (strncmp(p, "-of-", 4)) return false;
        p += 4;
        if (!read_count(&p, &n) || r >= n) return false;
        size[a] = n;
        if (*p == 0) return true;
        if (*p++ != '.') return false;
    }
}

int mtx_is_shard_name(const char *name)
{
    int size[STATE_AXES];
    return parse_shard_name(name, size);
}

/* load_*_path on a sharded mesh names any shard's step directory
 * ({run}/checkpoints/{shard}/{step}); each rank loads its own shard's.
 * Returns 0 after printing why when the path names no shard. */
static int own_shard(const mtx_program *prog, char *path, size_t n)
{
    char *end = strrchr(path, '/'), *start;
    while (end && end > path && end[1] == 0) *end = 0, end = strrchr(path, '/');   /* trailing slashes */
    if (end) {
        *end = 0;
        start = strrchr(path, '/');
        start = start ? start + 1 : path;
        int size[STATE_AXES];
        bool shard = parse_shard_name(start, size);
        *end = '/';
        if (shard) {
            char mine[128], step[4096];
            shard_name(prog, mine, sizeof mine);
            snprintf(step, sizeof step, "%s", end);
            snprintf(start, n - (size_t)(start - path), "%s%s", mine, step);
            return 1;
        }
    }
    int size[STATE_AXES], first = 0;
    program_sizes(prog, size);
    while (size[first] == 1) first++;
    char text[128];
    fprintf(stderr, "trainer: error: this trainer's state is sharded (%s): load_parameters_path or "
                    "load_full_state_path must name a shard's step directory, as RUN/checkpoints/%s-0-of-N/STEP; got '%s'\n",
            mesh_text(size, text, sizeof text), state_axes[first].name, path);
    return 0;
}

static int checkpoint_settings(const mtx_program *prog, const RunConfig *rc, Checkpointing *ck)
{
    char run[1024], base[2048];
    if (!mtx_run_string(prog, rc, "run_name", run, sizeof run) ||
        !mtx_run_string(prog, rc, "base_output_directory", base, sizeof base) ||
        !mtx_run_string(prog, rc, "load_parameters_path", ck->load_params, sizeof ck->load_params) ||
        !mtx_run_string(prog, rc, "load_full_state_path", ck->load_full, sizeof ck->load_full))
        return 0;
    bool enabled = mtx_run_get(prog, rc, "enable_checkpointing")->b;
    ck->on_completion = mtx_run_get(prog, rc, "save_checkpoint_on_completion")->b;
    ck->period = mtx_run_get(prog, rc, "checkpoint_period")->i;
    ck->async = mtx_run_get(prog, rc, "async_checkpointing")->b;
    const mtx_key_value *keep = mtx_run_get(prog, rc, "max_num_checkpoints_to_keep");
    ck->keep = keep->is_null ? 0 : keep->i;
    ck->on = enabled && run[0];
    if (ck->load_params[0] && ck->load_full[0]) {
        fprintf(stderr, "trainer: error: %s\n", mtx_load_paths_conflict);
        return 0;
    }
    snprintf(ck->dir, sizeof ck->dir, "%s%s%s/checkpoints", base, base[0] ? "/" : "", run);
    /* FSDP, tensor and expert parallelism: each shard of the state in its
     * own directory, written by the rank at data coordinate 0 that holds it. */
    ck->writer = mtx_mesh_coord(0) == 0;
    if (sharded(prog)) {
        size_t n = strlen(ck->dir);
        n += (size_t)snprintf(ck->dir + n, sizeof ck->dir - n, "/");
        shard_name(prog, ck->dir + n, sizeof ck->dir - n);
    }
    if (enabled && !run[0])
        printf("checkpoints are off: set run_name=NAME to save to and resume from NAME/checkpoints\n");
    return 1;
}

/* Checkpoints of another mesh in the run's directory: shard directories of
 * other fsdp, tensor or expert counts, or whole-state steps when this mesh
 * shards. Returns 0 after printing which, so a run never silently starts over. */
static int same_mesh(const mtx_program *prog, const Checkpointing *ck)
{
    char base[4096];
    snprintf(base, sizeof base, "%s", ck->dir);
    if (sharded(prog)) *strrchr(base, '/') = 0;
    DIR *d = opendir(base);
    if (!d) return 1;
    int ok = 1, mine[STATE_AXES];
    program_sizes(prog, mine);
    for (struct dirent *e; ok && (e = readdir(d));) {
        int size[STATE_AXES];
        bool shard = parse_shard_name(e->d_name, size);
        bool step = mtx_step_name(e->d_name) >= 0;
        if ((shard && memcmp(size, mine, sizeof size)) || (step && sharded(prog))) {
            char theirs_text[128], mine_text[128];
            fprintf(stderr, "trainer: error: %s/%s holds checkpoints of a mesh with %s; this trainer's mesh has %s: "
                            "resume with the mesh that wrote them, or choose another run_name\n", base, e->d_name,
                    mesh_text(size, theirs_text, sizeof theirs_text), mesh_text(mine, mine_text, sizeof mine_text));
            ok = 0;
        }
    }
    closedir(d);
    return ok;
}

/* MaxText's order: the run's own latest checkpoint, else load_full_state_path
 * or load_parameters_path, else the fresh init. Returns the step to start at,
 * or -1 after printing why the checkpoint is refused. */
static long long restore(const mtx_program *prog, mtx_state *st, const Checkpointing *ck, uint64_t *position)
{
    char err[1024], path[8300];
    if (ck->on && !same_mesh(prog, ck)) return -1;
    /* Every rank resumes from the same step: the last one all shards have. */
    long long latest = mtx_all_reduce_min(ck->on ? mtx_checkpoint_latest(ck->dir, ck->writer) : -1);
    int params_only = 0;
    if (latest >= 0) snprintf(path, sizeof path, "%s/%lld", ck->dir, latest);
    else if (ck->load_full[0]) snprintf(path, sizeof path, "%s", ck->load_full);
    else if (ck->load_params[0]) snprintf(path, sizeof path, "%s", ck->load_params), params_only = 1;
    else return 0;
    if (latest < 0 && sharded(prog) && !mtx_hf_dir(path) && !own_shard(prog, path, sizeof path)) return -1;
    double t0 = mtx_seconds();
    if (mtx_checkpoint_load(prog, st, path, params_only, position, err, sizeof err) != 0) {
        fprintf(stderr, "trainer: error: %s\n", err);
        return -1;
    }
    long long step = 0;
    for (int i = 0; i < prog->ntensors && !params_only; i++)
        if (!strcmp(prog->tensors[i].name, "step"))
            step = *(int64_t *)((unsigned char *)prog->state_memory(st) + prog->tensors[i].offset);
    if (params_only) *position = 0;
    printf("%s %s: step %lld (%.1f MB in %.2f s)\n",
           latest >= 0 ? "resuming from" : params_only ? "parameters from" : "full state from", path, step,
           (double)prog->state_bytes / 1e6, mtx_seconds() - t0);
    return step;
}

/* The value of a counter tensor of the state (step, schedule_steps). */
static int64_t *counter(const mtx_program *prog, mtx_state *st, const char *name)
{
    for (int i = 0; i < prog->ntensors; i++)
        if (!strcmp(prog->tensors[i].name, name))
            return (int64_t *)((unsigned char *)prog->state_memory(st) + prog->tensors[i].offset);
    return NULL;
}

/* A finished save: its line, or its error (training goes on; exit 1 at the end). */
static void report_save(const mtx_save_result *r, const char *dir, bool live, int *failures)
{
    if (r->rc) {
        fprintf(stderr, "%strainer: error: %s\n", live ? "\r\033[K" : "", r->err);
        ++*failures;
    } else if (r->background) {
        printf("%ssaved checkpoint %s/%lld (%.1f MB, %.2f s in the background; the next update waited %.2f s)\n",
               live ? "\r\033[K" : "", dir, r->step, r->mb, r->seconds, r->waited);
    } else {
        printf("%ssaved checkpoint %s/%lld (%.1f MB, %.2f s)\n", live ? "\r\033[K" : "", dir, r->step, r->mb,
               r->seconds);
    }
    fflush(stdout);
}

/* key: the step's random key, which the Linen form receives; pure_nnx
 * programs keep and advance the same sequence of keys themselves. */
static void run_step(const mtx_program *prog, mtx_state *st, const mtx_batch *b, mtx_rng_key key, mtx_metrics *m)
{
    if (prog->pure_nnx)
        ((mtx_step_nnx)prog->train_step)(st, b, m);
    else
        ((mtx_step_linen)prog->train_step)(st, b, key, m);
}

/* SIGTERM (a batch system's preemption) and SIGINT: the step in flight
 * finishes, a checkpoint is saved, then the trainer exits 128 + signal. A
 * second signal ends it at once. */
static volatile sig_atomic_t stop_signal;
static bool stopped_together;             /* every rank left the loop at the same step */

static void on_stop_signal(int sig)
{
    if (stop_signal) _exit(128 + sig);
    stop_signal = sig;
}

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* The signal any rank received (every rank stops at the same step). */
static int agreed_stop_signal(void)
{
    return (int)-mtx_all_reduce_min(-(long long)stop_signal);
}

/* Mean loss over the eval set (or eval_steps batches): MaxText's eval/avg_loss,
 * the sum of per-batch losses weighted by their real targets. */
static double evaluate(const mtx_program *prog, mtx_state *st, mtx_data *data, mtx_batch *global, mtx_batch *b,
                       mtx_rng_key key, long long eval_steps, long long *batches)
{
    long long n = mtx_data_eval_batches(data, global->batch);
    if (eval_steps > 0 && eval_steps < n) n = eval_steps;
    if (n < 1) n = 1;
    double loss = 0, weight = 0;
    mtx_data_eval_reset(data);
    for (long long i = 0; i < n; i++) {
        mtx_data_next_eval(data, global);
        mtx_metrics m = {0};
        if (prog->pure_nnx)
            ((mtx_eval_nnx)prog->eval_step)(st, b, &m);
        else
            ((mtx_eval_linen)prog->eval_step)(st, b, mtx_rng_fold(key, (uint64_t)i), &m);
        float sums[2] = {(float)(m.loss * m.weight), (float)m.weight};
        mtx_all_reduce_sum(sums, 2, MTX_AXIS_DATA | MTX_AXIS_FSDP | MTX_AXIS_EXPERT);  /* every rank's share of the batch */
        loss += sums[0];
        weight += sums[1];
    }
    *batches = n;
    return weight > 0 ? loss / weight : 0;
}

static int train(const mtx_program *prog, int argc, char **argv);
enum { SAMPLE_TOKENS = 64 };   /* the end-of-training sample's length at most */

int mtx_main(const mtx_program *prog, int argc, char **argv)
{
    mtx_num_threads();   /* BLIS and OpenMP at one thread before anything starts theirs */
    mtx_collectives_start();
    int status = 0;
    int devices = prog->mesh_data * prog->mesh_fsdp * prog->mesh_tensor * prog->mesh_expert;
    bool export = argc > 1 && !strcmp(argv[1], "export");
    if (export && mtx_ranks() != 1) {   /* it reads every shard's checkpoint itself */
        if (mtx_rank() == 0)
            fprintf(stderr, "trainer: error: export runs as one process whatever the mesh (it reads every shard's "
                            "checkpoint): start it without mpirun\n");
        status = 2;
    } else if (export) {
        status = mtx_export_main(prog, argc - 1, argv + 1);
    } else if (mtx_ranks() != devices) {
        if (mtx_rank() == 0)
            fprintf(stderr, "trainer: error: this trainer is compiled for a mesh of %d devices (data %d x fsdp %d x "
                            "tensor %d x expert %d) but runs on %d rank%s: start it as mpirun -np %d %s\n", devices,
                    prog->mesh_data, prog->mesh_fsdp, prog->mesh_tensor, prog->mesh_expert, mtx_ranks(),
                    mtx_ranks() == 1 ? "" : "s",
                    devices, argc > 0 ? argv[0] : "./trainer");
        status = 2;
    } else {
        mtx_mesh_start(prog->mesh_data, prog->mesh_fsdp, prog->mesh_tensor, prog->mesh_expert);
        /* Only rank 0 talks. */
        if (mtx_rank() != 0 && !freopen("/dev/null", "w", stdout)) status = 1;
        /* Ranks that mpirun bound to their own cores use those; unbound ranks of
         * a host share its CPUs. */
        int bound, cpus = mtx_available_cpus(&bound);
        if (!getenv("MTX_NUM_THREADS") && mtx_local_ranks() > 1 && !bound)
            mtx_set_num_threads(cpus / mtx_local_ranks() > 0 ? cpus / mtx_local_ranks() : 1);
        if (!status && argc > 1 && !strcmp(argv[1], "decode")) {
            if (mtx_rank() != 0 && !freopen("/dev/null", "w", stderr)) status = 1;
            if (!status) status = mtx_decode_main(prog, argc - 1, argv + 1);
        } else if (!status) {
            status = train(prog, argc, argv);
        }
        /* a rank that failed alone ends the job; at a signal or a non-finite loss all stop together */
        if (status && !stopped_together) mtx_collectives_abort(status);
    }
    mtx_collectives_stop();
    return status;
}

/* Every run-time setting, read and checked before any file is opened. */
typedef struct {
    long long steps, log_period, init_seed, shuffle_seed, eval_interval, eval_steps, schedule;
    double target_eval_loss, peak_tflops;
    bool abort_on_nan, shuffle, add_bos, add_eos, packing;
    char dtype[64], dpath[4096], epath[4096], metrics_path[4096], tokenizer_type[64], tokenizer_path[4096];
    char hf_path[256], hf_train_files[4096], hf_eval_files[4096];
    Checkpointing ck;
    DecodeSettings sample;                    /* text data: a greedy sample from the prompt at the end */
} RunSettings;

static int run_settings(const mtx_program *prog, const RunConfig *rc, RunSettings *s)
{
    s->steps = mtx_run_get(prog, rc, "steps")->i;
    s->log_period = mtx_run_get(prog, rc, "log_period")->i;
    s->init_seed = mtx_run_get(prog, rc, "init_weights_seed")->i;
    s->shuffle_seed = mtx_run_get(prog, rc, "data_shuffle_seed")->i;
    s->eval_interval = mtx_run_get(prog, rc, "eval_interval")->i;
    s->eval_steps = mtx_run_get(prog, rc, "eval_steps")->i;
    s->schedule = mtx_run_get(prog, rc, "learning_rate_schedule_steps")->i;
    s->target_eval_loss = mtx_run_get(prog, rc, "target_eval_loss")->f;
    s->peak_tflops = mtx_run_get(prog, rc, "peak_tflops_per_device")->f;
    s->abort_on_nan = mtx_run_get(prog, rc, "abort_on_nan_loss")->b;
    s->shuffle = mtx_run_get(prog, rc, "enable_data_shuffling")->b;
    s->add_bos = mtx_run_get(prog, rc, "add_bos")->b;
    s->add_eos = mtx_run_get(prog, rc, "add_eos")->b;
    s->packing = mtx_run_get(prog, rc, "packing")->b;
    if (!checkpoint_settings(prog, rc, &s->ck) || !mtx_run_string(prog, rc, "dataset_type", s->dtype, sizeof s->dtype) ||
        !mtx_run_string(prog, rc, "dataset_path", s->dpath, sizeof s->dpath) ||
        !mtx_run_string(prog, rc, "eval_dataset_path", s->epath, sizeof s->epath) ||
        !mtx_run_string(prog, rc, "tokenizer_type", s->tokenizer_type, sizeof s->tokenizer_type) ||
        !mtx_run_string(prog, rc, "tokenizer_path", s->tokenizer_path, sizeof s->tokenizer_path) ||
        !mtx_run_string(prog, rc, "metrics_file", s->metrics_path, sizeof s->metrics_path) ||
        !mtx_run_string(prog, rc, "hf_path", s->hf_path, sizeof s->hf_path) ||
        !mtx_run_string(prog, rc, "hf_train_files", s->hf_train_files, sizeof s->hf_train_files) ||
        !mtx_run_string(prog, rc, "hf_eval_files", s->hf_eval_files, sizeof s->hf_eval_files) ||
        !mtx_decode_settings(prog, rc, &s->sample, false))
        return 0;
    s->sample.sampling.strategy = MTX_SAMPLE_GREEDY;
    if (s->peak_tflops <= 0) s->peak_tflops = mtx_measured_peak_flops(prog->bf16) / 1e12;
    return 1;
}

static int train(const mtx_program *prog, int argc, char **argv)
{
    static RunConfig rc;
    static RunSettings rs;                    /* paths make it large */
    int status = mtx_run_parse(prog, &rc, argc, argv, false);
    if (!status && !run_settings(prog, &rc, &rs)) status = 2;
    mtx_run_free(&rc);
    if (status) return status < 0 ? 0 : status;
    long long steps = rs.steps, log_period = rs.log_period, eval_interval = rs.eval_interval;
    double target_eval_loss = rs.target_eval_loss, peak_tflops = rs.peak_tflops;
    const Checkpointing *ck = &rs.ck;
    char err[1024];

    /* The batch splits over data x fsdp x expert; tensor-parallel ranks share a slice. */
    int dp = prog->mesh_data * prog->mesh_fsdp * prog->mesh_expert, rank = mtx_rank();
    int slice_index = mtx_batch_index();
    mtx_data_options data_options = {
        .type = rs.dtype, .path = rs.dpath, .eval_path = rs.epath, .tokenizer_type = rs.tokenizer_type,
        .tokenizer_path = rs.tokenizer_path, .add_bos = rs.add_bos, .add_eos = rs.add_eos, .vocab = prog->vocab,
        .hf_path = rs.hf_path, .train_files = rs.hf_train_files, .eval_files = rs.hf_eval_files,
        /* train_data_columns / eval_data_columns: the config allows only "text" yet */
        .column = "text", .eval_column = "text", .packing = rs.packing,
        .batch = prog->batch * dp, .seq = prog->seq, .shuffle = rs.shuffle, .seed = (uint64_t)rs.shuffle_seed};
    mtx_data *data = mtx_data_open(&data_options, err, sizeof err);
    if (!data) {
        fprintf(stderr, "trainer: error: %s\n", err);
        return 2;
    }
    if (rs.tokenizer_path[0] && !strcmp(rs.dtype, "text") && rank == 0) {
        int64_t train_tokens, eval_tokens;
        mtx_data_tokens(data, &train_tokens, &eval_tokens);
        printf("data: text through %s '%s': %lld training tokens, %lld eval tokens\n", mtx_data_tokenizer(data),
               rs.tokenizer_path, (long long)train_tokens, (long long)eval_tokens);
    }
    if (mtx_data_describe(data)[0] && rank == 0) printf("%s\n", mtx_data_describe(data));
    /* metrics_file: one JSON object per step, MaxText's metric names,
     * values with all their digits (%.17g reads back to the same double). */
    FILE *metrics = NULL;
    if (rs.metrics_path[0] && rank == 0 && !(metrics = fopen(rs.metrics_path, "a"))) {
        fprintf(stderr, "trainer: error: cannot open metrics_file '%s': %s\n", rs.metrics_path, strerror(errno));
        mtx_data_close(data);
        return 2;
    }
    int threads = mtx_num_threads();
    bool live = isatty(STDOUT_FILENO);       /* a progress line with an ETA */
    mtx_state *st = prog->state_new();
    mtx_rng_key key = mtx_rng_seed((uint64_t)rs.init_seed);
    prog->init(st, key);
    uint64_t position = 0;
    long long start = restore(prog, st, ck, &position);
    if (start < 0) {
        prog->state_free(st);
        if (metrics) fclose(metrics);
        mtx_data_close(data);
        return 2;
    }
    mtx_data_seek(data, position);
    /* learning_rate_schedule_steps -1 means the schedule spans the run's steps. */
    int64_t *sched = counter(prog, st, "schedule_steps");
    if (sched) *sched = rs.schedule == -1 ? steps : rs.schedule;
    /* Every rank reads the global batch and trains on its rows. */
    mtx_batch global, b;
    mtx_batch_alloc(&global, prog->batch * dp, prog->seq);
    size_t slice = (size_t)slice_index * (size_t)prog->batch * (size_t)prog->seq;
    b = (mtx_batch){global.inputs + slice, global.targets + slice, global.segmentation + slice, prog->batch, prog->seq,
                    global.segment_ids + slice};
    /* Eval batches: eval_per_device_batch_size rows per rank. */
    mtx_batch eval_global, eval_b;
    mtx_batch_alloc(&eval_global, prog->eval_batch * dp, prog->seq);
    size_t eval_slice = (size_t)slice_index * (size_t)prog->eval_batch * (size_t)prog->seq;
    eval_b = (mtx_batch){eval_global.inputs + eval_slice, eval_global.targets + eval_slice,
                         eval_global.segmentation + eval_slice, prog->eval_batch, prog->seq,
                         eval_global.segment_ids + eval_slice};
    printf("%s: %lld steps, batch %d x %d tokens, %.1f MB state, %.1f MB step arena, %d threads for %lld "
           "parallel regions a step, MFU against %.3g TFLOP/s\n", prog->model_name, steps, prog->batch, prog->seq,
           (double)prog->state_bytes / 1e6, (double)prog->arena_bytes / 1e6, threads, prog->parallel_regions,
           peak_tflops);
    if (*mtx_gemm_bf16_impls()) printf("bf16 matmuls: %s\n", mtx_gemm_bf16_impls());

    double t_total = 0;
    int save_failures = 0;
    mtx_saver *saver = ck->on && ck->writer ? mtx_saver_new(prog, ck->async) : NULL;
    mtx_save_result saved;
    status = 0;
    catch_stop_signals();
    mtx_rng_key step_key = mtx_rng_first_step_key(key);
    for (long long i = 0; i < start; i++) step_key = mtx_rng_next_step_key(step_key);
    long long step_jobs = 0;                  /* the first step's work split over threads */
    for (long long step = start; step < steps; step++) {
        mtx_data_next(data, &global);
        mtx_metrics m = {0};
        double t0 = mtx_seconds();
        long long jobs0 = mtx_parallel_jobs();
        run_step(prog, st, &b, step_key, &m);
        if (step == start) step_jobs = mtx_parallel_jobs() - jobs0;
        step_key = mtx_rng_next_step_key(step_key);
        double dt = mtx_seconds() - t0;
        t_total += dt;
        double tokens = (double)prog->batch * prog->seq;
        if (metrics) {
            char lb[64] = "";
            if (prog->moe_lb_loss) snprintf(lb, sizeof lb, "\"learning/moe_lb_loss\": %.17g, ", m.moe_lb_loss);
            fprintf(metrics, "{\"step\": %lld, \"learning/loss\": %.17g, %s\"learning/grad_norm\": %.17g, "
                             "\"learning/current_learning_rate\": %.17g, \"learning/total_weights\": %.17g, "
                             "\"perf/step_time_seconds\": %.6g, \"perf/per_device_tflops_per_sec\": %.6g, "
                             "\"perf/per_device_tokens_per_sec\": %.6g, \"perf/mfu\": %.4g}\n",
                    step + 1, m.loss, lb, m.grad_norm, m.lr, m.weight, dt, prog->flops_per_step / dt / 1e12, tokens / dt,
                    prog->flops_per_step / dt / 1e12 / peak_tflops);
            fflush(metrics);
        }
        double tflops = prog->flops_per_step / dt / 1e12;
        if ((step + 1) % log_period == 0 || step == 0 || step + 1 == steps) {
            char lb[48] = "";
            if (prog->moe_lb_loss) snprintf(lb, sizeof lb, " | moe_lb_loss %.6f", m.moe_lb_loss);
            printf("%sstep %6lld | loss %.6f%s | lr %.3e | grad_norm %.4f | %8.0f tok/s | %8.2f ms | %.2f TFLOP/s | MFU %.1f%%\n",
                   live ? "\r\033[K" : "", step + 1, m.loss, lb, m.lr, m.grad_norm, tokens / dt, dt * 1e3, tflops,
                   100 * tflops / peak_tflops);
            fflush(stdout);
        } else if (live) {
            double eta = t_total / (double)(step + 1) * (double)(steps - step - 1);
            printf("\r\033[K  step %lld/%lld (%.0f%%) | loss %.4f | ETA %d:%02d:%02d", step + 1, steps,
                   100.0 * (double)(step + 1) / (double)steps, m.loss, (int)(eta / 3600), (int)(eta / 60) % 60,
                   (int)eta % 60);
            fflush(stdout);
        }
        if (saver && mtx_saver_poll(saver, 0, &saved)) report_save(&saved, ck->dir, live, &save_failures);
        /* MaxText's abort_on_nan_loss: nothing of this state is saved; the
         * loss and norm are all-reduced, so every rank stops here. */
        if (rs.abort_on_nan && (!isfinite(m.loss) || !isfinite(m.grad_norm))) {
            fprintf(stderr, "%strainer: error: step %lld: loss %g, grad_norm %g: stopping without saving this state "
                    "(abort_on_nan_loss); earlier checkpoints are kept\n", live ? "\r\033[K" : "", step + 1, m.loss,
                    m.grad_norm);
            steps = step + 1;
            status = 1;
            stopped_together = true;
            break;
        }
        int sig = agreed_stop_signal();
        bool stopping = sig && step + 1 < steps;
        if (saver && ((step + 1) % ck->period == 0 || stopping || (step + 1 == steps && ck->on_completion))) {
            if (mtx_saver_start(saver, st, ck->dir, step + 1, mtx_data_position(data), (int)ck->keep, &saved))
                report_save(&saved, ck->dir, live, &save_failures);
            /* done already without async; at a signal, waited for */
            if (mtx_saver_poll(saver, stopping, &saved)) report_save(&saved, ck->dir, live, &save_failures);
        }
        if (stopping) {
            printf("%s%s at step %lld: %s, stopping\n", live ? "\r\033[K" : "", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                   step + 1, ck->on ? "checkpoint saved" : "checkpointing is off");
            steps = step + 1;
            status = 128 + sig;
            stopped_together = true;
            break;
        }
        if (eval_interval > 0 && ((step + 1) % eval_interval == 0 || step + 1 == steps)) {
            long long batches;
            double eval_loss = evaluate(prog, st, data, &eval_global, &eval_b, mtx_rng_fold(key, ~(uint64_t)step), rs.eval_steps, &batches);
            printf("%seval   %6lld | loss %.6f | perplexity %.3f | %lld batches\n", live ? "\r\033[K" : "", step + 1, eval_loss,
                   exp(eval_loss), batches);
            if (metrics)
                fprintf(metrics, "{\"step\": %lld, \"eval/avg_loss\": %.17g}\n", step + 1, eval_loss);
            fflush(stdout);
            if (target_eval_loss > 0 && eval_loss <= target_eval_loss) {
                printf("reached target_eval_loss %g at step %lld: stopping\n", target_eval_loss, step + 1);
                steps = step + 1;
                break;
            }
        }
    }
    /* the save in flight (the last, or one before a NaN stop) ends before the run does */
    if (saver && mtx_saver_poll(saver, 1, &saved)) report_save(&saved, ck->dir, live, &save_failures);
    mtx_saver_free(saver);
    long long ran = steps > start ? steps - start : 0;
    struct rusage usage;                      /* this rank's peak resident memory */
    getrusage(RUSAGE_SELF, &usage);
    printf("done: %lld steps in %.2f s (%.2f ms/step), peak memory %.1f MB, %lld parallel jobs a step on %d threads\n",
           ran, t_total, ran ? t_total * 1e3 / (double)ran : 0.0, (double)usage.ru_maxrss * 1024 / 1e6, step_jobs,
           threads);
    if (metrics) fclose(metrics);
    /* Text: what the model makes of the prompt, so a user sees what it learned. */
    if (!status && prog->decode && !strcmp(rs.dtype, "text") && rs.sample.prompt[0]) {
        fflush(stdout);
        status = mtx_decode_print(prog, st, &rs.sample, SAMPLE_TOKENS, "sample (greedy): ");
    }
    mtx_batch_free(&global);
    mtx_batch_free(&eval_global);
    mtx_data_close(data);
    prog->state_free(st);
    return status ? status : save_failures ? 1 : 0;
}
