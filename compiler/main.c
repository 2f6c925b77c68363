/* mtxc's command line: one function per subcommand. */
#include "mtxc.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    const char *name;
    const char *summary;
    const char *usage;       /* shown by mtxc NAME --help */
    int (*run)(int argc, char **argv);
} Command;

/* Arguments common to every command: CONFIG, key=value overrides, options. */
typedef struct {
    const char *config;
    char **overrides;
    int noverrides;
} Args;

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "mtxc %s: error: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see mtxc %s --help)\n", cmd);
    return 2;
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return true;
    return false;
}

/* An option that takes a value: "--name VALUE" or "--name=VALUE". */
typedef struct { const char *name; const char **value; } ValueOption;

/* Split argv into CONFIG, overrides and options; returns 0 or an exit status. */
static int parse_args(const char *cmd, int argc, char **argv, Args *a, const ValueOption *opts)
{
    *a = (Args){.overrides = argv, .noverrides = 0};
    for (int i = 0; i < argc; i++) {
        char *s = argv[i];
        const ValueOption *o = opts;
        for (; o && o->name; o++) {
            size_t n = strlen(o->name);
            if (!strncmp(s, o->name, n) && s[n] == '=') { *o->value = s + n + 1; break; }
            if (!strcmp(s, o->name)) {
                if (i + 1 >= argc) return usage_error(cmd, "option '%s' needs a value", s);
                *o->value = argv[++i];
                break;
            }
        }
        if (o && o->name) continue;
        if (s[0] == '-') return usage_error(cmd, "unknown option '%s'", s);
        if (strchr(s, '=')) a->overrides[a->noverrides++] = s;
        else if (!a->config) a->config = s;
        else return usage_error(cmd, "unexpected argument '%s': give one CONFIG and key=value overrides", s);
    }
    if (!a->config) return usage_error(cmd, "%s", "missing CONFIG (e.g. configs/base.yml)");
    return 0;
}

static Config *load_or_report(const Args *a)
{
    char err[1024];
    Config *c = config_load(a->config, a->noverrides, a->overrides, err, sizeof err);
    if (!c) fprintf(stderr, "%s\n", err);
    return c;
}

static int cmd_config(int argc, char **argv)
{
    if (argc == 1 && (!strcmp(argv[0], "--keys") || !strcmp(argv[0], "--ignored"))) {
        maxtext_print_keys(stdout, !strcmp(argv[0], "--ignored"));
        return 0;
    }
    Args a;
    int rc = parse_args("config", argc, argv, &a, NULL);
    if (rc) return rc;
    Config *c = load_or_report(&a);
    if (!c) return 2;
    config_print(stdout, c);
    config_free(c);
    return 0;
}

static Program *compile_or_report(const Config *c, const char *last)
{
    char err[1024];
    Program *p = compile_program(c, last, err, sizeof err);
    if (!p) fprintf(stderr, "%s\n", err);
    return p;
}

static int cmd_ir(int argc, char **argv)
{
    Args a;
    const char *after = NULL;
    ValueOption opts[] = {{"--after", &after}, {NULL, NULL}};
    int rc = parse_args("ir", argc, argv, &a, opts);
    if (rc) return rc;
    Config *c = load_or_report(&a);
    if (!c) return 2;
    Program *p = compile_or_report(c, after);
    if (p) ir_print(stdout, p);
    program_free(p);
    config_free(c);
    return p ? 0 : 2;
}

static void ir_usage(void)
{
    printf("usage: mtxc ir CONFIG [key=value ...] [--after PASS]\n"
           "\n"
           "Prints the IR of the train and eval steps after PASS (default: the last),\n"
           "checked by the verifier after every pass. Passes, in order:\n");
    for (int i = 0; i < num_passes; i++) printf("  %-10s %s\n", passes[i].name, passes[i].summary);
}

/* "CONFIG key=value ...": where a generated program came from. */
static const char *source_desc(Pool *pool, const Args *a)
{
    Buf b = {0};
    buf_puts(&b, a->config);
    for (int i = 0; i < a->noverrides; i++) buf_printf(&b, " %s", a->overrides[i]);
    const char *s = pool_strdup(pool, b.s);
    buf_free(&b);
    return s;
}

