/* The data-parallel classifier (include/cigt/pool.h): one batch cut into contiguous slices,
 * one per thread, each classified with the workspace of the thread that runs it. The threads
 * are cigt's one worker pool (src/common/workers.h); the caller's thread takes part. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/pool.h"
#include "../common/util.h"
#include "../common/workers.h"

struct job {
	const float *x;
	int n;
	enum cigt_exec_mode mode;
	const struct cigt_dial *dial; /* non-NULL: cigt_engine_classify_dial */
	struct cigt_result *res;
	float *probs, *logits;
};

struct cigt_pool {
	const struct cigt_engine *e;
	int nthreads;
	struct cigt__workers *workers;
	struct cigt_workspace **ws;  /* per thread */
	struct cigt_workspace **ws2; /* the second engine's, per thread (escalation) */
	const struct cigt_engine *second;
	const struct cigt_dial *dial; /* set for the duration of cigt_pool_classify_dial */
	int per;
	struct cigt_profile *prof_parts; /* one per thread, summed into prof */
	struct cigt_profile *prof;
	struct job jobs[CIGT__WORKERS_MAX]; /* one per slice */
};

/* A region item: slice `item` on thread `worker`'s workspace. */
static int run_job(void *ctx, int worker, int item)
{
	struct cigt_pool *p = ctx;
	const struct job *j = &p->jobs[item];
	if (j->dial)
		cigt_engine_classify_dial(p->e, p->ws[worker], j->x, j->n, j->dial, j->res,
					  j->probs, j->logits);
	else
		cigt_engine_classify(p->e, p->ws[worker], j->x, j->n, j->mode, j->res, j->probs,
				     j->logits);
	return 0;
}

int cigt_pool_new(const struct cigt_engine *e, int nthreads, int max_batch,
		  struct cigt_pool **out)
{
	*out = NULL;
	if (nthreads < 1 || nthreads > CIGT__WORKERS_MAX)
		return CIGT_EINVAL;
	struct cigt_pool *p = calloc(1, sizeof *p);
	if (!p)
		return CIGT_ENOMEM;
	p->e = e;
	p->nthreads = nthreads;
	p->ws = calloc((size_t)nthreads, sizeof *p->ws);
	p->prof_parts = calloc((size_t)nthreads, sizeof *p->prof_parts);
	if (!p->ws || !p->prof_parts)
		goto fail;
	int per = (max_batch + nthreads - 1) / nthreads;
	p->per = per;
	for (int i = 0; i < nthreads; i++)
		if (!(p->ws[i] = cigt_workspace_new(e, per)))
			goto fail;
	if (cigt__workers_new(nthreads, &p->workers))
		goto fail;
	*out = p;
	return 0;
fail:
	cigt_pool_free(p);
	return CIGT_ENOMEM;
}

void cigt_pool_free(struct cigt_pool *p)
{
	if (!p)
		return;
	cigt__workers_free(p->workers);
	for (int i = 0; p->ws && i < p->nthreads; i++)
		cigt_workspace_free(p->ws[i]);
	for (int i = 0; p->ws2 && i < p->nthreads; i++)
		cigt_workspace_free(p->ws2[i]);
	free(p->ws);
	free(p->ws2);
	free(p->prof_parts);
	free(p);
}

void cigt_pool_profile(struct cigt_pool *p, struct cigt_profile *prof)
{
	p->prof = prof;
	for (int i = 0; i < p->nthreads; i++) {
		memset(&p->prof_parts[i], 0, sizeof p->prof_parts[i]);
		cigt_workspace_profile(p->ws[i], prof ? &p->prof_parts[i] : NULL);
	}
}

int cigt_pool_set_second(struct cigt_pool *p, const struct cigt_engine *second)
{
	if (p->ws2) {
		for (int i = 0; i < p->nthreads; i++) {
			cigt_workspace_set_second(p->ws[i], NULL);
			cigt_workspace_free(p->ws2[i]);
		}
		free(p->ws2);
		p->ws2 = NULL;
	}
	p->second = second;
	if (!second)
		return 0;
	if (!(p->ws2 = calloc((size_t)p->nthreads, sizeof *p->ws2)))
		return CIGT_ENOMEM;
	for (int i = 0; i < p->nthreads; i++) {
		if (!(p->ws2[i] = cigt_workspace_new(second, p->per)))
			return CIGT_ENOMEM;
		cigt_workspace_set_second(p->ws[i], p->ws2[i]);
	}
	return 0;
}

int cigt_pool_classify_dial(struct cigt_pool *p, const float *x, int n,
			    const struct cigt_dial *d, struct cigt_result *res, float *probs,
			    float *logits)
{
	if (!d)
		return cigt_pool_classify(p, x, n, CIGT_EXEC_ROUTED, res, probs, logits);
	if (cigt_engine_dial_check(p->e, d, NULL, 0) ||
	    (d->confidence > 0.0f && d->second != p->second))
		return CIGT_EINVAL;
	p->dial = d;
	int rc = cigt_pool_classify(p, x, n, CIGT_EXEC_ROUTED, res, probs, logits);
	p->dial = NULL;
	return rc;
}

int cigt_pool_threads(const struct cigt_pool *p)
{
	return p->nthreads;
}

int cigt_pool_classify(struct cigt_pool *p, const float *x, int n, enum cigt_exec_mode mode,
		       struct cigt_result *res, float *probs, float *logits)
{
	if (n < 0 || (n > 0 && (!x || !res)))
		return CIGT_EINVAL;
	const struct cigt_arch *a = cigt_engine_model(p->e)->arch;
	const int64_t isz = cigt_arch_input_size(a);
	int per = (n + p->nthreads - 1) / p->nthreads, slices = 0;
	for (int s0 = 0; s0 < n; s0 += per) {
		int m = CIGT_MIN(per, n - s0);
		p->jobs[slices++] = (struct job){
			.x = x + s0 * isz, .n = m, .mode = mode, .dial = p->dial, .res = res + s0,
			.probs = probs ? probs + (int64_t)s0 * a->nclasses : NULL,
			.logits = logits ? logits + (int64_t)s0 * a->nclasses : NULL,
		};
	}
	cigt__workers_run(p->workers, run_job, p, slices);
	if (p->prof) {
		/* Fold the per-thread profiles into the caller's and restart them. */
		for (int i = 0; i < p->nthreads; i++) {
			struct cigt_profile *q = &p->prof_parts[i];
			for (int k = 0; k < CIGT_PROF_COUNT; k++)
				p->prof->ns[k] += q->ns[k];
			p->prof->batches += q->batches;
			for (int l = 0; l < CIGT_MAX_LAYERS; l++)
				for (int ex = 0; ex < CIGT_MAX_EXPERTS; ex++) {
					p->prof->groups[l][ex] += q->groups[l][ex];
					p->prof->rows[l][ex] += q->rows[l][ex];
				}
			memset(q, 0, sizeof *q);
		}
	}
	return 0;
}

void cigt_blas_threads(int n)
{
	openblas_set_num_threads(n);
}
