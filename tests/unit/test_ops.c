/* Op kernels (src/nn/) against naive NCHW loop implementations written here from the
 * definitions in proto/model-format.md (PyTorch semantics), on awkward shapes: 1x1 inputs and
 * kernels, non-square inputs and kernels, stride 2, padding, C = 1 and C = 3, odd sizes, and a
 * convolution large enough to need several im2col chunks. The kernels work channels-last, so
 * the test converts layouts with its own loops. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/engine.h"
#include "helpers.h"
#include "nn/nn.h"

#define GUARD 1234.5f
#define NGUARD 16

/* ------------------------------------------------------------------ layout helpers */

static void nchw_to_nhwc(int n, int c, int h, int w, const float *in, float *out)
{
	for (int s = 0; s < n; s++)
		for (int ch = 0; ch < c; ch++)
			for (int y = 0; y < h; y++)
				for (int x = 0; x < w; x++)
					out[(((size_t)s * h + y) * w + x) * c + ch] =
						in[(((size_t)s * c + ch) * h + y) * w + x];
}

/* Expected NCHW (double) vs actual NHWC (float). */
static void assert_nhwc_close(int n, int c, int h, int w, const float *got, const double *want,
			      double tol, const char *what)
{
	for (int s = 0; s < n; s++)
		for (int ch = 0; ch < c; ch++)
			for (int y = 0; y < h; y++)
				for (int x = 0; x < w; x++) {
					double e = want[(((size_t)s * c + ch) * h + y) * w + x];
					float g = got[(((size_t)s * h + y) * w + x) * c + ch];
					if (!(fabs(g - e) <= tol * (1 + fabs(e))))
						cr_assert_fail("%s: sample %d channel %d (%d, %d) is "
							       "%.8g, expected %.8g",
							       what, s, ch, y, x, (double)g, e);
				}
}

static float *alloc_guarded(size_t n)
{
	float *p = th_calloc(n + NGUARD, sizeof(float));
	for (int i = 0; i < NGUARD; i++)
		p[n + (size_t)i] = GUARD;
	return p;
}

static void assert_guard(const float *p, size_t n, const char *what)
{
	for (int i = 0; i < NGUARD; i++)
		cr_assert_eq(p[n + (size_t)i], GUARD, "%s: write past the end of the buffer", what);
}

static int out_size(int in, int k, int s, int p)
{
	return (in + 2 * p - k) / s + 1;
}

/* ------------------------------------------------------------------ convolution */

struct conv_case {
	int n, c, h, w, oc, kh, kw, sh, sw, ph, pw;
	bool bias, relu;
};

/* torch.nn.Conv2d, directly: y[s,o,oy,ox] = b[o] + sum W[o,c,ky,kx] x[s,c,oy*sh-ph+ky, ...]. */
static void naive_conv(const struct conv_case *k, int oh, int ow, const float *x, const float *W,
		       const float *b, double *y)
{
	for (int s = 0; s < k->n; s++)
		for (int o = 0; o < k->oc; o++)
			for (int oy = 0; oy < oh; oy++)
				for (int ox = 0; ox < ow; ox++) {
					double acc = k->bias ? b[o] : 0.0;
					for (int c = 0; c < k->c; c++)
						for (int ky = 0; ky < k->kh; ky++)
							for (int kx = 0; kx < k->kw; kx++) {
								int iy = oy * k->sh - k->ph + ky;
								int ix = ox * k->sw - k->pw + kx;
								if (iy < 0 || iy >= k->h || ix < 0 ||
								    ix >= k->w)
									continue;
								acc += (double)W[((o * k->c + c) * k->kh + ky) *
										     k->kw +
									     kx] *
								       x[(((size_t)s * k->c + c) * k->h + iy) *
										 k->w +
									 ix];
							}
					if (k->relu && acc < 0)
						acc = 0;
					y[(((size_t)s * k->oc + o) * oh + oy) * ow + ox] = acc;
				}
}

/* Runs cigt_conv_forward on the case and compares with the naive loop; returns the number of
 * im2col chunks the kernel needed (1 on the pointwise path). */
