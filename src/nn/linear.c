/* Fully connected layer: out[n, fout] = in[n, fin] . w^T + b, w in PyTorch order [fout, fin]. */
#include <cblas.h>

#include "nn.h"

void cigt_linear_forward(int n, int fin, int fout, const float *in, const float *w,
			 const float *b, bool relu, float *out)
{
	if (n <= 0)
		return;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, fout, fin, 1.0f, in, fin, w, fin,
		    0.0f, out, fout);
	if (!b && !relu)
		return;
	for (int i = 0; i < n; i++) {
		float *o = out + (int64_t)i * fout;
		if (b)
			for (int j = 0; j < fout; j++)
				o[j] += b[j];
		if (relu)
			for (int j = 0; j < fout; j++)
				o[j] = o[j] > 0.0f ? o[j] : 0.0f;
	}
}
