/* mtxc's command line: one function per subcommand. */
#include "mtxc.h"

#include <stdlib.h>
#include <string.h>

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

/* Split argv into CONFIG and overrides; returns 0 or an exit status. */
static int parse_args(const char *cmd, int argc, char **argv, Args *a)
{
    *a = (Args){.overrides = argv, .noverrides = 0};
    for (int i = 0; i < argc; i++) {
        char *s = argv[i];
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
    Args a;
    int rc = parse_args("config", argc, argv, &a);
    if (rc) return rc;
    Config *c = load_or_report(&a);
    if (!c) return 2;
    config_print(stdout, c);
    config_free(c);
    return 0;
}

static const Command commands[] = {
    {"config", "print the resolved config as YAML",
     "usage: mtxc config CONFIG [key=value ...]\n"
     "\n"
     "Reads CONFIG (e.g. configs/base.yml), then the preset configs/models/<model_name>.yml\n"
     "next to it, then the key=value overrides, in that order of precedence, and prints\n"
     "every key with its resolved value, followed by the derived values (emb_dim,\n"
     "num_devices, global batch, ...) marked '# derived'. A bad config is reported as\n"
     "file:line:column: error: ... with exit status 2.\n",
     cmd_config},
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
            fputs(commands[i].usage, stdout);
            return 0;
        }
        return commands[i].run(argc - 2, argv + 2);
    }
    const char *names[16];
    for (int i = 0; i < num_commands; i++) names[i] = commands[i].name;
    const char *best = closest_word(name, names, num_commands);
    fprintf(stderr, "mtxc: error: unknown command '%s'", name);
    if (best) fprintf(stderr, " (did you mean '%s'?)", best);
    fprintf(stderr, "; see mtxc --help\n");
    return 2;
}
