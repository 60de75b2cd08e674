/* Gradient checks of the training step: every op's backward pass and the information-gain loss
 * against central finite differences in double precision, and a whole trellis step (warm-up and
 * argmax routing, dropout on; with and without a distillation teacher) against finite
 * differences of its loss; the leaf loss against hand-computed values. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/arch.h"
#include "cigt/model.h"
#include "../../src/common/util.h"
#include "../../src/nn/nn.h"
#include "../../src/train/trellis.h"

static struct cigt_rng rng;

static void fill(double *x, int64_t n, double lo, double hi)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = lo + (hi - lo) * cigt_rng_uniform(&rng);
}

static void expect_close(const char *what, int64_t i, double analytic, double numeric)
{
	double tol = 1e-6 + 1e-5 * fmax(fabs(analytic), fabs(numeric));
	cr_expect(fabs(analytic - numeric) <= tol, "%s[%lld]: analytic %.10g vs numeric %.10g",
		  what, (long long)i, analytic, numeric);
}

/* ---- per-op checks: loss = sum(r * y) for a fixed random r -------------------------------- */

typedef void (*fwd_fn)(void *ctx, const double *x, const double *theta, double *y);

static double op_loss(fwd_fn f, void *ctx, const double *x, const double *theta, const double *r,
		      double *y, int64_t ny)
{
	f(ctx, x, theta, y);
	double s = 0;
	for (int64_t i = 0; i < ny; i++)
		s += r[i] * y[i];
	return s;
}

static void check_op(const char *name, fwd_fn f, void *ctx, double *x, int64_t nx, double *theta,
		     int64_t nt, const double *dx, const double *dtheta, const double *r,
		     int64_t ny)
{
	const double h = 1e-6;
	double *y = malloc((size_t)ny * sizeof *y);
	for (int64_t i = 0; i < nx && dx; i++) {
		double keep = x[i];
		x[i] = keep + h;
		double lp = op_loss(f, ctx, x, theta, r, y, ny);
		x[i] = keep - h;
		double lm = op_loss(f, ctx, x, theta, r, y, ny);
		x[i] = keep;
		expect_close(name, i, dx[i], (lp - lm) / (2 * h));
	}
	for (int64_t i = 0; i < nt; i++) {
		double keep = theta[i];
		theta[i] = keep + h;
		double lp = op_loss(f, ctx, x, theta, r, y, ny);
		theta[i] = keep - h;
		double lm = op_loss(f, ctx, x, theta, r, y, ny);
		theta[i] = keep;
		expect_close(name, nx + i, dtheta[i], (lp - lm) / (2 * h));
	}
	free(y);
}

static void conv_fwd(void *ctx, const double *x, const double *theta, double *y)
{
	struct cigt_geom *g = ctx;
	int64_t wn = (int64_t)g->oc * cigt_geom_cols(g);
	double *col = malloc((size_t)(cigt_conv_chunk_rows(g) * cigt_geom_cols(g)) * sizeof(double));
	cigt_conv_forward_d(g, 2, x, theta, theta + wn, false, y, col, NULL, NULL);
	free(col);
}

static void check_conv(struct cigt_geom g)
{
	const int n = 2;
	int64_t nx = n * cigt_geom_in_size(&g), ny = n * cigt_geom_out_size(&g);
	int64_t wn = (int64_t)g.oc * cigt_geom_cols(&g), nt = wn + g.oc;
	double *x = malloc((size_t)nx * 8), *th = malloc((size_t)nt * 8), *r = malloc((size_t)ny * 8);
	double *dx = malloc((size_t)nx * 8), *dth = calloc((size_t)nt, 8);
	int64_t cs = cigt_conv_chunk_rows(&g) * cigt_geom_cols(&g);
	double *col = malloc((size_t)cs * 8), *dcol = malloc((size_t)cs * 8);
	fill(x, nx, -1, 1);
	fill(th, nt, -1, 1);
	fill(r, ny, -1, 1);
	cigt_conv_backward_d(&g, n, x, th, r, dth, dth + wn, dx, col, dcol);
	check_op("conv", conv_fwd, &g, x, nx, th, nt, dx, dth, r, ny);
	free(x), free(th), free(r), free(dx), free(dth), free(col), free(dcol);
}

Test(grad, conv_3x3_padded_stride1)
{
	check_conv((struct cigt_geom){.c = 2, .h = 5, .w = 4, .oc = 3, .oh = 5, .ow = 4, .kh = 3,
				      .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1});
}

Test(grad, conv_2x3_stride2_unpadded)
{
	check_conv((struct cigt_geom){.c = 3, .h = 6, .w = 7, .oc = 2, .oh = 3, .ow = 3, .kh = 2,
				      .kw = 3, .sh = 2, .sw = 2, .ph = 0, .pw = 0});
}

