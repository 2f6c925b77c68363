/* The trainer's threads: the one place that decides how work is split.
 *
 * A job is a range [0, n) of independent units (rows, columns, elements)
 * with an estimate of its serial cost. Below MTX_PARALLEL_MIN_NS it runs on
 * the calling thread: waking a sleeping thread costs tens of microseconds
 * here, and on a shared machine a thread the scheduler has taken away can
 * hold a parallel region for a whole time slice. Above it, the range is cut
 * into pieces: one per thread, sized by each thread's measured speed, while
 * the threads keep pace; four per thread once one of them has fallen behind
 * (another process shares its core), so that the others take its pieces.
 * Pieces are claimed, never assigned: a piece nobody has started is taken by
 * whichever thread is free, and the caller never waits for a thread that has
 * not shown up, only for pieces already started.
 *
 * Waiting gives way: a thread with no work spins about 50 microseconds, then
 * sleeps on a futex; the caller waiting for the last pieces does the same.
 *
 * BLIS, oneDNN and OpenMP run single-threaded inside each piece (their own
 * pools split statically and spin at barriers: one slow core stalls them
 * all). The units of a job are independent and every unit is computed by
 * one thread the same way whatever the split, so results do not depend on
 * the thread count or on scheduling. */
#define _GNU_SOURCE
#include "mtxrt.h"

#include <linux/futex.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum {
    MAX_THREADS = 256,
    SPIN_NS = 50000,             /* spin this long before sleeping */
    BUSY_PIECES = 4,             /* pieces per thread while one lags */
    TASK_PIECES = 16,            /* pieces per thread of a job of uneven tasks */
    BUSY_JOBS = 64,              /* how long a lag is remembered, in jobs */
};

/* A thread's share of a job: one word, generation << 32 | end << 16 | next
 * piece, so that a claim checks the generation and the end it was armed with
 * together. (With the end apart, a thread still working on a finished job
 * could read the next job's end beside the old job's next piece and claim a
 * piece twice.) */
typedef struct {
    _Atomic uint64_t next;
    char pad[56];                /* one cache line each */
} Queue;

static uint64_t share(uint32_t gen, uint32_t first, uint32_t end)
{
    return (uint64_t)gen << 32 | (uint64_t)end << 16 | first;
}

typedef struct {
    _Atomic(mtx_range_fn) fn;
    _Atomic(void *) ctx;
    _Atomic uint32_t threads;    /* the threads taking part: 0 .. threads-1 */
} Job;

static struct {
    pthread_mutex_t lock;        /* one job at a time; a second caller runs serially */
    _Atomic uint32_t gen;        /* futex: a new job is posted */
    _Atomic uint32_t remaining;  /* futex: pieces of the job not finished */
    _Atomic uint32_t sleepers, waiting;
    Job job;
    Queue queue[MAX_THREADS];
    double units[MAX_THREADS], busy[MAX_THREADS];     /* this job's, per thread */
    double speed[MAX_THREADS];   /* relative speed, 1 = the average */
    int workers;                 /* threads started besides the caller */
    pthread_t tid[MAX_THREADS];
    _Atomic int quit;            /* the library is being unloaded (dlclose) or the process ends */
    int lagging;                 /* jobs left in busy mode */
    long long jobs;              /* parallel jobs run, for the trainer's report */
    long long lag_jobs;
    double job_ns, wait_ns;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local int my_id = -1;   /* -1: not in a job; else the thread's index */

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t value)
{
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* The job's piece boundaries (multiples of its align), written before the
 * job is posted and read only by a thread that has claimed a piece of it.
 * At most 4096 pieces: a piece index fits a share's 16 bits. */
static size_t bounds[MAX_THREADS * TASK_PIECES + 1];
_Static_assert(MAX_THREADS * TASK_PIECES < 1 << 16, "a piece index fits 16 bits");

/* Take one piece from thread q's share of generation gen; run it. */
static bool run_one(uint32_t gen, int q, int me)
{
    Queue *qu = &pool.queue[q];
    uint64_t v = atomic_load_explicit(&qu->next, memory_order_acquire);
    mtx_range_fn fn = atomic_load_explicit(&pool.job.fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&pool.job.ctx, memory_order_relaxed);
    for (;;) {
        if ((uint32_t)(v >> 32) != gen || (v & 0xffff) >= (v >> 16 & 0xffff)) return false;
        if (atomic_compare_exchange_weak_explicit(&qu->next, &v, v + 1, memory_order_acq_rel, memory_order_acquire))
            break;
    }
    /* A piece of generation gen was left: that job is not finished, so the
     * caller has not posted another, and fn, ctx (read after this thread saw
     * gen) and bounds are its. */
    uint32_t p = (uint32_t)(v & 0xffff);
    size_t first = bounds[p], last = bounds[p + 1];
    double t0 = now_ns();
    fn(ctx, first, last);
    pool.busy[me] += now_ns() - t0;
    pool.units[me] += (double)(last - first);
    if (atomic_fetch_sub(&pool.remaining, 1) == 1 && atomic_load(&pool.waiting)) futex_wake(&pool.remaining);
    return true;
}

/* Every piece this thread can get: its own share first, then the others'. */
static void take_pieces(uint32_t gen, int me, int threads)
{
    while (run_one(gen, me, me)) {}
    for (int k = 1; k < threads; k++)
        while (run_one(gen, (me + k) % threads, me)) {}
}

static void *worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    my_id = me;
    omp_set_num_threads(1);
    uint32_t seen = atomic_load(&pool.gen);
    for (;;) {
        uint32_t gen;
        double spin_until = now_ns() + SPIN_NS;
        /* quit is set before the generation moves on: a worker that starts
         * after that (its first look at gen already the last one) sees it */
        while ((gen = atomic_load(&pool.gen)) == seen && !atomic_load(&pool.quit)) {
            if (now_ns() < spin_until) {
                __builtin_ia32_pause();
                continue;
            }
            atomic_fetch_add(&pool.sleepers, 1);
            futex_wait(&pool.gen, seen);
            atomic_fetch_sub(&pool.sleepers, 1);
        }
        if (atomic_load(&pool.quit)) return NULL;
        seen = gen;
        int threads = (int)atomic_load_explicit(&pool.job.threads, memory_order_relaxed);
        if (me < threads) take_pieces(gen, me, threads);
    }
    return NULL;
}

