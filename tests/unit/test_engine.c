/* The inference engine (src/engine/engine.c): batch-norm folding checked against a naive,
 * unfolded, double-precision forward pass of the spec (proto/model-format.md section 3) written
 * here; route-grouped execution checked against single-sample calls (order restored, empty
 * groups, groups of one, slicing beyond the workspace, n = 0); dense mode; MACs per sample. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/engine.h"
#include "cigt/error.h"
#include "helpers.h"
#include "engine/dnnl.h"

/* ------------------------------------------------------------------ the test architecture */

/* 3x9x7 input, K = [1, 3, 2], 4 classes. It exercises: BN folded into a conv with bias, into a
 * conv without bias and into linears (including the logits); BN that cannot be folded (after a
 * ReLU, after a pooling); avgpool with padding; non-square kernel, stride and padding; routers
 * whose pooled output is not 1x1 (channels-first flattening); a chain starting with an in-place
 * op; dropout. */
static const char *const ARCH =
	"{\"name\":\"bnfold\",\"input\":{\"channels\":3,\"height\":9,\"width\":7},"
	"\"classes\":[\"a\",\"b\",\"c\",\"d\"],\"layers\":["
	"{\"experts\":1,\"ops\":[{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"padding\":1},"
	"{\"type\":\"batchnorm\"},{\"type\":\"relu\"},{\"type\":\"maxpool\",\"kernel\":2}],"
	"\"router\":{\"pool\":2,\"hidden\":6}},"
	"{\"experts\":3,\"ops\":[{\"type\":\"conv\",\"out\":5,\"kernel\":[3,2],\"stride\":[1,2],"
	"\"padding\":[1,1],\"bias\":false},{\"type\":\"relu\"},{\"type\":\"batchnorm\"},"
	"{\"type\":\"avgpool\",\"kernel\":2,\"stride\":1,\"padding\":1},"
	"{\"type\":\"batchnorm\",\"eps\":0.001},{\"type\":\"relu\"}],"
	"\"router\":{\"pool\":[2,3],\"hidden\":6,\"bn_eps\":0.01}},"
	"{\"experts\":2,\"ops\":[{\"type\":\"relu\"},{\"type\":\"flatten\"},"
	"{\"type\":\"linear\",\"out\":7},{\"type\":\"batchnorm\"},{\"type\":\"relu\"},"
	"{\"type\":\"dropout\",\"p\":0.5},{\"type\":\"linear\",\"out\":4},{\"type\":\"batchnorm\"}]}]}";

#define SEED 7
#define NCLS 4
#define INSZ (3 * 9 * 7)

/* ------------------------------------------------------------------ naive reference forward */

static int win(int in, int k, int s, int p)
{
	return (in + 2 * p - k) / s + 1;
}

/* Runs ops[0..nops) on one sample (cur, C x H x W), straight from the spec; the result ends in
 * *cur. A residual block: the main branch on the block input, the shortcut on the block input
 * (identity when empty), their sum, then the ReLU. */
static void ref_chain(const struct cigt_op_desc *ops, int nops, const struct cigt_op_params *P,
		      double **curp, double **nxtp, size_t cap, int *Cp, int *Hp, int *Wp)
{
	double *cur = *curp, *nxt = *nxtp;
	double *blk = th_calloc(cap, sizeof *blk), *mainb = th_calloc(cap, sizeof *mainb);
	int C = *Cp, H = *Hp, W = *Wp, bC = 0, bH = 0, bW = 0, mC = 0, mH = 0, mW = 0;
	for (int i = 0; i < nops; i++) {
		const struct cigt_op_desc *op = &ops[i];
		const struct cigt_op_params *p = &P[i];
		if (op->kind == CIGT_OP_RESIDUAL) {
			memcpy(blk, cur, (size_t)(C * H * W) * sizeof *cur);
			bC = C, bH = H, bW = W;
			continue;
		}
		if (op->kind == CIGT_OP_SHORTCUT) {
			memcpy(mainb, cur, (size_t)(C * H * W) * sizeof *cur);
			mC = C, mH = H, mW = W;
			memcpy(cur, blk, (size_t)(bC * bH * bW) * sizeof *cur);
			C = bC, H = bH, W = bW;
			continue;
		}
		if (op->kind == CIGT_OP_ADD) {
			cr_assert(C == mC && H == mH && W == mW, "op %d: branches of %dx%dx%d and "
				  "%dx%dx%d", i, mC, mH, mW, C, H, W);
			for (int k = 0; k < C * H * W; k++) {
				double v = mainb[k] + cur[k];
				cur[k] = op->relu && v < 0 ? 0 : v;
			}
			continue;
		}
		int OC = C, OH = H, OW = W;
		switch (op->kind) {
		case CIGT_OP_CONV:
			OC = op->out;
			OH = win(H, op->kh, op->sh, op->ph);
			OW = win(W, op->kw, op->sw, op->pw);
			for (int o = 0; o < OC; o++)
				for (int oy = 0; oy < OH; oy++)
					for (int ox = 0; ox < OW; ox++) {
						double acc = op->bias ? p->b[o] : 0;
						for (int c = 0; c < C; c++)
							for (int ky = 0; ky < op->kh; ky++)
								for (int kx = 0; kx < op->kw; kx++) {
									int iy = oy * op->sh - op->ph + ky;
									int ix = ox * op->sw - op->pw + kx;
									if (iy < 0 || iy >= H || ix < 0 ||
									    ix >= W)
										continue;
									acc += p->w[((o * C + c) * op->kh +
										     ky) * op->kw + kx] *
									       cur[(c * H + iy) * W + ix];
								}
						nxt[(o * OH + oy) * OW + ox] = acc;
					}
			break;
		case CIGT_OP_BATCHNORM:
			for (int c = 0; c < C; c++)
				for (int k = 0; k < H * W; k++)
					nxt[c * H * W + k] =
						(cur[c * H * W + k] - p->mean[c]) /
							sqrt((double)p->var[c] + (double)op->eps) *
							p->gamma[c] +
						p->beta[c];
			break;
		case CIGT_OP_RELU:
			for (int k = 0; k < C * H * W; k++)
				nxt[k] = cur[k] > 0 ? cur[k] : 0;
			break;
		case CIGT_OP_MAXPOOL:
		case CIGT_OP_AVGPOOL: {
			bool mx = op->kind == CIGT_OP_MAXPOOL;
			OH = win(H, op->kh, op->sh, op->ph);
			OW = win(W, op->kw, op->sw, op->pw);
			for (int c = 0; c < C; c++)
				for (int oy = 0; oy < OH; oy++)
					for (int ox = 0; ox < OW; ox++) {
						double acc = mx ? -INFINITY : 0;
						for (int ky = 0; ky < op->kh; ky++)
							for (int kx = 0; kx < op->kw; kx++) {
								int iy = oy * op->sh - op->ph + ky;
								int ix = ox * op->sw - op->pw + kx;
								if (iy < 0 || iy >= H || ix < 0 || ix >= W)
									continue;
								double v = cur[(c * H + iy) * W + ix];
								acc = mx ? fmax(acc, v) : acc + v;
							}
						nxt[(c * OH + oy) * OW + ox] =
							mx ? acc : acc / (op->kh * op->kw);
					}
			break;
		}
		case CIGT_OP_FLATTEN:
		case CIGT_OP_DROPOUT:
			/* NCHW memory is already the flattened order; dropout is identity. */
			memcpy(nxt, cur, (size_t)(C * H * W) * sizeof *cur);
			if (op->kind == CIGT_OP_FLATTEN)
				OC = C * H * W, OH = OW = 1;
			break;
		case CIGT_OP_GLOBALAVGPOOL:
			OH = OW = 1;
			for (int c = 0; c < C; c++) {
				double acc = 0;
				for (int k = 0; k < H * W; k++)
					acc += cur[c * H * W + k];
				nxt[c] = acc / (H * W);
			}
			break;
		case CIGT_OP_RESIDUAL:
		case CIGT_OP_SHORTCUT:
		case CIGT_OP_ADD:
			break; /* handled above */
		case CIGT_OP_LINEAR: {
			int fin = C * H * W;
			OC = op->out, OH = OW = 1;
			for (int o = 0; o < OC; o++) {
				double acc = op->bias ? p->b[o] : 0;
				for (int k = 0; k < fin; k++)
					acc += (double)p->w[(size_t)o * fin + k] * cur[k];
				nxt[o] = acc;
			}
			break;
		}
		}
		cr_assert(OC == op->outshape.c && OH == op->outshape.h && OW == op->outshape.w,
			  "op %d: reference shape %dx%dx%d, parser %dx%dx%d", i,
			  OC, OH, OW, op->outshape.c, op->outshape.h, op->outshape.w);
		C = OC, H = OH, W = OW;
		double *t = cur;
		cur = nxt, nxt = t;
	}
	*curp = cur, *nxtp = nxt;
	*Cp = C, *Hp = H, *Wp = W;
	free(blk), free(mainb);
}

