/* The trellis training step (see trellis.h). Rows, not samples, flow through the trellis: a row
 * is one sample on one partial path. Layer l receives M_l rows; each expert e of the layer gets
 * the subset rows_e of them (all of them during warm-up, so rows multiply; the rows routed to it
 * afterwards), and the layer's output is the experts' outputs concatenated in expert order:
 * those are the rows the router reads and the next layer receives. The backward pass walks the
 * same bookkeeping in reverse, scatter-adding each expert's input gradient into its rows.
 * Everything a step allocates comes from arenas (one per thread) reset at the next step.
 * The experts of a layer are independent until their input gradients are summed, so they run
 * on a small pool of threads, each expert with its own random stream drawn in expert order:
 * the result does not depend on which thread ran which expert.
 * An expert and a router's own ops are both a chain (chain_forward, chain_backward): residual
 * blocks run both branches on the block input and add them; backward sends the add's gradient
 * into both branches and sums their input gradients (the identity passes it straight on). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "trellis_internal.h"

/* ------------------------------------------------------------------ plan */

static int64_t tensor_off(const struct cigt_model *m, const float *p)
{
	return p ? (int64_t)(p - m->blob) : -1;
}

/* Plans one op chain (an expert's or a router's) into c, and each instance's parameter
 * offsets into off (ninst x nops, instance-major; P[k * nops + i] are instance k's). Grows
 * *col_max to the chain's largest im2col chunk. 0 or CIGT_ENOMEM. */
static int chain_plan(const struct cigt_model *m, const struct cigt_op_desc *D, int nops,
		      struct cigt_shape in, struct cigt_shape out, const struct cigt_op_params *P,
		      int ninst, struct tchain *c, toff_t **off, int64_t *col_max)
{
	c->nops = nops;
	c->isz = cigt_shape_size(in);
	c->osz = cigt_shape_size(out);
	c->ops = calloc((size_t)CIGT_MAX(nops, 1), sizeof *c->ops);
	*off = calloc((size_t)CIGT_MAX(ninst * nops, 1), sizeof **off);
	if (!c->ops || !*off)
		return CIGT_ENOMEM;
	int blk = -1;
	for (int i = 0; i < nops; i++) {
		const struct cigt_op_desc *d = &D[i];
		struct top *o = &c->ops[i];
		o->kind = d->kind;
		o->in_sz = cigt_shape_size(d->in);
		o->out_sz = cigt_shape_size(d->outshape);
		o->g = (struct cigt_geom){d->in.c, d->in.h, d->in.w,
					  d->outshape.c, d->outshape.h, d->outshape.w,
					  d->kh, d->kw, d->sh, d->sw, d->ph, d->pw};
		if (d->kind == CIGT_OP_GLOBALAVGPOOL) {
			/* An average pool whose window is the whole map (channels-last, its
			 * C x 1 x 1 output is already in flat order). */
			o->kind = CIGT_OP_AVGPOOL;
			o->g.kh = o->g.sh = d->in.h;
			o->g.kw = o->g.sw = d->in.w;
			o->g.ph = o->g.pw = 0;
		}
		o->rows_per_sample = (int64_t)d->in.h * d->in.w;
		o->c = d->in.c;
		o->eps = d->eps;
		o->momentum = d->momentum;
		o->p = d->p;
		o->transpose = (d->kind == CIGT_OP_FLATTEN || d->kind == CIGT_OP_LINEAR) &&
			       (int64_t)d->in.h * d->in.w > 1 && d->in.c > 1;
		o->fin = (int)o->in_sz;
		o->fout = d->out;
		o->relu = d->relu;
		o->from_input = i == 0;
		if (d->kind == CIGT_OP_RESIDUAL)
			blk = i;
		if (i > 0 && (D[i - 1].kind == CIGT_OP_RESIDUAL || D[i - 1].kind == CIGT_OP_SHORTCUT))
			o->from_input = d->kind != CIGT_OP_SHORTCUT && d->kind != CIGT_OP_ADD &&
					blk == 0;
		if (d->kind == CIGT_OP_CONV && !cigt_geom_is_pointwise(&o->g))
			*col_max = CIGT_MAX(*col_max,
					    cigt_conv_chunk_rows(&o->g) * cigt_geom_cols(&o->g));
		for (int k = 0; k < ninst; k++) {
			const struct cigt_op_params *p = &P[k * nops + i];
			int64_t *f = (*off)[k * nops + i];
			f[0] = tensor_off(m, p->w);
			f[1] = tensor_off(m, p->b);
			f[2] = tensor_off(m, p->gamma);
			f[3] = tensor_off(m, p->beta);
			f[4] = tensor_off(m, p->mean);
			f[5] = tensor_off(m, p->var);
		}
	}
	return 0;
}

