/* Inference: plan (fold batch norm, pack weights, fuse ReLU), then execute batches grouped by
 * route. Between layers, activations are channels-last rows kept contiguous per expert: after a
 * router picks each row's next expert, a counting sort moves the rows so every expert of the next
 * layer reads one contiguous group. perm[] remembers which sample each row belongs to, so the
 * results come back in request order. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "../common/util.h"
#include "engine_internal.h"

static const char *const prof_names[CIGT_PROF_COUNT] = {
	"im2col", "sgemm", "pool", "elementwise", "router", "regroup",
};

const char *cigt_prof_part_name(enum cigt_prof_part p)
{
	return (unsigned)p < CIGT_PROF_COUNT ? prof_names[p] : "?";
}

void cigt_softmax(const float *logits, int n, float *probs)
{
	float mx = logits[cigt_argmax(logits, n)], sum = 0.0f;
	for (int i = 0; i < n; i++)
		sum += probs[i] = expf(logits[i] - mx);
	for (int i = 0; i < n; i++)
		probs[i] /= sum;
}

/* ---------------------------------------------------------------- planning */

static struct cigt_geom geom_of(const struct cigt_op_desc *op)
{
	return (struct cigt_geom){
		.c = op->in.c, .h = op->in.h, .w = op->in.w,
		.oc = op->outshape.c, .oh = op->outshape.h, .ow = op->outshape.w,
		.kh = op->kh, .kw = op->kw, .sh = op->sh, .sw = op->sw, .ph = op->ph, .pw = op->pw,
	};
}

/* BN scale and shift: y = x * s + t with s = gamma / sqrt(var + eps), t = beta - mean * s. */
static void bn_coeffs(const struct cigt_op_params *bn, float eps, int c, float *s, float *t)
{
	for (int i = 0; i < c; i++) {
		s[i] = bn->gamma[i] / sqrtf(bn->var[i] + eps);
		t[i] = bn->beta[i] - bn->mean[i] * s[i];
	}
}

static int plan_conv(const struct cigt_op_desc *d, const struct cigt_op_params *p, struct xop *x)
{
	x->kind = X_CONV;
	x->g = geom_of(d);
	int64_t cols = cigt_geom_cols(&x->g);
	if (!(x->w = cigt_alloc_floats(cols * d->out)) || !(x->b = cigt_alloc_floats(d->out))) {
		free(x->w);
		return CIGT_ENOMEM;
	}
	cigt_conv_pack_weight(&x->g, p->w, x->w);
	for (int o = 0; o < d->out; o++)
		x->b[o] = p->b ? p->b[o] : 0.0f;
	return 0;
}

static int plan_linear(const struct cigt_op_desc *d, const struct cigt_op_params *p,
		       struct xop *x)
{
	x->kind = X_LINEAR;
	x->fin = (int)x->in_sz;
	x->fout = d->out;
	if (!(x->w = cigt_alloc_floats(x->in_sz * d->out)) ||
	    !(x->b = cigt_alloc_floats(d->out))) {
		free(x->w);
		return CIGT_ENOMEM;
	}
	memcpy(x->w, p->w, (size_t)(x->in_sz * d->out) * sizeof(float));
	for (int o = 0; o < d->out; o++)
		x->b[o] = p->b ? p->b[o] : 0.0f;
	return 0;
}

/* A batch norm folded into its producer `into` (w' = w * s per output row, b' = b * s + t), or,
 * when into is NULL, an in-place affine op x. */
static int plan_batchnorm(const struct cigt_op_desc *d, const struct cigt_op_params *p,
			  struct xop *into, struct xop *x)
{
	int c = d->in.c;
	float *sc = cigt_alloc_floats(c), *t = cigt_alloc_floats(c);
	if (!sc || !t) {
		free(sc);
		free(t);
		return CIGT_ENOMEM;
	}
	bn_coeffs(p, d->eps, c, sc, t);
	if (into) {
		int64_t row = into->kind == X_CONV ? cigt_geom_cols(&into->g) : into->fin;
		for (int o = 0; o < c; o++) {
			for (int64_t k = 0; k < row; k++)
				into->w[o * row + k] *= sc[o];
			into->b[o] = into->b[o] * sc[o] + t[o];
		}
		free(sc);
		free(t);
		return 0;
	}
	x->kind = X_AFFINE;
	x->g.c = c;
	x->w = sc;
	x->b = t;
	x->inplace = true;
	return 0;
}

/* Builds the op list of a chain (an expert's, or a router's own): batch norm folded into the
 * conv or linear before it, ReLU fused into its producer, max pooling into the conv before it
 * when it tiles the conv's output; residual blocks keep their markers for buffer planning. */
