/* The loss at the trellis's leaves and its gradient with respect to the logits, compiled for
 * float and double like trellis.c. Per leaf e with m_e rows r (rows multiply in warm-up; each
 * row carries its label c_r and sample s_r):
 *   CE_e = (1/m_e) sum_r -log p_r[c_r],            p_r = softmax(z_r)
 *   KD_e = T^2/(m_e C) sum_r sum_j q_sj log(q_sj / t_rj),   t_r = softmax(z_r / T)
 *   L_leaves = sum_e (1 - alpha) CE_e + alpha KD_e            (alpha = 0 without a teacher)
 * KD_e is the authors' distillation term (cigt_ig_with_knowledge_distillation.py): PyTorch's
 * KLDivLoss() with its default 'mean' reduction, which averages over rows *and* classes, times
 * alpha T^2, plus (1 - alpha) times the leaf's cross-entropy, summed over the leaves. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "trellis.h"
#include "../nn/nn.h"
#include "../nn/nn_real.h"

#ifdef CIGT_NN_DOUBLE
#define TR(name) cigt_trellis_##name##_d
#else
#define TR(name) cigt_trellis_##name
#endif

/* dL/dz_j of the distillation term for one row (without the 1/m_e): alpha T / C (t_j - q_j);
 * returns sum_j q_j log(q_j / t_j). */
static double kd_row(int C, const real_t *z, const double *q, double T, double *g)
{
	double mx = z[0] / T, sum = 0, kl = 0;
	for (int j = 1; j < C; j++)
		mx = z[j] / T > mx ? z[j] / T : mx;
	for (int j = 0; j < C; j++)
		sum += exp((double)z[j] / T - mx);
	const double lse = log(sum) + mx;
	for (int j = 0; j < C; j++) {
		double logt = (double)z[j] / T - lse;
		if (q[j] > 0)
			kl += q[j] * (log(q[j]) - logt);
		g[j] = exp(logt) - q[j];
	}
	return kl;
}

int TR(leaf_loss)(int C, int K, const int *m, const real_t *z, const int *lab, const int *smp,
		  const struct cigt_trellis_opts *o, real_t *dz, struct cigt_trellis_stats *st)
{
	const bool kd = o->teacher != NULL;
	const double alpha = kd ? o->kd_weight : 0, T = o->kd_t;
	double g[CIGT_MAX_CLASSES];
	int64_t row0 = 0;
	double kd_sum = 0;
	for (int e = 0; e < K; e++) {
		const int me = m[e];
		if (me == 0)
			continue;
		double ce = 0, kl = 0;
		for (int k = 0; k < me; k++) {
			const int64_t row = row0 + k;
			const real_t *zr = z + row * C;
			real_t *d = dz + row * C;
			const int c = lab[row];
			double mx = zr[0], sum = 0;
			for (int j = 1; j < C; j++)
				mx = zr[j] > mx ? zr[j] : mx;
			for (int j = 0; j < C; j++)
				sum += exp((double)zr[j] - mx);
			ce += log(sum) + mx - zr[c];
			if (!kd) {
				for (int j = 0; j < C; j++)
					d[j] = (real_t)((exp((double)zr[j] - mx) / sum - (j == c)) / me);
			} else {
				kl += kd_row(C, zr, o->teacher + (int64_t)smp[row] * C, T, g);
				for (int j = 0; j < C; j++)
					d[j] = (real_t)(((1 - alpha) *
								 (exp((double)zr[j] - mx) / sum - (j == c)) +
							 alpha * T / C * g[j]) /
							me);
			}
			st->leaf_correct += NN(argmax)(zr, C) == c;
		}
		st->ce += ce / me;
		if (kd)
			kd_sum += T * T * kl / ((double)me * C);
		st->leaf_rows += me;
		row0 += me;
	}
	if (!kd) {
		st->loss += st->ce;
		return 0;
	}
	st->distill = kd_sum;
	st->loss += (1 - alpha) * st->ce + alpha * kd_sum;
	return 0;
}
