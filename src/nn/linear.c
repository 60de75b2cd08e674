/* Fully connected layer, forward and backward: out[n, fout] = in[n, fin] . w^T + b, with w in
 * PyTorch order [fout, fin]. */
#include "nn.h"
#include "nn_real.h"

void NN(linear_forward)(int n, int fin, int fout, const real_t *in, const real_t *w,
			const real_t *b, bool relu, real_t *out)
{
	if (n <= 0)
		return;
	NN_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, n, fout, fin, 1, in, fin, w, fin, 0, out,
		fout);
	if (!b && !relu)
		return;
	for (int i = 0; i < n; i++) {
		real_t *o = out + (int64_t)i * fout;
		if (b)
			for (int j = 0; j < fout; j++)
				o[j] += b[j];
		if (relu)
			for (int j = 0; j < fout; j++)
				o[j] = o[j] > 0 ? o[j] : 0;
	}
}

void NN(linear_backward)(int n, int fin, int fout, const real_t *in, const real_t *w,
			 const real_t *dout, real_t *dw, real_t *db, real_t *dx)
{
	if (n <= 0)
		return;
	/* dw [fout, fin] += dout^T [fout, n] . in [n, fin] */
	NN_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, fout, fin, n, 1, dout, fout, in, fin, 1,
		dw, fin);
	if (db)
		for (int i = 0; i < n; i++)
			for (int j = 0; j < fout; j++)
				db[j] += dout[(int64_t)i * fout + j];
	if (dx) /* dx [n, fin] = dout [n, fout] . w [fout, fin] */
		NN_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, fin, fout, 1, dout, fout, w,
			fin, 0, dx, fin);
}