static int plan_ops(const struct cigt_op_desc *ops, int nops, const struct cigt_op_params *P,
		    bool dnn, struct xchain *ch)
{
	ch->nops = 0;
	if (!(ch->ops = calloc((size_t)nops * 2 + 2, sizeof *ch->ops)))
		goto nomem;
	for (int i = 0; i < nops; i++) {
		const struct cigt_op_desc *d = &ops[i];
		const struct cigt_op_params *p = &P[i];
		struct xop *prev = ch->nops ? &ch->ops[ch->nops - 1] : NULL;
		struct xop x = {.in_sz = cigt_shape_size(d->in), .out_sz = cigt_shape_size(d->outshape)};
		switch (d->kind) {
		case CIGT_OP_CONV:
			if (plan_conv(d, p, &x))
				goto nomem;
			x.desc = i;
			break;
		case CIGT_OP_LINEAR:
			if (d->in.h * d->in.w > 1 && d->in.c > 1) {
				/* Flattening is implied: bring the rows to channels-first order. */
				struct xop f = {.kind = X_FLATTEN, .in_sz = x.in_sz,
						.out_sz = x.in_sz};
				f.g.c = d->in.c, f.g.h = d->in.h, f.g.w = d->in.w;
				ch->ops[ch->nops++] = f;
			}
			if (plan_linear(d, p, &x))
				goto nomem;
			x.desc = i;
			break;
		case CIGT_OP_BATCHNORM: {
			bool fold = prev && (prev->kind == X_CONV || prev->kind == X_LINEAR) &&
				    !prev->relu && i > 0 && ops[i - 1].kind != CIGT_OP_FLATTEN;
			if (plan_batchnorm(d, p, fold ? prev : NULL, &x))
				goto nomem;
			if (fold)
				continue;
			break;
		}
		case CIGT_OP_RELU:
			if (prev && (prev->kind == X_CONV || prev->kind == X_LINEAR ||
				     prev->kind == X_AFFINE || prev->kind == X_ADD)) {
				prev->relu = true;
				continue;
			}
			x.kind = X_RELU;
			x.inplace = true;
			break;
		case CIGT_OP_MAXPOOL:
		case CIGT_OP_AVGPOOL:
			x.kind = d->kind == CIGT_OP_MAXPOOL ? X_MAXPOOL : X_AVGPOOL;
			x.g = geom_of(d);
			if (!dnn && x.kind == X_MAXPOOL && prev && prev->kind == X_CONV &&
			    x.g.ph == 0 &&
			    x.g.pw == 0 && x.g.kh == x.g.sh && x.g.kw == x.g.sw &&
			    prev->g.oh % x.g.kh == 0 && prev->g.ow % x.g.kw == 0) {
				/* Pool each band of conv rows while it is still in cache. */
				prev->kind = X_CONV_POOL;
				prev->pg = x.g;
				prev->out_sz = x.out_sz;
				continue;
			}
			break;
		case CIGT_OP_GLOBALAVGPOOL:
			if ((int64_t)d->in.h * d->in.w == 1)
				continue; /* the mean of one value */
			x.kind = X_AVGPOOL;
			x.g = (struct cigt_geom){.c = d->in.c, .h = d->in.h, .w = d->in.w,
						 .oc = d->in.c, .oh = 1, .ow = 1, .kh = d->in.h,
						 .kw = d->in.w, .sh = d->in.h, .sw = d->in.w};
			break;
		case CIGT_OP_FLATTEN:
			if ((int64_t)d->in.h * d->in.w == 1 || d->in.c == 1)
				continue; /* already in channels-first order */
			x.kind = X_FLATTEN;
			x.g.c = d->in.c, x.g.h = d->in.h, x.g.w = d->in.w;
			break;
		case CIGT_OP_DROPOUT:
			continue;
		case CIGT_OP_RESIDUAL:
			x.kind = X_BLOCK;
			x.inplace = true; /* a marker: it moves nothing */
			break;
		case CIGT_OP_SHORTCUT:
			x.kind = X_SHORT;
			x.inplace = true;
			break;
		case CIGT_OP_ADD:
			x.kind = X_ADD;
			x.relu = d->relu;
			x.g.c = d->in.c;
			break;
		}
		ch->ops[ch->nops++] = x;
	}
	if (ch->nops == 0)
		ch->ops[ch->nops++] = (struct xop){.kind = X_COPY, .in_sz = ch->in_sz,
						   .out_sz = ch->out_sz};
	return 0;
nomem:
	return CIGT_ENOMEM;
}

/* A scratch buffer none of busy[0..nb) holds. */
static int free_tmp(const int *busy, int nb)
{
	for (int t = XB_T0; t < XB_N; t++) {
		bool used = false;
		for (int k = 0; k < nb; k++)
			used |= busy[k] == t;
		if (!used)
			return t;
	}
	CIGT_ASSERT(!"a chain needs more than XB_NTMP scratch buffers");
	return XB_T0;
}

/* Fixes the buffers each op reads and writes. The last op that cannot run in place writes the
 * chain's output, and the in-place ops after it run there; the others move between scratch
 * buffers. A residual block's input stays where it is until the add (an identity shortcut
 * reads it there, nothing is copied), its main branch's output until the shortcut is done. */
static void plan_buffers(struct xchain *ch)
{
	int last_move = 0;
	for (int i = 0; i < ch->nops; i++)
		if (!ch->ops[i].inplace)
			last_move = i;
	int cur = XB_IN, block_in = -1, main_out = -1;
	ch->op_max = 0;
	for (int i = 0; i < ch->nops; i++) {
		struct xop *x = &ch->ops[i];
		if (x->kind == X_BLOCK) {
			block_in = cur;
			continue;
		}
		if (x->kind == X_SHORT) {
			main_out = cur;
			cur = block_in;
			continue;
		}
		ch->op_max = CIGT_MAX(ch->op_max, x->out_sz);
		int busy[4] = {cur, block_in, main_out, -1}, nb = 3;
		x->src = (signed char)cur;
		if (x->kind == X_ADD) {
			x->src = (signed char)main_out;
			x->src2 = (signed char)cur;
			busy[3] = main_out;
			nb = 4;
		}
		int dst;
		if (i >= last_move)
			dst = XB_OUT;
		else if (x->kind == X_ADD && main_out >= XB_T0)
			dst = main_out; /* added in place into the main branch's output */
		else if (x->inplace && cur != XB_IN && cur != block_in && cur != main_out)
			dst = cur;
		else
			dst = free_tmp(busy, nb);
		x->dst = (signed char)dst;
		cur = dst;
		if (x->kind == X_ADD)
			block_in = main_out = -1;
	}
}