struct TR_T *TR(new)(const struct cigt_model *m, int nthreads)
{
	if (!cigt_trellis_supported(m->arch, NULL, 0))
		return NULL;
	struct TR_T *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->m = m;
	t->a = m->arch;
	const struct cigt_arch *a = m->arch;
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *D = &a->layers[l];
		struct tlayer *L = &t->L[l];
		L->experts = D->experts;
		if (chain_plan(m, D->ops, D->nops, D->in, D->out, m->ops[l], D->experts, &L->ch,
			       &L->off, &t->col_max))
			goto err;
		L->has_router = D->has_router;
		if (D->has_router) {
			const struct cigt_router_desc *rd = &D->router;
			const struct cigt_router_params *rp = &m->routers[l];
			struct trouter *r = &L->r;
			const struct cigt_shape s = rd->chain_out;
			if (rd->nops > 0 && chain_plan(m, rd->ops, rd->nops, rd->in, s, rp->ops, 1,
						       &r->ch, &r->choff, &t->col_max))
				goto err;
			r->csz = cigt_shape_size(s);
			r->pool = (struct cigt_geom){s.c, s.h, s.w, s.c, rd->pooled.h, rd->pooled.w,
						     rd->pool_h, rd->pool_w, rd->pool_h, rd->pool_w,
						     0, 0};
			r->transpose = rd->pooled.h * rd->pooled.w > 1 && s.c > 1;
			r->pin = (int)cigt_shape_size(rd->pooled);
			r->hidden = rd->hidden;
			r->k = rd->out;
			r->eps = rd->bn_eps;
			r->momentum = rd->bn_momentum;
			r->w1 = tensor_off(m, rp->fc1_w);
			r->b1 = tensor_off(m, rp->fc1_b);
			r->gamma = tensor_off(m, rp->gamma);
			r->beta = tensor_off(m, rp->beta);
			r->mean = tensor_off(m, rp->mean);
			r->var = tensor_off(m, rp->var);
			r->w2 = tensor_off(m, rp->fc2_w);
			r->b2 = tensor_off(m, rp->fc2_b);
		}
	}
	t->col_max = CIGT_MAX(t->col_max, 1);
	if (SPLIT(crew_init)(&t->crew, nthreads < 1 ? 1 : CIGT_MIN(nthreads, MAX_THREADS),
			     t->col_max))
		goto err;
	t->crew_up = true;
	return t;
err:
	TR(free)(t);
	return NULL;
}

void TR(free)(struct TR_T *t)
{
	if (!t)
		return;
	if (t->crew_up)
		SPLIT(crew_destroy)(&t->crew);
	for (int l = 0; l < CIGT_MAX_LAYERS; l++) {
		free(t->L[l].ch.ops);
		free(t->L[l].off);
		free(t->L[l].r.ch.ops);
		free(t->L[l].r.choff);
	}
	free(t);
}

/* ---------------------------------------------------------------- forward */

/* Allocates the per-op tables of one run of chain c (zeroed: ops that keep nothing leave NULL). */
static int cstate_alloc(struct arena *ar, const struct tchain *c, struct cstate *X)
{
	const int n = CIGT_MAX(c->nops, 1);
	ALLOC(X->act, n);
	ALLOC(X->aux, n);
	ALLOC(X->idx, n);
	ALLOC(X->wp, n);
	memset(X->act, 0, (size_t)n * sizeof *X->act);
	memset(X->aux, 0, (size_t)n * sizeof *X->aux);
	memset(X->idx, 0, (size_t)n * sizeof *X->idx);
	memset(X->wp, 0, (size_t)n * sizeof *X->wp);
	return 0;
}

/* y = a + b, then max(y, 0) when relu (n values): a residual block's add. */
static void residual_add(int64_t n, const real_t *a, const real_t *b, bool relu, real_t *y)
{
	for (int64_t k = 0; k < n; k++) {
		real_t v = a[k] + b[k];
		y[k] = relu && v < 0 ? 0 : v;
	}
}

/* Forward pass of chain c on m rows `in` (off: this instance's parameter offsets) into
 * outrows, keeping in X what the backward pass reads. split: the ops' rows are split over
 * the crew. */