/* One sample, NCHW, double precision, straight from the spec. x: C*H*W values. Writes the
 * logits and the route; *margin receives the smallest top-1 minus top-2 router logit gap. */
static void ref_forward_collect(const struct cigt_model *m, const float *x, double *logits,
				int *route, double *margin, int collect_layer, double *collect)
{
	const struct cigt_arch *a = m->arch;
	size_t cap = 1 << 18;
	double *cur = th_calloc(cap, sizeof *cur), *nxt = th_calloc(cap, sizeof *nxt);
	int C = a->input.c, H = a->input.h, W = a->input.w, ex = 0;
	for (int i = 0; i < C * H * W; i++)
		cur[i] = x[i];
	*margin = INFINITY;
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		route[l] = ex;
		ref_chain(L->ops, L->nops, &m->ops[l][ex * L->nops], &cur, &nxt, cap, &C, &H, &W);
		if (!L->has_router)
			continue;
		const struct cigt_router_desc *rd = &L->router;
		const struct cigt_router_params *rp = &m->routers[l];
		/* The router's own ops run on a copy of the layer output. */
		double *rc = th_calloc(cap, sizeof *rc), *rn = th_calloc(cap, sizeof *rn), *lay = cur;
		int LC = C, LH = H, LW = W;
		memcpy(rc, cur, (size_t)(C * H * W) * sizeof *cur);
		ref_chain(rd->ops, rd->nops, rp->ops, &rc, &rn, cap, &C, &H, &W);
		cur = rc;
		int PH = H / rd->pool_h, PW = W / rd->pool_w, P = C * PH * PW, K = rd->out;
		double z[4096], h[4096], act[64];
		cr_assert_leq(P, 4096);
		for (int c = 0; c < C; c++)
			for (int py = 0; py < PH; py++)
				for (int px = 0; px < PW; px++) {
					double acc = 0;
					for (int ky = 0; ky < rd->pool_h; ky++)
						for (int kx = 0; kx < rd->pool_w; kx++)
							acc += cur[(c * H + py * rd->pool_h + ky) * W +
								   px * rd->pool_w + kx];
					z[(c * PH + py) * PW + px] = acc / (rd->pool_h * rd->pool_w);
				}
		for (int j = 0; j < rd->hidden; j++) {
			double acc = rp->fc1_b[j];
			for (int k = 0; k < P; k++)
				acc += (double)rp->fc1_w[(size_t)j * P + k] * z[k];
			if (l == collect_layer)
				collect[j] = acc;
			h[j] = (acc - rp->mean[j]) / sqrt((double)rp->var[j] + (double)rd->bn_eps) *
				       rp->gamma[j] +
			       rp->beta[j];
		}
		int best = 0;
		for (int k = 0; k < K; k++) {
			double acc = rp->fc2_b[k];
			for (int j = 0; j < rd->hidden; j++)
				acc += (double)rp->fc2_w[(size_t)k * rd->hidden + j] * h[j];
			act[k] = acc;
			if (acc > act[best])
				best = k;
		}
		for (int k = 0; k < K; k++)
			if (k != best && act[best] - act[k] < *margin)
				*margin = act[best] - act[k];
		ex = best;
		cur = lay;
		C = LC, H = LH, W = LW;
		free(rc), free(rn);
	}
	cr_assert(C == a->nclasses && H == 1 && W == 1);
	for (int k = 0; k < C; k++)
		logits[k] = cur[k];
	free(cur), free(nxt);
}

static void ref_forward(const struct cigt_model *m, const float *x, double *logits, int *route,
			double *margin)
{
	ref_forward_collect(m, x, logits, route, margin, -1, NULL);
}

/* ------------------------------------------------------------------ fixtures */

struct rig {
	struct cigt_model *m;
	struct cigt_engine *e;
	struct cigt_workspace *ws;
};

static float *inputs(int n, int insz, uint64_t seed);

/* Sets each router's batch-norm running statistics to those of its fc1 outputs over n samples
 * (layer by layer, as routes change), and its fc2 bias to 0, so that a random model spreads
 * samples over the experts, as a trained one does. Like make_model.py --calibrate. */
static void calibrate_routers(struct cigt_model *m, int n)
{
	const struct cigt_arch *a = m->arch;
	int insz = (int)cigt_arch_input_size(a);
	float *x = inputs(n, insz, 999);
	double logits[CIGT_MAX_CLASSES], margin, h[4096];
	int route[CIGT_MAX_LAYERS];
	for (int l = 0; l + 1 < a->nlayers; l++) {
		const struct cigt_router_desc *rd = &a->layers[l].router;
		struct cigt_router_params *rp = &m->routers[l];
		double *sum = th_calloc((size_t)rd->hidden, sizeof *sum);
		double *sq = th_calloc((size_t)rd->hidden, sizeof *sq);
		cr_assert_leq(rd->hidden, 4096);
		for (int i = 0; i < n; i++) {
			ref_forward_collect(m, x + (size_t)i * insz, logits, route, &margin, l, h);
			for (int j = 0; j < rd->hidden; j++)
				sum[j] += h[j], sq[j] += h[j] * h[j];
		}
		for (int j = 0; j < rd->hidden; j++) {
			double mu = sum[j] / n;
			rp->mean[j] = (float)mu;
			rp->var[j] = (float)fmax(sq[j] / n - mu * mu, 1e-3);
		}
		for (int k = 0; k < rd->out; k++)
			rp->fc2_b[k] = 0;
		free(sum), free(sq);
	}
	free(x);
}

static struct rig rig_new(const char *json, uint64_t seed, bool random_bn, int max_batch)
{
	struct rig r = {.m = th_model(json, seed, random_bn)};
	/* The naive forward is slow on the 28x28 reference: calibrate it on fewer samples. */
	calibrate_routers(r.m, cigt_arch_input_size(r.m->arch) > 500 ? 16 : 64);
	char err[256] = "";
	cr_assert_eq(cigt_engine_new(r.m, &r.e, err, sizeof err), 0, "%s", err);
	r.ws = cigt_workspace_new(r.e, max_batch);
	cr_assert_not_null(r.ws);
	return r;
}

/* Rebuilds the engine after the test edited the model's weights. */
static void rig_replan(struct rig *r, int max_batch)
{
	char err[256] = "";
	cigt_workspace_free(r->ws);
	cigt_engine_free(r->e);
	cr_assert_eq(cigt_engine_new(r->m, &r->e, err, sizeof err), 0, "%s", err);
	r->ws = cigt_workspace_new(r->e, max_batch);
	cr_assert_not_null(r->ws);
}

static void rig_free(struct rig *r)
{
	cigt_workspace_free(r->ws);
	cigt_engine_free(r->e);
	cigt_model_free(r->m);
}