/* The oneDNN engine's fusions, once the buffers are fixed. A residual block whose main branch
 * ends in a conv without ReLU and whose shortcut is the identity: the conv adds the block
 * input (still in its buffer) and applies the block's ReLU itself, and writes where the add
 * would have; the add is dropped. In bf16, a conv or linear whose output only the next one
 * reads hands it over in bf16 (neither converts). */
static void fuse_dnn(struct xchain *ch, enum cigt__dnn_type type)
{
	const bool bf16 = type == CIGT__DNN_BF16;
	for (int i = 0; i < ch->nops; i++) {
		struct xop *x = &ch->ops[i];
		x->form.type = type;
		if (x->kind == X_CONV && !x->relu && i + 2 < ch->nops &&
		    ch->ops[i + 1].kind == X_SHORT && ch->ops[i + 2].kind == X_ADD) {
			struct xop *a = &ch->ops[i + 2];
			CIGT_ASSERT(a->src == x->dst && a->dst != x->src && a->dst != a->src2);
			x->form.add = true;
			x->src2 = a->src2;
			x->dst = a->dst;
			x->relu = a->relu;
			a->kind = X_NOP;
		}
	}
	for (int i = 0; bf16 && i + 1 < ch->nops; i++) {
		struct xop *x = &ch->ops[i], *y = &ch->ops[i + 1];
		if ((x->kind == X_CONV || x->kind == X_LINEAR) &&
		    (y->kind == X_CONV || y->kind == X_LINEAR) && y->src == x->dst &&
		    x->dst != XB_OUT)
			x->form.dst_low = y->form.src_low = true;
	}
}

static int plan_chain(const struct cigt_engine *e, int l, int ex, struct xchain *ch)
{
	const struct cigt_layer_desc *L = &e->a->layers[l];
	ch->in_sz = cigt_shape_size(L->in);
	ch->out_sz = cigt_shape_size(L->out);
	if (plan_ops(L->ops, L->nops, &e->m->ops[l][ex * L->nops], e->dnn, ch))
		return CIGT_ENOMEM;
	plan_buffers(ch);
	for (int i = 0; i < ch->nops; i++)
		if (ch->ops[i].kind == X_CONV || ch->ops[i].kind == X_CONV_POOL ||
		    ch->ops[i].kind == X_LINEAR) {
			ch->ops[i].qslot = 1 + ex * L->nops + ch->ops[i].desc;
			ch->ops[i].ql = l;
		}
	if (!e->dnn)
		return 0;
	const enum cigt_precision p = e->opts.precision;
	fuse_dnn(ch, p == CIGT_PRECISION_BF16 ? CIGT__DNN_BF16
		 : p == CIGT_PRECISION_INT8 ? CIGT__DNN_INT8
					    : CIGT__DNN_F32);
	if (p == CIGT_PRECISION_INT8)
		for (int i = 0; i < ch->nops; i++) {
			struct xop *x = &ch->ops[i];
			if (x->kind != X_CONV && x->kind != X_LINEAR)
				continue;
			const struct cigt_op_params *q = &e->m->ops[l][ex * L->nops + x->desc];
			x->form.in_lo = q->in_min;
			x->form.in_hi = q->in_max;
		}
	return 0;
}

static void free_chain(struct xchain *ch)
{
	if (!ch->ops)
		return;
	for (int i = 0; i < ch->nops; i++) {
		free(ch->ops[i].w);
		free(ch->ops[i].b);
		cigt__dnn_op_free(ch->ops[i].dnn);
	}
	free(ch->ops);
	ch->ops = NULL;
}

static int plan_router(struct cigt_engine *e, int l)
{
	const struct cigt_router_desc *d = &e->a->layers[l].router;
	const struct cigt_router_params *p = &e->m->routers[l];
	struct xrouter *r = &e->routers[l];
	if (d->nops) {
		r->chain.in_sz = cigt_shape_size(d->in);
		r->chain.out_sz = cigt_shape_size(d->chain_out);
		if (plan_ops(d->ops, d->nops, p->ops, e->dnn, &r->chain))
			return CIGT_ENOMEM;
		plan_buffers(&r->chain);
		/* A router's own ops stay fp32 in every precision: its scores pick the routes. */
		if (e->dnn)
			fuse_dnn(&r->chain, CIGT__DNN_F32);
	}
	const struct cigt_shape pin = d->chain_out; /* the layer output when nops is 0 */
	r->pool = (struct cigt_geom){.c = pin.c, .h = pin.h, .w = pin.w,
				     .oc = pin.c, .oh = d->pooled.h, .ow = d->pooled.w,
				     .kh = d->pool_h, .kw = d->pool_w, .sh = d->pool_h,
				     .sw = d->pool_w};
	r->transpose = d->pooled.h * d->pooled.w > 1 && pin.c > 1;
	r->pin = (int)cigt_shape_size(d->pooled);
	r->hidden = d->hidden;
	r->k = d->out;
	r->w1 = cigt_alloc_floats((int64_t)r->pin * r->hidden);
	r->b1 = cigt_alloc_floats(r->hidden);
	r->w2 = cigt_alloc_floats((int64_t)r->hidden * r->k);
	r->b2 = cigt_alloc_floats(r->k);
	if (!r->w1 || !r->b1 || !r->w2 || !r->b2)
		return CIGT_ENOMEM;
	for (int h = 0; h < r->hidden; h++) {
		float s = p->gamma[h] / sqrtf(p->var[h] + d->bn_eps);
		for (int k = 0; k < r->pin; k++)
			r->w1[(int64_t)h * r->pin + k] = p->fc1_w[(int64_t)h * r->pin + k] * s;
		r->b1[h] = (p->fc1_b[h] - p->mean[h]) * s + p->beta[h];
	}
	memcpy(r->w2, p->fc2_w, (size_t)r->hidden * r->k * sizeof(float));
	memcpy(r->b2, p->fc2_b, (size_t)r->k * sizeof(float));
	return 0;
}

