/* The resolved config as YAML that mtxc itself reads back. */
#include "mtxc.h"

#include <string.h>

void yaml_quote(Buf *b, const char *s)
{
    buf_puts(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') buf_printf(b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) buf_printf(b, "\\x%02x", (unsigned char)*s);
        else buf_printf(b, "%c", *s);
    }
    buf_puts(b, "\"");
}

static void list_text(Buf *b, const StrList *l)
{
    buf_puts(b, "[");
    for (int i = 0; i < l->n; i++) {
        if (i) buf_puts(b, ", ");
        yaml_quote(b, l->items[i]);
    }
    buf_puts(b, "]");
}

/* A float printed so that it reads back as the same float, and as a float. */
static void float_text(Buf *b, double f)
{
    char s[64];
    snprintf(s, sizeof s, "%.9g", f);
    if (!strpbrk(s, ".e")) strcat(s, ".0");
    buf_puts(b, s);
}

const char *config_value_text(Pool *p, const Config *c, int k)
{
    const ConfigValue *v = &c->v[k];
    Buf b = {0};
    if (v->is_null) {
        buf_puts(&b, "None");
    } else {
        switch (mtx_keys[k].type) {
        case MTX_KT_INT: buf_printf(&b, "%lld", v->i); break;
        case MTX_KT_FLOAT: float_text(&b, v->f); break;
        case MTX_KT_BOOL: buf_puts(&b, v->b ? "true" : "false"); break;
        case MTX_KT_STR:
        case MTX_KT_ENUM: yaml_quote(&b, v->s); break;
        case MTX_KT_LIST: list_text(&b, &v->list); break;
        case MTX_KT_RULES:
            buf_puts(&b, "[");
            for (int i = 0; i < v->nrules; i++) {
                buf_puts(&b, i ? ", [" : "[");
                yaml_quote(&b, v->rules[i].name);
                buf_puts(&b, ", ");
                list_text(&b, &v->rules[i].axes);
                buf_puts(&b, "]");
            }
            buf_puts(&b, "]");
            break;
        }
    }
    const char *s = pool_strdup(p, b.s ? b.s : "");
    buf_free(&b);
    return s;
}

void config_print(FILE *out, const Config *c)
{
    Pool *p = pool_new();
    fprintf(out, "# resolved by mtxc %s\n", MTXC_VERSION);
    for (int k = 0; k < NUM_KEYS; k++)
        fprintf(out, "%s: %s\n", mtx_keys[k].name, config_value_text(p, c, k));
    maxtext_print_values(out, c);
    const Derived *d = &c->d;
    fprintf(out, "# derived values (computed from the keys above; not settable)\n");
    fprintf(out, "emb_dim: %d  # derived\n", d->emb_dim);
    fprintf(out, "num_query_heads: %d  # derived\n", d->num_query_heads);
    fprintf(out, "num_kv_heads: %d  # derived\n", d->num_kv_heads);
    fprintf(out, "mlp_dim: %d  # derived\n", d->mlp_dim);
    fprintf(out, "num_decoder_layers: %d  # derived\n", d->num_decoder_layers);
    fprintf(out, "num_devices: %d  # derived\n", d->num_devices);
    fprintf(out, "num_slices: %d  # derived\n", d->num_slices);
    fprintf(out, "mesh_shape: {data: %d, fsdp: %d, tensor: %d, expert: %d}  # derived\n",
            d->mesh_data, d->mesh_fsdp, d->mesh_tensor, d->mesh_expert);
    fprintf(out, "global_batch_size_to_train_on: %lld  # derived\n", d->global_batch);
    fprintf(out, "micro_batch_size_to_train_on: %lld  # derived\n", d->micro_batch);
    fprintf(out, "global_batch_size_to_eval_on: %lld  # derived\n", d->eval_batch);
    fprintf(out, "tokens_per_step: %lld  # derived\n", d->tokens_per_step);
    pool_free(p);
}
