/* Max and average pooling, channels-last, forward and backward: in [n, h, w, c] ->
 * out [n, oh, ow, c]. Max pooling ignores padding (it never wins; the first maximum wins a tie);
 * average pooling counts padded zeros in the divisor (PyTorch's count_include_pad), which is
 * always kh*kw in floor mode. */
#include <string.h>

#include "nn.h"
#include "nn_real.h"

/* Unpadded max pooling without recording winners: every window lies inside the input, so the
 * loops need no bounds checks and the channel loop vectorises. */
static void maxpool_unpadded(const struct cigt_geom *g, int n, const real_t *in, real_t *out)
{
	const int C = g->c;
	const int64_t rowstride = (int64_t)g->w * C;
	for (int s = 0; s < n; s++) {
		const real_t *img = in + (int64_t)s * cigt_geom_in_size(g);
		real_t *o = out + (int64_t)s * cigt_geom_out_size(g);
		for (int oy = 0; oy < g->oh; oy++)
			for (int ox = 0; ox < g->ow; ox++, o += C) {
				const real_t *p = img + (int64_t)oy * g->sh * rowstride +
						  (int64_t)ox * g->sw * C;
				for (int c = 0; c < C; c++)
					o[c] = p[c];
				for (int ky = 0; ky < g->kh; ky++)
					for (int kx = 0; kx < g->kw; kx++) {
						const real_t *q = p + ky * rowstride + (int64_t)kx * C;
						for (int c = 0; c < C; c++)
							o[c] = q[c] > o[c] ? q[c] : o[c];
					}
			}
	}
}

/* Shared body of the max pooling forward passes; idx may be NULL. */
static void maxpool(const struct cigt_geom *g, int n, const real_t *in, real_t *out,
		    int32_t *idx)
{
	const int C = g->c;
	if (!idx && g->ph == 0 && g->pw == 0) {
		maxpool_unpadded(g, n, in, out);
		return;
	}
	for (int s = 0; s < n; s++) {
		const int64_t base = (int64_t)s * cigt_geom_in_size(g);
		const real_t *img = in + base;
		real_t *o = out + (int64_t)s * cigt_geom_out_size(g);
		int32_t *ix_out = idx ? idx + (int64_t)s * cigt_geom_out_size(g) : NULL;
		for (int oy = 0; oy < g->oh; oy++)
			for (int ox = 0; ox < g->ow; ox++, o += C) {
				for (int c = 0; c < C; c++)
					o[c] = NN_LOWEST;
				for (int ky = 0; ky < g->kh; ky++) {
					int iy = oy * g->sh - g->ph + ky;
					if (iy < 0 || iy >= g->h)
						continue;
					for (int kx = 0; kx < g->kw; kx++) {
						int ix = ox * g->sw - g->pw + kx;
						if (ix < 0 || ix >= g->w)
							continue;
						int64_t at = ((int64_t)iy * g->w + ix) * C;
						const real_t *p = img + at;
						for (int c = 0; c < C; c++)
							if (p[c] > o[c]) {
								o[c] = p[c];
								if (ix_out)
									ix_out[c] =
										(int32_t)(base + at + c);
							}
					}
				}
				if (ix_out)
					ix_out += C;
			}
	}
}

void NN(maxpool_forward)(const struct cigt_geom *g, int n, const real_t *in, real_t *out)
{
	maxpool(g, n, in, out, NULL);
}

void NN(maxpool_forward_idx)(const struct cigt_geom *g, int n, const real_t *in, real_t *out,
			     int32_t *idx)
{
	maxpool(g, n, in, out, idx);
}

void NN(maxpool_backward)(const struct cigt_geom *g, int n, const real_t *dout,
			  const int32_t *idx, real_t *dx)
{
	memset(dx, 0, (size_t)(n * cigt_geom_in_size(g)) * sizeof(real_t));
	const int64_t total = (int64_t)n * cigt_geom_out_size(g);
	for (int64_t i = 0; i < total; i++)
		dx[idx[i]] += dout[i];
}

void NN(maxpool_relu_backward)(const struct cigt_geom *g, int n, const real_t *dout,
			       const int32_t *idx, const real_t *y, real_t *dx)
{
	memset(dx, 0, (size_t)(n * cigt_geom_in_size(g)) * sizeof(real_t));
	const int64_t total = (int64_t)n * cigt_geom_out_size(g);
	for (int64_t i = 0; i < total; i++)
		if (y[idx[i]] > 0)
			dx[idx[i]] += dout[i];
}

void NN(avgpool_forward)(const struct cigt_geom *g, int n, const real_t *in, real_t *out)
{
	const int C = g->c;
	const real_t inv = (real_t)1 / (real_t)(g->kh * g->kw);
	for (int s = 0; s < n; s++) {
		const real_t *img = in + (int64_t)s * cigt_geom_in_size(g);
		real_t *o = out + (int64_t)s * cigt_geom_out_size(g);
		for (int oy = 0; oy < g->oh; oy++)
			for (int ox = 0; ox < g->ow; ox++, o += C) {
				for (int c = 0; c < C; c++)
					o[c] = 0;
				for (int ky = 0; ky < g->kh; ky++) {
					int iy = oy * g->sh - g->ph + ky;
					if (iy < 0 || iy >= g->h)
						continue;
					for (int kx = 0; kx < g->kw; kx++) {
						int ix = ox * g->sw - g->pw + kx;
						if (ix < 0 || ix >= g->w)
							continue;
						const real_t *p = img + ((int64_t)iy * g->w + ix) * C;
						for (int c = 0; c < C; c++)
							o[c] += p[c];
					}
				}
				for (int c = 0; c < C; c++)
					o[c] *= inv;
			}
	}
}

void NN(avgpool_backward)(const struct cigt_geom *g, int n, const real_t *dout, real_t *dx)
{
	const int C = g->c;
	const real_t inv = (real_t)1 / (real_t)(g->kh * g->kw);
	memset(dx, 0, (size_t)(n * cigt_geom_in_size(g)) * sizeof(real_t));
	for (int s = 0; s < n; s++) {
		real_t *img = dx + (int64_t)s * cigt_geom_in_size(g);
		const real_t *o = dout + (int64_t)s * cigt_geom_out_size(g);
		for (int oy = 0; oy < g->oh; oy++)
			for (int ox = 0; ox < g->ow; ox++, o += C)
				for (int ky = 0; ky < g->kh; ky++) {
					int iy = oy * g->sh - g->ph + ky;
					if (iy < 0 || iy >= g->h)
						continue;
					for (int kx = 0; kx < g->kw; kx++) {
						int ix = ox * g->sw - g->pw + kx;
						if (ix < 0 || ix >= g->w)
							continue;
						real_t *p = img + ((int64_t)iy * g->w + ix) * C;
						for (int c = 0; c < C; c++)
							p[c] += o[c] * inv;
					}
				}
	}
}