/* Memory budgets. Each scratch buffer of an op chain holds `sub` samples of its largest
 * activation: at most SCRATCH_FLOATS (8 MiB), so a chain's working set stays near the caches
 * and a 224x224 input runs a few samples at a time rather than 64 (sub is 1..64). Each layer
 * buffer holds a slice of at most LAYER_FLOATS (128 MiB) of layer outputs: a workspace asked
 * for more samples than that runs them in slices (cigt_workspace_max_batch). */
#define SCRATCH_FLOATS ((int64_t)2 << 20)
#define LAYER_FLOATS ((int64_t)32 << 20)
#define SUB_MAX 64

static void note_ops(struct cigt_engine *e, const struct xchain *ch)
{
	e->op_max = CIGT_MAX(e->op_max, ch->op_max);
	for (int i = 0; i < ch->nops; i++) {
		const struct xop *x = &ch->ops[i];
		if ((x->kind == X_CONV || x->kind == X_CONV_POOL) && !cigt_geom_is_pointwise(&x->g))
			e->col_max = CIGT_MAX(e->col_max,
					      cigt_conv_chunk_rows(&x->g) * cigt_geom_cols(&x->g));
		if (x->kind == X_CONV_POOL)
			e->tmp_max = CIGT_MAX(e->tmp_max, cigt_conv_pool_tmp(&x->g, &x->pg));
	}
}

/* The chain's convs and linears as oneDNN primitives for slices of up to e->sub rows. */
static int plan_dnn(struct cigt_engine *e, struct xchain *ch, char *err, size_t errlen)
{
	for (int i = 0; i < ch->nops; i++) {
		struct xop *x = &ch->ops[i];
		int rc = 0;
		if (x->kind == X_CONV)
			rc = cigt__dnn_conv_new(&x->g, x->w, x->b, x->relu, &x->form, e->sub,
						e->opts.threads, &x->dnn, err, errlen);
		else if (x->kind == X_LINEAR)
			rc = cigt__dnn_linear_new(x->fin, x->fout, x->w, x->b, x->relu, &x->form,
						  e->sub, e->opts.threads, &x->dnn, err, errlen);
		if (rc)
			return rc;
		if (x->dnn)
			e->dnn_scratch = CIGT_MAX(e->dnn_scratch, cigt__dnn_op_scratch(x->dnn));
	}
	return 0;
}

enum cigt_precision cigt_precision_auto(const struct cigt_model *m, enum cigt_backend b)
{
	const double *acc = m->quant_acc;
	if (b == CIGT_BACKEND_OPENBLAS || m->quant_samples <= 0 || acc[0] < 0)
		return CIGT_PRECISION_FP32;
	if (acc[2] >= 0 && acc[2] >= acc[0] - 0.002 && cigt__dnn_has_vnni())
		return CIGT_PRECISION_INT8;
	if (acc[1] >= 0 && acc[1] >= acc[0] - 0.002 && cigt__dnn_has_bf16())
		return CIGT_PRECISION_BF16;
	return CIGT_PRECISION_FP32;
}

enum cigt_backend cigt_backend_auto(enum cigt_precision p)
{
	return p == CIGT_PRECISION_FP32 ? CIGT_BACKEND_OPENBLAS : CIGT_BACKEND_ONEDNN;
}

const char *cigt_backend_name(enum cigt_backend b)
{
	return b == CIGT_BACKEND_ONEDNN ? "onednn" : "openblas";
}

const char *cigt_precision_name(enum cigt_precision p)
{
	return p == CIGT_PRECISION_BF16   ? "bf16"
	       : p == CIGT_PRECISION_INT8 ? "int8"
	       : p == CIGT_PRECISION_AUTO ? "auto"
					  : "fp32";
}

int cigt_backend_parse(const char *s)
{
	return !strcmp(s, "openblas") ? CIGT_BACKEND_OPENBLAS
	       : !strcmp(s, "onednn") ? CIGT_BACKEND_ONEDNN
				      : -1;
}

int cigt_precision_parse(const char *s)
{
	return !strcmp(s, "fp32")   ? CIGT_PRECISION_FP32
	       : !strcmp(s, "bf16") ? CIGT_PRECISION_BF16
	       : !strcmp(s, "int8") ? CIGT_PRECISION_INT8
	       : !strcmp(s, "auto") ? CIGT_PRECISION_AUTO
				    : -1;
}

const char *cigt_engine_backend(const struct cigt_engine *e)
{
	return e->desc;
}

struct cigt_engine_opts cigt_engine_opts_of(const struct cigt_engine *e)
{
	return e->opts;
}

const char *cigt_engine_isa(const struct cigt_engine *e)
{
	return e->dnn ? cigt__dnn_isa() : openblas_get_corename();
}

int cigt_engine_new(const struct cigt_model *m, struct cigt_engine **out, char *err,
		    size_t errlen)
{
	return cigt_engine_new_opts(m, NULL, out, err, errlen);
}

