/* Batch normalisation in training mode, forward and backward, over rows of c channels.
 * Statistics come from the rows given (the rows an expert received); the running statistics
 * follow PyTorch: running = (1 - momentum) * running + momentum * batch, unbiased variance.
 * Inference uses cigt_affine_forward with the folded coefficients instead. */
#include <math.h>

#include "nn.h"
#include "nn_real.h"

void NN(batchnorm_train_forward)(int64_t rows, int c, const real_t *x, const real_t *gamma,
				 const real_t *beta, double eps, double momentum,
				 real_t *run_mean, real_t *run_var, real_t *y, real_t *save_mean,
				 real_t *save_invstd)
{
	if (rows < 2) {
		/* Too few rows for batch statistics: normalise with the running ones. */
		for (int j = 0; j < c; j++) {
			save_mean[j] = run_mean[j];
			save_invstd[j] = (real_t)(1.0 / sqrt((double)run_var[j] + eps));
		}
	} else {
		for (int j = 0; j < c; j++) {
			double s = 0, ss = 0;
			for (int64_t r = 0; r < rows; r++)
				s += x[r * c + j];
			double mean = s / (double)rows;
			for (int64_t r = 0; r < rows; r++) {
				double d = x[r * c + j] - mean;
				ss += d * d;
			}
			double var = ss / (double)rows;
			save_mean[j] = (real_t)mean;
			save_invstd[j] = (real_t)(1.0 / sqrt(var + eps));
			run_mean[j] = (real_t)((1 - momentum) * run_mean[j] + momentum * mean);
			run_var[j] = (real_t)((1 - momentum) * run_var[j] +
					      momentum * var * (double)rows / (double)(rows - 1));
		}
	}
	for (int64_t r = 0; r < rows; r++)
		for (int j = 0; j < c; j++)
			y[r * c + j] = (x[r * c + j] - save_mean[j]) * save_invstd[j] * gamma[j] +
				       beta[j];
}

void NN(batchnorm_backward)(int64_t rows, int c, const real_t *x, const real_t *dy,
			    const real_t *gamma, const real_t *save_mean, const real_t *save_invstd,
			    real_t *dgamma, real_t *dbeta, real_t *dx)
{
	for (int j = 0; j < c; j++) {
		double sdy = 0, sdyx = 0;
		const double mu = save_mean[j], is = save_invstd[j];
		for (int64_t r = 0; r < rows; r++) {
			double g = dy[r * c + j];
			sdy += g;
			sdyx += g * (x[r * c + j] - mu) * is;
		}
		dgamma[j] += (real_t)sdyx;
		dbeta[j] += (real_t)sdy;
		if (!dx)
			continue;
		if (rows < 2) {
			for (int64_t r = 0; r < rows; r++)
				dx[r * c + j] = (real_t)(dy[r * c + j] * gamma[j] * is);
			continue;
		}
		const double k = gamma[j] * is / (double)rows;
		for (int64_t r = 0; r < rows; r++) {
			double xh = (x[r * c + j] - mu) * is;
			dx[r * c + j] =
				(real_t)(k * ((double)rows * dy[r * c + j] - sdy - xh * sdyx));
		}
	}
}