Test(grad, conv_pointwise)
{
	check_conv((struct cigt_geom){.c = 3, .h = 3, .w = 2, .oc = 4, .oh = 3, .ow = 2, .kh = 1,
				      .kw = 1, .sh = 1, .sw = 1});
}

struct lin_ctx {
	int n, fin, fout;
};

static void lin_fwd(void *ctx, const double *x, const double *theta, double *y)
{
	struct lin_ctx *c = ctx;
	cigt_linear_forward_d(c->n, c->fin, c->fout, x, theta, theta + c->fin * c->fout, false, y);
}

Test(grad, linear)
{
	struct lin_ctx c = {3, 5, 4};
	int64_t nx = c.n * c.fin, ny = c.n * c.fout, nt = c.fin * c.fout + c.fout;
	double x[15], th[24], r[12], dx[15], dth[24] = {0};
	fill(x, nx, -1, 1);
	fill(th, nt, -1, 1);
	fill(r, ny, -1, 1);
	cigt_linear_backward_d(c.n, c.fin, c.fout, x, th, r, dth, dth + c.fin * c.fout, dx);
	check_op("linear", lin_fwd, &c, x, nx, th, nt, dx, dth, r, ny);
}

struct bn_ctx {
	int64_t rows;
	int c;
	double rm[8], rv[8], sm[8], si[8];
};

static void bn_fwd(void *ctx, const double *x, const double *theta, double *y)
{
	struct bn_ctx *b = ctx;
	double rm[8], rv[8];
	memcpy(rm, b->rm, sizeof rm);
	memcpy(rv, b->rv, sizeof rv);
	cigt_batchnorm_train_forward_d(b->rows, b->c, x, theta, theta + b->c, 1e-5, 0.1, rm, rv, y,
				       b->sm, b->si);
}

static void check_bn(int64_t rows)
{
	struct bn_ctx b = {.rows = rows, .c = 3};
	double x[3 * 7], th[6], r[3 * 7], dx[3 * 7], dth[6] = {0}, y[3 * 7];
	fill(x, rows * 3, -2, 2);
	fill(th, 6, 0.5, 1.5);
	fill(r, rows * 3, -1, 1);
	fill(b.rm, 3, -0.2, 0.2);
	fill(b.rv, 3, 0.5, 1.5);
	bn_fwd(&b, x, th, y);
	cigt_batchnorm_backward_d(rows, 3, x, r, th, b.sm, b.si, dth, dth + 3, dx);
	check_op("batchnorm", bn_fwd, &b, x, rows * 3, th, 6, dx, dth, r, rows * 3);
}

Test(grad, batchnorm_batch_statistics)
{
	check_bn(7);
}

Test(grad, batchnorm_one_row_uses_running_statistics)
{
	check_bn(1);
}

Test(batchnorm, zero_and_one_rows_are_finite)
{
	double g[2] = {1, 1}, be[2] = {0, 0}, rm[2] = {0.1, 0.2}, rv[2] = {1, 2}, sm[2], si[2];
	double x[2] = {3, 4}, y[2];
	cigt_batchnorm_train_forward_d(0, 2, x, g, be, 1e-5, 0.1, rm, rv, y, sm, si);
	cigt_batchnorm_train_forward_d(1, 2, x, g, be, 1e-5, 0.1, rm, rv, y, sm, si);
	cr_expect(isfinite(y[0]) && isfinite(y[1]));
	cr_expect_float_eq(y[0], (3 - 0.1) / sqrt(1 + 1e-5), 1e-12);
	cr_expect(rm[0] == 0.1 && rv[1] == 2, "running statistics must not move on one row");
}

static struct cigt_geom pool_g = {.c = 2, .h = 5, .w = 6, .oc = 2, .oh = 3, .ow = 3, .kh = 3,
				  .kw = 2, .sh = 2, .sw = 2, .ph = 1, .pw = 1};

static void avg_fwd(void *ctx, const double *x, const double *theta, double *y)
{
	cigt_avgpool_forward_d(ctx, 2, x, y);
}

Test(grad, avgpool_padded)
{
	struct cigt_geom *g = &pool_g;
	double x[2 * 60], r[2 * 18], dx[2 * 60];
	fill(x, 120, -1, 1);
	fill(r, 36, -1, 1);
	cigt_avgpool_backward_d(g, 2, r, dx);
	check_op("avgpool", avg_fwd, g, x, 120, NULL, 0, dx, NULL, r, 36);
}

static void max_fwd(void *ctx, const double *x, const double *theta, double *y)
{
	cigt_maxpool_forward_d(ctx, 2, x, y);
}