int cigt_engine_new_opts(const struct cigt_model *m, const struct cigt_engine_opts *o,
			 struct cigt_engine **out, char *err, size_t errlen)
{
	*out = NULL;
	const struct cigt_engine_opts def = {CIGT_BACKEND_OPENBLAS, CIGT_PRECISION_FP32, 1};
	if (!o)
		o = &def;
	if ((unsigned)o->backend > CIGT_BACKEND_ONEDNN ||
	    (unsigned)o->precision > CIGT_PRECISION_AUTO || o->threads < 0 || o->threads > 256)
		return cigt_fail(err, errlen, CIGT_EINVAL, "unknown backend or precision, or "
				 "threads out of 0..256");
	struct cigt_engine_opts resolved = *o;
	if (o->precision == CIGT_PRECISION_AUTO) {
		resolved.precision = cigt_precision_auto(m, o->backend);
		o = &resolved;
	}
	if (o->backend == CIGT_BACKEND_OPENBLAS && o->precision != CIGT_PRECISION_FP32)
		return cigt_fail(err, errlen, CIGT_EINVAL,
				 "precision %s needs the onednn backend (openblas is fp32 only)",
				 cigt_precision_name(o->precision));
	if (o->precision == CIGT_PRECISION_INT8 && m->quant_samples <= 0)
		return cigt_fail(err, errlen, CIGT_EINVAL,
				 "precision int8 needs calibrated input ranges, which model '%s' has "
				 "none of (make them: cigt quantize MODEL --out FILE)", m->arch->name);
	struct cigt_engine *e = calloc(1, sizeof *e);
	if (!e)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	e->opts = *o;
	if (e->opts.threads == 0)
		e->opts.threads = 1;
	e->dnn = o->backend == CIGT_BACKEND_ONEDNN;
	e->m = m;
	e->a = m->arch;
	const struct cigt_arch *a = m->arch;
	e->layer_max = cigt_shape_size(a->input);
	e->tree_max = 1;
	e->tree_floats = 0;
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		e->layer_max = CIGT_MAX(e->layer_max, cigt_shape_size(L->out));
		e->tree_max = CIGT_MIN(e->tree_max * L->experts, CIGT__MAX_TREE);
		e->tree_floats = CIGT_MAX(e->tree_floats,
					  e->tree_max * CIGT_MAX(cigt_shape_size(L->in),
								 cigt_shape_size(L->out)));
		if (!(e->chains[l] = calloc((size_t)L->experts, sizeof *e->chains[l])))
			goto nomem;
		for (int ex = 0; ex < L->experts; ex++) {
			if (plan_chain(e, l, ex, &e->chains[l][ex]))
				goto nomem;
			note_ops(e, &e->chains[l][ex]);
		}
		if (L->has_router) {
			if (plan_router(e, l))
				goto nomem;
			const struct xrouter *r = &e->routers[l];
			e->router_max = CIGT_MAX(e->router_max, CIGT_MAX(r->pin, r->hidden));
			if (r->chain.nops) {
				note_ops(e, &r->chain);
				e->rchain_max = CIGT_MAX(e->rchain_max, r->chain.out_sz);
			}
		}
	}
	e->sub = (int)CIGT_MAX(1, CIGT_MIN(SUB_MAX, SCRATCH_FLOATS / CIGT_MAX(e->op_max, 1)));
	e->max_rows = (int)CIGT_MAX(1, CIGT_MIN(1 << 20, LAYER_FLOATS / e->layer_max));
	if (e->dnn) {
		/* oneDNN primitives exist per batch size: chains run power-of-two slices. */
		while (e->sub & (e->sub - 1))
			e->sub &= e->sub - 1;
		for (int l = 0; l < a->nlayers; l++) {
			for (int ex = 0; ex < a->layers[l].experts; ex++)
				if (plan_dnn(e, &e->chains[l][ex], err, errlen))
					goto fail;
			if (a->layers[l].has_router && plan_dnn(e, &e->routers[l].chain, err, errlen))
				goto fail;
		}
	}
	snprintf(e->desc, sizeof e->desc, "%s %s (%s)", cigt_backend_name(o->backend),
		 cigt_precision_name(o->precision), cigt_engine_isa(e));
	*out = e;
	return 0;
fail:
	cigt_engine_free(e);
	return CIGT_EINVAL;
nomem:
	cigt_engine_free(e);
	return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory planning the model");
}

void cigt_engine_free(struct cigt_engine *e)
{
	if (!e)
		return;
	for (int l = 0; l < CIGT_MAX_LAYERS; l++) {
		if (e->chains[l]) {
			for (int ex = 0; ex < e->a->layers[l].experts; ex++)
				free_chain(&e->chains[l][ex]);
			free(e->chains[l]);
		}
		free_chain(&e->routers[l].chain);
		free(e->routers[l].w1);
		free(e->routers[l].b1);
		free(e->routers[l].w2);
		free(e->routers[l].b2);
	}
	free(e);
}

const struct cigt_model *cigt_engine_model(const struct cigt_engine *e)
{
	return e->m;
}

int64_t cigt_engine_act_size(const struct cigt_engine *e, int layer)
{
	if (layer < 0 || layer > e->a->nlayers)
		return -1;
	if (layer == e->a->nlayers)
		return e->a->nclasses;
	return cigt_shape_size(e->a->layers[layer].in);
}

/* --------------------------------------------------------------- workspace */

