/* Asynchronous checkpoints (MaxText's async_checkpointing), without a copy
 * of the state. A step reads the state during its forward and backward
 * passes and writes it only in its update (optimizer, counters); so at a
 * save a writer thread writes, checksums, fsyncs and renames the live state
 * (mtx_checkpoint_write) and prunes old checkpoints, while the next step
 * computes its gradients. Generated train steps call mtx_state_will_change
 * before their first write to the state: that waits for a write still in
 * flight, so the file holds the state of the step it names. The training
 * thread waits on the disk only there (when a write takes longer than a
 * forward and backward pass), when a save starts before the previous one
 * has finished, and when it asks to (a signal, a NaN stop, the end).
 * Why no snapshot: it doubles the state's memory (13.5 GB a rank for
 * llama2-7b on 8), and on the VMs we measured, first touches of fresh memory
 * (1.5 GB: 2-6 s) cost training more than the write itself. Without async
 * the same calls save in the calling thread. */
#include "mtxrt_trainer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mtx_saver {
    const mtx_program *prog;
    bool async;
    const void *memory;                   /* the live state being written */
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

/* The saver whose writer may be reading the state (one trainer a process). */
static mtx_saver *active;

mtx_saver *mtx_saver_new(const mtx_program *prog, int async)
{
    mtx_saver *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->prog = prog;
    s->async = async != 0;
    return s;
}

static void write_checkpoint(mtx_saver *s)
{
    mtx_save_result *r = &s->result;
    r->rc = mtx_checkpoint_write(s->prog, s->memory, s->dir, s->step, s->position, r->err, sizeof r->err);
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
    write_checkpoint(s);
    __atomic_store_n(&s->result.finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void join_writer(mtx_saver *s)
{
    pthread_join(s->writer, NULL);
    s->running = false;
    if (active == s) active = NULL;
}

void mtx_state_will_change(void)
{
    mtx_saver *s = active;
    if (!s || !s->running) return;
    double t0 = mtx_seconds();
    join_writer(s);
    s->result.waited += mtx_seconds() - t0;
}

int mtx_saver_poll(mtx_saver *s, int wait, mtx_save_result *out)
{
    if (s->running) {
        if (!wait && !__atomic_load_n(&s->result.finished, __ATOMIC_ACQUIRE)) return 0;
        join_writer(s);
    }
    if (!s->pending) return 0;
    s->pending = false;
    *out = s->result;
    return 1;
}

int mtx_saver_start(mtx_saver *s, const mtx_state *st, const char *dir, long long step, uint64_t position, int keep,
                    mtx_save_result *previous)
{
    int had = mtx_saver_poll(s, 1, previous);   /* one save at a time: the previous one ends first */
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->memory = s->prog->state_memory(st);
    s->step = step;
    s->position = position;
    s->keep = keep;
    s->started = mtx_seconds();
    s->result = (mtx_save_result){.step = step, .mb = (double)s->prog->state_bytes / 1e6};
    s->pending = true;
    if (s->async && pthread_create(&s->writer, NULL, writer_main, s) == 0) {
        s->result.background = 1;
        s->running = true;
        active = s;
        return had;
    }
    write_checkpoint(s);                  /* without async (or without a thread): here */
    s->result.finished = 1;
    return had;
}

void mtx_saver_free(mtx_saver *s)
{
    if (!s) return;
    mtx_save_result r;
    mtx_saver_poll(s, 1, &r);
    free(s);
}
