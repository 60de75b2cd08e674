/* Max and average pooling, channels-last: in [n, h, w, c] -> out [n, oh, ow, c].
 * Max pooling ignores padding (it never wins); average pooling counts padded zeros in the
 * divisor (PyTorch's count_include_pad), which is always kh*kw in floor mode. */
#include <float.h>

#include "nn.h"

void cigt_maxpool_forward(const struct cigt_geom *g, int n, const float *in, float *out)
{
	const int C = g->c;
	for (int s = 0; s < n; s++) {
		const float *img = in + (int64_t)s * cigt_geom_in_size(g);
		float *o = out + (int64_t)s * cigt_geom_out_size(g);
		for (int oy = 0; oy < g->oh; oy++)
			for (int ox = 0; ox < g->ow; ox++, o += C) {
				for (int c = 0; c < C; c++)
					o[c] = -FLT_MAX;
				for (int ky = 0; ky < g->kh; ky++) {
					int iy = oy * g->sh - g->ph + ky;
					if (iy < 0 || iy >= g->h)
						continue;
					for (int kx = 0; kx < g->kw; kx++) {
						int ix = ox * g->sw - g->pw + kx;
						if (ix < 0 || ix >= g->w)
							continue;
						const float *p = img + ((int64_t)iy * g->w + ix) * C;
						for (int c = 0; c < C; c++)
							o[c] = p[c] > o[c] ? p[c] : o[c];
					}
				}
			}
	}
}

void cigt_avgpool_forward(const struct cigt_geom *g, int n, const float *in, float *out)
{
	const int C = g->c;
	const float inv = 1.0f / (float)(g->kh * g->kw);
	for (int s = 0; s < n; s++) {
		const float *img = in + (int64_t)s * cigt_geom_in_size(g);
		float *o = out + (int64_t)s * cigt_geom_out_size(g);
		for (int oy = 0; oy < g->oh; oy++)
			for (int ox = 0; ox < g->ow; ox++, o += C) {
				for (int c = 0; c < C; c++)
					o[c] = 0.0f;
				for (int ky = 0; ky < g->kh; ky++) {
					int iy = oy * g->sh - g->ph + ky;
					if (iy < 0 || iy >= g->h)
						continue;
					for (int kx = 0; kx < g->kw; kx++) {
						int ix = ox * g->sw - g->pw + kx;
						if (ix < 0 || ix >= g->w)
							continue;
						const float *p = img + ((int64_t)iy * g->w + ix) * C;
						for (int c = 0; c < C; c++)
							o[c] += p[c];
					}
				}
				for (int c = 0; c < C; c++)
					o[c] *= inv;
			}
	}
}