static int64_t check_conv(struct conv_case k, bool expect_pointwise, uint64_t seed)
{
	int oh = out_size(k.h, k.kh, k.sh, k.ph), ow = out_size(k.w, k.kw, k.sw, k.pw);
	cr_assert(oh >= 1 && ow >= 1);
	struct cigt_geom g = {.c = k.c, .h = k.h, .w = k.w, .oc = k.oc, .oh = oh, .ow = ow,
			      .kh = k.kh, .kw = k.kw, .sh = k.sh, .sw = k.sw, .ph = k.ph,
			      .pw = k.pw};
	cr_assert_eq(cigt_geom_is_pointwise(&g), expect_pointwise);
	size_t nin = (size_t)k.n * k.c * k.h * k.w, nout = (size_t)k.n * k.oc * oh * ow;
	size_t cols = (size_t)k.c * k.kh * k.kw, nw = (size_t)k.oc * cols;
	float *x = th_calloc(nin, sizeof *x), *xh = th_calloc(nin, sizeof *xh);
	float *W = th_calloc(nw, sizeof *W), *packed = alloc_guarded(nw);
	float *b = th_calloc((size_t)k.oc, sizeof *b);
	double *want = th_calloc(nout, sizeof *want);
	th_fill(x, (int64_t)nin, -1, 1, seed);
	th_fill(W, (int64_t)nw, -1, 1, seed + 1);
	th_fill(b, k.oc, -1, 1, seed + 2);
	naive_conv(&k, oh, ow, x, W, b, want);
	nchw_to_nhwc(k.n, k.c, k.h, k.w, x, xh);
	cigt_conv_pack_weight(&g, W, packed);
	assert_guard(packed, nw, "packed weight");
	int64_t chunk = cigt_conv_chunk_rows(&g);
	cr_assert_geq(chunk, 1);
	size_t ncol = expect_pointwise ? 1 : (size_t)chunk * cols;
	float *col = alloc_guarded(ncol), *out = alloc_guarded(nout);
	cigt_conv_forward(&g, k.n, xh, packed, k.bias ? b : NULL, k.relu, out, col, NULL, NULL);
	assert_guard(col, ncol, "im2col scratch");
	assert_guard(out, nout, "conv output");
	assert_nhwc_close(k.n, k.oc, oh, ow, out, want, 1e-4, "conv");
	int64_t rows = (int64_t)k.n * oh * ow;
	free(x), free(xh), free(W), free(packed), free(b), free(want), free(col), free(out);
	return expect_pointwise ? 1 : (rows + chunk - 1) / chunk;
}

Test(conv, pointwise_1x1_kernel_c3)
{
	struct conv_case k = {.n = 3, .c = 3, .h = 5, .w = 7, .oc = 5, .kh = 1, .kw = 1, .sh = 1,
			      .sw = 1, .bias = true};
	check_conv(k, true, 11);
}

Test(conv, pointwise_c1_relu_no_bias)
{
	struct conv_case k = {.n = 2, .c = 1, .h = 3, .w = 4, .oc = 3, .kh = 1, .kw = 1, .sh = 1,
			      .sw = 1, .relu = true};
	check_conv(k, true, 12);
}

Test(conv, kernel_1x1_stride_2_uses_im2col)
{
	struct conv_case k = {.n = 2, .c = 1, .h = 7, .w = 6, .oc = 2, .kh = 1, .kw = 1, .sh = 2,
			      .sw = 2, .bias = true};
	check_conv(k, false, 13);
}

Test(conv, single_pixel_input_padded_3x3)
{
	struct conv_case k = {.n = 2, .c = 3, .h = 1, .w = 1, .oc = 4, .kh = 3, .kw = 3, .sh = 1,
			      .sw = 1, .ph = 1, .pw = 1, .bias = true};
	check_conv(k, false, 14);
}

Test(conv, non_square_kernel_input_stride_padding)
{
	/* 3x2 kernel, stride (2, 1), padding (1, 0) on a 7x10 input, C = 3, fused ReLU. */
	struct conv_case k = {.n = 2, .c = 3, .h = 7, .w = 10, .oc = 4, .kh = 3, .kw = 2,
			      .sh = 2, .sw = 1, .ph = 1, .pw = 0, .bias = true, .relu = true};
	check_conv(k, false, 15);
}

Test(conv, kernel_5x5_pad_2_c1_odd_input_no_bias)
{
	struct conv_case k = {.n = 3, .c = 1, .h = 9, .w = 11, .oc = 6, .kh = 5, .kw = 5,
			      .sh = 1, .sw = 1, .ph = 2, .pw = 2};
	check_conv(k, false, 16);
}

Test(conv, stride_2_padding_odd_square)
{
	struct conv_case k = {.n = 1, .c = 3, .h = 9, .w = 9, .oc = 2, .kh = 3, .kw = 3, .sh = 2,
			      .sw = 2, .ph = 1, .pw = 1, .bias = true};
	check_conv(k, false, 17);
}