/* n inputs, each with its own offset and contrast so that random routers spread them. */
static float *inputs(int n, int insz, uint64_t seed)
{
	float *x = th_calloc((size_t)n * insz, sizeof *x);
	struct th_rng g = {seed};
	for (int i = 0; i < n; i++) {
		double off = th_uniform(&g, -1.5, 1.5), amp = th_uniform(&g, 0.1, 2.0);
		for (int k = 0; k < insz; k++)
			x[(size_t)i * insz + k] = (float)(off + amp * th_uniform(&g, -1, 1));
	}
	return x;
}

struct run {
	struct cigt_result *res;
	float *logits, *probs;
};

static struct run classify(const struct rig *r, struct cigt_workspace *ws, const float *x, int n,
			   enum cigt_exec_mode mode)
{
	int K = r->m->arch->nclasses;
	struct run o = {th_calloc((size_t)n, sizeof *o.res), th_calloc((size_t)n * K, 4),
			th_calloc((size_t)n * K, 4)};
	cr_assert_eq(cigt_engine_classify(r->e, ws, x, n, mode, o.res, o.probs, o.logits), 0);
	return o;
}

/* One call per sample, through a workspace of max_batch 1. */
static struct run classify_singly(const struct rig *r, const float *x, int n)
{
	int K = r->m->arch->nclasses, insz = (int)cigt_arch_input_size(r->m->arch);
	struct cigt_workspace *ws1 = cigt_workspace_new(r->e, 1);
	cr_assert_not_null(ws1);
	struct run o = {th_calloc((size_t)n, sizeof *o.res), th_calloc((size_t)n * K, 4),
			th_calloc((size_t)n * K, 4)};
	for (int i = 0; i < n; i++)
		cr_assert_eq(cigt_engine_classify(r->e, ws1, x + (size_t)i * insz, 1,
						  CIGT_EXEC_ROUTED, o.res + i, o.probs + (size_t)i * K,
						  o.logits + (size_t)i * K),
			     0);
	cigt_workspace_free(ws1);
	return o;
}

static void run_free(struct run *o)
{
	free(o->res), free(o->logits), free(o->probs);
}

/* Same classes and routes, logits within tol, sample by sample. */
static void assert_same(const struct cigt_arch *a, const struct run *got, const struct run *want,
			int n, double tol, const char *what)
{
	int K = a->nclasses;
	for (int i = 0; i < n; i++) {
		for (int l = 0; l < a->nlayers; l++)
			cr_assert_eq(got->res[i].route[l], want->res[i].route[l],
				     "%s: sample %d layer %d: expert %d, expected %d", what, i, l,
				     got->res[i].route[l], want->res[i].route[l]);
		cr_assert_eq(got->res[i].cls, want->res[i].cls, "%s: sample %d class", what, i);
		for (int k = 0; k < K; k++)
			cr_assert(fabsf(got->logits[i * K + k] - want->logits[i * K + k]) <= tol,
				  "%s: sample %d logit %d: %.8g vs %.8g", what, i, k,
				  (double)got->logits[i * K + k], (double)want->logits[i * K + k]);
	}
}

/* Number of distinct experts used at layer l. */
static int experts_used(const struct run *o, int n, int l)
{
	bool seen[CIGT_MAX_EXPERTS] = {0};
	int k = 0;
	for (int i = 0; i < n; i++) {
		k += !seen[o->res[i].route[l]];
		seen[o->res[i].route[l]] = true;
	}
	return k;
}

/* ------------------------------------------------------------------ batch-norm folding */

static void check_against_reference(struct rig *r, int n, uint64_t xseed, double tol)
{
	const struct cigt_arch *a = r->m->arch;
	int K = a->nclasses, insz = (int)cigt_arch_input_size(a), skipped = 0;
	float *x = inputs(n, insz, xseed);
	struct run o = classify(r, r->ws, x, n, CIGT_EXEC_ROUTED);
	double want[CIGT_MAX_CLASSES];
	for (int i = 0; i < n; i++) {
		int route[CIGT_MAX_LAYERS];
		double margin;
		ref_forward(r->m, x + (size_t)i * insz, want, route, &margin);
		if (margin < 1e-4) { /* a near-tie: float and double may legitimately disagree */
			skipped++;
			continue;
		}
		for (int l = 0; l < a->nlayers; l++)
			cr_assert_eq(o.res[i].route[l], route[l],
				     "sample %d layer %d: engine expert %d, reference %d", i, l,
				     o.res[i].route[l], route[l]);
		int best = 0;
		for (int k = 0; k < K; k++) {
			cr_assert(fabs(o.logits[i * K + k] - want[k]) <= tol,
				  "sample %d logit %d: engine %.8g, reference %.8g", i, k,
				  (double)o.logits[i * K + k], want[k]);
			if (want[k] > want[best])
				best = k;
		}
		cr_assert_eq(o.res[i].cls, best, "sample %d class", i);
	}
	cr_assert_leq(skipped, n / 20, "%d of %d samples had near-tied routers", skipped, n);
	for (int l = 1; l < a->nlayers; l++)
		cr_assert_geq(experts_used(&o, n, l), 2, "layer %d: every sample took one expert", l);
	run_free(&o);
	free(x);
}

Test(bn_folding, random_bn_model_matches_unfolded_reference)
{
	struct rig r = rig_new(ARCH, SEED, true, 64);
	check_against_reference(&r, 64, 101, 1e-4);
	rig_free(&r);
}

Test(bn_folding, identity_bn_model_matches_unfolded_reference)
{
	struct rig r = rig_new(ARCH, SEED + 1, false, 64);
	check_against_reference(&r, 40, 102, 1e-4);
	rig_free(&r);
}

Test(bn_folding, batchnorm_after_flatten_of_one_channel_conv)
{
	/* conv to 1 channel, flatten (a no-op in memory), then a batchnorm over the 9 flattened
	 * features: it cannot be folded into the 1-output conv. */
	const char *arch = "{\"name\":\"flatbn\",\"input\":{\"channels\":2,\"height\":5,\"width\":5},"
			   "\"classes\":[\"a\",\"b\",\"c\"],\"layers\":[{\"experts\":1,\"ops\":["
			   "{\"type\":\"conv\",\"out\":1,\"kernel\":3},{\"type\":\"flatten\"},"
			   "{\"type\":\"batchnorm\"},{\"type\":\"linear\",\"out\":3}]}]}";
	struct rig r = rig_new(arch, 3, true, 8);
	int insz = 2 * 5 * 5;
	float *x = inputs(8, insz, 103);
	struct run o = classify(&r, r.ws, x, 8, CIGT_EXEC_ROUTED);
	for (int i = 0; i < 8; i++) {
		double want[3], margin;
		int route[1];
		ref_forward(r.m, x + i * insz, want, route, &margin);
		th_assert_close(o.logits + i * 3, want, 3, 1e-5, 1e-5, "logits");
	}
	run_free(&o);
	free(x);
	rig_free(&r);
}

Test(bn_folding, reference_architecture_matches_unfolded_reference)
{
	char err[256];
	struct cigt_arch *a = NULL;
	cr_assert_eq(cigt_arch_load(CIGT_REFERENCE_ARCH, &a, err, sizeof err), 0, "%s", err);
	char *json = cigt_arch_to_json(a);
	cigt_arch_free(a);
	struct rig r = rig_new(json, 11, true, 16);
	free(json);
	int n = 12, K = 10, insz = 28 * 28;
	float *x = inputs(n, insz, 104);
	struct run o = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	for (int i = 0; i < n; i++) {
		double want[10], margin;
		int route[3];
		ref_forward(r.m, x + i * insz, want, route, &margin);
		if (margin < 1e-4)
			continue;
		for (int l = 0; l < 3; l++)
			cr_assert_eq(o.res[i].route[l], route[l], "sample %d layer %d", i, l);
		th_assert_close(o.logits + i * K, want, K, 1e-4, 1e-4, "reference logits");
		cr_assert_eq(o.res[i].macs, 5749632);
	}
	run_free(&o);
	free(x);
	rig_free(&r);
}

