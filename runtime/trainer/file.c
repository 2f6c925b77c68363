/* Opening and reading the files users name (configs, data, tokenizers,
 * checkpoints): never blocking on a FIFO nobody writes, never trusting a
 * size the file system reports (/dev/zero says 0), and saying in words
 * what a path is when it is not a file. And the whole reads and writes the
 * checkpoint and Hugging Face files go through. */
#include "mtxrt_trainer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int mtx_open_file(const char *path, int pipes_ok, uint64_t *size, const char **why)
{
    /* O_NONBLOCK: opening a FIFO with no writer returns at once. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        *why = strerror(errno);
        if (fd >= 0) close(fd);
        return -1;
    }
    if (S_ISREG(st.st_mode) || (pipes_ok && S_ISFIFO(st.st_mode))) {
        if (size) *size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
        /* Reads block again: a pipe with a writer waits for its data; one
         * with none reads as the end of the file. */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        return fd;
    }
    close(fd);
    *why = S_ISDIR(st.st_mode) ? "it is a directory, not a file"
           : S_ISFIFO(st.st_mode) ? "it is a FIFO (named pipe), not a regular file"
                                  : "it is a device or socket, not a regular file";
    return -1;
}

char *mtx_read_file(const char *path, size_t max, int pipes_ok, size_t *size, const char **why)
{
    static _Thread_local char too_large[64];
    uint64_t reported;                        /* a hint only: the size is what is read */
    int fd = mtx_open_file(path, pipes_ok, &reported, why);
    if (fd < 0) return NULL;
    size_t cap = reported > 0 && reported < max ? (size_t)reported + 1 : 4096;
    size_t n = 0;
    char *buf = malloc(cap + 1);
    *why = buf ? NULL : "out of memory";
    while (!*why) {
        if (n == cap) {
            char *more = cap <= max ? realloc(buf, 2 * cap + 1) : NULL;
            if (!more) break;
            buf = more, cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno != EINTR) *why = strerror(errno);
        if (r == 0) break;
        if (r > 0) n += (size_t)r;
    }
    if (!*why && n > max) {                   /* counted as read: a reported size may lie */
        snprintf(too_large, sizeof too_large, "it has more than %zu bytes", max);
        *why = too_large;
    } else if (!*why && n == cap) *why = "out of memory";
    close(fd);
    if (*why) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;                               /* text files read as C strings */
    *size = n;
    return buf;
}

int mtx_read_at(int fd, void *buf, size_t n, uint64_t at)
{
    char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)at);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = EIO;
            return -1;
        }
        p += r, n -= (size_t)r, at += (uint64_t)r;
    }
    return 0;
}

int mtx_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int mtx_write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    int rc = mtx_write_all(fd, text, strlen(text));
    if (!rc) rc = fsync(fd);
    if (close(fd) != 0) rc = -1;
    return rc;
}