Test(conv, kernel_as_large_as_padded_input)
{
	/* One output pixel whose window covers the whole padded 4x3 input. */
	struct conv_case k = {.n = 2, .c = 2, .h = 4, .w = 3, .oc = 3, .kh = 6, .kw = 5, .sh = 3,
			      .sw = 2, .ph = 1, .pw = 1, .bias = true};
	check_conv(k, false, 18);
}

Test(conv, several_im2col_chunks_crossing_samples)
{
	/* 800 columns: a chunk holds a few hundred rows, so 7 samples of 63 output pixels need
	 * several chunks, the boundaries falling inside samples and the last one partial. */
	struct conv_case k = {.n = 7, .c = 32, .h = 9, .w = 7, .oc = 8, .kh = 5, .kw = 5,
			      .sh = 1, .sw = 1, .ph = 2, .pw = 2, .bias = true, .relu = true};
	int64_t chunks = check_conv(k, false, 19);
	cr_assert_geq(chunks, 3, "the case should need at least 3 chunks, got %lld",
		      (long long)chunks);
}

Test(conv, weight_pack_order_and_unpack)
{
	struct cigt_geom g = {.c = 3, .h = 5, .w = 5, .oc = 2, .oh = 3, .ow = 4, .kh = 3,
			      .kw = 2, .sh = 1, .sw = 1};
	float W[2 * 3 * 3 * 2], P[2 * 3 * 3 * 2], U[2 * 3 * 3 * 2];
	for (int i = 0; i < 36; i++)
		W[i] = (float)i;
	cigt_conv_pack_weight(&g, W, P);
	/* packed [o][ky][kx][c] = W[o][c][ky][kx] */
	for (int o = 0; o < 2; o++)
		for (int c = 0; c < 3; c++)
			for (int ky = 0; ky < 3; ky++)
				for (int kx = 0; kx < 2; kx++)
					cr_assert_eq(P[((o * 3 + ky) * 2 + kx) * 3 + c],
						     W[((o * 3 + c) * 3 + ky) * 2 + kx]);
	cigt_conv_unpack_weight(&g, P, U);
	cr_assert_arr_eq(U, W, sizeof W);
}

/* ------------------------------------------------------------------ linear */

static void check_linear(int n, int fin, int fout, bool bias, bool relu, uint64_t seed)
{
	float *x = th_calloc((size_t)n * fin, sizeof *x), *W = th_calloc((size_t)fout * fin, 4);
	float *b = th_calloc((size_t)fout, 4), *y = alloc_guarded((size_t)n * fout);
	double *want = th_calloc((size_t)n * fout, sizeof *want);
	th_fill(x, (int64_t)n * fin, -1, 1, seed);
	th_fill(W, (int64_t)fout * fin, -1, 1, seed + 1);
	th_fill(b, fout, -1, 1, seed + 2);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < fout; j++) {
			double acc = bias ? b[j] : 0;
			for (int k = 0; k < fin; k++)
				acc += (double)W[j * fin + k] * x[i * fin + k];
			want[i * fout + j] = relu && acc < 0 ? 0 : acc;
		}
	cigt_linear_forward(n, fin, fout, x, W, bias ? b : NULL, relu, y);
	th_assert_close(y, want, (int64_t)n * fout, 1e-5, 1e-5, "linear");
	assert_guard(y, (size_t)n * fout, "linear output");
	free(x), free(W), free(b), free(y), free(want);
}

Test(linear, odd_sizes_with_bias)
{
	check_linear(5, 7, 3, true, false, 21);
}

Test(linear, one_by_one)
{
	check_linear(1, 1, 1, true, false, 22);
}

Test(linear, relu_without_bias)
{
	check_linear(4, 13, 9, false, true, 23);
}

Test(linear, zero_rows_writes_nothing)
{
	float w = 1, b = 1, y[NGUARD];
	for (int i = 0; i < NGUARD; i++)
		y[i] = GUARD;
	cigt_linear_forward(0, 1, 1, NULL, &w, &b, false, y);
	assert_guard(y, 0, "linear with n = 0");
}

/* ------------------------------------------------------------------ pooling */

struct pool_case {
	int n, c, h, w, kh, kw, sh, sw, ph, pw;
};

/* torch max_pool2d / avg_pool2d(count_include_pad=True), floor mode, written from the
 * definition: the average's divisor is the window clipped to the padded input. */
