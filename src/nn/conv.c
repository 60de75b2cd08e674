/* Convolution as im2col + gemm per chunk of output pixels, channels-last, forward and backward.
 *   in  [n, h, w, c]     weight packed [oc, kh, kw, c]     out [n, oh, ow, oc]
 * A chunk of im2col rows is sized to stay in cache and multiplied as soon as it is built; the
 * backward pass rebuilds the chunks rather than keeping the whole im2col matrix. */
#include <string.h>

#include "nn.h"
#include "nn_real.h"
#include "../common/util.h"

void NN(im2col)(const struct cigt_geom *g, const real_t *in, int64_t row0, int64_t nrows,
		real_t *col)
{
	const int64_t opix = (int64_t)g->oh * g->ow, cols = cigt_geom_cols(g);
	const size_t cbytes = (size_t)g->c * sizeof(real_t);
	for (int64_t r = 0; r < nrows; r++) {
		int64_t row = row0 + r, s = row / opix, p = row % opix;
		int oy = (int)(p / g->ow), ox = (int)(p % g->ow);
		const real_t *img = in + s * cigt_geom_in_size(g);
		real_t *dst = col + r * cols;
		for (int ky = 0; ky < g->kh; ky++) {
			int iy = oy * g->sh - g->ph + ky;
			if (iy < 0 || iy >= g->h) {
				memset(dst, 0, cbytes * (size_t)g->kw);
				dst += (int64_t)g->kw * g->c;
				continue;
			}
			int ix0 = ox * g->sw - g->pw;
			if (ix0 >= 0 && ix0 + g->kw <= g->w) {
				/* The whole kernel row is inside: one contiguous copy. */
				memcpy(dst, img + ((int64_t)iy * g->w + ix0) * g->c,
				       cbytes * (size_t)g->kw);
				dst += (int64_t)g->kw * g->c;
				continue;
			}
			for (int kx = 0; kx < g->kw; kx++, dst += g->c) {
				int ix = ix0 + kx;
				if (ix < 0 || ix >= g->w)
					memset(dst, 0, cbytes);
				else
					memcpy(dst, img + ((int64_t)iy * g->w + ix) * g->c, cbytes);
			}
		}
	}
}

void NN(col2im)(const struct cigt_geom *g, const real_t *col, int64_t row0, int64_t nrows,
		real_t *dx)
{
	const int64_t opix = (int64_t)g->oh * g->ow, cols = cigt_geom_cols(g);
	for (int64_t r = 0; r < nrows; r++) {
		int64_t row = row0 + r, s = row / opix, p = row % opix;
		int oy = (int)(p / g->ow), ox = (int)(p % g->ow);
		real_t *img = dx + s * cigt_geom_in_size(g);
		const real_t *src = col + r * cols;
		for (int ky = 0; ky < g->kh; ky++) {
			int iy = oy * g->sh - g->ph + ky;
			if (iy < 0 || iy >= g->h) {
				src += (int64_t)g->kw * g->c;
				continue;
			}
			int ix0 = ox * g->sw - g->pw, kx0 = ix0 < 0 ? -ix0 : 0;
			int kx1 = ix0 + g->kw > g->w ? g->w - ix0 : g->kw;
			/* The kernel row's columns inside the image are one contiguous run of dx, as
			 * im2col copies them: one flat add, kernel positions and channels together. */
			if (kx1 > kx0) {
				real_t *restrict d = img + ((int64_t)iy * g->w + ix0 + kx0) * g->c;
				const real_t *restrict sp = src + (int64_t)kx0 * g->c;
				const int64_t len = (int64_t)(kx1 - kx0) * g->c;
				for (int64_t i = 0; i < len; i++)
					d[i] += sp[i];
			}
			src += (int64_t)g->kw * g->c;
		}
	}
}