Test(grad, maxpool_padded)
{
	struct cigt_geom *g = &pool_g;
	double x[2 * 60], r[2 * 18], dx[2 * 60], y[36];
	int32_t idx[36];
	fill(x, 120, -1, 1); /* distinct values: no ties within the finite-difference step */
	fill(r, 36, -1, 1);
	cigt_maxpool_forward_idx_d(g, 2, x, y, idx);
	cigt_maxpool_backward_d(g, 2, r, idx, dx);
	check_op("maxpool", max_fwd, g, x, 120, NULL, 0, dx, NULL, r, 36);
}

static void relu_fwd(void *ctx, const double *x, const double *theta, double *y)
{
	cigt_relu_forward_d(10, x, y);
}

Test(grad, relu)
{
	double x[10], r[10], y[10], dx[10];
	fill(x, 10, -1, 1);
	fill(r, 10, -1, 1);
	cigt_relu_forward_d(10, x, y);
	cigt_relu_backward_d(10, y, r, dx);
	check_op("relu", relu_fwd, NULL, x, 10, NULL, 0, dx, NULL, r, 10);
}

static const double drop_mask[10] = {0, 2, 2, 0, 2, 2, 2, 0, 0, 2};

static void drop_fwd(void *ctx, const double *x, const double *theta, double *y)
{
	cigt_dropout_apply_d(10, x, drop_mask, y);
}

Test(grad, dropout)
{
	double x[10], r[10], dx[10];
	fill(x, 10, -1, 1);
	fill(r, 10, -1, 1);
	cigt_dropout_apply_d(10, r, drop_mask, dx);
	check_op("dropout", drop_fwd, NULL, x, 10, NULL, 0, dx, NULL, r, 10);
}

static void flat_fwd(void *ctx, const double *x, const double *theta, double *y)
{
	cigt_hwc_to_chw_d(2, 2, 3, 2, x, y);
}

Test(grad, flatten_transpose)
{
	double x[24], r[24], dx[24];
	fill(x, 24, -1, 1);
	fill(r, 24, -1, 1);
	cigt_chw_to_hwc_d(2, 2, 3, 2, r, dx);
	check_op("flatten", flat_fwd, NULL, x, 24, NULL, 0, dx, NULL, r, 24);
}

/* ---- information gain ---------------------------------------------------------------------- */

Test(grad, information_gain)
{
	enum { M = 9, K = 3, C = 4 };
	double p[M * K], dp[M * K];
	int lab[M];
	for (int i = 0; i < M; i++) {
		double s = 0;
		for (int k = 0; k < K; k++)
			s += p[i * K + k] = 0.1 + cigt_rng_uniform(&rng);
		for (int k = 0; k < K; k++)
			p[i * K + k] /= s;
		lab[i] = (int)cigt_rng_below(&rng, C);
	}
	cigt_ig_loss(M, K, C, p, lab, 2.115, dp);
	const double h = 1e-7;
	for (int j = 0; j < M * K; j++) {
		double keep = p[j];
		p[j] = keep + h;
		double lp = cigt_ig_loss(M, K, C, p, lab, 2.115, NULL);
		p[j] = keep - h;
		double lm = cigt_ig_loss(M, K, C, p, lab, 2.115, NULL);
		p[j] = keep;
		expect_close("ig", j, dp[j], (lp - lm) / (2 * h));
	}
}

Test(loss, information_gain_known_values)
{
	/* Two classes routed perfectly to two experts: I(c;n) = log 2, H(n) = log 2. */
	double p[4] = {1, 0, 0, 1};
	int lab[2] = {0, 1};
	double ig = cigt_ig_loss(2, 2, 2, p, lab, 2.0, NULL);
	cr_expect_float_eq(ig, 2 * log(2.0), 1e-12, "IG = beta*H(n) + H(c) - H(c,n) = 2 log 2");
	/* Uniform routes carry no information: IG = I(c;n) + (beta - 1) H(n) = (beta - 1) log 2. */
	double u[4] = {0.5, 0.5, 0.5, 0.5};
	cr_expect_float_eq(cigt_ig_loss(2, 2, 2, u, lab, 1.0, NULL), 0.0, 1e-12);
	cr_expect_float_eq(cigt_ig_loss(2, 2, 2, u, lab, 3.0, NULL), 2 * log(2.0), 1e-12);
}

/* ---- whole trellis step -------------------------------------------------------------------- */

