/* Element-wise ops and layout helpers: per-channel affine (an inference batch norm), ReLU,
 * the residual add, dropout, the channels-first flatten transpose, argmax. */
#include "nn.h"
#include "nn_real.h"

void NN(affine_forward)(int64_t rows, int c, const real_t *x, const real_t *scale,
			const real_t *shift, bool relu, real_t *y)
{
	for (int64_t r = 0; r < rows; r++) {
		const real_t *xi = x + r * c;
		real_t *yi = y + r * c;
		for (int j = 0; j < c; j++) {
			real_t v = xi[j] * scale[j] + shift[j];
			yi[j] = relu && v < 0 ? 0 : v;
		}
	}
}

void NN(relu_forward)(int64_t n, const real_t *x, real_t *y)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] > 0 ? x[i] : 0;
}

void NN(add_forward)(int64_t n, const real_t *a, const real_t *b, bool relu, real_t *y)
{
	if (relu) {
		for (int64_t i = 0; i < n; i++) {
			real_t v = a[i] + b[i];
			y[i] = v > 0 ? v : 0;
		}
		return;
	}
	for (int64_t i = 0; i < n; i++)
		y[i] = a[i] + b[i];
}

void NN(relu_backward)(int64_t n, const real_t *y, const real_t *dy, real_t *dx)
{
	/* dy is read unconditionally so the compiler may vectorise the select (it would not
	 * hoist a load guarded by the comparison); the result is the same, bit for bit. */
	for (int64_t i = 0; i < n; i++) {
		real_t g = dy[i];
		dx[i] = y[i] > 0 ? g : 0;
	}
}

void NN(dropout_apply)(int64_t n, const real_t *x, const real_t *mask, real_t *y)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] * mask[i];
}

void NN(hwc_to_chw)(int n, int h, int w, int c, const real_t *in, real_t *out)
{
	const int64_t hw = (int64_t)h * w, sz = hw * c;
	for (int s = 0; s < n; s++) {
		const real_t *i0 = in + s * sz;
		real_t *o0 = out + s * sz;
		for (int64_t p = 0; p < hw; p++)
			for (int ch = 0; ch < c; ch++)
				o0[ch * hw + p] = i0[p * c + ch];
	}
}

void NN(chw_to_hwc)(int n, int h, int w, int c, const real_t *in, real_t *out)
{
	const int64_t hw = (int64_t)h * w, sz = hw * c;
	for (int s = 0; s < n; s++) {
		const real_t *i0 = in + s * sz;
		real_t *o0 = out + s * sz;
		for (int64_t p = 0; p < hw; p++)
			for (int ch = 0; ch < c; ch++)
				o0[p * c + ch] = i0[ch * hw + p];
	}
}

int NN(argmax)(const real_t *x, int k)
{
	int best = 0;
	for (int i = 1; i < k; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}
