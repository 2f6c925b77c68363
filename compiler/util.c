/* Allocation, pools, string buffers and "did you mean" suggestions. */
#include "mtxc.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

_Noreturn void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mtxc: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p) fatal("out of memory allocating %zu bytes", size);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) fatal("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (!p) fatal("out of memory allocating %zu bytes", size);
    return p;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

char *xvfmt(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    char *s = xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *xfmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = xvfmt(fmt, ap);
    va_end(ap);
    return s;
}

/* A pool is a list of blocks, each allocation its own block: simple and
 * fine for the thousands of small objects a compilation makes. */
typedef struct Block { struct Block *next; max_align_t data[]; } Block;
struct Pool { Block *head; };

Pool *pool_new(void) { return xcalloc(1, sizeof(Pool)); }

void pool_free(Pool *p)
{
    if (!p) return;
    for (Block *b = p->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(p);
}

void *pool_alloc(Pool *p, size_t size)
{
    Block *b = xcalloc(1, sizeof(Block) + size);
    b->next = p->head;
    p->head = b;
    return b->data;
}

char *pool_strdup(Pool *p, const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(pool_alloc(p, n), s, n);
}

char *pool_fmt(Pool *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *tmp = xvfmt(fmt, ap);
    va_end(ap);
    char *s = pool_strdup(p, tmp);
    free(tmp);
    return s;
}

void buf_puts(Buf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

void buf_printf(Buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = xvfmt(fmt, ap);
    va_end(ap);
    buf_puts(b, s);
    free(s);
}

void buf_free(Buf *b)
{
    free(b->s);
    *b = (Buf){0};
}