static const char *small_arch =
	"{\"name\": \"tiny\", \"input\": {\"channels\": 2, \"height\": 6, \"width\": 5},"
	" \"classes\": [\"a\", \"b\", \"c\"],"
	" \"layers\": ["
	"  {\"experts\": 1, \"ops\": [{\"type\": \"conv\", \"out\": 3, \"kernel\": 3, \"padding\": 1},"
	"     {\"type\": \"batchnorm\"}, {\"type\": \"relu\"}, {\"type\": \"maxpool\", \"kernel\": 2}],"
	"   \"router\": {\"pool\": [3, 1], \"hidden\": 4}},"
	"  {\"experts\": 2, \"ops\": [{\"type\": \"conv\", \"out\": 3, \"kernel\": [2, 1]},"
	"     {\"type\": \"batchnorm\"}, {\"type\": \"relu\"}, {\"type\": \"avgpool\", \"kernel\": 1}],"
	"   \"router\": {\"pool\": [1, 2], \"hidden\": 5}},"
	"  {\"experts\": 2, \"ops\": [{\"type\": \"conv\", \"out\": 2, \"kernel\": 1},"
	"     {\"type\": \"flatten\"}, {\"type\": \"linear\", \"out\": 4}, {\"type\": \"batchnorm\"},"
	"     {\"type\": \"relu\"}, {\"type\": \"dropout\", \"p\": 0.3}, {\"type\": \"linear\", \"out\": 3}]}"
	" ]}";

struct step_fixture {
	struct cigt_model *m;
	struct cigt_trellis_d *t;
	double *params, *work, *grads, *x;
	uint8_t labels[8];
	int n;
};

static double step_loss(struct step_fixture *f, const double *params,
			const struct cigt_trellis_opts *o, double *grads,
			struct cigt_trellis_stats *st)
{
	memcpy(f->work, params, (size_t)f->m->blob_floats * sizeof(double));
	struct cigt_rng r;
	cigt_rng_seed(&r, 99);
	cr_assert_eq(cigt_trellis_step_d(f->t, f->work, grads, f->x, f->labels, f->n, o, &r, st), 0);
	return st->loss;
}

/* Teacher posteriors for the 8 samples of the step checks (rows sum to 1, one exact zero). */
static const double teacher8[8 * 3] = {
	0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.4, 1.0, 0.0, 0.0,
	0.2, 0.5, 0.3, 0.05, 0.05, 0.9, 0.4, 0.4, 0.2, 0.25, 0.25, 0.5,
};

static void check_step_arch(const char *arch, const struct cigt_trellis_opts *o)
{
	struct step_fixture f = {.n = 8};
	char err[256];
	struct cigt_arch *a;
	cr_assert_eq(cigt_arch_parse(arch, strlen(arch), &a, err, sizeof err), 0, "%s", err);
	cr_assert_eq(cigt_model_new(a, &f.m), 0);
	cigt_model_init_random(f.m, 4, true);
	f.t = cigt_trellis_new_d(f.m, 2);
	cr_assert(f.t);
	int64_t np = f.m->blob_floats, nx = f.n * cigt_arch_input_size(f.m->arch);
	f.params = malloc((size_t)np * 8);
	f.work = malloc((size_t)np * 8);
	f.grads = calloc((size_t)np, 8);
	f.x = malloc((size_t)nx * 8);
	for (int64_t i = 0; i < np; i++)
		f.params[i] = f.m->blob[i];
	fill(f.x, nx, 0, 1);
	for (int i = 0; i < f.n; i++)
		f.labels[i] = (uint8_t)(i % 3);
	struct cigt_trellis_stats st, st2;
	double *scratch = calloc((size_t)np, 8);
	step_loss(&f, f.params, o, f.grads, &st);
	cr_assert(isfinite(st.loss));
	if (o->warmup) {
		cr_expect_eq(st.leaf_rows, 4 * f.n, "warm-up multiplies rows: 4 leaves x n");
		cr_expect_eq(st.rows[1][0], f.n);
		cr_expect_eq(st.rows[2][1], 2 * f.n);
	} else {
		int pairs = (int)lround(o->ens_share * f.n);
		cr_expect_eq(st.leaf_rows, f.n + pairs,
			     "after warm-up each row takes one path, %d of them two leaves", pairs);
		cr_expect_eq(st.rows[1][0] + st.rows[1][1], f.n);
	}
	cr_expect(st.ig[0] != 0 && st.ig[1] != 0);
	cr_expect(o->teacher ? st.distill > 0 : st.distill == 0, "distill %g", st.distill);
	const double h = 1e-6;
	int checked = 0;
	for (int i = 0; i < f.m->ntensors; i++) {
		const struct cigt_tensor_info *ti = &f.m->tensors[i];
		if (!ti->trainable)
			continue;
		for (int64_t k = 0; k < ti->numel; k++) {
			int64_t j = ti->offset + k;
			double keep = f.params[j];
			f.params[j] = keep + h;
			double lp = step_loss(&f, f.params, o, scratch, &st2);
			f.params[j] = keep - h;
			double lm = step_loss(&f, f.params, o, scratch, &st2);
			f.params[j] = keep;
			expect_close(ti->name, k, f.grads[j], (lp - lm) / (2 * h));
			checked++;
		}
	}
	cr_expect_gt(checked, 200);
	free(scratch), free(f.params), free(f.work), free(f.grads), free(f.x);
	cigt_trellis_free_d(f.t);
	cigt_model_free(f.m);
}