void NN(conv_pack_weight)(const struct cigt_geom *g, const real_t *w, real_t *packed)
{
	for (int o = 0; o < g->oc; o++)
		for (int c = 0; c < g->c; c++)
			for (int ky = 0; ky < g->kh; ky++)
				for (int kx = 0; kx < g->kw; kx++)
					packed[(((int64_t)o * g->kh + ky) * g->kw + kx) * g->c + c] =
						w[(((int64_t)o * g->c + c) * g->kh + ky) * g->kw + kx];
}

void NN(conv_unpack_weight)(const struct cigt_geom *g, const real_t *packed, real_t *w)
{
	for (int o = 0; o < g->oc; o++)
		for (int c = 0; c < g->c; c++)
			for (int ky = 0; ky < g->kh; ky++)
				for (int kx = 0; kx < g->kw; kx++)
					w[(((int64_t)o * g->c + c) * g->kh + ky) * g->kw + kx] =
						packed[(((int64_t)o * g->kh + ky) * g->kw + kx) *
							       g->c +
						       c];
}

#ifndef CIGT_NN_DOUBLE
int64_t cigt_conv_chunk_rows(const struct cigt_geom *g)
{
	/* About 512 KiB of float im2col per chunk: big enough for gemm to run near its peak,
	 * small enough to be multiplied while still in L2. */
	int64_t rows = (int64_t)(128 * 1024) / cigt_geom_cols(g);
	return CIGT_MAX(rows, 64);
}

int64_t cigt_conv_pool_band_rows(const struct cigt_geom *g, const struct cigt_geom *pg)
{
	/* Whole bands of pooled rows: kh conv output rows each, several bands per gemm. */
	int64_t unit = (int64_t)pg->kh * g->ow;
	int64_t units = cigt_conv_chunk_rows(g) / unit;
	return unit * CIGT_MAX(units, 1);
}

int64_t cigt_conv_pool_tmp(const struct cigt_geom *g, const struct cigt_geom *pg)
{
	return cigt_conv_pool_band_rows(g, pg) * g->oc;
}
#endif

static void bias_relu_rows(int64_t rows, int oc, const real_t *b, bool relu, real_t *out)
{
	if (!b && !relu)
		return;
	for (int64_t r = 0; r < rows; r++) {
		real_t *o = out + r * oc;
		if (b)
			for (int c = 0; c < oc; c++)
				o[c] += b[c];
		if (relu)
			for (int c = 0; c < oc; c++)
				o[c] = o[c] > 0 ? o[c] : 0;
	}
}

void NN(conv_forward)(const struct cigt_geom *g, int n, const real_t *in, const real_t *w,
		      const real_t *b, bool relu, real_t *out, real_t *col, uint64_t *ns_im2col,
		      uint64_t *ns_gemm)
{
	const int64_t rows = (int64_t)n * g->oh * g->ow, cols = cigt_geom_cols(g);
	const bool pw = cigt_geom_is_pointwise(g);
	const int64_t chunk = pw ? rows : cigt_conv_chunk_rows(g);
	for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
		int64_t m = CIGT_MIN(chunk, rows - r0);
		const real_t *a = in + r0 * cols;
		uint64_t t0 = ns_im2col ? cigt_now_ns() : 0;
		if (!pw) {
			NN(im2col)(g, in, r0, m, col);
			a = col;
		}
		uint64_t t1 = ns_im2col ? cigt_now_ns() : 0;
		NN_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, g->oc, (int)cols, 1, a,
			(int)cols, w, (int)cols, 0, out + r0 * g->oc, g->oc);
		bias_relu_rows(m, g->oc, b, relu, out + r0 * g->oc);
		if (ns_im2col) {
			*ns_im2col += t1 - t0;
			*ns_gemm += cigt_now_ns() - t1;
		}
	}
}