Test(bn_folding, implied_flatten_copy_only_expert_and_uneven_router_pool)
{
	/* L0 conv stride 2 with padding; router pool 3 on a 4x4 map (the last row and column are
	 * left out); L1 experts that only hold a dropout (a copy); a router pooling [4, 1] (a 3x1x4
	 * input to fc1, flattened channels-first); L2 a pointwise conv, batch norm folded into it,
	 * then a linear on the 2x4x4 map with flattening implied. */
	const char *arch =
		"{\"name\":\"implied\",\"input\":{\"channels\":2,\"height\":7,\"width\":6},"
		"\"classes\":[\"a\",\"b\",\"c\"],\"layers\":["
		"{\"experts\":1,\"ops\":[{\"type\":\"conv\",\"out\":3,\"kernel\":2,\"stride\":2,"
		"\"padding\":1}],\"router\":{\"pool\":3,\"hidden\":4}},"
		"{\"experts\":2,\"ops\":[{\"type\":\"dropout\",\"p\":0.1}],"
		"\"router\":{\"pool\":[4,1],\"hidden\":5}},"
		"{\"experts\":3,\"ops\":[{\"type\":\"conv\",\"out\":2,\"kernel\":1},"
		"{\"type\":\"batchnorm\"},{\"type\":\"linear\",\"out\":3}]}]}";
	struct rig r = rig_new(arch, 9, true, 32);
	check_against_reference(&r, 32, 105, 1e-4);
	rig_free(&r);
}

/* ------------------------------------------------------------------ regrouping */

Test(regroup, batch_results_come_back_in_request_order)
{
	/* 150 samples: groups larger than the engine's 64-sample pass through an op chain. */
	struct rig r = rig_new(ARCH, SEED, true, 256);
	const struct cigt_arch *a = r.m->arch;
	int n = 150;
	float *x = inputs(n, INSZ, 201);
	struct run b = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	struct run s = classify_singly(&r, x, n);
	/* The batch really was regrouped: routes are not already in sorted order. */
	bool unsorted = false;
	for (int i = 1; i < n; i++)
		unsorted |= b.res[i].route[1] < b.res[i - 1].route[1];
	cr_assert(unsorted, "test inputs do not exercise regrouping");
	cr_assert_geq(experts_used(&b, n, 1), 3);
	cr_assert_geq(experts_used(&b, n, 2), 2);
	assert_same(a, &b, &s, n, 1e-5, "batch vs single");
	for (int i = 0; i < n * NCLS; i++)
		cr_assert(fabsf(b.probs[i] - s.probs[i]) <= 1e-6);
	run_free(&b), run_free(&s);
	free(x);
	rig_free(&r);
}

Test(regroup, probabilities_are_softmax_of_logits_and_class_is_argmax)
{
	struct rig r = rig_new(ARCH, SEED, true, 16);
	float *x = inputs(16, INSZ, 202);
	struct run o = classify(&r, r.ws, x, 16, CIGT_EXEC_ROUTED);
	for (int i = 0; i < 16; i++) {
		double want[NCLS], mx = -INFINITY, sum = 0;
		int best = 0;
		for (int k = 0; k < NCLS; k++) {
			mx = fmax(mx, o.logits[i * NCLS + k]);
			if (o.logits[i * NCLS + k] > o.logits[i * NCLS + best])
				best = k;
		}
		for (int k = 0; k < NCLS; k++)
			sum += want[k] = exp(o.logits[i * NCLS + k] - mx);
		for (int k = 0; k < NCLS; k++)
			want[k] /= sum;
		th_assert_close(o.probs + i * NCLS, want, NCLS, 1e-6, 1e-5, "probs");
		cr_assert_eq(o.res[i].cls, best);
		cr_assert_eq(o.res[i].route[0], 0);
	}
	/* probs and logits are optional. */
	struct cigt_result res[16];
	cr_assert_eq(cigt_engine_classify(r.e, r.ws, x, 16, CIGT_EXEC_ROUTED, res, NULL, NULL), 0);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(res[i].cls, o.res[i].cls);
	run_free(&o);
	free(x);
	rig_free(&r);
}

Test(regroup, empty_groups_when_router_sends_everything_to_one_expert)
{
	struct rig r = rig_new(ARCH, SEED, true, 64);
	const struct cigt_arch *a = r.m->arch;
	r.m->routers[0].fc2_b[2] = 1e4f; /* every sample to L1 expert 2: experts 0, 1 empty */
	r.m->routers[1].fc2_b[0] = 1e4f; /* every sample to L2 expert 0: expert 1 empty */
	rig_replan(&r, 64);
	int n = 30;
	float *x = inputs(n, INSZ, 203);
	struct run b = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	struct run s = classify_singly(&r, x, n);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(b.res[i].route[1], 2, "sample %d", i);
		cr_assert_eq(b.res[i].route[2], 0, "sample %d", i);
		double want[NCLS], margin;
		int route[3];
		ref_forward(r.m, x + i * INSZ, want, route, &margin);
		th_assert_close(b.logits + i * NCLS, want, NCLS, 1e-4, 1e-4, "logits vs reference");
	}
	assert_same(a, &b, &s, n, 1e-5, "batch vs single");
	/* The other way round: everything to L1 expert 0, L2 expert 1 (the last). */
	r.m->routers[0].fc2_b[2] = 0;
	r.m->routers[0].fc2_b[0] = 1e4f;
	r.m->routers[1].fc2_b[0] = 0;
	r.m->routers[1].fc2_b[1] = 1e4f;
	rig_replan(&r, 64);
	run_free(&b);
	b = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(b.res[i].route[1], 0);
		cr_assert_eq(b.res[i].route[2], 1);
	}
	run_free(&b), run_free(&s);
	free(x);
	rig_free(&r);
}

Test(regroup, group_of_one)
{
	struct rig r = rig_new(ARCH, SEED, true, 64);
	const struct cigt_arch *a = r.m->arch;
	int pool = 200;
	float *cand = inputs(pool, INSZ, 204);
	struct run s = classify_singly(&r, cand, pool);
	/* The rarest L1 expert that is used at all; one of its samples, the rest from others. */
	int count[3] = {0}, rare = -1;
	for (int i = 0; i < pool; i++)
		count[s.res[i].route[1]]++;
	for (int k = 0; k < 3; k++)
		if (count[k] > 0 && (rare < 0 || count[k] < count[rare]))
			rare = k;
	cr_assert(rare >= 0 && count[rare] < pool);
	int n = 0, idx[40], one = -1;
	for (int i = 0; i < pool && n < 40; i++) {
		bool is_rare = s.res[i].route[1] == rare;
		if (is_rare && one >= 0)
			continue;
		if (is_rare) {
			if (n < 10)
				continue; /* put the lone sample in the middle */
			one = n;
		}
		idx[n++] = i;
	}
	cr_assert(one >= 0 && n == 40, "could not build the batch (one %d, n %d)", one, n);
	float *x = th_calloc((size_t)n * INSZ, sizeof *x);
	for (int i = 0; i < n; i++)
		memcpy(x + (size_t)i * INSZ, cand + (size_t)idx[i] * INSZ, INSZ * sizeof *x);
	struct cigt_profile prof;
	memset(&prof, 0, sizeof prof);
	cigt_workspace_profile(r.ws, &prof);
	struct run b = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	cigt_workspace_profile(r.ws, NULL);
	cr_assert_eq(prof.groups[1][rare], 1);
	cr_assert_eq(prof.rows[1][rare], 1, "the rare expert ran %llu rows",
		     (unsigned long long)prof.rows[1][rare]);
	cr_assert_eq(prof.rows[0][0], (uint64_t)n);
	cr_assert_eq(b.res[one].route[1], rare);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(b.res[i].cls, s.res[idx[i]].cls, "sample %d", i);
		for (int l = 0; l < a->nlayers; l++)
			cr_assert_eq(b.res[i].route[l], s.res[idx[i]].route[l]);
		for (int k = 0; k < NCLS; k++)
			cr_assert(fabsf(b.logits[i * NCLS + k] - s.logits[idx[i] * NCLS + k]) <= 1e-5);
	}
	run_free(&b), run_free(&s);
	free(x), free(cand);
	rig_free(&r);
}