/* The backends lower data, fsdp and tensor axes (one MPI rank per device);
 * what they cannot (lowerable_mesh says why) is for compile-only. */
static bool lowerable(const Config *c)
{
    char err[512];
    if (lowerable_mesh(c, err, sizeof err)) return true;
    fprintf(stderr, "%s\n", err);
    return false;
}

/* Load, compile and emit C into dir; returns the program or NULL (reported). */
static Program *emit_to(const Args *a, Config **cfg, const char *dir)
{
    *cfg = load_or_report(a);
    if (!*cfg || !lowerable(*cfg)) return NULL;
    Program *p = compile_or_report(*cfg, NULL);
    if (!p) return NULL;
    char err[1024];
    if (!emit_c(p, dir, source_desc(p->pool, a), err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        program_free(p);
        return NULL;
    }
    return p;
}

static int cmd_emit(int argc, char **argv)
{
    Args a;
    const char *dir = NULL;
    ValueOption opts[] = {{"-o", &dir}, {NULL, NULL}};
    int rc = parse_args("emit", argc, argv, &a, opts);
    if (rc) return rc;
    if (!dir) return usage_error("emit", "%s", "missing -o DIR");
    Config *c;
    Program *p = emit_to(&a, &c, dir);
    if (p) printf("mtxc: wrote %s/step.c, %s/step.h and %s/main.c\n", dir, dir, dir);
    program_free(p);
    config_free(c);
    return p ? 0 : 2;
}

/* -fno-math-errno lets sqrtf and friends vectorize; -ffp-contract=off keeps
 * a * b + c two roundings, so that gcc here and clang in mtxc run compute
 * the same bits (jit.c uses the same contract). */
#define DEFAULT_CFLAGS "-O3 -march=native -fno-math-errno -ffp-contract=off"

/* Run argv[0] with arguments; true if it exits with status 0. */
static bool run(char **argv)
{
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "mtxc: error: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Split a flags string on spaces into argv entries. */
enum { MAX_CFLAGS = 64, MAX_LIBS = 32 };   /* words of --cflags, of the libraries a trainer links */

/* Words of s into out; -1 if there are more than max. */
static int split_flags(char *s, char **out, int max)
{
    int n = 0;
    for (char *tok = strtok(s, " \t"); tok; tok = strtok(NULL, " \t")) {
        if (n == max) return -1;
        out[n++] = tok;
    }
    return n;
}

static int cmd_build(int argc, char **argv)
{
    Args a;
    const char *path = NULL, *keep = NULL, *cflags = NULL;
    ValueOption opts[] = {{"-o", &path}, {"--keep-source", &keep}, {"--cflags", &cflags}, {NULL, NULL}};
    int rc = parse_args("build", argc, argv, &a, opts);
    if (rc) return rc;
    if (!path) return usage_error("build", "%s", "missing -o PATH");
    char *words[MAX_CFLAGS], *copy = xstrdup(cflags ? cflags : "");
    int nwords = split_flags(copy, words, MAX_CFLAGS);
    free(copy);
    if (nwords < 0) return usage_error("build", "%s", xfmt("--cflags has more than %d words", MAX_CFLAGS));
    char tmpdir[] = "/tmp/mtxc-build-XXXXXX";
    const char *dir = keep;
    if (!dir && !(dir = mkdtemp(tmpdir))) {
        fprintf(stderr, "mtxc: error: cannot create a temporary directory: %s\n", strerror(errno));
        return 1;
    }
    double t0 = mtx_seconds();
    Config *c;
    Program *p = emit_to(&a, &c, dir);
    bool ok = p != NULL;
    double t1 = mtx_seconds();
    char *step_c = xfmt("%s/step.c", dir), *main_c = xfmt("%s/main.c", dir), *inc = xfmt("-I%s", dir);
    char *tmp_out = xfmt("%s.tmp%d", path, (int)getpid());
    if (ok) {
        char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
        char *flags = xstrdup(cflags ? cflags : DEFAULT_CFLAGS);
        char *args[MAX_CFLAGS + MAX_LIBS + 16];
        int n = 0, words;
        args[n++] = cc;
        args[n++] = "-std=gnu11";
        words = split_flags(flags, args + n, MAX_CFLAGS);   /* counted by cmd_build */
        n += words;
        char *argv2[] = {inc, "-I" MTXC_RUNTIME_INCLUDE, step_c, main_c, MTXC_RUNTIME_LIB, NULL};
        for (int i = 0; argv2[i]; i++) args[n++] = argv2[i];
        char *libs = xstrdup(MTXC_RUNTIME_LIBS " -lm -lpthread " MTXC_TRAINER_LDFLAGS);
        words = split_flags(libs, args + n, MAX_LIBS);
        assert(words >= 0);   /* fixed when mtxc is built */
        n += words;
        args[n++] = "-o";
        args[n++] = tmp_out;
        args[n] = NULL;
        printf("mtxc: compiling %s (%d layers, %.1f M params) with %s %s\n", cfg_str(c, K_model_name),
               c->d.num_decoder_layers, (double)program_param_count(p) / 1e6, cc, cflags ? cflags : DEFAULT_CFLAGS);
        fflush(stdout);
        ok = run(args);
        if (!ok) {
            fprintf(stderr, "mtxc: error: the C compiler failed on the generated code in %s "
                            "(a bug in mtxc: please report it)%s\n", dir, keep ? "" : "; rerun with --keep-source DIR to keep it");
            unlink(tmp_out);
        } else if (rename(tmp_out, path) != 0) {
            fprintf(stderr, "mtxc: error: cannot write %s: %s\n", path, strerror(errno));
            unlink(tmp_out);
            ok = false;
        }
        free(flags);
        free(libs);
    }
    if (ok) printf("mtxc: wrote %s (lowering %.2f s, C compile %.2f s)\n", path, t1 - t0, mtx_seconds() - t1);
    if (!keep) {
        unlink(step_c);
        unlink(main_c);
        char *h = xfmt("%s/step.h", dir);
        unlink(h);
        free(h);
        rmdir(dir);
    }
    free(step_c);
    free(main_c);
    free(inc);
    free(tmp_out);
    program_free(p);
    config_free(c);
    return ok ? 0 : p ? 1 : 2;
}

/* mtxc run, decode and export: JIT-compile the config, then the trainer's
 * main in this process (mode NULL: training; "decode", "export": those
 * commands, with extra arguments after the mode). */
static int jit_main_with(const char *cmd, int argc, char **argv, const char *mode, int nextra, char **extra)
{
    Args a;
    const char *keep = NULL;
    ValueOption opts[] = {{"--keep-source", &keep}, {NULL, NULL}};
    int rc = parse_args(cmd, argc, argv, &a, opts);
    if (rc) return rc;
#ifndef MTXC_HAVE_JIT
    (void)keep;
    (void)mode;
    fprintf(stderr, "mtxc %s: error: this mtxc was built without the JIT (cmake -DMTXC_JIT=OFF). Rebuild with\n"
                    "  tools/install-deps && cmake -S . -B build -DMTXC_JIT=ON && cmake --build build\n"
                    "or use mtxc build to compile a trainer with the system C compiler%s.\n", cmd,
            mode ? " and run it as PATH decode key=value ..." : "");
    return 2;
#else
    double t0 = mtx_seconds();
    Config *c = load_or_report(&a);
    if (!c) return 2;
    if (!lowerable(c)) {
        config_free(c);
        return 2;
    }
    Program *p = compile_or_report(c, NULL);
    if (!p) {
        config_free(c);
        return 2;
    }
    GeneratedC g;
    emit_c_text(p, source_desc(p->pool, &a), &g);
    JitTimes t = {.lower = mtx_seconds() - t0};
    char err[16384];
    Jit *jit;
    const mtx_program *prog = jit_load(&g, keep, &jit, &t, err, sizeof err);
    generated_c_free(&g);
    if (!prog) {
        fprintf(stderr, "%s\n", err);
        program_free(p);
        config_free(c);
        return 1;
    }
    fprintf(mode ? stderr : stdout, "mtxc %s: %s: lowering %.0f ms, C compile %.0f ms, JIT link %.0f ms\n", cmd,
            cfg_str(c, K_model_name), t.lower * 1e3, t.compile * 1e3, t.link * 1e3);
    fflush(stdout);
    char **run_argv = xcalloc((size_t)nextra + 3, sizeof *run_argv);
    run_argv[0] = xfmt("mtxc %s", cmd), run_argv[1] = (char *)mode;
    for (int i = 0; i < nextra; i++) run_argv[2 + i] = extra[i];
    rc = mtx_main(prog, mode ? 2 + nextra : 1, run_argv);
    free(run_argv[0]);
    free(run_argv);
    jit_free(jit);
    program_free(p);
    config_free(c);
    return rc;
#endif
}

static int jit_main(const char *cmd, int argc, char **argv, const char *mode)
{
    return jit_main_with(cmd, argc, argv, mode, 0, NULL);
}

static int cmd_run(int argc, char **argv) { return jit_main("run", argc, argv, NULL); }
static int cmd_decode(int argc, char **argv) { return jit_main("decode", argc, argv, "decode"); }

/* The trainer's export options go to it; the rest is a config as for run. */
static int cmd_export(int argc, char **argv)
{
    char **rest = xmalloc(sizeof(char *) * (size_t)(argc + 1)), **extra = xmalloc(sizeof(char *) * (size_t)(argc + 1));
    int n = 0, nextra = 0, rc = 0;
    for (int i = 0; i < argc && !rc; i++) {
        if (strcmp(argv[i], "-o") && strcmp(argv[i], "--dtype") && strcmp(argv[i], "--shard-size") &&
            strcmp(argv[i], "--vocab-size"))
            rest[n++] = argv[i];
        else if (i + 1 == argc) rc = usage_error("export", "option '%s' needs a value", argv[i]);
        else extra[nextra++] = argv[i], extra[nextra++] = argv[++i];
    }
    if (!rc) rc = jit_main_with("export", n, rest, "export", nextra, extra);
    free(rest), free(extra);
    return rc;
}

static int cmd_compile_only(int argc, char **argv)
{
    Args a;
    const char *format = "text";
    ValueOption opts[] = {{"--format", &format}, {NULL, NULL}};
    int rc = parse_args("compile-only", argc, argv, &a, opts);
    if (rc) return rc;
    if (strcmp(format, "text") && strcmp(format, "json"))
        return usage_error("compile-only", "unknown --format '%s' (text or json)", format);
    Config *c = load_or_report(&a);
    if (!c) return 2;
    Report r;
    char err[1024];
    bool ok = compile_report(c, &r, err, sizeof err);
    if (!ok) fprintf(stderr, "%s\n", err);
    else report_print(stdout, c, &r, !strcmp(format, "json"));
    config_free(c);
    return !ok ? 2 : r.fits ? 0 : 1;
}

/* mtxc tokenize: the ids of a file's text as the trainer's tokenizer makes
 * them (the whole text, not line by line; bos / eos as add_bos / add_eos
 * say), or with --decode the text of a file of ids. */
static bool put_ids(Buf *b, const mtx_tokenizer *t, const char *text, size_t n, bool bos, bool eos, char *err,
                    size_t errlen)
{
    mtx_tokens ids = {0};
    bool ok = (!bos || mtx_tokens_push(&ids, (uint32_t)mtx_tokenizer_bos(t))) &&
              mtx_tokenizer_encode(t, text, n, &ids, err, errlen) &&
              (!eos || mtx_tokens_push(&ids, (uint32_t)mtx_tokenizer_eos(t)));
    for (int64_t i = 0; ok && i < ids.n; i++) buf_printf(b, "%s%u", i ? " " : "", ids.v[i]);
    if (!ok && !err[0]) snprintf(err, errlen, "out of memory");
    free(ids.v);
    return ok;
}

/* The ids of the whole text on one line; or (lines) of each line on its own,
 * bos and eos around each non-empty one, as the trainer reads text data. */
static int tokenize_file(const mtx_tokenizer *t, const char *path, bool bos, bool eos, bool lines)
{
    const char *why;
    size_t size;
    char *text = mtx_read_file(path, (size_t)1 << 32, 1, &size, &why), err[1024] = "";
    if (!text) return fprintf(stderr, "mtxc tokenize: error: cannot read '%s': %s\n", path, why), 2;
    Buf b = {0};
    bool ok = true;
    long long line = 1;
    if (!lines) ok = put_ids(&b, t, text, size, bos, eos, err, sizeof err);
    for (size_t at = 0; lines && ok && at < size; line++) {
        const char *nl = memchr(text + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - text) : size;
        ok = end == at || put_ids(&b, t, text + at, end - at, bos, eos, err, sizeof err);
        buf_puts(&b, "\n");
        at = end + 1;
    }
    free(text);
    char where[48] = "";
    if (lines) snprintf(where, sizeof where, ", line %lld", line);
    if (!ok) fprintf(stderr, "mtxc tokenize: error: '%s'%s: %s\n", path, where, err);
    else fputs(b.s ? b.s : "", stdout), fputs(lines ? "" : "\n", stdout);
    buf_free(&b);
    return ok ? 0 : 2;
}

static int detokenize_file(const mtx_tokenizer *t, const char *path)
{
    const char *why;
    size_t size;
    char *text = mtx_read_file(path, (size_t)1 << 32, 1, &size, &why);
    if (!text) return fprintf(stderr, "mtxc tokenize: error: cannot read '%s': %s\n", path, why), 2;
    int32_t *ids = xmalloc(sizeof(int32_t) * (size / 2 + 1));
    int n = 0, rc = 0;
    for (char *p = text, *end; *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v >= mtx_tokenizer_vocab(t) || n == INT32_MAX) {
            int w = (int)strcspn(p, " \t\r\n");
            fprintf(stderr, "mtxc tokenize: error: '%s': '%.*s%s' is not a token id (0 to %d)\n", path, w < 40 ? w : 40,
                    p, w > 40 ? "..." : "", mtx_tokenizer_vocab(t) - 1);
            rc = 2;
            break;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    char *out = rc ? NULL : mtx_tokenizer_decode(t, ids, n);
    if (!rc && !out) fprintf(stderr, "mtxc tokenize: error: '%s': the tokenizer cannot decode these ids\n", path), rc = 2;
    if (out) fputs(out, stdout);
    free(out), free(ids), free(text);
    return rc;
}

static int cmd_tokenize(int argc, char **argv)
{
    bool decode = false, lines = false;
    char **rest = xmalloc(sizeof(char *) * (size_t)(argc + 1));
    const char *file = NULL;
    int n = 0, positional = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--decode")) decode = true;
        else if (!strcmp(argv[i], "--lines")) lines = true;
        else if (argv[i][0] != '-' && !strchr(argv[i], '=') && positional++ == 1) file = argv[i];
        else rest[n++] = argv[i];
    }
    Args a;
    int rc = parse_args("tokenize", n, rest, &a, NULL);
    if (!rc && !file) rc = usage_error("tokenize", "%s", "missing FILE (the text to tokenize, or with --decode the ids)");
    Config *c = rc ? NULL : load_or_report(&a);
    if (!rc && !c) rc = 2;
    char err[1024];
    mtx_tokenizer *t = NULL;
    if (c && !cfg_str(c, K_tokenizer_path)[0])
        fprintf(stderr, "mtxc tokenize: error: the config sets no tokenizer_path\n"), rc = 2;
    else if (c && !(t = mtx_tokenizer_for(cfg_str(c, K_tokenizer_type), cfg_str(c, K_tokenizer_path),
                                          (int)cfg_int(c, K_vocab_size), err, sizeof err)))
        fprintf(stderr, "mtxc tokenize: error: %s\n", err), rc = 2;
    if (t) {
        bool bos = cfg_bool(c, K_add_bos) && mtx_tokenizer_bos(t) >= 0, eos = cfg_bool(c, K_add_eos) && mtx_tokenizer_eos(t) >= 0;
        rc = decode ? detokenize_file(t, file) : tokenize_file(t, file, bos, eos, lines);
    }
    mtx_tokenizer_close(t);
    if (c) config_free(c);
    free(rest);
    return rc;
}

static const Command commands[] = {
    {"config", "print the resolved config as YAML",
     "usage: mtxc config CONFIG [key=value ...]\n"
     "       mtxc config --keys | --ignored\n"
     "\n"
     "Reads CONFIG (e.g. configs/base.yml, or MaxText's own base.yml), then the preset\n"
     "models/<model_name>.yml next to it, then the key=value overrides, in that order of\n"
     "precedence, and prints every key mtxc implements with its resolved value, MaxText's\n"
     "keys that were set away from their defaults, and the derived values (emb_dim,\n"
     "num_devices, global batch, ...) marked '# derived'. As in MaxText, a key the preset\n"
     "sets may take another value on the command line only with override_model_config=true.\n"
     "A bad config is reported as file:line:column: error: ... with exit status 2.\n"
     "\n"
     "Every key of MaxText's base.yml is known, in one of three classes: implemented;\n"
     "ignored (no effect on a CPU trainer: TPU, XLA, GCS, profilers, goodput, ...; any\n"
     "value of its type is accepted); unimplemented (only MaxText's default is accepted).\n"
     "  --keys      list every key with its class (and MaxText's default)\n"
     "  --ignored   list the ignored keys with MaxText's defaults\n",
     cmd_config},
    {"ir", "print the IR after any pass", NULL, cmd_ir},
    {"emit", "write the generated C of the train and eval steps",
     "usage: mtxc emit CONFIG [key=value ...] -o DIR\n"
     "\n"
     "Compiles the config and writes DIR/step.c (kernels, init, mtx_train_step,\n"
     "mtx_eval_step and the program descriptor), DIR/step.h (mtx_state and the entry\n"
     "points) and DIR/main.c (a trainer's main). Files are replaced atomically.\n",
     cmd_emit},
    {"build", "compile a standalone trainer binary",
     "usage: mtxc build CONFIG [key=value ...] -o PATH [--cflags FLAGS] [--keep-source DIR]\n"
     "\n"
     "Emits the C, compiles it with the system C compiler ($CC, default cc; FLAGS\n"
     "default " DEFAULT_CFLAGS ") and links it with libmtxrt and BLIS into PATH, which\n"
     "replaces an old PATH only once it is complete. Run the trainer with run-time keys:\n"
     "  PATH steps=100 log_period=10 init_weights_seed=1\n"
     "Keys that change the compiled program are refused there; rebuild instead.\n",
     cmd_build},
    {"run", "compile in memory with clang + LLVM ORC and train at once",
     "usage: mtxc run CONFIG [key=value ...] [--keep-source DIR]\n"
     "\n"
     "Emits the same C as mtxc emit, compiles it in this process with clang's\n"
     "frontend (-O3 for this CPU, the floating-point contract of mtxc build), links\n"
     "it with LLVM's ORC JIT against the runtime inside mtxc, and runs the same\n"
     "training loop as a built trainer. Writes no file and runs no external\n"
     "compiler. Run-time keys (steps, log_period, seeds, ...) are given the same way\n"
     "as the others. --keep-source DIR also writes the generated C there, and\n"
     "compile errors then point into it.\n",
     cmd_run},
    {"decode", "generate text from a checkpoint (JIT, like run)",
     "usage: mtxc decode CONFIG load_parameters_path=STEP_DIR [prompt=TEXT] [key=value ...]\n"
     "\n"
     "Compiles the config as mtxc run does, loads the parameters of a checkpoint\n"
     "step directory (RUN/checkpoints/STEP), and prints the prompt and its\n"
     "continuation: the prompt runs through prefill_step in one call (at most\n"
     "max_prefill_predict_length tokens), then each token chosen by\n"
     "decode_sampling_strategy (greedy, weighted, nucleus, topk, composite; with\n"
     "decode_sampling_temperature, _top_k, _nucleus_p, _seed) runs through\n"
     "decode_step, until max_target_length tokens or the tokenizer's eos. Text is\n"
     "tokenized by tokenizer_path (tokenizer_type), else bytes for dataset_type text,\n"
     "else the prompt is token ids. A built trainer does the same: PATH decode ...\n"
     "Decoding needs a single-device mesh.\n",
     cmd_decode},
    {"export", "write a checkpoint's parameters as a Hugging Face model directory (JIT)",
     "usage: mtxc export CONFIG [load_parameters_path=STEP_DIR] [key=value ...] -o DIR\n"
     "                   [--dtype bfloat16|float32] [--shard-size 5GB] [--vocab-size N]\n"
     "\n"
     "Compiles the config as mtxc run does, loads the parameters of a checkpoint step\n"
     "directory (of a sharded mesh: any shard's, and the others beside it are read\n"
     "too; or a Hugging Face directory), and writes DIR: config.json with\n"
     "Hugging Face's field names for the family (architectures, model_type, sizes,\n"
     "rope_theta, rope_scaling, ...) and the parameters in Hugging Face's layout and\n"
     "names, as --dtype (default bfloat16) safetensors, in shards of at most\n"
     "--shard-size (default 5GB, as Hugging Face's) with model.safetensors.index.json.\n"
     "--vocab-size keeps the first N rows of the vocabulary (a checkpoint imported\n"
     "into a preset with a padded vocabulary goes back to its own size).\n"
     "A float32 export loads back bit for bit. Without load_parameters_path it writes\n"
     "the initial parameters (init_weights_seed): a random model of the config. DIR\n"
     "must not exist; it appears only once complete. A built trainer does the same:\n"
     "PATH export ...\n",
     cmd_export},
    {"compile-only", "report per-device memory, FLOPs and collectives for a mesh",
     "usage: mtxc compile-only CONFIG [key=value ...] [--format text|json]\n"
     "\n"
     "Runs every pass and the C backend for the config's mesh (compile_topology cpu-N\n"
     "x compile_topology_num_slices devices, ici_*/dcn_* parallelism) without\n"
     "allocating any of the model, and reports per device: params, gradients and\n"
     "optimizer state as logical_axis_rules shard them, the step's temporaries\n"
     "(memory plan of the per-device step), the peak against device_memory_gib;\n"
     "FLOPs per step; bytes of each collective per step. Exit status 1 if the peak\n"
     "does not fit, 2 for a bad config.\n",
     cmd_compile_only},
    {"tokenize", "print the token ids of a text file as the trainer sees them",
     "usage: mtxc tokenize CONFIG [key=value ...] [--lines] FILE\n"
     "       mtxc tokenize --decode CONFIG [key=value ...] FILE\n"
     "\n"
     "Opens the config's tokenizer (tokenizer_type sentencepiece, huggingface or\n"
     "tiktoken at tokenizer_path) and prints the ids of FILE's whole text on one\n"
     "line, space-separated, with the tokenizer's bos before and eos after as add_bos\n"
     "and add_eos say (a tokenizer without one adds none). --lines: the ids of each\n"
     "line on a line of their own, bos and eos around each non-empty line, as the\n"
     "trainer reads dataset_type text. With --decode, FILE holds\n"
     "ids (space- or newline-separated) and their text is printed. FILE may be\n"
     "/dev/stdin.\n",
     cmd_tokenize},
};
static const int num_commands = sizeof commands / sizeof commands[0];

static void print_help(FILE *out)
{
    fprintf(out,
            "mtxc %s: compile a MaxText-style training config into a standalone C trainer\n"
            "\n"
            "usage: mtxc COMMAND CONFIG [key=value ...] [options]\n"
            "\n"
            "commands:\n", MTXC_VERSION);
    for (int i = 0; i < num_commands; i++)
        fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n"
            "options:\n"
            "  -h, --help     this help; mtxc COMMAND --help for one command\n"
            "  --version      print the version\n"
            "\n"
            "example: mtxc config configs/base.yml model_name=llama2-7b steps=100\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_help(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        print_help(stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) {
        printf("mtxc %s\n", MTXC_VERSION);
        return 0;
    }
    for (int i = 0; i < num_commands; i++) {
        if (strcmp(commands[i].name, name)) continue;
        if (wants_help(argc - 2, argv + 2)) {
            if (!strcmp(name, "ir")) ir_usage();
            else fputs(commands[i].usage, stdout);
            return 0;
        }
        return commands[i].run(argc - 2, argv + 2);
    }
    const char *names[16];
    for (int i = 0; i < num_commands; i++) names[i] = commands[i].name;
    const char *best = mtx_closest_word(name, names, num_commands);
    fprintf(stderr, "mtxc: error: unknown command '%s'", name);
    if (best) fprintf(stderr, " (did you mean '%s'?)", best);
    fprintf(stderr, "; see mtxc --help\n");
    return 2;
}