static int chain_forward(struct TR_T *t, struct worker *w, const struct tchain *c,
			 const toff_t *off, struct cstate *X, int m, const real_t *in,
			 real_t *params, real_t *outrows, const struct cigt_trellis_opts *o,
			 struct cigt_rng *rng, bool split)
{
	struct arena *ar = &w->arena;
	int rc = cstate_alloc(ar, c, X);
	if (rc)
		return rc;
	const real_t *cur = in, *blk = NULL, *mainout = NULL;
	for (int i = 0; i < c->nops; i++) {
		const struct top *op = &c->ops[i];
		if (op->kind == CIGT_OP_RESIDUAL) {
			X->act[i] = blk = cur;
			continue;
		}
		if (op->kind == CIGT_OP_SHORTCUT) {
			mainout = cur;
			X->act[i] = cur = blk;
			continue;
		}
		real_t *y;
		if (i == c->nops - 1)
			y = outrows;
		else
			ALLOC(y, (int64_t)m * op->out_sz);
		X->act[i] = y;
		switch (op->kind) {
		case CIGT_OP_ADD:
			residual_add((int64_t)m * op->out_sz, mainout, cur, op->relu, y);
			break;
		case CIGT_OP_CONV: {
			int64_t wn = (int64_t)op->g.oc * cigt_geom_cols(&op->g);
			ALLOC(X->wp[i], wn);
			NN(conv_pack_weight)(&op->g, params + off[i][0], X->wp[i]);
			const real_t *b = off[i][1] >= 0 ? params + off[i][1] : NULL;
			if (split) {
				struct chunk_job cj = {.kind = CJ_CONV_F, .op = op, .m = m, .in = cur,
						       .wp = X->wp[i], .b = b, .y = y};
				SPLIT(run)(&t->crew, &cj);
			} else {
				NN(conv_forward)(&op->g, m, cur, X->wp[i], b, false, y, w->col, NULL,
						 NULL);
			}
			break;
		}
		case CIGT_OP_LINEAR: {
			const real_t *lin = cur;
			if (op->transpose) {
				ALLOC(X->aux[i], (int64_t)m * op->in_sz);
				NN(hwc_to_chw)(m, op->g.h, op->g.w, op->g.c, cur, X->aux[i]);
				lin = X->aux[i];
			}
			NN(linear_forward)(m, op->fin, op->fout, lin, params + off[i][0],
					   off[i][1] >= 0 ? params + off[i][1] : NULL, false, y);
			break;
		}
		case CIGT_OP_BATCHNORM:
			ALLOC(X->aux[i], 2 * op->c);
			if (split) {
				if ((rc = SPLIT(bn_forward)(&t->crew, ar, op, m, cur, params, off[i],
							    y, X->aux[i])))
					return rc;
				break;
			}
			NN(batchnorm_train_forward)((int64_t)m * op->rows_per_sample, op->c, cur,
						    params + off[i][2], params + off[i][3], op->eps,
						    op->momentum, params + off[i][4],
						    params + off[i][5], y, X->aux[i],
						    X->aux[i] + op->c);
			break;
		case CIGT_OP_RELU:
		case CIGT_OP_AVGPOOL:
		case CIGT_OP_MAXPOOL:
			if (op->kind == CIGT_OP_MAXPOOL)
				ALLOC(X->idx[i], (int64_t)m * op->out_sz);
			if (split) {
				struct chunk_job cj = {.op = op, .m = m, .in = cur, .y = y,
						       .idx = X->idx[i]};
				cj.kind = op->kind == CIGT_OP_RELU	  ? CJ_RELU_F
					  : op->kind == CIGT_OP_MAXPOOL ? CJ_MAXPOOL_F
									: CJ_AVGPOOL_F;
				SPLIT(run)(&t->crew, &cj);
			} else if (op->kind == CIGT_OP_RELU) {
				NN(relu_forward)((int64_t)m * op->in_sz, cur, y);
			} else if (op->kind == CIGT_OP_MAXPOOL) {
				NN(maxpool_forward_idx)(&op->g, m, cur, y, X->idx[i]);
			} else {
				NN(avgpool_forward)(&op->g, m, cur, y);
			}
			break;
		case CIGT_OP_FLATTEN:
			if (op->transpose)
				NN(hwc_to_chw)(m, op->g.h, op->g.w, op->g.c, cur, y);
			else
				memcpy(y, cur, (size_t)(m * op->in_sz) * sizeof(real_t));
			break;
		case CIGT_OP_DROPOUT: {
			int64_t n = (int64_t)m * op->in_sz;
			if (!o->dropout || op->p <= 0) {
				X->aux[i] = NULL;
				memcpy(y, cur, (size_t)n * sizeof(real_t));
				break;
			}
			ALLOC(X->aux[i], n);
			const real_t keep = (real_t)(1.0 / (1.0 - op->p));
			for (int64_t k = 0; k < n; k++)
				X->aux[i][k] = cigt_rng_uniform(rng) < op->p ? 0 : keep;
			NN(dropout_apply)(n, cur, X->aux[i], y);
			break;
		}
		case CIGT_OP_GLOBALAVGPOOL: /* planned as an avgpool */
		case CIGT_OP_RESIDUAL:
		case CIGT_OP_SHORTCUT:
			break;
		}
		cur = y;
	}
	return 0;
}

static int expert_forward(struct TR_T *t, struct worker *w, int l, int e, real_t *params,
			  real_t *outrows, const struct cigt_trellis_opts *o, struct cigt_rng *rng,
			  bool split)
{
	const struct tlayer *L = &t->L[l];
	struct xstate *X = &t->S[l].x[e];
	return chain_forward(t, w, &L->ch, L->off + (int64_t)e * L->ch.nops, &X->c, X->m, X->gin,
			     params, outrows, o, rng, split);
}