static void check_step(const struct cigt_trellis_opts *o)
{
	check_step_arch(small_arch, o);
}

Test(grad, trellis_step_warmup)
{
	struct cigt_trellis_opts o = {.warmup = true, .temperature = 1.7, .ig_lambda = 0.5,
				      .ig_beta = 2.115, .rho = 0.491, .dropout = true};
	check_step(&o);
}

Test(grad, trellis_step_argmax_with_rerouting)
{
	struct cigt_trellis_opts o = {.warmup = false, .temperature = 0.9, .ig_lambda = 0.5,
				      .ig_beta = 2.115, .rho = 0.491, .dropout = true};
	check_step(&o);
}

Test(grad, trellis_step_distill_warmup)
{
	struct cigt_trellis_opts o = {.warmup = true, .temperature = 1.7, .ig_lambda = 0.5,
				      .ig_beta = 2.115, .rho = 0.491, .dropout = true,
				      .teacher = teacher8, .kd_t = 6, .kd_weight = 0.5};
	check_step(&o);
}

Test(grad, trellis_step_distill_argmax_with_rerouting)
{
	struct cigt_trellis_opts o = {.warmup = false, .temperature = 0.9, .ig_lambda = 0.5,
				      .ig_beta = 2.115, .rho = 0.491, .dropout = true,
				      .teacher = teacher8, .kd_t = 2.5, .kd_weight = 0.3};
	check_step(&o);
}

Test(grad, trellis_step_paths_that_ensemble)
{
	struct cigt_trellis_opts o = {.warmup = false, .temperature = 0.9, .ig_lambda = 0.5,
				      .ig_beta = 2.115, .rho = 0.491, .dropout = true,
				      .ens_share = 0.5, .ens_weight = 0.7};
	check_step(&o);
}

Test(grad, trellis_step_paths_that_ensemble_distilled)
{
	struct cigt_trellis_opts o = {.warmup = false, .temperature = 0.9, .ig_lambda = 0.5,
				      .ig_beta = 2.115, .rho = 0.491, .dropout = true,
				      .teacher = teacher8, .kd_t = 3, .kd_weight = 0.4,
				      .ens_share = 1, .ens_weight = 1};
	check_step(&o);
}

Test(grad, trellis_step_paths_that_ensemble_ignored_in_warmup)
{
	struct cigt_trellis_opts o = {.warmup = true, .temperature = 1.7, .ig_lambda = 0.5,
				      .ig_beta = 2.115, .rho = 0.491, .dropout = true,
				      .ens_share = 1, .ens_weight = 1};
	check_step(&o);
}

Test(grad, trellis_step_label_smoothing_with_everything)
{
	struct cigt_trellis_opts o = {.warmup = false, .temperature = 0.9, .ig_lambda = 0.5,
				      .ig_beta = 2.115, .rho = 0.491, .dropout = true,
				      .teacher = teacher8, .kd_t = 3, .kd_weight = 0.4,
				      .ens_share = 0.5, .ens_weight = 0.6, .label_smoothing = 0.15};
	check_step(&o);
}

Test(grad, trellis_step_label_smoothing_warmup)
{
	struct cigt_trellis_opts o = {.warmup = true, .temperature = 1.7, .ig_lambda = 0.5,
				      .ig_beta = 2.115, .rho = 0.491, .dropout = true,
				      .label_smoothing = 0.1};
	check_step(&o);
}

/* ---- residual trellis ---------------------------------------------------------------------- */

/* 3x8x8 input, K = [1, 2, 2]. Layer 0: a block with an identity shortcut at the start of the
 * chain (its input gradient is not needed), then a router with its own op chain (a strided conv,
 * batch norm, ReLU and a residual block without the final ReLU). Layer 1: a strided block with a
 * 1x1-conv + BN shortcut starting the chain (both branches' input gradients summed into the
 * layer's), a pre-activation block (batch norm and ReLU first, identity shortcut, no ReLU after
 * the add) and a separate ReLU. Layer 2: a block whose main branch ends in ReLU + max pool,
 * global average pooling and a linear. */
