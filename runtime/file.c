/* Whole files into memory, for data and checkpoint loading. */
#include "mtxrt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

char *mtx_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    /* a directory opens, then fails to read: say what it is */
    int e = !f ? errno : fstat(fileno(f), &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    if (e) {
        if (f) fclose(f);
        errno = e;
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        int e = buf ? EIO : ENOMEM;
        free(buf);
        fclose(f);
        errno = e;
        return NULL;
    }
    buf[st.st_size] = 0;                      /* text files read as C strings */
    fclose(f);
    *size = (size_t)st.st_size;
    return buf;
}
