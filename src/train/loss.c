/* The information-gain routing loss (DESIGN.md section 2), in double precision:
 *   p(c,n) = (1/M) sum_i onehot(c_i)[c] p_i(n);  p(n) = sum_c p(c,n);  p(c) = sum_n p(c,n)
 *   IG = beta * H(p(n)) + H(p(c)) - H(p(c,n)),   H(q) = -sum q log(q + 1e-30)
 * and its gradient with respect to every soft route p_i(n). */
#include <math.h>
#include <stdlib.h>

#include "trellis.h"

static double ent_term(double q)
{
	return -q * log(q + 1e-30);
}

/* d(-q log(q + eps))/dq */
static double ent_grad(double q)
{
	return -log(q + 1e-30) - q / (q + 1e-30);
}

double cigt_ig_loss(int M, int K, int C, const double *p, const int *labels, double beta,
		    double *dp)
{
	if (M <= 0)
		return 0;
	double *pcn = calloc((size_t)C * K, sizeof *pcn);
	double *pn = calloc((size_t)K, sizeof *pn), *pc = calloc((size_t)C, sizeof *pc);
	CIGT_ASSERT(pcn && pn && pc);
	const double invm = 1.0 / M;
	for (int i = 0; i < M; i++)
		for (int k = 0; k < K; k++)
			pcn[labels[i] * K + k] += p[(int64_t)i * K + k] * invm;
	for (int c = 0; c < C; c++)
		for (int k = 0; k < K; k++) {
			pn[k] += pcn[c * K + k];
			pc[c] += pcn[c * K + k];
		}
	double hn = 0, hc = 0, hcn = 0;
	for (int k = 0; k < K; k++)
		hn += ent_term(pn[k]);
	for (int c = 0; c < C; c++)
		hc += ent_term(pc[c]);
	for (int j = 0; j < C * K; j++)
		hcn += ent_term(pcn[j]);
	if (dp)
		for (int i = 0; i < M; i++) {
			int c = labels[i];
			for (int k = 0; k < K; k++)
				dp[(int64_t)i * K + k] =
					invm * (beta * ent_grad(pn[k]) + ent_grad(pc[c]) -
						ent_grad(pcn[c * K + k]));
		}
	free(pcn);
	free(pn);
	free(pc);
	return beta * hn + hc - hcn;
}