static const char *res_arch =
	"{\"name\":\"resgrad\",\"input\":{\"channels\":3,\"height\":8,\"width\":8},"
	"\"classes\":[\"a\",\"b\",\"c\"],\"layers\":["
	"{\"experts\":1,\"ops\":["
	"{\"type\":\"residual\",\"main\":[{\"type\":\"conv\",\"out\":3,\"kernel\":3,\"padding\":1},"
	"{\"type\":\"batchnorm\"}]},"
	"{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"padding\":1,\"bias\":false},"
	"{\"type\":\"batchnorm\"},{\"type\":\"relu\"}],"
	"\"router\":{\"ops\":[{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"stride\":2,\"padding\":1},"
	"{\"type\":\"batchnorm\"},{\"type\":\"relu\"},"
	"{\"type\":\"residual\",\"main\":[{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"padding\":1}],"
	"\"relu\":false}],\"pool\":2,\"hidden\":4}},"
	"{\"experts\":2,\"ops\":["
	"{\"type\":\"residual\",\"main\":[{\"type\":\"conv\",\"out\":5,\"kernel\":3,\"stride\":2,"
	"\"padding\":1,\"bias\":false},{\"type\":\"batchnorm\"},{\"type\":\"relu\"},"
	"{\"type\":\"conv\",\"out\":5,\"kernel\":3,\"padding\":1,\"bias\":false},"
	"{\"type\":\"batchnorm\"}],\"shortcut\":[{\"type\":\"conv\",\"out\":5,\"kernel\":1,"
	"\"stride\":2,\"bias\":false},{\"type\":\"batchnorm\"}]},"
	"{\"type\":\"residual\",\"main\":[{\"type\":\"batchnorm\"},{\"type\":\"relu\"},"
	"{\"type\":\"conv\",\"out\":5,\"kernel\":3,\"padding\":1}],\"relu\":false},"
	"{\"type\":\"relu\"}],"
	"\"router\":{\"pool\":[2,1],\"hidden\":5}},"
	"{\"experts\":2,\"ops\":["
	"{\"type\":\"residual\",\"main\":[{\"type\":\"conv\",\"out\":5,\"kernel\":3,\"padding\":1},"
	"{\"type\":\"batchnorm\"},{\"type\":\"relu\"},{\"type\":\"maxpool\",\"kernel\":3,"
	"\"stride\":1,\"padding\":1}]},"
	"{\"type\":\"globalavgpool\"},{\"type\":\"linear\",\"out\":3}]}]}";

Test(grad, residual_trellis_step_warmup)
{
	struct cigt_trellis_opts o = {.warmup = true, .temperature = 1.7, .ig_lambda = 0.5,
				      .ig_beta = 2.115, .rho = 0.491, .dropout = true};
	check_step_arch(res_arch, &o);
}

Test(grad, residual_trellis_step_argmax_with_rerouting)
{
	struct cigt_trellis_opts o = {.warmup = false, .temperature = 0.9, .ig_lambda = 0.5,
				      .ig_beta = 2.115, .rho = 0.491, .dropout = true};
	check_step_arch(res_arch, &o);
}

/* The paper's CIFAR-10 ResNet-110 trellis (about 150 ops per expert, far above the 64 the
 * trainer's tables used to hold): one float step in warm-up and one in argmax mode on 4 random
 * images plan, run and give finite gradients, every trainable tensor's nonzero. */
Test(step, cifar_resnet110_trellis_trains, .timeout = 300)
{
	char err[256];
	struct cigt_arch *a = NULL;
	cr_assert_eq(cigt_arch_load(CIGT_SOURCE_ROOT "/models/cifar10_resnet110_trellis.json", &a,
				    err, sizeof err),
		     0, "%s", err);
	cr_assert_gt(a->layers[0].nops, 64);
	struct cigt_model *m;
	cr_assert_eq(cigt_model_new(a, &m), 0);
	cigt_model_init_random(m, 8, false);
	struct cigt_trellis *t = cigt_trellis_new(m, 2);
	cr_assert(t, "cigt_trellis_new refused the ResNet-110 trellis");
	const int n = 4;
	const int64_t np = m->blob_floats, nx = n * cigt_arch_input_size(m->arch);
	float *params = malloc((size_t)np * sizeof *params), *grads = calloc((size_t)np, 4);
	float *x = malloc((size_t)nx * sizeof *x);
	memcpy(params, m->blob, (size_t)np * sizeof *params);
	struct cigt_rng xr;
	cigt_rng_seed(&xr, 17);
	for (int64_t i = 0; i < nx; i++)
		x[i] = (float)cigt_rng_uniform(&xr);
	uint8_t labels[4] = {0, 3, 7, 9};
	for (int warm = 1; warm >= 0; warm--) {
		struct cigt_trellis_opts o = {.warmup = warm, .temperature = 1, .ig_lambda = 0.5,
					      .ig_beta = 2, .rho = 0.5, .dropout = true};
		struct cigt_trellis_stats st;
		struct cigt_rng r;
		cigt_rng_seed(&r, 5);
		memset(grads, 0, (size_t)np * sizeof *grads);
		cr_assert_eq(cigt_trellis_step(t, params, grads, x, labels, n, &o, &r, &st), 0);
		cr_expect(isfinite(st.loss), "loss %g", st.loss);
		cr_expect_eq(st.leaf_rows, warm ? 8 * n : n, "K = [1, 2, 4]: %lld leaf rows",
			     (long long)st.leaf_rows);
		int zero = 0;
		for (int i = 0; i < m->ntensors; i++) {
			const struct cigt_tensor_info *ti = &m->tensors[i];
			if (!ti->trainable)
				continue;
			double s = 0;
			for (int64_t k = 0; k < ti->numel; k++)
				s += fabs(grads[ti->offset + k]);
			cr_expect(isfinite(s), "%s: gradient not finite", ti->name);
			/* Argmax routing leaves the experts no row reached at zero. */
			zero += s == 0;
			if (warm)
				cr_expect(s > 0, "%s: gradient zero in warm-up", ti->name);
		}
		if (!warm)
			cr_expect_lt(zero, m->ntensors / 2, "%d tensors with zero gradient", zero);
	}
	free(params), free(grads), free(x);
	cigt_trellis_free(t);
	cigt_model_free(m);
}