struct cigt_workspace *cigt_workspace_new(const struct cigt_engine *e, int max_batch)
{
	if (max_batch < 1)
		max_batch = 1;
	max_batch = CIGT_MIN(max_batch, e->max_rows);
	struct cigt_workspace *ws = calloc(1, sizeof *ws);
	if (!ws)
		return NULL;
	ws->e = e;
	ws->max_batch = max_batch;
	/* The layer buffers hold a whole batch expanded into its multipath trees when that costs
	 * at most 4x the single path's room and the layer budget (then every expert runs once per
	 * batch under any dial), and at least one sample's whole tree; the per-row arrays
	 * follow. */
	const int64_t single = (int64_t)max_batch * e->layer_max;
	ws->cap_floats = CIGT_MAX(CIGT_MAX(single, CIGT_MIN((int64_t)max_batch * e->tree_floats,
							     CIGT_MIN(4 * single, LAYER_FLOATS))),
				  e->tree_floats);
	ws->rows_cap = (int)CIGT_MAX(CIGT_MAX(max_batch, CIGT_MIN((int64_t)max_batch * e->tree_max,
								  1 << 16)),
				     e->tree_max);
	int64_t nb = ws->rows_cap, sub = CIGT_MIN(e->sub, nb);
	ws->in = cigt_alloc_floats(ws->cap_floats);
	ws->out = cigt_alloc_floats(ws->cap_floats);
	ws->dense = cigt_alloc_floats(single);
	bool tmp_ok = true;
	for (int t = 0; t < XB_NTMP; t++)
		tmp_ok &= (ws->t[t] = cigt_alloc_floats(sub * e->op_max)) != NULL;
	ws->rchain = cigt_alloc_floats(sub * CIGT_MAX(e->rchain_max, 1));
	ws->col = cigt_alloc_floats(CIGT_MAX(e->col_max, 1));
	ws->ctmp = cigt_alloc_floats(CIGT_MAX(e->tmp_max, 1));
	ws->rpool = cigt_alloc_floats(nb * CIGT_MAX(e->router_max, 1));
	ws->rflat = cigt_alloc_floats(nb * CIGT_MAX(e->router_max, 1));
	ws->rhid = cigt_alloc_floats(nb * CIGT_MAX(e->router_max, 1));
	ws->rlog = cigt_alloc_floats(nb * CIGT_MAX_EXPERTS);
	ws->perm = malloc((size_t)nb * sizeof(int));
	ws->perm2 = malloc((size_t)nb * sizeof(int));
	ws->next = malloc((size_t)nb * sizeof(int));
	/* multipath and escalation (multipath.c) */
	const int64_t mb = max_batch;
	ws->rroute = malloc((size_t)nb * sizeof(int));
	ws->rroute2 = malloc((size_t)nb * sizeof(int));
	ws->rmain = malloc((size_t)nb);
	ws->rmain2 = malloc((size_t)nb);
	ws->rmask = malloc((size_t)nb * sizeof(uint64_t));
	ws->acc = cigt_alloc_floats(mb * e->a->nclasses);
	ws->esc_x = cigt_alloc_floats(mb * cigt_shape_size(e->a->input));
	ws->esc_probs = cigt_alloc_floats(mb * e->a->nclasses);
	ws->esc_idx = malloc((size_t)mb * sizeof(int));
	ws->esc_res = malloc((size_t)mb * sizeof(struct cigt_result));
	if (e->dnn && !(ws->dnn = cigt__dnn_stream_new(e->dnn_scratch))) {
		cigt_workspace_free(ws);
		return NULL;
	}
	if (!ws->in || !ws->out || !ws->dense || !tmp_ok || !ws->rchain || !ws->col || !ws->ctmp ||
	    !ws->rpool || !ws->rflat || !ws->rhid || !ws->rlog || !ws->perm || !ws->perm2 ||
	    !ws->next || !ws->rroute || !ws->rroute2 || !ws->rmain || !ws->rmain2 || !ws->rmask ||
	    !ws->acc || !ws->esc_x || !ws->esc_probs || !ws->esc_idx || !ws->esc_res) {
		cigt_workspace_free(ws);
		return NULL;
	}
	return ws;
}

void cigt_workspace_free(struct cigt_workspace *ws)
{
	if (!ws)
		return;
	free(ws->in);
	free(ws->out);
	free(ws->dense);
	for (int t = 0; t < XB_NTMP; t++)
		free(ws->t[t]);
	free(ws->rchain);
	free(ws->col);
	free(ws->ctmp);
	free(ws->rpool);
	free(ws->rflat);
	free(ws->rhid);
	free(ws->rlog);
	free(ws->perm);
	free(ws->perm2);
	free(ws->next);
	free(ws->rroute);
	free(ws->rroute2);
	free(ws->rmain);
	free(ws->rmain2);
	free(ws->rmask);
	free(ws->acc);
	free(ws->esc_x);
	free(ws->esc_probs);
	free(ws->esc_idx);
	free(ws->esc_res);
	cigt__dnn_stream_free(ws->dnn);
	free(ws);
}

int cigt_workspace_max_batch(const struct cigt_workspace *ws)
{
	return ws->max_batch;
}

void cigt_workspace_profile(struct cigt_workspace *ws, struct cigt_profile *prof)
{
	ws->prof = prof;
}

void cigt_workspace_set_second(struct cigt_workspace *ws, struct cigt_workspace *ws2)
{
	ws->second = ws2;
}

/* --------------------------------------------------------------- execution */