static void naive_pool(const struct pool_case *k, bool is_max, int oh, int ow, const float *x,
		       double *y)
{
	for (int s = 0; s < k->n; s++)
		for (int c = 0; c < k->c; c++)
			for (int oy = 0; oy < oh; oy++)
				for (int ox = 0; ox < ow; ox++) {
					int y0 = oy * k->sh - k->ph, x0 = ox * k->sw - k->pw;
					int y1 = y0 + k->kh, x1 = x0 + k->kw;
					if (y1 > k->h + k->ph)
						y1 = k->h + k->ph;
					if (x1 > k->w + k->pw)
						x1 = k->w + k->pw;
					double acc = is_max ? -INFINITY : 0.0;
					for (int iy = y0; iy < y1; iy++)
						for (int ix = x0; ix < x1; ix++) {
							if (iy < 0 || iy >= k->h || ix < 0 || ix >= k->w)
								continue; /* padding: 0 for avg, never max */
							double v = x[(((size_t)s * k->c + c) * k->h + iy) *
									     k->w +
								     ix];
							acc = is_max ? fmax(acc, v) : acc + v;
						}
					if (!is_max)
						acc /= (double)((y1 - y0) * (x1 - x0));
					y[(((size_t)s * k->c + c) * oh + oy) * ow + ox] = acc;
				}
}

static void check_pool(struct pool_case k, bool is_max, double lo, double hi, uint64_t seed)
{
	int oh = out_size(k.h, k.kh, k.sh, k.ph), ow = out_size(k.w, k.kw, k.sw, k.pw);
	struct cigt_geom g = {.c = k.c, .h = k.h, .w = k.w, .oc = k.c, .oh = oh, .ow = ow,
			      .kh = k.kh, .kw = k.kw, .sh = k.sh, .sw = k.sw, .ph = k.ph,
			      .pw = k.pw};
	size_t nin = (size_t)k.n * k.c * k.h * k.w, nout = (size_t)k.n * k.c * oh * ow;
	float *x = th_calloc(nin, 4), *xh = th_calloc(nin, 4), *y = alloc_guarded(nout);
	double *want = th_calloc(nout, sizeof *want);
	th_fill(x, (int64_t)nin, lo, hi, seed);
	naive_pool(&k, is_max, oh, ow, x, want);
	nchw_to_nhwc(k.n, k.c, k.h, k.w, x, xh);
	if (is_max)
		cigt_maxpool_forward(&g, k.n, xh, y);
	else
		cigt_avgpool_forward(&g, k.n, xh, y);
	assert_nhwc_close(k.n, k.c, oh, ow, y, want, 1e-6, is_max ? "maxpool" : "avgpool");
	assert_guard(y, nout, "pool output");
	free(x), free(xh), free(y), free(want);
}

Test(maxpool, kernel_2_floor_on_odd_input)
{
	/* 7x7 -> 3x3: the last row and column are dropped (floor), as in the reference L2. */
	check_pool((struct pool_case){2, 3, 7, 7, 2, 2, 2, 2, 0, 0}, true, -1, 1, 31);
}

Test(maxpool, non_square_kernel_stride_padding_negative_inputs)
{
	/* All inputs negative: a padded zero must never win the max. */
	check_pool((struct pool_case){2, 3, 6, 5, 3, 2, 2, 1, 1, 1}, true, -2, -1, 32);
}

Test(maxpool, padding_never_wins_exact)
{
	float x[4] = {-4, -3, -2, -1}, y[9];
	struct cigt_geom g = {.c = 1, .h = 2, .w = 2, .oc = 1, .oh = 3, .ow = 3, .kh = 2, .kw = 2,
			      .sh = 1, .sw = 1, .ph = 1, .pw = 1};
	cigt_maxpool_forward(&g, 1, x, y);
	const float want[9] = {-4, -3, -3, -2, -1, -1, -2, -1, -1};
	for (int i = 0; i < 9; i++)
		cr_assert_eq(y[i], want[i], "y[%d] = %g, expected %g", i, y[i], want[i]);
}

Test(maxpool, single_pixel_c1)
{
	check_pool((struct pool_case){3, 1, 1, 1, 1, 1, 1, 1, 0, 0}, true, -1, 1, 33);
}