static void start_workers(int threads)
{
    for (int i = pool.workers + 1; i < threads && i < MAX_THREADS; i++) {
        if (pthread_create(&pool.tid[i], NULL, worker, (void *)(intptr_t)i) != 0) break;
        pool.speed[i] = 1;
        pool.workers = i;
    }
    pool.speed[0] = 1;
}

/* Cut [0, n) into pieces: thread t's share in proportion to its speed
 * (even: equal shares, for tasks of unequal cost). */
static uint32_t cut(size_t n, size_t align, int threads, int per_thread, bool even)
{
    double total = 0, speed[MAX_THREADS];
    for (int t = 0; t < threads; t++) total += speed[t] = even ? 1 : pool.speed[t];
    size_t blocks = (n + align - 1) / align, done = 0;
    double acc = 0;
    uint32_t p = 0;
    for (int t = 0; t < threads; t++) {
        acc += speed[t];
        size_t share_end = t == threads - 1 ? blocks : (size_t)(blocks * (acc / total) + 0.5);
        size_t share_start = done;
        for (int k = 0; k < per_thread; k++, p++) {
            size_t b = share_start + (share_end - share_start) * (size_t)k / (size_t)per_thread;
            bounds[p] = b * align < n ? b * align : n;
        }
        done = share_end;
    }
    bounds[p] = n;
    return p;
}

/* After a job: each thread's speed relative to the others' (a moving
 * average, so that one noisy job moves it little), and whether one lags.
 * A thread that took no piece tells nothing: it may only have been slow to
 * wake. */
static void learn(int threads)
{
    double rate[MAX_THREADS], mean = 0;
    int seen = 0;
    for (int t = 0; t < threads; t++) {
        rate[t] = pool.busy[t] > 0 ? pool.units[t] / pool.busy[t] : 0;
        if (rate[t] > 0) mean += rate[t], seen++;
    }
    if (seen < 2) return;
    mean /= seen;
    double lo = 1e300, hi = 0;
    for (int t = 0; t < threads; t++) {
        if (rate[t] > 0) pool.speed[t] = 0.8 * pool.speed[t] + 0.2 * (rate[t] / mean);
        if (pool.speed[t] < 0.05) pool.speed[t] = 0.05;
        lo = pool.speed[t] < lo ? pool.speed[t] : lo, hi = pool.speed[t] > hi ? pool.speed[t] : hi;
    }
    if (hi > 1.3 * lo) pool.lagging = BUSY_JOBS;
}