void NN(conv_backward)(const struct cigt_geom *g, int n, const real_t *in, const real_t *w,
		       const real_t *dout, real_t *dw, real_t *db, real_t *dx, real_t *col,
		       real_t *dcol)
{
	const int64_t rows = (int64_t)n * g->oh * g->ow, cols = cigt_geom_cols(g);
	const bool pw = cigt_geom_is_pointwise(g);
	const int64_t chunk = pw ? rows : cigt_conv_chunk_rows(g);
	if (rows == 0)
		return;
	if (dx && !pw)
		memset(dx, 0, (size_t)(n * cigt_geom_in_size(g)) * sizeof(real_t));
	for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
		int64_t m = CIGT_MIN(chunk, rows - r0);
		const real_t *dy = dout + r0 * g->oc;
		const real_t *a = in + r0 * cols;
		if (!pw) {
			NN(im2col)(g, in, r0, m, col);
			a = col;
		}
		/* dw[oc, cols] += dy^T [oc, m] . a [m, cols] */
		NN_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, g->oc, (int)cols, (int)m, 1, dy,
			g->oc, a, (int)cols, 1, dw, (int)cols);
		if (db)
			for (int64_t r = 0; r < m; r++)
				for (int c = 0; c < g->oc; c++)
					db[c] += dy[r * g->oc + c];
		if (!dx)
			continue;
		/* dcol [m, cols] = dy [m, oc] . w [oc, cols] */
		real_t *dc = pw ? dx + r0 * cols : dcol;
		NN_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)cols, g->oc, 1, dy,
			g->oc, w, (int)cols, 0, dc, (int)cols);
		if (!pw)
			NN(col2im)(g, dcol, r0, m, dx);
	}
}

void NN(conv_pool_forward)(const struct cigt_geom *g, const struct cigt_geom *pg, int n,
			   const real_t *in, const real_t *w, const real_t *b, bool relu,
			   real_t *out, real_t *col, real_t *tmp, uint64_t *ns_im2col,
			   uint64_t *ns_gemm, uint64_t *ns_pool)
{
	const int64_t rows = (int64_t)n * g->oh * g->ow, cols = cigt_geom_cols(g);
	const bool pw = cigt_geom_is_pointwise(g);
	const int64_t chunk = cigt_conv_pool_band_rows(g, pg);
	const int64_t unit = (int64_t)pg->kh * g->ow; /* conv rows per pooled row */
	const int oc = g->oc;
	for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
		int64_t m = CIGT_MIN(chunk, rows - r0);
		const real_t *a = in + r0 * cols;
		uint64_t t0 = ns_im2col ? cigt_now_ns() : 0;
		if (!pw) {
			NN(im2col)(g, in, r0, m, col);
			a = col;
		}
		uint64_t t1 = ns_im2col ? cigt_now_ns() : 0;
		NN_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, oc, (int)cols, 1, a,
			(int)cols, w, (int)cols, 0, tmp, oc);
		bias_relu_rows(m, oc, b, relu, tmp);
		uint64_t t2 = ns_im2col ? cigt_now_ns() : 0;
		/* Each band of kh conv rows becomes one pooled row; bands never straddle samples
		 * because the conv's output height is a multiple of kh. */
		real_t *o = out + (r0 / unit) * (int64_t)pg->ow * oc;
		for (int64_t band = 0; band < m / unit; band++) {
			const real_t *src = tmp + band * unit * oc;
			for (int px = 0; px < pg->ow; px++, o += oc) {
				const real_t *p = src + (int64_t)px * pg->kw * oc;
				for (int c = 0; c < oc; c++)
					o[c] = p[c];
				for (int ky = 0; ky < pg->kh; ky++)
					for (int kx = 0; kx < pg->kw; kx++) {
						const real_t *q = p + ((int64_t)ky * g->ow + kx) * oc;
						for (int c = 0; c < oc; c++)
							o[c] = q[c] > o[c] ? q[c] : o[c];
					}
			}
		}
		if (ns_im2col) {
			*ns_im2col += t1 - t0;
			*ns_gemm += t2 - t1;
			*ns_pool += cigt_now_ns() - t2;
		}
	}
}