Test(regroup, batch_of_one_and_larger_than_workspace_is_sliced)
{
	struct rig r = rig_new(ARCH, SEED, true, 4);
	int n = 11;
	float *x = inputs(n, INSZ, 205);
	struct run b = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED); /* slices of 4, 4, 3 */
	struct run s = classify_singly(&r, x, n);
	assert_same(r.m->arch, &b, &s, n, 1e-5, "sliced vs single");
	struct cigt_workspace *big = cigt_workspace_new(r.e, 64);
	struct run w = classify(&r, big, x, n, CIGT_EXEC_ROUTED);
	assert_same(r.m->arch, &w, &s, n, 1e-5, "one slice vs single");
	cigt_workspace_free(big);
	run_free(&b), run_free(&s), run_free(&w);
	free(x);
	rig_free(&r);
}

Test(regroup, zero_and_negative_n)
{
	struct rig r = rig_new(ARCH, SEED, true, 4);
	struct cigt_result res = {.cls = -7, .macs = -7};
	cr_assert_eq(cigt_engine_classify(r.e, r.ws, NULL, 0, CIGT_EXEC_ROUTED, NULL, NULL, NULL),
		     0);
	float x[INSZ] = {0};
	cr_assert_eq(cigt_engine_classify(r.e, r.ws, x, 0, CIGT_EXEC_DENSE, &res, NULL, NULL), 0);
	cr_assert_eq(res.cls, -7, "n = 0 must not write results");
	cr_assert_eq(res.macs, -7);
	cr_assert_eq(cigt_engine_classify(r.e, r.ws, x, -1, CIGT_EXEC_ROUTED, &res, NULL, NULL),
		     CIGT_EINVAL);
	cr_assert_eq(cigt_engine_classify(r.e, r.ws, NULL, 1, CIGT_EXEC_ROUTED, &res, NULL, NULL),
		     CIGT_EINVAL);
	cr_assert_eq(cigt_engine_classify(r.e, NULL, x, 1, CIGT_EXEC_ROUTED, &res, NULL, NULL),
		     CIGT_EINVAL);
	/* A workspace belongs to the engine that made it. */
	struct rig r2 = rig_new(ARCH, SEED, true, 4);
	cr_assert_eq(cigt_engine_classify(r.e, r2.ws, x, 1, CIGT_EXEC_ROUTED, &res, NULL, NULL),
		     CIGT_EINVAL);
	rig_free(&r2);
	rig_free(&r);
}

Test(regroup, dense_mode_same_predictions_dense_macs)
{
	struct rig r = rig_new(ARCH, SEED, true, 128);
	const struct cigt_arch *a = r.m->arch;
	int n = 100;
	float *x = inputs(n, INSZ, 206);
	struct run routed = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	struct run dense = classify(&r, r.ws, x, n, CIGT_EXEC_DENSE);
	assert_same(a, &dense, &routed, n, 1e-5, "dense vs routed");
	/* By hand: L0 conv 4*9*7*3*9 = 6804; router0 8*6 + 6*3 = 66;
	 * L1 conv 5*4*2*4*3*2 = 960; router1 10*6 + 6*2 = 72; L2 75*7 + 7*4 = 553. */
	cr_assert_eq(a->path_macs, 6804 + 66 + 960 + 72 + 553);
	cr_assert_eq(a->dense_macs, 6804 + 66 + 3 * 960 + 72 + 2 * 553);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(routed.res[i].macs, a->path_macs);
		cr_assert_eq(dense.res[i].macs, a->dense_macs);
	}
	run_free(&routed), run_free(&dense);
	free(x);
	rig_free(&r);
}

Test(regroup, dense_mode_reference_architecture_macs)
{
	char err[256];
	struct cigt_arch *a = NULL;
	cr_assert_eq(cigt_arch_load(CIGT_REFERENCE_ARCH, &a, err, sizeof err), 0, "%s", err);
	char *json = cigt_arch_to_json(a);
	cigt_arch_free(a);
	struct rig r = rig_new(json, 5, true, 8);
	free(json);
	float *x = inputs(8, 784, 207);
	struct run routed = classify(&r, r.ws, x, 8, CIGT_EXEC_ROUTED);
	struct run dense = classify(&r, r.ws, x, 8, CIGT_EXEC_DENSE);
	assert_same(r.m->arch, &dense, &routed, 8, 1e-5, "dense vs routed");
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(routed.res[i].macs, 5749632);
		cr_assert_eq(dense.res[i].macs, 11054848);
	}
	run_free(&routed), run_free(&dense);
	free(x);
	rig_free(&r);
}

Test(regroup, node_level_run_expert_matches_classify)
{
	struct rig r = rig_new(ARCH, SEED, true, 8);
	const struct cigt_arch *a = r.m->arch;
	int n = 20;
	float *x = inputs(n, INSZ, 208);
	struct run b = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	cr_assert_eq(cigt_engine_act_size(r.e, 0), INSZ);
	cr_assert_eq(cigt_engine_act_size(r.e, a->nlayers), NCLS);
	cr_assert_eq(cigt_engine_act_size(r.e, a->nlayers + 1), -1);
	float *cur = th_calloc(4096, 4), *nxt = th_calloc(4096, 4);
	for (int i = 0; i < n; i++) {
		int ex = 0;
		memcpy(cur, x + (size_t)i * INSZ, INSZ * sizeof *cur);
		for (int l = 0; l < a->nlayers; l++) {
			int next = -1;
			cr_assert_leq(cigt_engine_act_size(r.e, l + 1), 4096);
			cr_assert_eq(b.res[i].route[l], ex, "sample %d layer %d", i, l);
			cr_assert_eq(cigt_engine_run_expert(r.e, r.ws, l, ex, 1, cur, nxt, &next), 0);
			float *t = cur;
			cur = nxt, nxt = t;
			if (a->layers[l].has_router) {
				cr_assert(next >= 0 && next < a->layers[l + 1].experts);
				ex = next;
			}
		}
		for (int k = 0; k < NCLS; k++)
			cr_assert(fabsf(cur[k] - b.logits[i * NCLS + k]) <= 1e-5);
	}
	int next;
	cr_assert_eq(cigt_engine_run_expert(r.e, r.ws, 1, 3, 1, cur, nxt, &next), CIGT_EINVAL);
	cr_assert_eq(cigt_engine_run_expert(r.e, r.ws, 0, 0, 9, x, nxt, &next), CIGT_EINVAL);
	free(cur), free(nxt);
	run_free(&b);
	free(x);
	rig_free(&r);
}

/* ------------------------------------------------------------------ residual trellises */

/* 3x12x12 input, K = [1, 2, 2], 4 classes. It exercises: an identity shortcut read where the
 * block input lies (layer 0's first block reads the chain input itself); a block ending the
 * chain (the add writes the expert's output); a strided block with a 1x1-conv + BN shortcut;
 * a pre-activation block (batch norm and ReLU first, in place on a copy, never on the block
 * input) with a shortcut of three ops (all four scratch buffers live); a block without the
 * final ReLU followed by a separate ReLU; global average pooling; a router with its own op
 * chain (a strided conv and a residual block) and a router without one. */