/* Whether the router after layer l sends some rows to two experts (paths that ensemble). */
static bool pairing(const struct TR_T *t, int l, const struct cigt_trellis_opts *o)
{
	return o->ens_share > 0 && !o->warmup && l == t->a->nlayers - 2 && t->L[l + 1].experts > 1;
}

/* Router forward on the layer's output rows: soft routes and choices for the next layer. */
static int router_forward(struct TR_T *t, int l, real_t *params,
			  const struct cigt_trellis_opts *o, struct cigt_rng *rng,
			  struct cigt_trellis_stats *st)
{
	struct arena *ar = &t->crew.w[0].arena;
	const struct trouter *r = &t->L[l].r;
	struct lstate *S = &t->S[l];
	const int M = S->mout;
	ALLOC(S->pooled, (int64_t)M * r->pin);
	ALLOC(S->flat, (int64_t)M * r->pin);
	ALLOC(S->h1, (int64_t)M * r->hidden);
	ALLOC(S->h2, (int64_t)M * r->hidden);
	ALLOC(S->bmean, 2 * r->hidden);
	ALLOC(S->logits, (int64_t)M * r->k);
	ALLOC(S->probs, (int64_t)M * r->k);
	ALLOC(S->choice, M);
	S->binv = S->bmean + r->hidden;
	S->rout = S->out;
	if (r->ch.nops > 0) {
		int rc;
		ALLOC(S->rout, (int64_t)M * r->csz);
		if ((rc = chain_forward(t, &t->crew.w[0], &r->ch, r->choff, &S->rc, M, S->out,
					params, S->rout, o, rng, t->crew.nthreads > 1)))
			return rc;
	}
	NN(avgpool_forward)(&r->pool, M, S->rout, S->pooled);
	if (r->transpose)
		NN(hwc_to_chw)(M, r->pool.oh, r->pool.ow, r->pool.c, S->pooled, S->flat);
	else
		memcpy(S->flat, S->pooled, (size_t)((int64_t)M * r->pin) * sizeof(real_t));
	NN(linear_forward)(M, r->pin, r->hidden, S->flat, params + r->w1, params + r->b1, false,
			   S->h1);
	NN(batchnorm_train_forward)(M, r->hidden, S->h1, params + r->gamma, params + r->beta,
				    r->eps, r->momentum, params + r->mean, params + r->var, S->h2,
				    S->bmean, S->binv);
	NN(linear_forward)(M, r->hidden, r->k, S->h2, params + r->w2, params + r->b2, false,
			   S->logits);
	for (int i = 0; i < M; i++) {
		const real_t *a = S->logits + (int64_t)i * r->k;
		double *p = S->probs + (int64_t)i * r->k, mx = a[0], sum = 0;
		for (int k = 1; k < r->k; k++)
			mx = a[k] > mx ? a[k] : mx;
		for (int k = 0; k < r->k; k++)
			sum += p[k] = exp(((double)a[k] - mx) / o->temperature);
		for (int k = 0; k < r->k; k++)
			p[k] /= sum;
		int c = NN(argmax)(a, r->k);
		if (!o->warmup && o->rho > 0 && cigt_rng_uniform(rng) < o->rho)
			c = (int)cigt_rng_below(rng, (uint32_t)r->k);
		S->choice[i] = c;
	}
	if (pairing(t, l, o)) {
		ALLOC(S->second, M);
		for (int i = 0; i < M; i++) {
			const double *p = S->probs + (int64_t)i * r->k;
			int b = -1;
			for (int k = 0; k < r->k; k++)
				if (k != S->choice[i] && (b < 0 || p[k] > p[b]))
					b = k;
			S->second[i] = b;
		}
	}
	(void)st;
	return 0;
}

/* Builds layer l+1's expert row sets from layer l's router choices (or all rows). */
static int assign_rows(struct TR_T *t, int l, const struct cigt_trellis_opts *o)
{
	struct arena *ar = &t->crew.w[0].arena;
	struct lstate *S = &t->S[l], *N = &t->S[l + 1];
	const int K = t->L[l + 1].experts, M = S->mout;
	/* With pairing, samples below npair also go to their runner-up expert. */
	const int npair = S->second ? (int)lround(o->ens_share * t->S[0].min) : 0;
	int64_t total = 0;
	for (int e = 0; e < K; e++) {
		struct xstate *X = &N->x[e];
		int m = 0;
		if (o->warmup)
			m = M;
		else
			for (int i = 0; i < M; i++)
				m += S->choice[i] == e ||
				     (npair && S->smp_out[i] < npair && S->second[i] == e);
		X->m = m;
		ALLOC(X->rows, CIGT_MAX(m, 1));
		m = 0;
		for (int i = 0; i < M; i++)
			if (o->warmup || S->choice[i] == e ||
			    (npair && S->smp_out[i] < npair && S->second[i] == e))
				X->rows[m++] = i;
		X->out_off = total;
		total += m;
	}
	N->min = M;
	N->in = S->out;
	N->lab_in = S->lab_out;
	N->smp_in = S->smp_out;
	N->mout = (int)total;
	return 0;
}