Test(maxpool, relu_backward_fused_equals_the_two_passes)
{
	/* The trainer's fused backward of ReLU -> max pool must equal, bit for bit, the pool's
	 * backward followed by the ReLU's; overlapping windows (stride 1) make one input win
	 * several outputs, and half the inputs are negative so many winners are masked. */
	enum { N = 3, C = 4, H = 7, W = 6 };
	struct cigt_geom g = {.c = C, .h = H, .w = W, .oc = C, .oh = 6, .ow = 5, .kh = 2,
			      .kw = 2, .sh = 1, .sw = 1, .ph = 0, .pw = 0};
	const size_t nin = (size_t)N * C * H * W, nout = (size_t)N * C * 6 * 5;
	float *x = th_calloc(nin, 4), *y = th_calloc(nin, 4), *p = th_calloc(nout, 4);
	float *dout = th_calloc(nout, 4), *d1 = th_calloc(nin, 4), *d2 = th_calloc(nin, 4);
	float *fused = th_calloc(nin, 4);
	int32_t *idx = th_calloc(nout, sizeof *idx);
	th_fill(x, (int64_t)nin, -1, 1, 61);
	th_fill(dout, (int64_t)nout, -1, 1, 62);
	cigt_relu_forward((int64_t)nin, x, y);
	cigt_maxpool_forward_idx(&g, N, y, p, idx);
	cigt_maxpool_backward(&g, N, dout, idx, d1);
	cigt_relu_backward((int64_t)nin, y, d1, d2);
	cigt_maxpool_relu_backward(&g, N, dout, idx, y, fused);
	int masked = 0, passed = 0;
	for (size_t i = 0; i < nin; i++) {
		cr_assert(!memcmp(&fused[i], &d2[i], sizeof(float)), "dx[%zu] = %a, two passes %a",
			  i, fused[i], d2[i]);
		masked += d1[i] != 0 && d2[i] == 0;
		passed += d2[i] != 0;
	}
	cr_assert(masked > 0 && passed > 0, "the case exercises both (%d masked, %d passed)",
		  masked, passed);
	free(x), free(y), free(p), free(dout), free(d1), free(d2), free(fused), free(idx);
}

Test(avgpool, global_pool_non_square)
{
	check_pool((struct pool_case){2, 3, 5, 3, 5, 3, 5, 3, 0, 0}, false, -1, 1, 41);
}

Test(avgpool, padding_counts_zeros)
{
	check_pool((struct pool_case){2, 3, 5, 6, 3, 3, 2, 2, 1, 1}, false, 0, 1, 42);
}

Test(avgpool, count_include_pad_exact)
{
	/* 2x2 input of ones, kernel 3, stride 1, padding 1: every window holds 4 ones out of 9
	 * slots (divisor 9, not 4). */
	float x[4] = {1, 1, 1, 1}, y[4];
	struct cigt_geom g = {.c = 1, .h = 2, .w = 2, .oc = 1, .oh = 2, .ow = 2, .kh = 3, .kw = 3,
			      .sh = 1, .sw = 1, .ph = 1, .pw = 1};
	cigt_avgpool_forward(&g, 1, x, y);
	for (int i = 0; i < 4; i++)
		cr_assert_float_eq(y[i], 4.0f / 9.0f, 1e-7, "y[%d] = %g", i, y[i]);
}

Test(avgpool, non_square_stride_c1)
{
	check_pool((struct pool_case){3, 1, 9, 4, 3, 2, 2, 1, 1, 0}, false, -1, 1, 43);
}

/* ------------------------------------------------------------------ element-wise */

Test(affine, per_channel_scale_shift_and_relu_in_place)
{
	enum { R = 7, C = 3 };
	float x[R * C], y[R * C], s[C], t[C];
	double want[R * C], want_relu[R * C];
	th_fill(x, R * C, -2, 2, 51);
	th_fill(s, C, -1.5, 1.5, 52);
	th_fill(t, C, -0.5, 0.5, 53);
	for (int r = 0; r < R; r++)
		for (int c = 0; c < C; c++) {
			want[r * C + c] = (double)x[r * C + c] * s[c] + t[c];
			want_relu[r * C + c] = fmax(want[r * C + c], 0);
		}
	cigt_affine_forward(R, C, x, s, t, false, y);
	th_assert_close(y, want, R * C, 1e-6, 1e-6, "affine");
	cigt_affine_forward(R, C, x, s, t, true, x); /* in place */
	th_assert_close(x, want_relu, R * C, 1e-6, 1e-6, "affine + relu in place");
}