static const char *const RES_ARCH =
	"{\"name\":\"resmini\",\"input\":{\"channels\":3,\"height\":12,\"width\":12},"
	"\"classes\":[\"a\",\"b\",\"c\",\"d\"],\"layers\":["
	"{\"experts\":1,\"ops\":["
	"{\"type\":\"residual\",\"main\":[{\"type\":\"conv\",\"out\":3,\"kernel\":3,\"padding\":1},"
	"{\"type\":\"batchnorm\"}]},"
	"{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"padding\":1,\"bias\":false},"
	"{\"type\":\"batchnorm\"},{\"type\":\"relu\"},"
	"{\"type\":\"residual\",\"main\":[{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"padding\":1,"
	"\"bias\":false},{\"type\":\"batchnorm\"},{\"type\":\"relu\"},{\"type\":\"conv\",\"out\":4,"
	"\"kernel\":3,\"padding\":1,\"bias\":false},{\"type\":\"batchnorm\"}]}],"
	"\"router\":{\"ops\":[{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"stride\":2,\"padding\":1},"
	"{\"type\":\"batchnorm\"},{\"type\":\"relu\"},"
	"{\"type\":\"residual\",\"main\":[{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"padding\":1}],"
	"\"relu\":false}],\"pool\":3,\"hidden\":6}},"
	"{\"experts\":2,\"ops\":["
	"{\"type\":\"residual\",\"main\":[{\"type\":\"conv\",\"out\":6,\"kernel\":3,\"stride\":2,"
	"\"padding\":1,\"bias\":false},{\"type\":\"batchnorm\"},{\"type\":\"relu\"},"
	"{\"type\":\"conv\",\"out\":6,\"kernel\":3,\"padding\":1,\"bias\":false},"
	"{\"type\":\"batchnorm\"}],\"shortcut\":[{\"type\":\"conv\",\"out\":6,\"kernel\":1,"
	"\"stride\":2,\"bias\":false},{\"type\":\"batchnorm\"}]},"
	"{\"type\":\"residual\",\"main\":[{\"type\":\"batchnorm\"},{\"type\":\"relu\"},"
	"{\"type\":\"conv\",\"out\":6,\"kernel\":3,\"padding\":1}],\"shortcut\":["
	"{\"type\":\"batchnorm\"},{\"type\":\"relu\"},{\"type\":\"conv\",\"out\":6,\"kernel\":1}],"
	"\"relu\":false},{\"type\":\"relu\"}],"
	"\"router\":{\"pool\":[3,2],\"hidden\":5}},"
	"{\"experts\":2,\"ops\":["
	"{\"type\":\"residual\",\"main\":[{\"type\":\"conv\",\"out\":6,\"kernel\":3,\"padding\":1},"
	"{\"type\":\"batchnorm\"},{\"type\":\"relu\"},{\"type\":\"maxpool\",\"kernel\":3,"
	"\"stride\":1,\"padding\":1}]},"
	"{\"type\":\"globalavgpool\"},{\"type\":\"linear\",\"out\":4}]}]}";

Test(residual, random_residual_trellis_matches_unfolded_reference)
{
	struct rig r = rig_new(RES_ARCH, 21, true, 64);
	check_against_reference(&r, 64, 301, 1e-4);
	rig_free(&r);
	r = rig_new(RES_ARCH, 22, false, 64);
	check_against_reference(&r, 40, 302, 1e-4);
	rig_free(&r);
}

Test(residual, batched_groups_match_single_samples_and_dense_mode)
{
	/* 150 samples through a workspace of 64: slices, groups larger than one pass through a
	 * chain, each expert once per group; dense mode keeps the classes and counts every expert. */
	struct rig r = rig_new(RES_ARCH, 23, true, 64);
	const struct cigt_arch *a = r.m->arch;
	int n = 150, insz = (int)cigt_arch_input_size(a);
	float *x = inputs(n, insz, 303);
	struct run b = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	struct run s = classify_singly(&r, x, n);
	struct run d = classify(&r, r.ws, x, n, CIGT_EXEC_DENSE);
	assert_same(a, &b, &s, n, 1e-5, "batched vs single");
	assert_same(a, &d, &s, n, 1e-5, "dense vs single");
	for (int i = 0; i < n; i++) {
		cr_assert_eq(b.res[i].macs, a->path_macs);
		cr_assert_eq(d.res[i].macs, a->dense_macs);
	}
	run_free(&b), run_free(&s), run_free(&d);
	free(x);
	rig_free(&r);
}

Test(residual, cifar_resnet110_trellis_matches_reference, .timeout = 600)
{
	/* The authors' CIFAR-10 network at 3x32x32 with random weights: 54 blocks on a path. */
	char err[256];
	struct cigt_arch *a = NULL;
	cr_assert_eq(cigt_arch_load(CIGT_SOURCE_ROOT "/models/cifar10_resnet110_trellis.json", &a,
				    err, sizeof err),
		     0, "%s", err);
	char *json = cigt_arch_to_json(a);
	cigt_arch_free(a);
	struct rig r = {.m = th_model(json, 31, false)};
	free(json);
	calibrate_routers(r.m, 6);
	cr_assert_eq(cigt_engine_new(r.m, &r.e, err, sizeof err), 0, "%s", err);
	r.ws = cigt_workspace_new(r.e, 8);
	cr_assert_not_null(r.ws);
	int n = 4, K = 10, insz = 3 * 32 * 32;
	float *x = inputs(n, insz, 304);
	struct run o = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	for (int i = 0; i < n; i++) {
		double want[10], margin;
		int route[3];
		ref_forward(r.m, x + (size_t)i * insz, want, route, &margin);
		cr_assert_eq(o.res[i].macs, 95339424);
		if (margin < 1e-4)
			continue;
		for (int l = 0; l < 3; l++)
			cr_assert_eq(o.res[i].route[l], route[l], "sample %d layer %d", i, l);
		th_assert_close(o.logits + i * K, want, K, 1e-3, 1e-3, "ResNet-110 logits");
	}
	run_free(&o);
	free(x);
	rig_free(&r);
}

Test(residual, large_input_runs_in_slices_under_the_memory_budget)
{
	/* 3x224x224 with 16 channels at full size: a workspace asked for 256 samples holds fewer
	 * (its layer buffers would need 822 MB each) and a batch of 100 still gives every sample
	 * what it gets alone. */
	const char *arch =
		"{\"name\":\"big\",\"input\":{\"channels\":3,\"height\":224,\"width\":224},"
		"\"classes\":[\"a\",\"b\",\"c\"],\"layers\":["
		"{\"experts\":1,\"ops\":[{\"type\":\"conv\",\"out\":16,\"kernel\":3,\"padding\":1},"
		"{\"type\":\"residual\",\"main\":[{\"type\":\"conv\",\"out\":16,\"kernel\":1},"
		"{\"type\":\"batchnorm\"}]}],\"router\":{\"pool\":56,\"hidden\":4}},"
		"{\"experts\":2,\"ops\":[{\"type\":\"maxpool\",\"kernel\":4},"
		"{\"type\":\"globalavgpool\"},{\"type\":\"linear\",\"out\":3}]}]}";
	struct cigt_model *m = th_model(arch, 41, true);
	char err[256];
	struct cigt_engine *e = NULL;
	cr_assert_eq(cigt_engine_new(m, &e, err, sizeof err), 0, "%s", err);
	struct cigt_workspace *ws = cigt_workspace_new(e, 256);
	cr_assert_not_null(ws);
	int cap = cigt_workspace_max_batch(ws);
	cr_assert(cap >= 8 && cap < 256, "a 224x224 workspace holds %d samples", cap);
	int n = 100, K = 3, insz = 3 * 224 * 224;
	float *x = inputs(n, insz, 305);
	struct cigt_result *res = th_calloc((size_t)n, sizeof *res), one;
	float *lg = th_calloc((size_t)n * K, sizeof *lg), lg1[3];
	cr_assert_eq(cigt_engine_classify(e, ws, x, n, CIGT_EXEC_ROUTED, res, NULL, lg), 0);
	struct cigt_workspace *ws1 = cigt_workspace_new(e, 1);
	for (int i = 0; i < n; i += 9) {
		cr_assert_eq(cigt_engine_classify(e, ws1, x + (size_t)i * insz, 1, CIGT_EXEC_ROUTED,
						  &one, NULL, lg1),
			     0);
		cr_assert_eq(res[i].route[1], one.route[1], "sample %d", i);
		for (int k = 0; k < K; k++)
			cr_assert(fabsf(lg[i * K + k] - lg1[k]) <= 1e-5, "sample %d logit %d", i, k);
	}
	cigt_workspace_free(ws1);
	cigt_workspace_free(ws);
	cigt_engine_free(e);
	cigt_model_free(m);
	free(res), free(lg), free(x);
}