/* ---------------------------------------------------------------- backward */

/* Backward pass of op i of chain c (not a block marker), on m rows of input `in`: parameter
 * gradients added into grads, dx (when not NULL) written from dy. pool_relu: a max pool after
 * a ReLU, whose mask it applies. */
static int op_backward(struct TR_T *t, struct worker *w, const struct tchain *c,
		       const toff_t *off, const struct cstate *X, int i, int m, const real_t *in,
		       real_t *params, real_t *grads, const real_t *dy, real_t *dx, bool pool_relu,
		       bool split)
{
	struct arena *ar = &w->arena;
	const struct top *op = &c->ops[i];
	switch (op->kind) {
	case CIGT_OP_CONV: {
		int64_t wn = (int64_t)op->g.oc * cigt_geom_cols(&op->g);
		real_t *dwp, *dw;
		ALLOC(dwp, wn);
		ALLOC(dw, wn);
		memset(dwp, 0, (size_t)wn * sizeof(real_t));
		real_t *db = off[i][1] >= 0 ? grads + off[i][1] : NULL;
		if (split) {
			int rc = SPLIT(conv_backward)(&t->crew, ar, op, m, in, X->wp[i],
						      dy, dwp, db, dx);
			if (rc)
				return rc;
		} else {
			NN(conv_backward)(&op->g, m, in, X->wp[i], dy, dwp, db, dx, w->col,
					  w->dcol);
		}
		NN(conv_unpack_weight)(&op->g, dwp, dw);
		for (int64_t k = 0; k < wn; k++)
			grads[off[i][0] + k] += dw[k];
		break;
	}
	case CIGT_OP_LINEAR: {
		const real_t *lin = op->transpose ? X->aux[i] : in;
		real_t *dlin = dx;
		if (dx && op->transpose)
			ALLOC(dlin, (int64_t)m * op->in_sz);
		NN(linear_backward)(m, op->fin, op->fout, lin, params + off[i][0], dy,
				    grads + off[i][0], off[i][1] >= 0 ? grads + off[i][1] : NULL,
				    dlin);
		if (dx && op->transpose)
			NN(chw_to_hwc)(m, op->g.h, op->g.w, op->g.c, dlin, dx);
		break;
	}
	case CIGT_OP_BATCHNORM:
		if (split) {
			int rc = SPLIT(bn_backward)(&t->crew, ar, op, m, in, dy, params,
						    grads, off[i], X->aux[i], dx);
			if (rc)
				return rc;
			break;
		}
		NN(batchnorm_backward)((int64_t)m * op->rows_per_sample, op->c, in, dy,
				       params + off[i][2], X->aux[i], X->aux[i] + op->c,
				       grads + off[i][2], grads + off[i][3], dx);
		break;
	case CIGT_OP_RELU:
	case CIGT_OP_MAXPOOL:
	case CIGT_OP_AVGPOOL:
		if (!dx)
			break;
		if (split) {
			struct chunk_job cj = {.op = op, .m = m, .dy = dy, .dx = dx,
					       .yact = pool_relu ? in : X->act[i],
					       .idx = X->idx[i]};
			cj.kind = op->kind == CIGT_OP_RELU	  ? CJ_RELU_B
				  : pool_relu			  ? CJ_MAXPOOL_RELU_B
				  : op->kind == CIGT_OP_MAXPOOL ? CJ_MAXPOOL_B
								: CJ_AVGPOOL_B;
			SPLIT(run)(&t->crew, &cj);
		} else if (op->kind == CIGT_OP_RELU) {
			NN(relu_backward)((int64_t)m * op->in_sz, X->act[i], dy, dx);
		} else if (pool_relu) {
			NN(maxpool_relu_backward)(&op->g, m, dy, X->idx[i], in, dx);
		} else if (op->kind == CIGT_OP_MAXPOOL) {
			NN(maxpool_backward)(&op->g, m, dy, X->idx[i], dx);
		} else {
			NN(avgpool_backward)(&op->g, m, dy, dx);
		}
		break;
	case CIGT_OP_FLATTEN:
		if (dx && op->transpose)
			NN(chw_to_hwc)(m, op->g.h, op->g.w, op->g.c, dy, dx);
		else if (dx)
			memcpy(dx, dy, (size_t)(m * op->in_sz) * sizeof(real_t));
		break;
	case CIGT_OP_DROPOUT:
		if (dx && X->aux[i])
			NN(dropout_apply)((int64_t)m * op->in_sz, dy, X->aux[i], dx);
		else if (dx)
			memcpy(dx, dy, (size_t)(m * op->in_sz) * sizeof(real_t));
		break;
	case CIGT_OP_GLOBALAVGPOOL: /* planned as an avgpool */
	case CIGT_OP_RESIDUAL:
	case CIGT_OP_SHORTCUT:
	case CIGT_OP_ADD:
		break;
	}
	return 0;
}

