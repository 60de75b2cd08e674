/* The pool: data-parallel classification for the command-line tools (the daemon has its own
 * scheduler). A batch is split into contiguous slices, one per thread, each thread with its own
 * workspace; the calling thread is one of the threads. OpenBLAS should run single-threaded
 * while a pool is in use (cigt_blas_threads(1)).
 *
 *     struct cigt_pool *pool;
 *     cigt_blas_threads(1);
 *     if (cigt_pool_new(engine, 2, 512, &pool) == 0) {
 *             cigt_pool_classify(pool, x, n, CIGT_EXEC_ROUTED, res, probs, NULL);
 *             cigt_pool_free(pool);
 *     }
 */
#ifndef CIGT_POOL_H
#define CIGT_POOL_H

#include "cigt/engine.h"

struct cigt_pool;

/* Starts nthreads threads (1..64, the caller counted), each with a workspace for
 * max_batch / nthreads samples. 0, CIGT_EINVAL or CIGT_ENOMEM. */
int cigt_pool_new(const struct cigt_engine *e, int nthreads, int max_batch,
		  struct cigt_pool **out);
void cigt_pool_free(struct cigt_pool *p);
/* Same contract as cigt_engine_classify; blocks until every slice is done. */
int cigt_pool_classify(struct cigt_pool *p, const float *x, int n, enum cigt_exec_mode mode,
		       struct cigt_result *res, float *probs, float *logits);
/* Gives every worker a workspace of `second` (NULL: none) so dials escalating to it can run.
 * 0 or CIGT_ENOMEM. */
int cigt_pool_set_second(struct cigt_pool *p, const struct cigt_engine *second);
/* cigt_engine_classify_dial split over the threads (d NULL: single path). A dial escalating to
 * an engine other than the one given to cigt_pool_set_second is CIGT_EINVAL. */
int cigt_pool_classify_dial(struct cigt_pool *p, const float *x, int n,
			    const struct cigt_dial *d, struct cigt_result *res, float *probs,
			    float *logits);
/* Turns profiling on for every worker (accumulated into prof) or off (NULL). */
void cigt_pool_profile(struct cigt_pool *p, struct cigt_profile *prof);
int cigt_pool_threads(const struct cigt_pool *p);

/* Sets OpenBLAS's own thread count (wraps openblas_set_num_threads). */
void cigt_blas_threads(int n);

#endif