static void run_op(struct cigt_workspace *ws, const struct xop *x, int n, const float *in,
		   const float *in2, float *out)
{
	struct cigt_profile *pr = ws->prof;
	if (ws->calib && x->qslot) {
		/* The input range this conv or linear sees (calibrate.c). */
		float *lo = &ws->calib_lo[x->ql][x->qslot - 1], *hi = &ws->calib_hi[x->ql][x->qslot - 1];
		float a = *lo, b = *hi;
		for (int64_t k = 0; k < (int64_t)n * x->in_sz; k++) {
			a = in[k] < a ? in[k] : a;
			b = in[k] > b ? in[k] : b;
		}
		*lo = a, *hi = b;
	}
	if (x->dnn) {
		PROF_START(ws);
		cigt__dnn_run(x->dnn, ws->dnn, n, in, x->form.add ? in2 : NULL, out);
		PROF_END(ws, CIGT_PROF_SGEMM);
		return;
	}
	switch (x->kind) {
	case X_CONV:
		cigt_conv_forward(&x->g, n, in, x->w, x->b, x->relu, out, ws->col,
				  pr ? &pr->ns[CIGT_PROF_IM2COL] : NULL,
				  pr ? &pr->ns[CIGT_PROF_SGEMM] : NULL);
		return;
	case X_CONV_POOL:
		cigt_conv_pool_forward(&x->g, &x->pg, n, in, x->w, x->b, x->relu, out, ws->col,
				       ws->ctmp, pr ? &pr->ns[CIGT_PROF_IM2COL] : NULL,
				       pr ? &pr->ns[CIGT_PROF_SGEMM] : NULL,
				       pr ? &pr->ns[CIGT_PROF_POOL] : NULL);
		return;
	case X_LINEAR: {
		PROF_START(ws);
		cigt_linear_forward(n, x->fin, x->fout, in, x->w, x->b, x->relu, out);
		PROF_END(ws, CIGT_PROF_SGEMM);
		return;
	}
	case X_MAXPOOL:
	case X_AVGPOOL: {
		PROF_START(ws);
		if (x->kind == X_MAXPOOL)
			cigt_maxpool_forward(&x->g, n, in, out);
		else
			cigt_avgpool_forward(&x->g, n, in, out);
		PROF_END(ws, CIGT_PROF_POOL);
		return;
	}
	default:
		break;
	}
	PROF_START(ws);
	switch (x->kind) {
	case X_AFFINE:
		cigt_affine_forward((int64_t)n * x->in_sz / x->g.c, x->g.c, in, x->w, x->b, x->relu,
				    out);
		break;
	case X_RELU:
		cigt_relu_forward((int64_t)n * x->in_sz, in, out);
		break;
	case X_FLATTEN:
		cigt_hwc_to_chw(n, x->g.h, x->g.w, x->g.c, in, out);
		break;
	case X_COPY:
		if (out != in)
			memmove(out, in, (size_t)(n * x->in_sz) * sizeof(float));
		break;
	case X_ADD:
		cigt_add_forward((int64_t)n * x->out_sz, in, in2, x->relu, out);
		break;
	default:
		break;
	}
	PROF_END(ws, CIGT_PROF_ELEMENTWISE);
}

/* Runs an op chain (an expert's or a router's) on n rows of `in`, leaving its output in
 * `final`. Works through the rows `sub` samples at a time so the intermediate activations stay
 * in cache; each op reads and writes the buffers plan_buffers gave it. */
static void run_chain(struct cigt_workspace *ws, const struct xchain *ch, int n, const float *in,
		      float *final)
{
	const int sub = ws->e->sub;
	for (int s0 = 0, m; s0 < n; s0 += m) {
		m = CIGT_MIN(sub, n - s0);
		if (ws->e->dnn) /* oneDNN's primitives are per power-of-two batch */
			while (m & (m - 1))
				m &= m - 1;
		float *buf[XB_N] = {(float *)in + (int64_t)s0 * ch->in_sz,
				    final + (int64_t)s0 * ch->out_sz};
		for (int t = 0; t < XB_NTMP; t++)
			buf[XB_T0 + t] = ws->t[t];
		for (int i = 0; i < ch->nops; i++) {
			const struct xop *x = &ch->ops[i];
			if (x->kind == X_BLOCK || x->kind == X_SHORT || x->kind == X_NOP)
				continue;
			run_op(ws, x, m, buf[x->src],
			       x->kind == X_ADD || x->form.add ? buf[x->src2] : NULL, buf[x->dst]);
		}
	}
}

void cigt__run_group(struct cigt_workspace *ws, int l, int ex, int n, const float *in,
		     float *out)
{
	if (n == 0)
		return;
	run_chain(ws, &ws->e->chains[l][ex], n, in, out);
	if (ws->prof) {
		ws->prof->groups[l][ex]++;
		ws->prof->rows[l][ex] += (uint64_t)n;
	}
}

void cigt__slice_input(struct cigt_workspace *ws, const float *x, int n)
{
	const struct cigt_arch *a = ws->e->a;
	if (a->input.c > 1)
		cigt_chw_to_hwc(n, a->input.h, a->input.w, a->input.c, x, ws->in);
	else
		memcpy(ws->in, x, (size_t)n * (size_t)cigt_shape_size(a->input) * sizeof(float));
}

/* The router of layer l on n rows of layer outputs: next[i] = argmax of its logits. */
void cigt__route_rows(struct cigt_workspace *ws, int l, int n, const float *x, int *next)
{
	const struct xrouter *r = &ws->e->routers[l];
	PROF_START(ws);
	if (r->chain.nops) {
		/* The router's own ops, a few rows at a time, each slice pooled at once. */
		const int sub = ws->e->sub;
		const int64_t psz = cigt_geom_out_size(&r->pool);
		for (int s0 = 0; s0 < n; s0 += sub) {
			int m = CIGT_MIN(sub, n - s0);
			run_chain(ws, &r->chain, m, x + (int64_t)s0 * r->chain.in_sz, ws->rchain);
			cigt_avgpool_forward(&r->pool, m, ws->rchain, ws->rpool + (int64_t)s0 * psz);
		}
	} else {
		cigt_avgpool_forward(&r->pool, n, x, ws->rpool);
	}
	const float *z = ws->rpool;
	if (r->transpose) {
		cigt_hwc_to_chw(n, r->pool.oh, r->pool.ow, r->pool.c, ws->rpool, ws->rflat);
		z = ws->rflat;
	}
	cigt_linear_forward(n, r->pin, r->hidden, z, r->w1, r->b1, false, ws->rhid);
	cigt_linear_forward(n, r->hidden, r->k, ws->rhid, r->w2, r->b2, false, ws->rlog);
	for (int i = 0; i < n; i++)
		next[i] = cigt_argmax(ws->rlog + (int64_t)i * r->k, r->k);
	PROF_END(ws, CIGT_PROF_ROUTER);
}