/* Backward pass of chain c (run forward into X on m rows `in`): dout is the gradient of its
 * output; parameter gradients are added into grads, and the gradient of its input is written
 * to dgin (when not NULL). Inside a residual block the gradient of the add goes to both
 * branches, and the block input's is the sum of theirs (the identity shortcut passes it
 * straight through). */
static int chain_backward(struct TR_T *t, struct worker *w, const struct tchain *c,
			  const toff_t *off, const struct cstate *X, int m, const real_t *in0,
			  real_t *params, real_t *grads, const real_t *dout, real_t *dgin,
			  bool split)
{
	struct arena *ar = &w->arena;
	const real_t *dy = dout;
	const real_t *dmain = NULL, *dshort = NULL; /* the add's gradient, the shortcut's dx */
	for (int i = c->nops - 1; i >= 0; i--) {
		const struct top *op = &c->ops[i];
		const real_t *in = i ? X->act[i - 1] : in0;
		if (op->kind == CIGT_OP_ADD) {
			if (op->relu) {
				real_t *dz;
				ALLOC(dz, (int64_t)m * op->out_sz);
				NN(relu_backward)((int64_t)m * op->out_sz, X->act[i], dy, dz);
				dy = dz;
			}
			dmain = dy; /* and dy goes on into the shortcut branch */
			continue;
		}
		if (op->kind == CIGT_OP_SHORTCUT) {
			dshort = dy; /* the identity's: the add's gradient itself */
			dy = dmain;
			continue;
		}
		if (op->kind == CIGT_OP_RESIDUAL) {
			/* dy: the main branch's input gradient, dshort the shortcut's (NULL when
			 * nobody needs them: the block starts a chain whose dx is not asked). */
			if (!dy || !dshort) {
				dy = NULL;
				continue;
			}
			const int64_t n = (int64_t)m * op->in_sz;
			real_t *sum;
			if (i == 0)
				sum = dgin;
			else
				ALLOC(sum, n);
			for (int64_t k = 0; k < n; k++)
				sum[k] = dy[k] + dshort[k];
			dy = sum;
			continue;
		}
		/* A ReLU followed by a max pool: the pool's backward already applied its mask
		 * (maxpool_relu_backward), so its gradient passes through unchanged. */
		if (op->kind == CIGT_OP_RELU && i + 1 < c->nops &&
		    c->ops[i + 1].kind == CIGT_OP_MAXPOOL) {
			if (i == 0 && dgin)
				memcpy(dgin, dy, (size_t)(m * op->in_sz) * sizeof(real_t));
			continue; /* dy stays */
		}
		const bool pool_relu =
			op->kind == CIGT_OP_MAXPOOL && i > 0 && c->ops[i - 1].kind == CIGT_OP_RELU;
		real_t *dx = NULL;
		if (!op->from_input || dgin) {
			if (i == 0)
				dx = dgin;
			else
				ALLOC(dx, (int64_t)m * op->in_sz);
		}
		int rc = op_backward(t, w, c, off, X, i, m, in, params, grads, dy, dx, pool_relu,
				     split);
		if (rc)
			return rc;
		dy = dx;
	}
	return 0;
}

static int expert_backward(struct TR_T *t, struct worker *w, int l, int e, real_t *params,
			   real_t *grads, const real_t *dout, real_t *dgin, bool split)
{
	const struct tlayer *L = &t->L[l];
	const struct xstate *X = &t->S[l].x[e];
	return chain_backward(t, w, &L->ch, L->off + (int64_t)e * L->ch.nops, &X->c, X->m,
			      X->gin, params, grads, dout, dgin, split);
}

/* Router: information-gain loss on its soft routes and its backward pass, adding the
 * gradient with respect to its input into dout (the layer's output gradient). */
