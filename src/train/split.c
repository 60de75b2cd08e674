/* The crew and the row splits of src/train/split.h. */
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "split.h"

int SPLIT(crew_init)(struct crew *c, int nthreads, int64_t col_max)
{
	memset(c, 0, sizeof *c);
	c->nthreads = nthreads;
	for (int i = 0; i < nthreads; i++) {
		struct worker *w = &c->w[i];
		w->col = malloc((size_t)col_max * sizeof(real_t));
		w->dcol = malloc((size_t)col_max * sizeof(real_t));
		if (!w->col || !w->dcol)
			goto fail;
	}
	if (cigt__workers_new(nthreads, &c->pool))
		goto fail;
	return 0;
fail:
	SPLIT(crew_destroy)(c);
	return CIGT_ENOMEM;
}

void SPLIT(crew_destroy)(struct crew *c)
{
	cigt__workers_free(c->pool);
	c->pool = NULL;
	for (int i = 0; i < MAX_THREADS; i++) {
		cigt__arena_free(&c->w[i].arena);
		free(c->w[i].col);
		free(c->w[i].dcol);
		c->w[i].col = c->w[i].dcol = NULL;
	}
}

/* ------------------------------------------------------------- row splits */

struct split_region {
	struct crew *c;
	const struct chunk_job *cj;
};

/* A region item: chunk `item` of the op on thread `worker`. */
static int chunk_run(void *ctx, int worker, int item)
{
	const struct split_region *r = ctx;
	const struct chunk_job *cj = r->cj;
	const struct worker *w = &r->c->w[worker];
	const int nthreads = r->c->nthreads;
	const struct top *op = cj->op;
	const int s0 = (int)((int64_t)cj->m * item / nthreads);
	const int n = (int)((int64_t)cj->m * (item + 1) / nthreads) - s0;
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

int SPLIT(run)(struct crew *c, struct chunk_job *cj)
{
	struct split_region r = {c, cj};
	return cigt__workers_run(c->pool, chunk_run, &r, c->nthreads);
}

/* Allocates per-thread accumulators of c doubles, zeroed. */
static int alloc_parts(struct crew *cr, struct arena *ar, double **parts, int c)
{
	for (int i = 0; i < cr->nthreads; i++) {
		ALLOC(parts[i], c);
		memset(parts[i], 0, (size_t)c * sizeof(double));
	}
	return 0;
}

/* Adds the per-thread accumulators in thread order into out (c values). */
static void sum_parts(const struct crew *cr, double *const *parts, int c, double *out)
{
	for (int j = 0; j < c; j++) {
		out[j] = 0;
		for (int i = 0; i < cr->nthreads; i++)
			out[j] += parts[i][j];
	}
}

/* Training-mode batch norm with its rows split across the threads. */
int SPLIT(bn_forward)(struct crew *cr, struct arena *ar, const struct top *op, int m,
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
		if ((rc = alloc_parts(cr, ar, cj.acc, c)))
			return rc;
		cj.kind = CJ_BN_SUM;
		SPLIT(run)(cr, &cj);
		sum_parts(cr, cj.acc, c, sum);
		for (int j = 0; j < c; j++)
			sum[j] /= (double)rows;
		for (int i = 0; i < cr->nthreads; i++)
			memset(cj.acc[i], 0, (size_t)c * sizeof(double));
		cj.kind = CJ_BN_SQ;
		cj.dmean = sum;
		SPLIT(run)(cr, &cj);
		sum_parts(cr, cj.acc, c, sq);
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
	return SPLIT(run)(cr, &cj);
}

int SPLIT(bn_backward)(struct crew *cr, struct arena *ar, const struct top *op, int m,
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
	if ((rc = alloc_parts(cr, ar, cj.acc, c)) || (rc = alloc_parts(cr, ar, cj.acc2, c)))
		return rc;
	cj.kind = CJ_BN_GSUM;
	SPLIT(run)(cr, &cj);
	sum_parts(cr, cj.acc, c, sdy);
	sum_parts(cr, cj.acc2, c, sdyx);
	NN(batchnorm_grad_apply)(0, (int64_t)m * op->rows_per_sample, c, in, dy, params + off[2],
				 save, save + c, sdy, sdyx, grads + off[2], grads + off[3], NULL);
	if (!dx)
		return 0;
	cj.kind = CJ_BN_GAPPLY;
	cj.sdy = sdy;
	cj.sdyx = sdyx;
	return SPLIT(run)(cr, &cj);
}

int SPLIT(conv_backward)(struct crew *cr, struct arena *ar, const struct top *op, int m,
			 const real_t *in, const real_t *wp, const real_t *dy, real_t *dwp,
			 real_t *db, real_t *dx)
{
	const int64_t wn = (int64_t)op->g.oc * cigt_geom_cols(&op->g);
	struct chunk_job cj = {.kind = CJ_CONV_B, .op = op, .m = m, .in = in, .wp = wp, .dy = dy,
			       .dx = dx};
	for (int i = 0; i < cr->nthreads; i++) {
		ALLOC(cj.dw[i], wn);
		ALLOC(cj.db[i], op->g.oc);
		memset(cj.dw[i], 0, (size_t)wn * sizeof(real_t));
		memset(cj.db[i], 0, (size_t)op->g.oc * sizeof(real_t));
	}
	int rc = SPLIT(run)(cr, &cj);
	for (int i = 0; i < cr->nthreads; i++) {
		for (int64_t k = 0; k < wn; k++)
			dwp[k] += cj.dw[i][k];
		if (db)
			for (int k = 0; k < op->g.oc; k++)
				db[k] += cj.db[i][k];
	}
	return rc;
}
