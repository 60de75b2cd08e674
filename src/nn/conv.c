/* Convolution as im2col + one sgemm per chunk of output pixels, channels-last.
 *   in  [n, h, w, c]     weight packed [oc, kh, kw, c]     out [n, oh, ow, oc]
 * A chunk of im2col rows is sized to stay in cache and multiplied as soon as it is built. */
#include <cblas.h>
#include <string.h>

#include "nn.h"
#include "../common/util.h"

void cigt_im2col(const struct cigt_geom *g, const float *in, int64_t row0, int64_t nrows,
		 float *col)
{
	const int64_t opix = (int64_t)g->oh * g->ow, cols = cigt_geom_cols(g);
	const size_t cbytes = (size_t)g->c * sizeof(float);
	for (int64_t r = 0; r < nrows; r++) {
		int64_t row = row0 + r, s = row / opix, p = row % opix;
		int oy = (int)(p / g->ow), ox = (int)(p % g->ow);
		const float *img = in + s * cigt_geom_in_size(g);
		float *dst = col + r * cols;
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

void cigt_col2im(const struct cigt_geom *g, const float *col, int64_t row0, int64_t nrows,
		 float *dx)
{
	const int64_t opix = (int64_t)g->oh * g->ow, cols = cigt_geom_cols(g);
	for (int64_t r = 0; r < nrows; r++) {
		int64_t row = row0 + r, s = row / opix, p = row % opix;
		int oy = (int)(p / g->ow), ox = (int)(p % g->ow);
		float *img = dx + s * cigt_geom_in_size(g);
		const float *src = col + r * cols;
		for (int ky = 0; ky < g->kh; ky++) {
			int iy = oy * g->sh - g->ph + ky;
			for (int kx = 0; kx < g->kw; kx++, src += g->c) {
				int ix = ox * g->sw - g->pw + kx;
				if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
					continue;
				float *d = img + ((int64_t)iy * g->w + ix) * g->c;
				for (int c = 0; c < g->c; c++)
					d[c] += src[c];
			}
		}
	}
}

void cigt_conv_pack_weight(const struct cigt_geom *g, const float *w, float *packed)
{
	for (int o = 0; o < g->oc; o++)
		for (int c = 0; c < g->c; c++)
			for (int ky = 0; ky < g->kh; ky++)
				for (int kx = 0; kx < g->kw; kx++)
					packed[(((int64_t)o * g->kh + ky) * g->kw + kx) * g->c + c] =
						w[(((int64_t)o * g->c + c) * g->kh + ky) * g->kw + kx];
}

void cigt_conv_unpack_weight(const struct cigt_geom *g, const float *packed, float *w)
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

int64_t cigt_conv_chunk_rows(const struct cigt_geom *g)
{
	/* About 512 KiB of im2col per chunk: big enough for sgemm to run near its peak, small
	 * enough to be multiplied while still in L2. */
	int64_t rows = (int64_t)(128 * 1024) / cigt_geom_cols(g);
	return CIGT_MAX(rows, 64);
}

static void bias_relu_rows(int64_t rows, int oc, const float *b, bool relu, float *out)
{
	if (!b && !relu)
		return;
	for (int64_t r = 0; r < rows; r++) {
		float *o = out + r * oc;
		if (b)
			for (int c = 0; c < oc; c++)
				o[c] += b[c];
		if (relu)
			for (int c = 0; c < oc; c++)
				o[c] = o[c] > 0.0f ? o[c] : 0.0f;
	}
}

void cigt_conv_forward(const struct cigt_geom *g, int n, const float *in, const float *w,
		       const float *b, bool relu, float *out, float *col, uint64_t *ns_im2col,
		       uint64_t *ns_gemm)
{
	const int64_t rows = (int64_t)n * g->oh * g->ow, cols = cigt_geom_cols(g);
	const bool pw = cigt_geom_is_pointwise(g);
	const int64_t chunk = pw ? rows : cigt_conv_chunk_rows(g);
	for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
		int64_t m = CIGT_MIN(chunk, rows - r0);
		const float *a = in + r0 * cols;
		uint64_t t0 = ns_im2col ? cigt_now_ns() : 0;
		if (!pw) {
			cigt_im2col(g, in, r0, m, col);
			a = col;
		}
		uint64_t t1 = ns_im2col ? cigt_now_ns() : 0;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, g->oc, (int)cols, 1.0f,
			    a, (int)cols, w, (int)cols, 0.0f, out + r0 * g->oc, g->oc);
		bias_relu_rows(m, g->oc, b, relu, out + r0 * g->oc);
		if (ns_im2col) {
			*ns_im2col += t1 - t0;
			*ns_gemm += cigt_now_ns() - t1;
		}
	}
}