static int router_backward(struct TR_T *t, int l, real_t *params, real_t *grads, real_t *dout,
			   const struct cigt_trellis_opts *o, struct cigt_trellis_stats *st)
{
	struct arena *ar = &t->crew.w[0].arena;
	const struct trouter *r = &t->L[l].r;
	struct lstate *S = &t->S[l];
	const int M = S->mout, K = r->k;
	double *dp;
	real_t *da, *dh2, *dh1, *dflat, *dpool, *din;
	ALLOC(dp, (int64_t)M * K);
	ALLOC(da, (int64_t)M * K);
	ALLOC(dh2, (int64_t)M * r->hidden);
	ALLOC(dh1, (int64_t)M * r->hidden);
	ALLOC(dflat, (int64_t)M * r->pin);
	ALLOC(dpool, (int64_t)M * r->pin);
	ALLOC(din, (int64_t)M * t->L[l].ch.osz);
	double ig = cigt_ig_loss(M, K, t->a->nclasses, S->probs, S->lab_out, o->ig_beta, dp);
	st->ig[l] = ig;
	st->loss -= o->ig_lambda * ig;
	for (int i = 0; i < M; i++) {
		/* dL/dp = -lambda dIG/dp; through softmax(a / T). */
		const double *p = S->probs + (int64_t)i * K;
		double *g = dp + (int64_t)i * K, dot = 0;
		for (int k = 0; k < K; k++) {
			g[k] *= -o->ig_lambda;
			dot += p[k] * g[k];
		}
		for (int k = 0; k < K; k++)
			da[(int64_t)i * K + k] = (real_t)(p[k] * (g[k] - dot) / o->temperature);
	}
	NN(linear_backward)(M, r->hidden, K, S->h2, params + r->w2, da, grads + r->w2,
			    grads + r->b2, dh2);
	NN(batchnorm_backward)(M, r->hidden, S->h1, dh2, params + r->gamma, S->bmean, S->binv,
			       grads + r->gamma, grads + r->beta, dh1);
	NN(linear_backward)(M, r->pin, r->hidden, S->flat, params + r->w1, dh1, grads + r->w1,
			    grads + r->b1, dflat);
	if (r->transpose)
		NN(chw_to_hwc)(M, r->pool.oh, r->pool.ow, r->pool.c, dflat, dpool);
	else
		memcpy(dpool, dflat, (size_t)((int64_t)M * r->pin) * sizeof(real_t));
	if (r->ch.nops > 0) {
		real_t *dchain;
		int rc;
		ALLOC(dchain, (int64_t)M * r->csz);
		NN(avgpool_backward)(&r->pool, M, dpool, dchain);
		if ((rc = chain_backward(t, &t->crew.w[0], &r->ch, r->choff, &S->rc, M, S->out,
					 params, grads, dchain, din, t->crew.nthreads > 1)))
			return rc;
	} else {
		NN(avgpool_backward)(&r->pool, M, dpool, din);
	}
	for (int64_t k = 0; k < (int64_t)M * t->L[l].ch.osz; k++)
		dout[k] += din[k];
	return 0;
}

/* ------------------------------------------------------------------- step */

struct experts_region {
	struct TR_T *t;
	int (*job)(struct TR_T *t, struct worker *w, int item);
};

/* A region item: the job on thread `worker`'s scratch. */
static int expert_item(void *ctx, int worker, int item)
{
	const struct experts_region *r = ctx;
	return r->job(r->t, &r->t->crew.w[worker], item);
}

/* Parallel job: gather expert order[item]'s rows and run its forward pass. */
static int forward_job(struct TR_T *t, struct worker *w, int item)
{
	struct arena *ar = &w->arena;
	const int l = t->job_layer, e = t->order[item];
	const struct tlayer *L = &t->L[l];
	struct lstate *S = &t->S[l];
	struct xstate *X = &S->x[e];
	ALLOC(X->gin, (int64_t)X->m * L->ch.isz);
	for (int k = 0; k < X->m; k++) {
		memcpy(X->gin + (int64_t)k * L->ch.isz, S->in + (int64_t)X->rows[k] * L->ch.isz,
		       (size_t)L->ch.isz * sizeof(real_t));
		S->lab_out[X->out_off + k] = S->lab_in[X->rows[k]];
		if (S->smp_in)
			S->smp_out[X->out_off + k] = S->smp_in[X->rows[k]];
	}
	return expert_forward(t, w, l, e, t->job_params, S->out + X->out_off * L->ch.osz,
			      t->job_opts, &t->xrng[e], t->job_split);
}

/* Parallel job: expert order[item]'s backward pass into its own input-gradient buffer. */
static int backward_job(struct TR_T *t, struct worker *w, int item)
{
	struct arena *ar = &w->arena;
	const int l = t->job_layer, e = t->order[item];
	const struct tlayer *L = &t->L[l];
	const struct xstate *X = &t->S[l].x[e];
	t->dg[e] = NULL;
	if (l > 0)
		ALLOC(t->dg[e], (int64_t)X->m * L->ch.isz);
	return expert_backward(t, w, l, e, t->job_params, t->job_grads,
			       t->job_dout + X->out_off * L->ch.osz, t->dg[e],
			       t->job_split);
}

/* Runs job(0..nitems-1) on the crew (the calling thread included) and waits for all of
 * them; the first failure, or 0. An expert that runs alone splits its rows over the crew. */
static int experts_run(struct TR_T *t, int (*job)(struct TR_T *, struct worker *, int),
		       int nitems)
{
	struct experts_region r = {t, job};
	t->job_split = nitems == 1 && t->crew.nthreads > 1;
	return cigt__workers_run(t->crew.pool, expert_item, &r, nitems);
}

