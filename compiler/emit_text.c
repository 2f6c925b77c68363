/* The C backend's text helpers, below the files that emit code: output
 * with printf formats, float literals, C names of values and state
 * fields, mesh axes. */
#include "emit.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void emitf(Emitter *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = xvfmt(fmt, ap);
    va_end(ap);
    buf_puts(e->b, s);
    free(s);
}

/* A float literal that C reads back as the same float. */
const char *flit(Pool *pool, double x)
{
    char s[64];
    snprintf(s, sizeof s, "%.9g", x);
    if (!strpbrk(s, ".en")) strcat(s, ".0");
    return pool_fmt(pool, "%sf", s);
}

const char *V(Emitter *e, const Value *v) { return e->cname[v->id]; }

/* A name as a C identifier: every other character an underscore. */
char *identifier(Pool *pool, const char *name)
{
    char *s = pool_strdup(pool, name);
    for (char *c = s; *c; c++)
        if (!isalnum((unsigned char)*c)) *c = '_';
    return s;
}

/* State tensors: name in the descriptor and C expression in the step. A
 * param's field, and its moments' in theirs, is the param's name. */
const char *param_field(Pool *pool, const Value *v)
{
    return identifier(pool, (v->kind == V_OPT ? v->param : v)->name);
}

const char *state_expr(Pool *pool, const Value *v)
{
    switch (v->kind) {
    case V_PARAM: return pool_fmt(pool, "s->params.%s", param_field(pool, v));
    case V_OPT: return pool_fmt(pool, "s->%s.%s", moment_name(v->moment), param_field(pool, v));
    case V_COUNTER: return pool_fmt(pool, "s->%s", identifier(pool, v->name));
    case V_CACHE: return pool_fmt(pool, "c->%s", identifier(pool, v->name + strlen("cache.")));
    case V_INPUT: case V_TEMP: case V_ACCUM: return NULL;
    }
    return NULL;
}

/* A set of mesh axes as C: "MTX_AXIS_DATA | MTX_AXIS_EXPERT". */
const char *axes_expr(int64_t axes)
{
    static const char *const names[4] = {"MTX_AXIS_DATA", "MTX_AXIS_FSDP", "MTX_AXIS_TENSOR", "MTX_AXIS_EXPERT"};
    static char text[16][80];
    axes &= 15;
    if (!text[axes][0]) {
        size_t n = 0;
        for (int a = 0; a < 4; a++)
            if ((axes >> a) & 1) n += (size_t)snprintf(text[axes] + n, sizeof text[axes] - n, "%s%s", n ? " | " : "", names[a]);
        if (!n) snprintf(text[axes], sizeof text[axes], "0");
    }
    return text[axes];
}
