/* Batch normalisation in training mode, forward and backward, over rows of c channels.
 * Statistics come from the rows given (the rows an expert received); the running statistics
 * follow PyTorch: running = (1 - momentum) * running + momentum * batch, unbiased variance.
 * Every pass walks the rows in memory order with per-channel double accumulators, so the inner
 * loops are contiguous; the passes are exported so a caller can split the rows across threads.
 * Inference uses cigt_affine_forward with folded coefficients instead. */
#include <math.h>
#include <stdlib.h>

#include "nn.h"
#include "nn_real.h"
#include "../common/util.h"

void NN(batchnorm_sums)(int64_t rows, int c, const real_t *x, const double *mean, double *acc)
{
	for (int64_t r = 0; r < rows; r++) {
		const real_t *xr = x + r * c;
		if (mean)
			for (int j = 0; j < c; j++) {
				double d = (double)xr[j] - mean[j];
				acc[j] += d * d;
			}
		else
			for (int j = 0; j < c; j++)
				acc[j] += xr[j];
	}
}

void NN(batchnorm_stats)(int64_t rows, int c, const double *sum, const double *sqdev,
			 double eps, double momentum, real_t *run_mean, real_t *run_var,
			 real_t *save_mean, real_t *save_invstd)
{
	for (int j = 0; j < c; j++) {
		if (rows < 2) {
			/* Too few rows for batch statistics: normalise with the running ones. */
			save_mean[j] = run_mean[j];
			save_invstd[j] = (real_t)(1.0 / sqrt((double)run_var[j] + eps));
			continue;
		}
		double mean = sum[j] / (double)rows, var = sqdev[j] / (double)rows;
		save_mean[j] = (real_t)mean;
		save_invstd[j] = (real_t)(1.0 / sqrt(var + eps));
		run_mean[j] = (real_t)((1 - momentum) * run_mean[j] + momentum * mean);
		run_var[j] = (real_t)((1 - momentum) * run_var[j] +
				      momentum * var * (double)rows / (double)(rows - 1));
	}
}

void NN(batchnorm_apply)(int64_t rows, int c, const real_t *x, const real_t *gamma,
			 const real_t *beta, const real_t *save_mean, const real_t *save_invstd,
			 real_t *y)
{
	real_t *scale = malloc((size_t)c * sizeof *scale), *shift = malloc((size_t)c * sizeof *shift);
	CIGT_ASSERT(scale && shift);
	for (int j = 0; j < c; j++) {
		scale[j] = save_invstd[j] * gamma[j];
		shift[j] = beta[j] - save_mean[j] * scale[j];
	}
	NN(affine_forward)(rows, c, x, scale, shift, false, y);
	free(scale);
	free(shift);
}

void NN(batchnorm_train_forward)(int64_t rows, int c, const real_t *x, const real_t *gamma,
				 const real_t *beta, double eps, double momentum,
				 real_t *run_mean, real_t *run_var, real_t *y, real_t *save_mean,
				 real_t *save_invstd)
{
	double *sum = calloc((size_t)c, sizeof *sum), *sq = calloc((size_t)c, sizeof *sq);
	CIGT_ASSERT(sum && sq);
	if (rows >= 2) {
		NN(batchnorm_sums)(rows, c, x, NULL, sum);
		for (int j = 0; j < c; j++)
			sum[j] /= (double)rows; /* the mean, for the second pass */
		NN(batchnorm_sums)(rows, c, x, sum, sq);
		for (int j = 0; j < c; j++)
			sum[j] *= (double)rows;
	}
	NN(batchnorm_stats)(rows, c, sum, sq, eps, momentum, run_mean, run_var, save_mean,
			    save_invstd);
	NN(batchnorm_apply)(rows, c, x, gamma, beta, save_mean, save_invstd, y);
	free(sum);
	free(sq);
}

void NN(batchnorm_grad_sums)(int64_t rows, int c, const real_t *x, const real_t *dy,
			     const real_t *save_mean, double *sdy, double *sdyx)
{
	for (int64_t r = 0; r < rows; r++) {
		const real_t *g = dy + r * c, *xr = x + r * c;
		for (int j = 0; j < c; j++) {
			sdy[j] += g[j];
			sdyx[j] += (double)g[j] * ((double)xr[j] - save_mean[j]);
		}
	}
}

void NN(batchnorm_grad_apply)(int64_t rows, int64_t total, int c, const real_t *x,
			      const real_t *dy, const real_t *gamma, const real_t *save_mean,
			      const real_t *save_invstd, const double *sdy, const double *sdyx,
			      real_t *dgamma, real_t *dbeta, real_t *dx)
{
	if (dgamma)
		for (int j = 0; j < c; j++) {
			dgamma[j] += (real_t)(sdyx[j] * save_invstd[j]);
			dbeta[j] += (real_t)sdy[j];
		}
	if (!dx)
		return;
	/* dx = gamma * invstd / N * (N dy - sum dy - xhat * sum(dy xhat)), written as
	 * dx = k1 * dy + k2 * x + k3 per channel; with fewer than 2 rows the forward was the
	 * affine with running statistics, whose gradient is gamma * invstd * dy. */
	real_t *k = malloc(3 * (size_t)c * sizeof *k);
	CIGT_ASSERT(k);
	real_t *k1 = k, *k2 = k + c, *k3 = k + 2 * c;
	for (int j = 0; j < c; j++) {
		double is = save_invstd[j];
		if (total < 2) {
			k1[j] = (real_t)(gamma[j] * is);
			k2[j] = k3[j] = 0;
			continue;
		}
		double kk = gamma[j] * is / (double)total, sx = sdyx[j] * is;
		k1[j] = (real_t)(kk * (double)total);
		k2[j] = (real_t)(-kk * is * sx);
		k3[j] = (real_t)(-kk * sdy[j] + kk * is * sx * save_mean[j]);
	}
	for (int64_t r = 0; r < rows; r++) {
		const real_t *g = dy + r * c, *xr = x + r * c;
		real_t *d = dx + r * c;
		for (int j = 0; j < c; j++)
			d[j] = k1[j] * g[j] + k2[j] * xr[j] + k3[j];
	}
	free(k);
}

void NN(batchnorm_backward)(int64_t rows, int c, const real_t *x, const real_t *dy,
			    const real_t *gamma, const real_t *save_mean, const real_t *save_invstd,
			    real_t *dgamma, real_t *dbeta, real_t *dx)
{
	double *sdy = calloc((size_t)c, sizeof *sdy), *sdyx = calloc((size_t)c, sizeof *sdyx);
	CIGT_ASSERT(sdy && sdyx);
	NN(batchnorm_grad_sums)(rows, c, x, dy, save_mean, sdy, sdyx);
	NN(batchnorm_grad_apply)(rows, rows, c, x, dy, gamma, save_mean, save_invstd, sdy, sdyx,
				 dgamma, dbeta, dx);
	free(sdy);
	free(sdyx);
}