/* ------------------------------------------------------------------ the oneDNN backend */

/* The rig's engine rebuilt on a backend and precision. */
static void rig_use(struct rig *r, enum cigt_backend b, enum cigt_precision p, int max_batch)
{
	char err[256] = "";
	const struct cigt_engine_opts o = {.backend = b, .precision = p};
	cigt_workspace_free(r->ws);
	cigt_engine_free(r->e);
	cr_assert_eq(cigt_engine_new_opts(r->m, &o, &r->e, err, sizeof err), 0, "%s", err);
	r->ws = cigt_workspace_new(r->e, max_batch);
	cr_assert_not_null(r->ws);
}

Test(onednn, fp32_matches_unfolded_reference)
{
	/* Every op the engine hands to oneDNN (convs with and without bias, non-square kernels,
	 * strides and padding, linears, fused ReLU) and the ops around them, against the naive
	 * double forward, on the plain and the residual test trellises. */
	struct rig r = rig_new(ARCH, SEED, true, 64);
	rig_use(&r, CIGT_BACKEND_ONEDNN, CIGT_PRECISION_FP32, 64);
	cr_assert(strstr(cigt_engine_backend(r.e), "onednn fp32 ("), "%s", cigt_engine_backend(r.e));
	check_against_reference(&r, 64, 101, 1e-4);
	rig_free(&r);
	r = rig_new(RES_ARCH, 21, true, 64);
	rig_use(&r, CIGT_BACKEND_ONEDNN, CIGT_PRECISION_FP32, 64);
	check_against_reference(&r, 64, 301, 1e-4);
	rig_free(&r);
}

Test(onednn, odd_batches_run_in_power_of_two_slices_like_single_samples)
{
	/* 150 samples (groups of every size, none a power of two in general) through a workspace
	 * of 64, batch by batch and one by one, routed and dense: the same answers as OpenBLAS. */
	struct rig r = rig_new(RES_ARCH, 23, true, 64);
	const struct cigt_arch *a = r.m->arch;
	int n = 150, insz = (int)cigt_arch_input_size(a);
	float *x = inputs(n, insz, 303);
	struct run want = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	rig_use(&r, CIGT_BACKEND_ONEDNN, CIGT_PRECISION_FP32, 64);
	struct run b = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	struct run s = classify_singly(&r, x, n);
	struct run d = classify(&r, r.ws, x, n, CIGT_EXEC_DENSE);
	assert_same(a, &b, &want, n, 1e-4, "onednn batched vs openblas");
	assert_same(a, &s, &want, n, 1e-4, "onednn single vs openblas");
	assert_same(a, &d, &want, n, 1e-4, "onednn dense vs openblas");
	for (int i = 0; i < n; i++) {
		cr_assert_eq(b.res[i].macs, a->path_macs);
		cr_assert_eq(d.res[i].macs, a->dense_macs);
	}
	run_free(&want), run_free(&b), run_free(&s), run_free(&d);
	free(x);
	rig_free(&r);
}

/* A reduced precision's answers against fp32's: routes and classes that held, and the largest
 * logit difference (and logit) over the samples whose route held. */
static void against_fp32(const struct cigt_arch *a, const struct run *got, const struct run *want,
			 int n, int *same_route, int *same_class, double *maxdiff, double *scale)
{
	const int K = a->nclasses;
	*same_route = *same_class = 0;
	*maxdiff = *scale = 0;
	for (int i = 0; i < n; i++) {
		bool route = true;
		for (int l = 0; l < a->nlayers; l++)
			route &= got->res[i].route[l] == want->res[i].route[l];
		*same_route += route;
		*same_class += got->res[i].cls == want->res[i].cls;
		for (int k = 0; route && k < K; k++) {
			*maxdiff = fmax(*maxdiff, fabs(got->logits[i * K + k] - want->logits[i * K + k]));
			*scale = fmax(*scale, fabs(want->logits[i * K + k]));
		}
	}
}

Test(onednn, bf16_is_bf16_and_stays_close_to_fp32)
{
	/* bf16 keeps 8 bits of mantissa: logits move by about 1% of their size, not by 1e-5 (so
	 * the precision really changed), and most routes and classes hold. */
	struct rig r = rig_new(RES_ARCH, 24, true, 64);
	const struct cigt_arch *a = r.m->arch;
	int n = 200, insz = (int)cigt_arch_input_size(a);
	float *x = inputs(n, insz, 306);
	struct run want = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	rig_use(&r, CIGT_BACKEND_ONEDNN, CIGT_PRECISION_BF16, 64);
	cr_assert(strstr(cigt_engine_backend(r.e), "onednn bf16 ("), "%s", cigt_engine_backend(r.e));
	struct run got = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	int same_route, same_class;
	double maxdiff, scale;
	against_fp32(a, &got, &want, n, &same_route, &same_class, &maxdiff, &scale);
	cr_assert_geq(same_route, n * 9 / 10, "%d of %d routes held", same_route, n);
	cr_assert_geq(same_class, n * 9 / 10, "%d of %d classes held", same_class, n);
	cr_assert_gt(maxdiff, 1e-5 * scale, "bf16 logits equal fp32's: %g", maxdiff);
	cr_assert_lt(maxdiff, 0.05 * scale + 0.05, "bf16 logits off by %g (scale %g)", maxdiff,
		     scale);
	run_free(&want), run_free(&got);
	free(x);
	rig_free(&r);
}

Test(onednn, cifar_resnet110_trellis_agrees_with_openblas)
{
	char err[256];
	struct cigt_arch *a = NULL;
	cr_assert_eq(cigt_arch_load(CIGT_SOURCE_ROOT "/models/cifar10_resnet110_trellis.json", &a,
				    err, sizeof err),
		     0, "%s", err);
	char *json = cigt_arch_to_json(a);
	cigt_arch_free(a);
	struct rig r = {.m = th_model(json, 32, true)};
	free(json);
	cr_assert_eq(cigt_engine_new(r.m, &r.e, err, sizeof err), 0, "%s", err);
	r.ws = cigt_workspace_new(r.e, 16);
	int n = 12;
	float *x = inputs(n, 3 * 32 * 32, 307);
	struct run want = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	rig_use(&r, CIGT_BACKEND_ONEDNN, CIGT_PRECISION_FP32, 16);
	struct run got = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(got.res[i].macs, 95339424);
		double w[10];
		for (int k = 0; k < 10; k++)
			w[k] = want.logits[i * 10 + k];
		th_assert_close(got.logits + i * 10, w, 10, 1e-3, 1e-3, "ResNet-110 logits");
	}
	run_free(&want), run_free(&got);
	free(x);
	rig_free(&r);
}

Test(onednn, bf16_needs_the_onednn_backend)
{
	struct cigt_model *m = th_model(ARCH, SEED, true);
	struct cigt_engine *e = (struct cigt_engine *)1;
	char err[256] = "";
	const struct cigt_engine_opts o = {.backend = CIGT_BACKEND_OPENBLAS,
					   .precision = CIGT_PRECISION_BF16};
	cr_assert_eq(cigt_engine_new_opts(m, &o, &e, err, sizeof err), CIGT_EINVAL);
	cr_assert_null(e);
	cr_assert(strstr(err, "bf16 needs the onednn backend"), "%s", err);
	const struct cigt_engine_opts bad = {.backend = CIGT_BACKEND_ONEDNN,
					     .precision = (enum cigt_precision)7};
	cr_assert_eq(cigt_engine_new_opts(m, &bad, &e, err, sizeof err), CIGT_EINVAL);
	cr_assert_eq(cigt_engine_new_opts(m, NULL, &e, err, sizeof err), 0);
	cr_assert(!strncmp(cigt_engine_backend(e), "openblas fp32 (", 15), "%s",
		  cigt_engine_backend(e));
	cigt_engine_free(e);
	cigt_model_free(m);
	cr_assert_eq(cigt_backend_parse("onednn"), CIGT_BACKEND_ONEDNN);
	cr_assert_eq(cigt_precision_parse("bf16"), CIGT_PRECISION_BF16);
	cr_assert_eq(cigt_precision_parse("int4"), -1);
}

