/* Element-wise ops and layout helpers: per-channel affine (an unfolded batch norm), ReLU, the
 * channels-first flatten transpose, argmax. */
#include "nn.h"

void cigt_affine_forward(int64_t rows, int c, const float *x, const float *scale,
			 const float *shift, bool relu, float *y)
{
	for (int64_t r = 0; r < rows; r++) {
		const float *xi = x + r * c;
		float *yi = y + r * c;
		for (int j = 0; j < c; j++) {
			float v = xi[j] * scale[j] + shift[j];
			yi[j] = relu && v < 0.0f ? 0.0f : v;
		}
	}
}

void cigt_relu_forward(int64_t n, const float *x, float *y)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void cigt_hwc_to_chw(int n, int h, int w, int c, const float *in, float *out)
{
	const int64_t hw = (int64_t)h * w, sz = hw * c;
	for (int s = 0; s < n; s++) {
		const float *i0 = in + s * sz;
		float *o0 = out + s * sz;
		for (int64_t p = 0; p < hw; p++)
			for (int ch = 0; ch < c; ch++)
				o0[ch * hw + p] = i0[p * c + ch];
	}
}

void cigt_chw_to_hwc(int n, int h, int w, int c, const float *in, float *out)
{
	const int64_t hw = (int64_t)h * w, sz = hw * c;
	for (int s = 0; s < n; s++) {
		const float *i0 = in + s * sz;
		float *o0 = out + s * sz;
		for (int64_t p = 0; p < hw; p++)
			for (int ch = 0; ch < c; ch++)
				o0[p * c + ch] = i0[ch * hw + p];
	}
}

int cigt_argmax(const float *x, int k)
{
	int best = 0;
	for (int i = 1; i < k; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}
