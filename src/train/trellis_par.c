/* The trellis step's parallel machinery (see trellis_internal.h): the per-thread arenas every
 * allocation of a step comes from, the pool of worker threads that runs a layer's experts
 * (items handed out in order; the caller is worker 0), and the row-split ops that spread one
 * expert's samples over all threads when a layer has fewer busy experts than threads. Sums
 * over threads are taken in thread order, so the split does not change the result. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "trellis_internal.h"

void *TRI(arena_alloc)(struct arena *a, size_t bytes)
{
	bytes = (bytes + 63) & ~(size_t)63;
	for (struct chunk *c = a->cur; c; c = c->next) {
		a->cur = c;
		if (c->cap - c->used >= bytes) {
			void *p = c->data + c->used;
			c->used += bytes;
			return p;
		}
	}
	size_t cap = bytes > ((size_t)64 << 20) ? bytes : ((size_t)64 << 20);
	struct chunk *c = aligned_alloc(64, (sizeof *c + cap + 63) & ~(size_t)63);
	if (!c)
		return NULL;
	c->next = NULL;
	c->cap = cap;
	c->used = bytes;
	if (a->cur)
		a->cur->next = c;
	else
		a->head = c;
	a->cur = c;
	return c->data;
}

void TRI(arena_reset)(struct arena *a)
{
	for (struct chunk *c = a->head; c; c = c->next)
		c->used = 0;
	a->cur = a->head;
}

void TRI(arena_free)(struct arena *a)
{
	struct chunk *c = a->head;
	while (c) {
		struct chunk *n = c->next;
		free(c);
		c = n;
	}
	a->head = a->cur = NULL;
}

/* Takes items until none are left; records the first failure. */
static void drain_items(struct TR_T *t, struct worker *w)
{
	for (;;) {
		pthread_mutex_lock(&t->mu);
		int item = t->next_item < t->nitems ? t->next_item++ : -1;
		pthread_mutex_unlock(&t->mu);
		if (item < 0)
			return;
		int rc = t->job(t, w, item);
		if (rc) {
			pthread_mutex_lock(&t->mu);
			if (!t->job_rc)
				t->job_rc = rc;
			pthread_mutex_unlock(&t->mu);
		}
	}
}