/* ---- the leaf loss against hand-computed values ------------------------------------------- */

Test(loss, distillation_known_values)
{
	/* Two leaves, C = 2, T = 6, alpha = 0.5. Leaf 0: one row, z = (0, 0), label 0, teacher
	 * (1, 0): CE = log 2, KL = 1 * log(1 / (1/2)) = log 2, so the leaf contributes
	 * 0.5 log 2 + 0.5 * 36 * log 2 / 2 = 9.5 log 2, and dz = (0.5 (1/2 - 1) + 0.5 * 6/2 *
	 * (1/2 - 1), ...) = (-1, 1). Leaf 1: two rows of z = (log 3, 0), label 1, teacher
	 * (1/2, 1/2): CE = -log(1/4) = log 4; t = softmax(z / 6) = (a, 1) / (a + 1) with
	 * a = 3^(1/6); KL = 0.5 log(0.5 / t0) + 0.5 log(0.5 / t1) = log((a + 1) / 2) - log(a) / 2. */
	const double z[6] = {0, 0, log(3.0), 0, log(3.0), 0}, q[3 * 2] = {1, 0, 0.5, 0.5, 0.5, 0.5};
	const int m[2] = {1, 2}, lab[3] = {0, 1, 1}, smp[3] = {0, 1, 2};
	double dz[6];
	struct cigt_trellis_opts o = {.teacher = q, .kd_t = 6, .kd_weight = 0.5};
	struct cigt_trellis_stats st = {0};
	cr_assert_eq(cigt_trellis_leaf_loss_d(2, 2, m, z, lab, smp, &o, dz, &st), 0);
	const double a = pow(3.0, 1.0 / 6), kl1 = log((a + 1) / 2) - log(a) / 2;
	cr_expect_float_eq(st.ce, log(2.0) + log(4.0), 1e-12);
	cr_expect_float_eq(st.distill, 36 * log(2.0) / 2 + 36 * kl1 / 2, 1e-12);
	cr_expect_float_eq(st.loss, 9.5 * log(2.0) + 0.5 * log(4.0) + 0.5 * 36 * kl1 / 2, 1e-12);
	cr_expect_float_eq(dz[0], -1.0, 1e-12);
	cr_expect_float_eq(dz[1], 1.0, 1e-12);
	/* row 1 of leaf 1: (0.5 (p - y) + 0.5 * 6/2 (t - q)) / 2, p = (3/4, 1/4), y = (0, 1) */
	cr_expect_float_eq(dz[2], (0.5 * 0.75 + 1.5 * (a / (a + 1) - 0.5)) / 2, 1e-12);
	cr_expect_float_eq(dz[3], (0.5 * -0.75 + 1.5 * (1 / (a + 1) - 0.5)) / 2, 1e-12);
	cr_expect_eq(st.leaf_rows, 3);
	cr_expect_eq(st.leaf_correct, 1, "only row 0 (argmax ties go to class 0) is right");
	/* Without a teacher the same rows give the plain sum of per-leaf mean cross-entropies. */
	struct cigt_trellis_opts plain = {0};
	struct cigt_trellis_stats st2 = {0};
	cr_assert_eq(cigt_trellis_leaf_loss_d(2, 2, m, z, lab, NULL, &plain, dz, &st2), 0);
	cr_expect_float_eq(st2.loss, log(2.0) + log(4.0), 1e-12);
	cr_expect_float_eq(dz[0], -0.5, 1e-12);
	cr_expect_float_eq(dz[3], (0.25 - 1) / 2, 1e-12);
}

