/* The one thread pool of cigt: a fixed set of worker threads that runs parallel regions. A
 * region is job(ctx, worker, item) for items 0..nitems-1, handed out in order to whichever
 * thread asks next; the calling thread takes part as worker 0, so a pool of n threads starts
 * n - 1. Workers sleep on a condition variable between regions: a region costs one broadcast
 * and one join-by-counter. The engine's data-parallel classifier (src/engine/pool.c) and the
 * trainer's trellis step (src/train/) both run on it. Internal (cigt__).
 *
 *     struct cigt__workers *w;
 *     if (cigt__workers_new(2, &w) == 0) {
 *             int rc = cigt__workers_run(w, job, ctx, nitems); // job(ctx, 0 or 1, item)
 *             cigt__workers_free(w);
 *     }
 */
#ifndef CIGT_WORKERS_H
#define CIGT_WORKERS_H

#define CIGT__WORKERS_MAX 64

/* One item of a region on thread `worker` (0..threads-1; each worker's calls are
 * sequential, so per-worker scratch indexed by it needs no lock). 0, or an error code. */
typedef int (*cigt__job_fn)(void *ctx, int worker, int item);

struct cigt__workers;

/* Starts nthreads - 1 threads (nthreads 1..CIGT__WORKERS_MAX). 0, CIGT_EINVAL or
 * CIGT_ENOMEM (also when a thread cannot start); *out is NULL on failure. */
int cigt__workers_new(int nthreads, struct cigt__workers **out);
/* Stops and joins the threads; NULL is a no-op. Not during a region. */
void cigt__workers_free(struct cigt__workers *w);
int cigt__workers_threads(const struct cigt__workers *w);
/* Runs the region and returns once every item is done: 0, or the first nonzero code a job
 * returned (every item still runs). With one thread or nitems <= 1 the items run on the
 * calling thread alone, nobody is woken, and a job may itself run a region on the same pool
 * (the trainer's row splits do); any other nesting is an internal error. One caller at a
 * time. */
int cigt__workers_run(struct cigt__workers *w, cigt__job_fn job, void *ctx, int nitems);

#endif
