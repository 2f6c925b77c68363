/* Asynchronous checkpoints (MaxText's async_checkpointing): at a save the
 * training thread copies the state into a snapshot buffer, allocated once at
 * the first save and sized to the state, and a writer thread writes,
 * checksums, fsyncs and renames it (mtx_checkpoint_write) and prunes old
 * checkpoints, while the next steps run. The training thread waits on the
 * disk only when a save starts before the previous one has finished, and
 * when it asks to (a signal, a NaN abort, the end of the run). Without
 * async the same calls save in the calling thread. */
#include "mtxrt.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mtx_saver {
    const mtx_program *prog;
    bool async;
    unsigned char *snapshot;              /* prog->state_bytes, from the first async save on */
    pthread_t writer;
    bool running;                         /* a writer thread to join */
    bool pending;                         /* a result not yet handed out */
    /* the save in flight: what to write, then how it went */
    char dir[4096];
    long long step;
    uint64_t position;
    int keep;
    double started;
    mtx_save_result result;
};

mtx_saver *mtx_saver_new(const mtx_program *prog, int async)
{
    mtx_saver *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->prog = prog;
    s->async = async != 0;
    return s;
}

size_t mtx_saver_snapshot_bytes(const mtx_saver *s) { return s->snapshot ? s->prog->state_bytes : 0; }

/* Write the snapshot (or, without async, the live state), then prune. */
static void write_checkpoint(mtx_saver *s, const void *memory)
{
    mtx_save_result *r = &s->result;
    r->rc = mtx_checkpoint_write(s->prog, memory, s->dir, s->step, s->position, r->err, sizeof r->err);
    if (!r->rc && s->keep > 0) mtx_checkpoint_prune(s->dir, s->keep);
    r->seconds = mtx_seconds() - s->started;
}

/* MTX_SAVE_PAUSE_SECONDS (tests only): the writer waits this long before it
 * writes, so a test can kill a trainer while a save is surely in flight. */
static void test_pause(void)
{
    const char *v = getenv("MTX_SAVE_PAUSE_SECONDS");
    double t = v ? atof(v) : 0;
    if (t > 0 && t < 600) {
        struct timespec ts = {(time_t)t, (long)((t - (double)(time_t)t) * 1e9)};
        while (nanosleep(&ts, &ts) != 0) continue;
    }
}

static void *writer_main(void *arg)
{
    mtx_saver *s = arg;
    test_pause();
    write_checkpoint(s, s->snapshot);
    __atomic_store_n(&s->result.finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

int mtx_saver_poll(mtx_saver *s, int wait, mtx_save_result *out)
{
    if (s->running) {
        if (!wait && !__atomic_load_n(&s->result.finished, __ATOMIC_ACQUIRE)) return 0;
        pthread_join(s->writer, NULL);
        s->running = false;
    }
    if (!s->pending) return 0;
    s->pending = false;
    *out = s->result;
    return 1;
}

/* The snapshot buffer, allocated at the first async save; NULL (and a
 * message) if the memory is not there: that save then runs in this thread. */
static unsigned char *snapshot_buffer(mtx_saver *s)
{
    if (!s->snapshot) {
        s->snapshot = malloc(s->prog->state_bytes ? s->prog->state_bytes : 1);
        if (!s->snapshot)
            fprintf(stderr, "trainer: warning: no memory for a %.1f MB checkpoint snapshot: saving step %lld "
                    "synchronously (async_checkpointing)\n", (double)s->prog->state_bytes / 1e6, s->step);
    }
    return s->snapshot;
}

/* A copy of the state in one pass, split over the threads (memory bound). */
static void copy_state(unsigned char *to, const unsigned char *from, size_t n)
{
    enum { CHUNK = 4 << 20 };
    long chunks = (long)((n + CHUNK - 1) / CHUNK);
    #pragma omp parallel for schedule(static)
    for (long c = 0; c < chunks; c++) {
        size_t at = (size_t)c * CHUNK, len = n - at < CHUNK ? n - at : CHUNK;
        memcpy(to + at, from + at, len);
    }
}

int mtx_saver_start(mtx_saver *s, const mtx_state *st, const char *dir, long long step, uint64_t position, int keep,
                    mtx_save_result *previous)
{
    int had = mtx_saver_poll(s, 1, previous);   /* one save at a time: the previous one ends first */
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->step = step;
    s->position = position;
    s->keep = keep;
    s->started = mtx_seconds();
    s->result = (mtx_save_result){.step = step, .mb = (double)s->prog->state_bytes / 1e6};
    s->pending = true;
    unsigned char *snap = s->async ? snapshot_buffer(s) : NULL;
    if (snap) {
        copy_state(snap, s->prog->state_memory(st), s->prog->state_bytes);
        s->result.snapshot_seconds = mtx_seconds() - s->started;
        s->result.background = 1;
        if (pthread_create(&s->writer, NULL, writer_main, s) == 0) {
            s->running = true;
            return had;
        }
        s->result.background = 0;         /* no thread: write the snapshot here */
        write_checkpoint(s, snap);
    } else {
        write_checkpoint(s, s->prog->state_memory(st));
    }
    s->result.finished = 1;
    return had;
}

void mtx_saver_free(mtx_saver *s)
{
    if (!s) return;
    mtx_save_result r;
    mtx_saver_poll(s, 1, &r);
    free(s->snapshot);
    free(s);
}