Test(loss, paths_that_ensemble_known_values)
{
	/* w = 0.5. Leaf a (1 row): sample 0, z = (0, 0), label 0: p = (1/2, 1/2). Leaf b (2 rows):
	 * sample 0, z = (log 3, 0), label 0: p = (3/4, 1/4); sample 1 alone, z = (0, 0), label 1.
	 * Sample 0's mean posterior of class 0 is (1/2 + 3/4) / 2 = 5/8, so
	 *   leaf a: 0.5 log 2 + 0.5 log(8/5)
	 *   leaf b: (0.5 log(4/3) + 0.5 log(8/5) + log 2) / 2.
	 * Gradients: the group term sits in both leaves (1/m: 1 + 1/2 = 3/2), d(-log qbar)/dz_r =
	 * (p_r[0] / (5/4)) (p_r - y):
	 *   a:  (0.5 + 0.5 * 3/2 * (1/2) / (5/4)) (-1/2, 1/2) = 0.8 (-1/2, 1/2) = (-0.4, 0.4)
	 *   b0: (0.5 / 2 + 0.5 * 3/2 * (3/4) / (5/4)) (-1/4, 1/4) = 0.7 (-1/4, 1/4)
	 *   b1: (p - y) / 2 = (1/4, -1/4). */
	const double z[6] = {0, 0, log(3.0), 0, 0, 0};
	const int m[2] = {1, 2}, lab[3] = {0, 0, 1}, smp[3] = {0, 0, 1};
	double dz[6];
	struct cigt_trellis_opts o = {.ens_share = 0.5, .ens_weight = 0.5};
	struct cigt_trellis_stats st = {0};
	cr_assert_eq(cigt_trellis_leaf_loss_d(2, 2, m, z, lab, smp, &o, dz, &st), 0);
	const double ce = 0.5 * log(2.0) + 0.5 * log(1.6) +
			  (0.5 * log(4.0 / 3) + 0.5 * log(1.6) + log(2.0)) / 2;
	cr_expect_float_eq(st.ce, ce, 1e-12);
	cr_expect_float_eq(st.loss, ce, 1e-12);
	const double want[6] = {-0.4, 0.4, -0.175, 0.175, 0.25, -0.25};
	for (int i = 0; i < 6; i++)
		cr_expect_float_eq(dz[i], want[i], 1e-12, "dz[%d] = %.15g", i, dz[i]);
	cr_expect_eq(st.leaf_rows, 3);
	/* In warm-up rows are never grouped: the plain per-leaf mean cross-entropy. */
	o.warmup = true;
	st = (struct cigt_trellis_stats){0};
	cr_assert_eq(cigt_trellis_leaf_loss_d(2, 2, m, z, lab, smp, &o, dz, &st), 0);
	cr_expect_float_eq(st.ce, log(2.0) + (log(4.0 / 3) + log(2.0)) / 2, 1e-12);
}

Test(loss, label_smoothing_known_values)
{
	/* eps = 0.2, C = 2: targets (0.9, 0.1) for label 0 and (0.1, 0.9) for label 1.
	 * Leaf 0: z = (0, 0), label 0: CE = -(0.9 + 0.1) log(1/2) = log 2, dz = (-0.4, 0.4).
	 * Leaf 1: z = (log 3, 0), label 1, p = (3/4, 1/4): CE = -0.1 log(3/4) - 0.9 log(1/4),
	 * dz = (0.75 - 0.1, 0.25 - 0.9) = (0.65, -0.65). */
	const double z[4] = {0, 0, log(3.0), 0};
	const int m[2] = {1, 1}, lab[2] = {0, 1};
	double dz[4];
	struct cigt_trellis_opts o = {.label_smoothing = 0.2};
	struct cigt_trellis_stats st = {0};
	cr_assert_eq(cigt_trellis_leaf_loss_d(2, 2, m, z, lab, NULL, &o, dz, &st), 0);
	const double ce = log(2.0) - 0.1 * log(0.75) - 0.9 * log(0.25);
	cr_expect_float_eq(st.ce, ce, 1e-12);
	cr_expect_float_eq(st.loss, ce, 1e-12);
	const double want[4] = {-0.4, 0.4, 0.65, -0.65};
	for (int i = 0; i < 4; i++)
		cr_expect_float_eq(dz[i], want[i], 1e-12, "dz[%d] = %.15g", i, dz[i]);
}

static void init(void)
{
	cigt_rng_seed(&rng, 12345);
}

TestSuite(grad, .init = init);