/* Counting sort of the rows of `src` by next[] into `dst`; off[k]..off[k+1] is expert k's
 * group afterwards, and perm follows its rows. Stable, so equal routes keep their order. */
static void regroup(struct cigt_workspace *ws, int n, int k, int64_t sz, const float *src,
		    float *dst, const int *next, int *off)
{
	PROF_START(ws);
	int pos[CIGT_MAX_EXPERTS + 1] = {0};
	for (int i = 0; i < n; i++)
		pos[next[i] + 1]++;
	for (int j = 0; j < k; j++)
		pos[j + 1] += pos[j];
	memcpy(off, pos, (size_t)(k + 1) * sizeof(int));
	for (int i = 0; i < n; i++) {
		int to = pos[next[i]]++;
		memcpy(dst + (int64_t)to * sz, src + (int64_t)i * sz, (size_t)sz * sizeof(float));
		ws->perm2[to] = ws->perm[i];
	}
	int *t = ws->perm;
	ws->perm = ws->perm2;
	ws->perm2 = t;
	PROF_END(ws, CIGT_PROF_REGROUP);
}

void cigt__classify_slice(const struct cigt_engine *e, struct cigt_workspace *ws,
			  const float *x, int n, enum cigt_exec_mode mode, struct cigt_result *res,
			  float *probs, float *logits)
{
	const struct cigt_arch *a = e->a;
	const int K = a->nclasses;
	int off[CIGT_MAX_EXPERTS + 1] = {0, n};
	cigt__slice_input(ws, x, n);
	for (int i = 0; i < n; i++)
		ws->perm[i] = i;
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		const int64_t isz = cigt_shape_size(L->in), osz = cigt_shape_size(L->out);
		for (int ex = 0; ex < L->experts; ex++) {
			int cnt = off[ex + 1] - off[ex];
			for (int p = off[ex]; p < off[ex + 1]; p++)
				res[ws->perm[p]].route[l] = ex;
			if (mode == CIGT_EXEC_DENSE) {
				/* Every expert on every row; keep the rows routed here. */
				run_chain(ws, &e->chains[l][ex], n, ws->in, ws->dense);
				memcpy(ws->out + (int64_t)off[ex] * osz,
				       ws->dense + (int64_t)off[ex] * osz,
				       (size_t)((int64_t)cnt * osz) * sizeof(float));
				continue;
			}
			cigt__run_group(ws, l, ex, cnt, ws->in + (int64_t)off[ex] * isz,
					ws->out + (int64_t)off[ex] * osz);
		}
		if (L->has_router) {
			cigt__route_rows(ws, l, n, ws->out, ws->next);
			regroup(ws, n, L->router.out, osz, ws->out, ws->in, ws->next, off);
			continue;
		}
		for (int p = 0; p < n; p++) {
			int s = ws->perm[p];
			const float *lg = ws->out + (int64_t)p * K;
			res[s].cls = cigt_argmax(lg, K);
			res[s].macs = mode == CIGT_EXEC_DENSE ? a->dense_macs : a->path_macs;
			res[s].npaths = 1;
			res[s].paths = cigt__path_bit(a, res[s].route);
			res[s].escalated = false;
			if (logits)
				memcpy(logits + (int64_t)s * K, lg, (size_t)K * sizeof(float));
			if (probs)
				cigt_softmax(lg, K, probs + (int64_t)s * K);
		}
	}
	if (ws->prof)
		ws->prof->batches++;
}

int cigt_engine_classify(const struct cigt_engine *e, struct cigt_workspace *ws, const float *x,
			 int n, enum cigt_exec_mode mode, struct cigt_result *res, float *probs,
			 float *logits)
{
	if (!e || !ws || ws->e != e || n < 0 || (n > 0 && (!x || !res)))
		return CIGT_EINVAL;
	const struct cigt_arch *a = e->a;
	const int64_t isz = cigt_shape_size(a->input);
	for (int s0 = 0; s0 < n; s0 += ws->max_batch) {
		int m = CIGT_MIN(ws->max_batch, n - s0);
		cigt__classify_slice(e, ws, x + s0 * isz, m, mode, res + s0,
			       probs ? probs + (int64_t)s0 * a->nclasses : NULL,
			       logits ? logits + (int64_t)s0 * a->nclasses : NULL);
	}
	return 0;
}

int cigt_engine_run_expert(const struct cigt_engine *e, struct cigt_workspace *ws, int layer,
			   int expert, int n, const float *in, float *out, int *next)
{
	const struct cigt_arch *a = e->a;
	if (!ws || ws->e != e || layer < 0 || layer >= a->nlayers || expert < 0 ||
	    expert >= a->layers[layer].experts || n < 0 || n > ws->max_batch)
		return CIGT_EINVAL;
	if (n == 0)
		return 0;
	const struct cigt_layer_desc *L = &a->layers[layer];
	const float *src = in;
	if (layer == 0 && a->input.c > 1) {
		cigt_chw_to_hwc(n, a->input.h, a->input.w, a->input.c, in, ws->in);
		src = ws->in;
	}
	run_chain(ws, &e->chains[layer][expert], n, src, out);
	if (L->has_router && next)
		cigt__route_rows(ws, layer, n, out, next);
	return 0;
}