static void run_job(mtx_range_fn fn, void *ctx, size_t n, size_t align, double cost_ns, bool tasks)
{
    if (n == 0) return;
    if (align == 0) align = 1;
    int threads = mtx_num_threads();
    size_t blocks = (n + align - 1) / align;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads <= 1 || cost_ns < MTX_PARALLEL_MIN_NS || blocks < 2 || my_id >= 0 ||
        pthread_mutex_trylock(&pool.lock) != 0) {
        fn(ctx, 0, n);
        return;
    }
    start_workers(threads);
    if (pool.workers + 1 < threads) threads = pool.workers + 1;
    if ((size_t)threads > blocks) threads = (int)blocks;
    int per_thread = pool.lagging > 0 ? BUSY_PIECES : 1;
    if (tasks) per_thread = blocks / (size_t)threads < TASK_PIECES ? (int)(blocks / (size_t)threads) : TASK_PIECES;
    if ((size_t)(threads * per_thread) > blocks) per_thread = 1;
    if (pool.lagging > 0) pool.lagging--;
    memset(pool.units, 0, sizeof(double) * (size_t)threads);
    memset(pool.busy, 0, sizeof(double) * (size_t)threads);
    uint32_t pieces = cut(n, align, threads, per_thread, tasks);
    uint32_t gen = atomic_load_explicit(&pool.gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&pool.job.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool.job.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&pool.job.threads, (uint32_t)threads, memory_order_relaxed);
    atomic_store_explicit(&pool.remaining, pieces, memory_order_relaxed);
    for (int t = 0; t < threads; t++)
        atomic_store_explicit(&pool.queue[t].next, share(gen, (uint32_t)(t * per_thread), (uint32_t)((t + 1) * per_thread)),
                              memory_order_relaxed);
    atomic_store(&pool.gen, gen);   /* seq_cst: ordered before the read of sleepers */
    if (atomic_load(&pool.sleepers)) futex_wake(&pool.gen);
    my_id = 0;
    double tj0 = now_ns();
    if (pool.lagging > 0) pool.lag_jobs++;
    take_pieces(gen, 0, threads);
    double tj1 = now_ns();
    /* the pieces others started: spin a little, then sleep until the last ends */
    double spin_until = now_ns() + SPIN_NS;
    uint32_t left;
    while ((left = atomic_load_explicit(&pool.remaining, memory_order_acquire)) != 0) {
        if (now_ns() < spin_until) {
            __builtin_ia32_pause();
            continue;
        }
        atomic_store(&pool.waiting, 1);
        left = atomic_load(&pool.remaining);
        if (left) futex_wait(&pool.remaining, left);
        atomic_store(&pool.waiting, 0);
    }
    my_id = -1;
    pool.wait_ns += now_ns() - tj1;
    pool.job_ns += now_ns() - tj0;
    if (!tasks) learn(threads);
    pool.jobs++;
    pthread_mutex_unlock(&pool.lock);
}

void mtx_parallel(mtx_range_fn fn, void *ctx, size_t n, size_t align, double cost_ns)
{
    run_job(fn, ctx, n, align, cost_ns, false);
}

void mtx_parallel_tasks(mtx_range_fn fn, void *ctx, size_t n, double cost_ns)
{
    run_job(fn, ctx, n, 1, cost_ns, true);
}

long long mtx_parallel_jobs(void) { return pool.jobs; }

/* The workers end before this code goes away: a trainer's exit, or a
 * dlclose of a library holding libmtxrt (the unit tests' programs). */
__attribute__((destructor)) static void stop_workers(void)
{
    if (!pool.workers) return;
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.quit, 1);
    atomic_fetch_add(&pool.gen, 1);
    futex_wake(&pool.gen);
    for (int i = 1; i <= pool.workers; i++) pthread_join(pool.tid[i], NULL);
    pool.workers = 0;
    pthread_mutex_unlock(&pool.lock);
}

__attribute__((destructor)) static void trace(void)
{
    if (getenv("MTX_POOL_TRACE"))
        fprintf(stderr, "pool: %lld jobs, %lld lagging, %.3f s in jobs, %.3f s waiting; speed %.2f %.2f\n", pool.jobs,
                pool.lag_jobs, pool.job_ns * 1e-9, pool.wait_ns * 1e-9, pool.speed[0], pool.speed[1]);
}

int mtx_thread_index(void) { return my_id > 0 ? my_id : 0; }

/* The generated code's elementwise loops: a job over their elements, each
 * costing about a nanosecond. */
typedef struct {
    mtx_loop_body body;
    const mtx_frame *frame;
} Loop;

static void loop_range(void *ctx, size_t first, size_t end)
{
    const Loop *l = ctx;
    l->body(l->frame, first, end);
}

void mtx_parallel_for(mtx_loop_body body, const mtx_frame *f, size_t n)
{
    Loop l = {body, f};
    mtx_parallel(loop_range, &l, n, 64, (double)n * MTX_COST_ELEMENT_NS);
}