/* ------------------------------------------------------------------ int8 */

Test(int8, calibration_records_each_input_range)
{
	/* Layer 0's first conv reads the model input itself, so its range is
	 * exactly the inputs' smallest and largest value. Every expert conv and linear gets a
	 * range; routers' ops get none. */
	struct rig r = rig_new(RES_ARCH, 25, true, 64);
	const struct cigt_arch *a = r.m->arch;
	int n = 40, insz = (int)cigt_arch_input_size(a);
	float *x = inputs(n, insz, 308);
	float lo = x[0], hi = x[0];
	for (int k = 0; k < n * insz; k++)
		lo = fminf(lo, x[k]), hi = fmaxf(hi, x[k]);
	char err[256] = "";
	cr_assert_eq(cigt_engine_calibrate(r.e, r.m, x, n, "test", err, sizeof err), 0, "%s", err);
	cr_assert_eq(r.m->quant_samples, n);
	cr_assert_str_eq(r.m->quant_split, "test");
	/* (op 0 opens a residual block: op 1, its first conv, reads the block input) */
	cr_assert_eq(a->layers[0].ops[0].kind, CIGT_OP_RESIDUAL);
	cr_assert_eq(a->layers[0].ops[1].kind, CIGT_OP_CONV);
	cr_assert_float_eq(r.m->ops[0][1].in_min, lo, 0);
	cr_assert_float_eq(r.m->ops[0][1].in_max, hi, 0);
	for (int l = 0; l < a->nlayers; l++)
		for (int k = 0; k < a->layers[l].experts * a->layers[l].nops; k++) {
			const struct cigt_op_desc *d = &a->layers[l].ops[k % a->layers[l].nops];
			if (d->kind == CIGT_OP_CONV || d->kind == CIGT_OP_LINEAR)
				cr_assert(r.m->ops[l][k].in_min <= r.m->ops[l][k].in_max &&
					  r.m->ops[l][k].in_max > r.m->ops[l][k].in_min,
					  "layer %d op %d: range [%g, %g]", l, k,
					  (double)r.m->ops[l][k].in_min, (double)r.m->ops[l][k].in_max);
		}
	/* A table of it written and read back gives the same int8 answers. */
	char *q = cigt_quant_to_json(r.m);
	cr_assert_not_null(q);
	free(q);
	rig_use(&r, CIGT_BACKEND_ONEDNN, CIGT_PRECISION_BF16, 64);
	cr_assert_eq(cigt_engine_calibrate(r.e, r.m, x, n, "test", err, sizeof err), CIGT_EINVAL);
	cr_assert(strstr(err, "fp32"), "%s", err);
	free(x);
	rig_free(&r);
}

Test(int8, precision_auto_takes_the_fastest_validated)
{
	/* int8 where oneDNN has VNNI and the table says it held accuracy, bf16 where oneDNN has
	 * AVX512_BF16 and the same holds, else fp32; OpenBLAS and uncalibrated models: fp32. */
	struct rig r = rig_new(RES_ARCH, 27, true, 8);
	const int n = 16, insz = (int)cigt_arch_input_size(r.m->arch);
	float *x = inputs(n, insz, 310);
	char err[256] = "";
	cr_assert_eq(cigt_precision_auto(r.m, CIGT_BACKEND_ONEDNN), CIGT_PRECISION_FP32);
	cr_assert_eq(cigt_engine_calibrate(r.e, r.m, x, n, "test", err, sizeof err), 0, "%s", err);
	cr_assert_eq(cigt_precision_auto(r.m, CIGT_BACKEND_ONEDNN), CIGT_PRECISION_FP32,
		     "no accuracy recorded");
	const bool vnni = cigt__dnn_has_vnni(), bf16 = cigt__dnn_has_bf16();
	r.m->quant_acc[0] = 0.90, r.m->quant_acc[1] = 0.90, r.m->quant_acc[2] = 0.899;
	cr_assert_eq(cigt_precision_auto(r.m, CIGT_BACKEND_ONEDNN),
		     vnni ? CIGT_PRECISION_INT8 : bf16 ? CIGT_PRECISION_BF16 : CIGT_PRECISION_FP32);
	cr_assert_eq(cigt_precision_auto(r.m, CIGT_BACKEND_OPENBLAS), CIGT_PRECISION_FP32);
	r.m->quant_acc[2] = 0.897; /* 0.3 points below: int8 not validated */
	cr_assert_eq(cigt_precision_auto(r.m, CIGT_BACKEND_ONEDNN),
		     bf16 ? CIGT_PRECISION_BF16 : CIGT_PRECISION_FP32);
	r.m->quant_acc[1] = -1;
	cr_assert_eq(cigt_precision_auto(r.m, CIGT_BACKEND_ONEDNN), CIGT_PRECISION_FP32);
	/* An engine asked for auto is built in what auto picked, and says so. */
	r.m->quant_acc[2] = 0.90;
	rig_use(&r, CIGT_BACKEND_ONEDNN, CIGT_PRECISION_AUTO, 8);
	cr_assert_eq(cigt_engine_opts_of(r.e).precision,
		     vnni ? CIGT_PRECISION_INT8 : CIGT_PRECISION_FP32);
	free(x);
	rig_free(&r);
}

Test(int8, close_to_fp32_and_refused_without_calibration)
{
	struct rig r = rig_new(RES_ARCH, 26, true, 64);
	const struct cigt_arch *a = r.m->arch;
	int n = 200, insz = (int)cigt_arch_input_size(a);
	float *x = inputs(n, insz, 309);
	char err[256] = "";
	struct cigt_engine *e8 = NULL;
	const struct cigt_engine_opts o8 = {.backend = CIGT_BACKEND_ONEDNN,
					    .precision = CIGT_PRECISION_INT8};
	cr_assert_eq(cigt_engine_new_opts(r.m, &o8, &e8, err, sizeof err), CIGT_EINVAL);
	cr_assert(strstr(err, "cigt quantize"), "%s", err);
	struct run want = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	cr_assert_eq(cigt_engine_calibrate(r.e, r.m, x, n, "test", err, sizeof err), 0, "%s", err);
	rig_use(&r, CIGT_BACKEND_ONEDNN, CIGT_PRECISION_INT8, 64);
	cr_assert(strstr(cigt_engine_backend(r.e), "onednn int8 ("), "%s", cigt_engine_backend(r.e));
	struct run got = classify(&r, r.ws, x, n, CIGT_EXEC_ROUTED);
	struct run one = classify_singly(&r, x, n);
	int same_route, same_class;
	double maxdiff, scale;
	against_fp32(a, &got, &want, n, &same_route, &same_class, &maxdiff, &scale);
	cr_assert_geq(same_route, n * 9 / 10, "%d of %d routes held", same_route, n);
	cr_assert_geq(same_class, n * 9 / 10, "%d of %d classes held", same_class, n);
	cr_assert_gt(maxdiff, 1e-5 * scale, "int8 logits equal fp32's: %g", maxdiff);
	cr_assert_lt(maxdiff, 0.1 * scale + 0.1, "int8 logits off by %g (scale %g)", maxdiff, scale);
	/* Integer sums: the answer does not depend on the batch a sample ran in. */
	assert_same(a, &one, &got, n, 1e-5, "int8 single vs batched");
	run_free(&want), run_free(&got), run_free(&one);
	free(x);
	rig_free(&r);
}