void *TRI(worker_main)(void *arg)
{
	struct worker *w = arg;
	struct TR_T *t = w->t;
	uint64_t seen = 0;
	pthread_mutex_lock(&t->mu);
	for (;;) {
		while (!t->stop && t->gen == seen)
			pthread_cond_wait(&t->go, &t->mu);
		if (t->stop)
			break;
		seen = t->gen;
		pthread_mutex_unlock(&t->mu);
		drain_items(t, w);
		pthread_mutex_lock(&t->mu);
		if (--t->running == 0)
			pthread_cond_signal(&t->done);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

/* Runs job(0..nitems-1) on every thread (the caller included) and waits for all of them.
 * OpenBLAS must run single-threaded (its idle threads spin and would steal the cores). */
int TRI(parallel_run)(struct TR_T *t, int (*job)(struct TR_T *, struct worker *, int),
		      int nitems)
{
	t->job = job;
	t->nitems = nitems;
	t->next_item = 0;
	t->job_rc = 0;
	int helpers = CIGT_MIN(t->nthreads, nitems) - 1;
	if (helpers <= 0) {
		drain_items(t, &t->w[0]);
		return t->job_rc;
	}
	pthread_mutex_lock(&t->mu);
	t->running = t->nthreads - 1;
	t->gen++;
	pthread_cond_broadcast(&t->go);
	pthread_mutex_unlock(&t->mu);
	drain_items(t, &t->w[0]);
	pthread_mutex_lock(&t->mu);
	while (t->running > 0)
		pthread_cond_wait(&t->done, &t->mu);
	pthread_mutex_unlock(&t->mu);
	return t->job_rc;
}

/* ------------------------------------------------------------- row splits */

static int chunk_run(struct TR_T *t, struct worker *w, int item)
{
	const struct chunk_job *cj = t->cj;
	const struct top *op = cj->op;
	const int s0 = (int)((int64_t)cj->m * item / t->nthreads);
	const int n = (int)((int64_t)cj->m * (item + 1) / t->nthreads) - s0;
	const int64_t ri = op->in_sz, ro = op->out_sz, rps = op->rows_per_sample;
	switch (cj->kind) {
	case CJ_CONV_F:
		NN(conv_forward)(&op->g, n, cj->in + s0 * ri, cj->wp, cj->b, false, cj->y + s0 * ro,
				 w->col, NULL, NULL);
		break;
	case CJ_RELU_F:
		NN(relu_forward)((int64_t)n * ri, cj->in + s0 * ri, cj->y + s0 * ro);
		break;
	case CJ_MAXPOOL_F:
		NN(maxpool_forward_idx)(&op->g, n, cj->in + s0 * ri, cj->y + s0 * ro,
					cj->idx + s0 * ro);
		break;
	case CJ_AVGPOOL_F:
		NN(avgpool_forward)(&op->g, n, cj->in + s0 * ri, cj->y + s0 * ro);
		break;
	case CJ_BN_SUM:
		NN(batchnorm_sums)(n * rps, op->c, cj->in + s0 * ri, NULL, cj->acc[item]);
		break;
	case CJ_BN_SQ:
		NN(batchnorm_sums)(n * rps, op->c, cj->in + s0 * ri, cj->dmean, cj->acc[item]);
		break;
	case CJ_BN_APPLY:
		NN(batchnorm_apply)(n * rps, op->c, cj->in + s0 * ri, cj->gamma, cj->beta, cj->mean,
				    cj->invstd, cj->y + s0 * ro);
		break;
	case CJ_CONV_B:
		NN(conv_backward)(&op->g, n, cj->in + s0 * ri, cj->wp, cj->dy + s0 * ro,
				  cj->dw[item], cj->db[item], cj->dx ? cj->dx + s0 * ri : NULL, w->col,
				  w->dcol);
		break;
	case CJ_RELU_B:
		NN(relu_backward)((int64_t)n * ri, cj->yact + s0 * ro, cj->dy + s0 * ro,
				  cj->dx + s0 * ri);
		break;
	case CJ_MAXPOOL_B:
		NN(maxpool_backward)(&op->g, n, cj->dy + s0 * ro, cj->idx + s0 * ro,
				     cj->dx + s0 * ri);
		break;
	case CJ_MAXPOOL_RELU_B:
		NN(maxpool_relu_backward)(&op->g, n, cj->dy + s0 * ro, cj->idx + s0 * ro,
					  cj->yact + s0 * ri, cj->dx + s0 * ri);
		break;
	case CJ_AVGPOOL_B:
		NN(avgpool_backward)(&op->g, n, cj->dy + s0 * ro, cj->dx + s0 * ri);
		break;
	case CJ_BN_GSUM:
		NN(batchnorm_grad_sums)(n * rps, op->c, cj->in + s0 * ri, cj->dy + s0 * ro, cj->mean,
					cj->acc[item], cj->acc2[item]);
		break;
	case CJ_BN_GAPPLY:
		NN(batchnorm_grad_apply)(n * rps, (int64_t)cj->m * rps, op->c, cj->in + s0 * ri,
					 cj->dy + s0 * ro, cj->gamma, cj->mean, cj->invstd, cj->sdy,
					 cj->sdyx, NULL, NULL, cj->dx + s0 * ri);
		break;
	}
	return 0;
}

/* Runs a row-split op on every thread. Called from inside a one-item parallel region (which
 * ran on the calling thread), so the region's bookkeeping is saved and restored around it. */
int TRI(par)(struct TR_T *t, struct chunk_job *cj)
{
	int (*job)(struct TR_T *, struct worker *, int) = t->job;
	int nitems = t->nitems, next = t->next_item, rc0 = t->job_rc;
	t->cj = cj;
	int rc = TRI(parallel_run)(t, chunk_run, t->nthreads);
	t->job = job;
	t->nitems = nitems;
	t->next_item = next;
	t->job_rc = rc0;
	return rc;
}

/* Allocates per-thread accumulators of c doubles, zeroed. */
static int alloc_parts(struct TR_T *t, struct arena *ar, double **parts, int c)
{
	for (int i = 0; i < t->nthreads; i++) {
		ALLOC(parts[i], c);
		memset(parts[i], 0, (size_t)c * sizeof(double));
	}
	return 0;
}

/* Adds the per-thread accumulators in thread order into out (c values). */
static void sum_parts(const struct TR_T *t, double *const *parts, int c, double *out)
{
	for (int j = 0; j < c; j++) {
		out[j] = 0;
		for (int i = 0; i < t->nthreads; i++)
			out[j] += parts[i][j];
	}
}

/* Training-mode batch norm with its rows split across the threads. */
int TRI(bn_forward_split)(struct TR_T *t, struct arena *ar, const struct top *op, int m,
			  const real_t *in, real_t *params, const int64_t *off, real_t *y,
			  real_t *save)
{
	const int c = op->c;
	const int64_t rows = (int64_t)m * op->rows_per_sample;
	struct chunk_job cj = {.op = op, .m = m, .in = in, .y = y};
	double *sum, *sq;
	int rc;
	ALLOC(sum, c);
	ALLOC(sq, c);
	memset(sum, 0, (size_t)c * sizeof(double));
	memset(sq, 0, (size_t)c * sizeof(double));
	if (rows >= 2) {
		if ((rc = alloc_parts(t, ar, cj.acc, c)))
			return rc;
		cj.kind = CJ_BN_SUM;
		TRI(par)(t, &cj);
		sum_parts(t, cj.acc, c, sum);
		for (int j = 0; j < c; j++)
			sum[j] /= (double)rows;
		for (int i = 0; i < t->nthreads; i++)
			memset(cj.acc[i], 0, (size_t)c * sizeof(double));
		cj.kind = CJ_BN_SQ;
		cj.dmean = sum;
		TRI(par)(t, &cj);
		sum_parts(t, cj.acc, c, sq);
		for (int j = 0; j < c; j++)
			sum[j] *= (double)rows;
	}
	NN(batchnorm_stats)(rows, c, sum, sq, op->eps, op->momentum, params + off[4],
			    params + off[5], save, save + c);
	cj.kind = CJ_BN_APPLY;
	cj.gamma = params + off[2];
	cj.beta = params + off[3];
	cj.mean = save;
	cj.invstd = save + c;
	return TRI(par)(t, &cj);
}

int TRI(bn_backward_split)(struct TR_T *t, struct arena *ar, const struct top *op, int m,
			   const real_t *in, const real_t *dy, real_t *params, real_t *grads,
			   const int64_t *off, const real_t *save, real_t *dx)
{
	const int c = op->c;
	struct chunk_job cj = {.op = op, .m = m, .in = in, .dy = dy, .dx = dx,
			       .gamma = params + off[2], .mean = save, .invstd = save + c};
	double *sdy, *sdyx;
	int rc;
	ALLOC(sdy, c);
	ALLOC(sdyx, c);
	if ((rc = alloc_parts(t, ar, cj.acc, c)) || (rc = alloc_parts(t, ar, cj.acc2, c)))
		return rc;
	cj.kind = CJ_BN_GSUM;
	TRI(par)(t, &cj);
	sum_parts(t, cj.acc, c, sdy);
	sum_parts(t, cj.acc2, c, sdyx);
	NN(batchnorm_grad_apply)(0, (int64_t)m * op->rows_per_sample, c, in, dy, params + off[2],
				 save, save + c, sdy, sdyx, grads + off[2], grads + off[3], NULL);
	if (!dx)
		return 0;
	cj.kind = CJ_BN_GAPPLY;
	cj.sdy = sdy;
	cj.sdyx = sdyx;
	return TRI(par)(t, &cj);
}

int TRI(conv_backward_split)(struct TR_T *t, struct arena *ar, const struct top *op, int m,
			     const real_t *in, const real_t *wp, const real_t *dy, real_t *dwp,
			     real_t *db, real_t *dx)
{
	const int64_t wn = (int64_t)op->g.oc * cigt_geom_cols(&op->g);
	struct chunk_job cj = {.kind = CJ_CONV_B, .op = op, .m = m, .in = in, .wp = wp, .dy = dy,
			       .dx = dx};
	for (int i = 0; i < t->nthreads; i++) {
		ALLOC(cj.dw[i], wn);
		ALLOC(cj.db[i], op->g.oc);
		memset(cj.dw[i], 0, (size_t)wn * sizeof(real_t));
		memset(cj.db[i], 0, (size_t)op->g.oc * sizeof(real_t));
	}
	int rc = TRI(par)(t, &cj);
	for (int i = 0; i < t->nthreads; i++) {
		for (int64_t k = 0; k < wn; k++)
			dwp[k] += cj.dw[i][k];
		if (db)
			for (int k = 0; k < op->g.oc; k++)
				db[k] += cj.db[i][k];
	}
	return rc;
}
