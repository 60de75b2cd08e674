/* Initialising a model from another trained one before training (the config's train.init):
 * a warm start from a model of the same architecture (every tensor copied), or sparse
 * upcycling from a single-path network: its op list is cut at the trellis's layer boundaries
 * and every expert of a layer gets a copy of the matching slice (conv, linear, batch norm with
 * its running statistics). Routers keep the initialisation they had (random). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/model.h"
#include "cigt/train.h"
#include "../common/util.h"

/* Writes "conv 1x28x28 -> 32x28x28" for an op into buf. */
static const char *op_str(const struct cigt_op_desc *d, char *buf, size_t n)
{
	snprintf(buf, n, "%s %dx%dx%d -> %dx%dx%d", cigt_op_name(d->kind), d->in.c, d->in.h,
		 d->in.w, d->outshape.c, d->outshape.h, d->outshape.w);
	return buf;
}

static bool shape_eq(struct cigt_shape a, struct cigt_shape b)
{
	return a.c == b.c && a.h == b.h && a.w == b.w;
}

/* Two ops hold parameters of the same shapes and compute the same function of them. */
static bool op_eq(const struct cigt_op_desc *a, const struct cigt_op_desc *b)
{
	if (a->kind != b->kind || !shape_eq(a->in, b->in) || !shape_eq(a->outshape, b->outshape))
		return false;
	switch (a->kind) {
	case CIGT_OP_CONV:
		return a->kh == b->kh && a->kw == b->kw && a->sh == b->sh && a->sw == b->sw &&
		       a->ph == b->ph && a->pw == b->pw && a->bias == b->bias;
	case CIGT_OP_LINEAR:
		return a->bias == b->bias;
	case CIGT_OP_MAXPOOL:
	case CIGT_OP_AVGPOOL:
		return a->kh == b->kh && a->kw == b->kw && a->sh == b->sh && a->sw == b->sw &&
		       a->ph == b->ph && a->pw == b->pw;
	default:
		return true;
	}
}

static void copy_param(float *dst, const float *src, int64_t n)
{
	if (dst && src)
		memcpy(dst, src, (size_t)n * sizeof(float));
}

static bool same_architecture(const struct cigt_model *dst, const struct cigt_model *src)
{
	if (dst->ntensors != src->ntensors || dst->blob_floats != src->blob_floats)
		return false;
	for (int i = 0; i < dst->ntensors; i++) {
		const struct cigt_tensor_info *a = &dst->tensors[i], *b = &src->tensors[i];
		if (strcmp(a->name, b->name) || a->numel != b->numel || a->offset != b->offset)
			return false;
	}
	for (int l = 0; l < dst->arch->nlayers; l++) {
		const struct cigt_layer_desc *A = &dst->arch->layers[l], *B = &src->arch->layers[l];
		if (A->experts != B->experts || A->nops != B->nops)
			return false;
		for (int i = 0; i < A->nops; i++)
			if (!op_eq(&A->ops[i], &B->ops[i]))
				return false;
	}
	return dst->arch->nlayers == src->arch->nlayers;
}