Test(relu, clamps_negatives_only)
{
	float x[5] = {-1.5f, -0.0f, 0.0f, 2.5f, -1e-30f}, y[5];
	cigt_relu_forward(5, x, y);
	const float want[5] = {0, 0, 0, 2.5f, 0};
	for (int i = 0; i < 5; i++)
		cr_assert_eq(y[i], want[i], "relu(%g) = %g", x[i], y[i]);
}

Test(layout, hwc_to_chw_and_back)
{
	enum { N = 2, H = 3, W = 5, C = 4, SZ = H * W * C };
	float in[N * SZ], chw[N * SZ], back[N * SZ];
	for (int i = 0; i < N * SZ; i++)
		in[i] = (float)i;
	cigt_hwc_to_chw(N, H, W, C, in, chw);
	for (int s = 0; s < N; s++)
		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++)
				for (int c = 0; c < C; c++)
					cr_assert_eq(chw[s * SZ + (c * H + y) * W + x],
						     in[s * SZ + (y * W + x) * C + c],
						     "sample %d (%d, %d, %d)", s, c, y, x);
	cigt_chw_to_hwc(N, H, W, C, chw, back);
	cr_assert_arr_eq(back, in, sizeof in);
}

Test(layout, chw_to_hwc_matches_naive_c3_non_square)
{
	enum { N = 3, H = 2, W = 7, C = 3, SZ = H * W * C };
	float in[N * SZ], out[N * SZ], want[N * SZ];
	th_fill(in, N * SZ, -1, 1, 61);
	nchw_to_nhwc(N, C, H, W, in, want);
	cigt_chw_to_hwc(N, H, W, C, in, out);
	cr_assert_arr_eq(out, want, sizeof out);
}

Test(layout, single_channel_and_single_pixel_are_identity)
{
	float in[6] = {1, 2, 3, 4, 5, 6}, out[6];
	cigt_hwc_to_chw(1, 2, 3, 1, in, out);
	cr_assert_arr_eq(out, in, sizeof in);
	cigt_chw_to_hwc(2, 1, 1, 3, in, out);
	cr_assert_arr_eq(out, in, sizeof in);
}

Test(argmax, lowest_index_wins_ties)
{
	const float a[] = {1, 3, 3, 2};
	cr_assert_eq(cigt_argmax(a, 4), 1);
	const float b[] = {5, 5, 5};
	cr_assert_eq(cigt_argmax(b, 3), 0);
	const float c[] = {-3, -1, -2, -1};
	cr_assert_eq(cigt_argmax(c, 4), 1);
	const float d[] = {0.0f, -0.0f};
	cr_assert_eq(cigt_argmax(d, 2), 0);
	const float e[] = {7};
	cr_assert_eq(cigt_argmax(e, 1), 0);
	const float f[] = {1, 2, 3, 4, 4};
	cr_assert_eq(cigt_argmax(f, 5), 3);
}

static void check_softmax(const float *x, int n)
{
	float p[16];
	double want[16], mx = -INFINITY, sum = 0;
	for (int i = 0; i < n; i++)
		mx = fmax(mx, x[i]);
	for (int i = 0; i < n; i++)
		sum += want[i] = exp((double)x[i] - mx);
	for (int i = 0; i < n; i++)
		want[i] /= sum;
	cigt_softmax(x, n, p);
	th_assert_close(p, want, n, 1e-7, 1e-6, "softmax");
	double total = 0;
	for (int i = 0; i < n; i++)
		total += p[i];
	cr_assert_float_eq(total, 1.0, 1e-6);
}

Test(softmax, matches_double_precision)
{
	float x[10];
	th_fill(x, 10, -5, 5, 71);
	check_softmax(x, 10);
}

Test(softmax, large_logits_do_not_overflow)
{
	const float x[4] = {1000.0f, 1001.0f, -1000.0f, 999.0f};
	check_softmax(x, 4);
	float p[4];
	cigt_softmax(x, 4, p);
	for (int i = 0; i < 4; i++)
		cr_assert(isfinite(p[i]));
	cr_assert_float_eq(p[1], 1.0 / (1.0 + exp(-1.0) + exp(-2.0)), 1e-6);
}

Test(softmax, one_class_and_equal_logits)
{
	const float one[1] = {-42.0f};
	float p[4];
	cigt_softmax(one, 1, p);
	cr_assert_eq(p[0], 1.0f);
	const float eq[4] = {3, 3, 3, 3};
	cigt_softmax(eq, 4, p);
	for (int i = 0; i < 4; i++)
		cr_assert_float_eq(p[i], 0.25f, 1e-7);
}