/* Orders the non-empty experts of layer l, largest first (for load balance). */
static int active_experts(struct TR_T *t, int l)
{
	int n = 0;
	for (int e = 0; e < t->L[l].experts; e++)
		if (t->S[l].x[e].m > 0)
			t->order[n++] = e;
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && t->S[l].x[t->order[j]].m > t->S[l].x[t->order[j - 1]].m;
		     j--) {
			int tmp = t->order[j];
			t->order[j] = t->order[j - 1];
			t->order[j - 1] = tmp;
		}
	return n;
}

int TR(step)(struct TR_T *t, real_t *params, real_t *grads, const real_t *x,
	     const uint8_t *labels, int n, const struct cigt_trellis_opts *o,
	     struct cigt_rng *rng, struct cigt_trellis_stats *st)
{
	const struct cigt_arch *a = t->a;
	const int NL = a->nlayers, C = a->nclasses;
	struct arena *ar = &t->crew.w[0].arena;
	int rc;
	memset(st, 0, sizeof *st);
	for (int i = 0; i < t->crew.nthreads; i++)
		cigt__arena_reset(&t->crew.w[i].arena);
	memset(t->S, 0, sizeof t->S);
	if (n <= 0)
		return 0;
	t->job_params = params;
	t->job_grads = grads;
	t->job_opts = o;

	/* Layer 0 input: the samples, channels-last. */
	struct lstate *S0 = &t->S[0];
	S0->min = n;
	ALLOC(S0->in, (int64_t)n * t->L[0].ch.isz);
	if (a->input.c > 1)
		NN(chw_to_hwc)(n, a->input.h, a->input.w, a->input.c, x, S0->in);
	else
		memcpy(S0->in, x, (size_t)((int64_t)n * t->L[0].ch.isz) * sizeof(real_t));
	ALLOC(S0->lab_in, n);
	for (int i = 0; i < n; i++)
		S0->lab_in[i] = labels[i];
	if (o->teacher || (o->ens_share > 0 && !o->warmup)) {
		ALLOC(S0->smp_in, n);
		for (int i = 0; i < n; i++)
			S0->smp_in[i] = i;
	}
	S0->x[0].m = n;
	ALLOC(S0->x[0].rows, n);
	for (int i = 0; i < n; i++)
		S0->x[0].rows[i] = i;
	S0->x[0].out_off = 0;
	S0->mout = n;

	for (int l = 0; l < NL; l++) {
		const struct tlayer *L = &t->L[l];
		struct lstate *S = &t->S[l];
		ALLOC(S->out, (int64_t)S->mout * L->ch.osz);
		ALLOC(S->lab_out, CIGT_MAX(S->mout, 1));
		if (S->smp_in)
			ALLOC(S->smp_out, CIGT_MAX(S->mout, 1));
		for (int e = 0; e < L->experts; e++) {
			st->rows[l][e] = S->x[e].m;
			cigt_rng_seed(&t->xrng[e], cigt_rng_next(rng));
		}
		t->job_layer = l;
		if ((rc = experts_run(t, forward_job, active_experts(t, l))))
			return rc;
		if (L->has_router) {
			if ((rc = router_forward(t, l, params, o, rng, st)) ||
			    (rc = assign_rows(t, l, o)))
				return rc;
		}
	}

	/* Leaves: the loss of leaf.c on the last layer's experts' output rows. */
	const struct tlayer *LL = &t->L[NL - 1];
	struct lstate *SL = &t->S[NL - 1];
	real_t *dout;
	int leaf_m[CIGT_MAX_EXPERTS];
	ALLOC(dout, (int64_t)SL->mout * C);
	for (int e = 0; e < LL->experts; e++)
		leaf_m[e] = SL->x[e].m;
	if ((rc = TR(leaf_loss)(C, LL->experts, leaf_m, SL->out, SL->lab_out, SL->smp_out, o, dout,
				st)))
		return rc;

	/* Backward, last layer first. dout holds the gradient of layer l's output rows. */
	for (int l = NL - 1; l >= 0; l--) {
		const struct tlayer *L = &t->L[l];
		struct lstate *S = &t->S[l];
		if (L->has_router && (rc = router_backward(t, l, params, grads, dout, o, st)))
			return rc;
		t->job_layer = l;
		t->job_dout = dout;
		int nact = active_experts(t, l);
		if ((rc = experts_run(t, backward_job, nact)))
			return rc;
		if (l == 0)
			break;
		/* Sum the experts' input gradients into their rows, in expert order. */
		real_t *din;
		ALLOC(din, (int64_t)S->min * L->ch.isz);
		memset(din, 0, (size_t)((int64_t)S->min * L->ch.isz) * sizeof(real_t));
		for (int e = 0; e < L->experts; e++) {
			const struct xstate *X = &S->x[e];
			for (int k = 0; k < X->m; k++) {
				real_t *d = din + (int64_t)X->rows[k] * L->ch.isz;
				const real_t *g = t->dg[e] + (int64_t)k * L->ch.isz;
				for (int64_t j = 0; j < L->ch.isz; j++)
					d[j] += g[j];
			}
		}
		dout = din;
	}
	return 0;
}