int cigt_train_init_from(struct cigt_model *dst, const struct cigt_model *src, double noise,
			 uint64_t seed, char *err, size_t errlen)
{
	const struct cigt_arch *a = dst->arch, *s = src->arch;
	if (!shape_eq(a->input, s->input) || a->range_lo != s->range_lo ||
	    a->range_hi != s->range_hi)
		return cigt_fail(err, errlen, CIGT_ESHAPE,
				 "the source model's input is %dx%dx%d in [%g, %g], the "
				 "architecture's %dx%dx%d in [%g, %g]",
				 s->input.c, s->input.h, s->input.w, s->range_lo, s->range_hi,
				 a->input.c, a->input.h, a->input.w, a->range_lo, a->range_hi);
	if (a->nclasses != s->nclasses)
		return cigt_fail(err, errlen, CIGT_ESHAPE,
				 "the source model has %d classes, the architecture %d",
				 s->nclasses, a->nclasses);
	if (same_architecture(dst, src)) {
		memcpy(dst->blob, src->blob, (size_t)dst->blob_floats * sizeof(float));
		return 0;
	}
	int src_ops = 0, dst_ops = 0;
	for (int l = 0; l < s->nlayers; l++) {
		if (s->layers[l].experts != 1)
			return cigt_fail(err, errlen, CIGT_ESHAPE,
					 "the source model is neither single-path (its layer %d has "
					 "%d experts) nor of the same architecture",
					 l, s->layers[l].experts);
		src_ops += s->layers[l].nops;
	}
	for (int l = 0; l < a->nlayers; l++)
		dst_ops += a->layers[l].nops;
	/* Walk both op lists in step: source op k (layer sl, op si) matches layer l op i. */
	int sl = 0, si = 0, k = 0;
	char b1[96], b2[96];
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *D = &a->layers[l];
		for (int i = 0; i < D->nops; i++, k++, si++) {
			while (sl < s->nlayers && si >= s->layers[sl].nops)
				sl++, si = 0;
			if (sl >= s->nlayers)
				return cigt_fail(err, errlen, CIGT_ESHAPE,
						 "the source model has %d ops, the architecture %d: "
						 "op %d (layer %d op %d, %s) has no source",
						 src_ops, dst_ops, k, l, i,
						 op_str(&D->ops[i], b1, sizeof b1));
			const struct cigt_op_desc *sd = &s->layers[sl].ops[si];
			if (!op_eq(&D->ops[i], sd))
				return cigt_fail(err, errlen, CIGT_ESHAPE,
						 "op %d does not match: layer %d op %d is %s, the "
						 "source's is %s",
						 k, l, i, op_str(&D->ops[i], b1, sizeof b1),
						 op_str(sd, b2, sizeof b2));
			const struct cigt_op_params *sp = &src->ops[sl][si];
			const int64_t nw = D->ops[i].kind == CIGT_OP_CONV
						   ? (int64_t)D->ops[i].out * D->ops[i].in.c *
							     D->ops[i].kh * D->ops[i].kw
						   : (int64_t)D->ops[i].out * cigt_shape_size(D->ops[i].in);
			const int64_t nb = D->ops[i].out, nc = D->ops[i].in.c;
			for (int e = 0; e < D->experts; e++) {
				const struct cigt_op_params *dp = &dst->ops[l][e * D->nops + i];
				copy_param(dp->w, sp->w, nw);
				copy_param(dp->b, sp->b, nb);
				copy_param(dp->gamma, sp->gamma, nc);
				copy_param(dp->beta, sp->beta, nc);
				copy_param(dp->mean, sp->mean, nc);
				copy_param(dp->var, sp->var, nc);
			}
		}
	}
	if (k != src_ops)
		return cigt_fail(err, errlen, CIGT_ESHAPE,
				 "the source model has %d ops, the architecture only %d", src_ops,
				 dst_ops);
	if (noise <= 0)
		return 0;
	/* Symmetry breaking: each copied conv/linear weight of a layer with several experts is
	 * scaled by (1 + noise * u), u uniform in [-1, 1], drawn per expert in a fixed order. */
	struct cigt_rng r;
	cigt_rng_seed(&r, seed ^ 0x0bc7c1e0ull);
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *D = &a->layers[l];
		if (D->experts < 2)
			continue;
		for (int e = 0; e < D->experts; e++)
			for (int i = 0; i < D->nops; i++) {
				const struct cigt_op_desc *d = &D->ops[i];
				float *w = dst->ops[l][e * D->nops + i].w;
				if (!w)
					continue;
				int64_t nw = d->kind == CIGT_OP_CONV
						     ? (int64_t)d->out * d->in.c * d->kh * d->kw
						     : (int64_t)d->out * cigt_shape_size(d->in);
				for (int64_t j = 0; j < nw; j++)
					w[j] *= (float)(1.0 + noise * (2 * cigt_rng_uniform(&r) - 1));
			}
	}
	return 0;
}
