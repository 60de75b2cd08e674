/* The loss at the trellis's leaves and its gradient with respect to the logits, compiled for
 * float and double like trellis.c. Per leaf e with m_e rows r (rows multiply in warm-up; each
 * row carries its label c_r and sample s_r):
 *   CE_e = (1/m_e) sum_r -log p_r[c_r],            p_r = softmax(z_r)
 *   KD_e = T^2/(m_e C) sum_r sum_j q_sj log(q_sj / t_rj),   t_r = softmax(z_r / T)
 *   L_leaves = sum_e (1 - alpha) CE_e + alpha KD_e            (alpha = 0 without a teacher)
 * KD_e is the authors' distillation term (cigt_ig_with_knowledge_distillation.py): PyTorch's
 * KLDivLoss() with its default 'mean' reduction, which averages over rows *and* classes, times
 * alpha T^2, plus (1 - alpha) times the leaf's cross-entropy, summed over the leaves.
 * Paths that ensemble (o->ens_share > 0 after warm-up): a sample whose row was sent to two
 * experts at the last router has two leaf rows G_s; each of them has the cross-entropy
 *   (1 - w) (-log p_r[c]) + w (-log qbar_s[c]),   qbar_s = (1/|G_s|) sum_{r' in G_s} p_r'
 * in its leaf's mean (w = o->ens_weight), so the mean posterior of the two paths, the
 * quantity multipath inference classifies with, is trained directly.
 * Label smoothing (o->label_smoothing = eps > 0) replaces every row's own one-hot target by
 * (1 - eps) onehot(c) + eps / C; the mean-posterior term of paired rows keeps the label. */
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

/* The smoothed target of class j for label c: (1 - ls) [j = c] + ls / C. */
static inline double target(int j, int c, double ls, int C)
{
	return (1 - ls) * (j == c) + ls / C;
}

/* Cross-entropy of one row against the smoothed target; lse = log sum_j exp(z_j). */
static double smoothed_ce(int C, const real_t *z, int c, double ls, double lse)
{
	double ce = lse - z[c];
	if (ls == 0)
		return ce;
	double all = 0;
	for (int j = 0; j < C; j++)
		all += lse - z[j];
	return (1 - ls) * ce + ls / C * all;
}

/* Per sample of a grouped step: sum of p_r[c] over its leaf rows, sum of 1/m_e over their
 * leaves, and the number of rows. */
struct group {
	double pc, inv_m;
	int k;
};

/* The leaf loss when rows are grouped by sample (see the header). */
static int leaf_loss_grouped(int C, int K, const int *m, const real_t *z, const int *lab,
			     const int *smp, const struct cigt_trellis_opts *o, real_t *dz,
			     struct cigt_trellis_stats *st)
{
	const bool kd = o->teacher != NULL;
	const double alpha = kd ? o->kd_weight : 0, T = o->kd_t, w = o->ens_weight;
	const double ls = o->label_smoothing;
	int64_t rows = 0;
	int ns = 0;
	for (int e = 0; e < K; e++)
		rows += m[e];
	for (int64_t r = 0; r < rows; r++)
		ns = smp[r] + 1 > ns ? smp[r] + 1 : ns;
	struct group *G = calloc((size_t)(ns > 0 ? ns : 1), sizeof *G);
	if (!G)
		return CIGT_ENOMEM;
	int64_t row0 = 0;
	for (int e = 0; e < K; e++) {
		for (int k = 0; k < m[e]; k++) {
			const int64_t row = row0 + k;
			const real_t *zr = z + row * C;
			double mx = zr[0], sum = 0;
			for (int j = 1; j < C; j++)
				mx = zr[j] > mx ? zr[j] : mx;
			for (int j = 0; j < C; j++)
				sum += exp((double)zr[j] - mx);
			struct group *g = &G[smp[row]];
			g->pc += exp((double)zr[lab[row]] - mx) / sum;
			g->inv_m += 1.0 / m[e];
			g->k++;
		}
		row0 += m[e];
	}
	double g[CIGT_MAX_CLASSES], kd_sum = 0;
	row0 = 0;
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
			const struct group *gs = &G[smp[row]];
			double mx = zr[0], sum = 0;
			for (int j = 1; j < C; j++)
				mx = zr[j] > mx ? zr[j] : mx;
			for (int j = 0; j < C; j++)
				sum += exp((double)zr[j] - mx);
			const double own = smoothed_ce(C, zr, c, ls, log(sum) + mx),
				     pc = exp((double)zr[c] - mx) / sum;
			/* dL/dz = a_own (p - y) / m_e + a_grp (p - y): the group term appears in
			 * each member's leaf, d(-log qbar_c)/dz_r = (p_r[c] / sum_G p[c]) (p_r - y). */
			double a_own = 1, a_grp = 0;
			if (gs->k > 1) {
				ce += (1 - w) * own - w * log(gs->pc / gs->k);
				a_own = 1 - w;
				a_grp = w * gs->inv_m * pc / gs->pc;
			} else {
				ce += own;
			}
			if (kd)
				kl += kd_row(C, zr, o->teacher + (int64_t)smp[row] * C, T, g);
			for (int j = 0; j < C; j++) {
				double p = exp((double)zr[j] - mx) / sum;
				double dj = (1 - alpha) * (a_own * (p - target(j, c, ls, C)) / me +
							   a_grp * (p - (j == c)));
				if (kd)
					dj += alpha * T / C * g[j] / me;
				d[j] = (real_t)dj;
			}
			st->leaf_correct += NN(argmax)(zr, C) == c;
		}
		st->ce += ce / me;
		if (kd)
			kd_sum += T * T * kl / ((double)me * C);
		st->leaf_rows += me;
		row0 += me;
	}
	free(G);
	st->distill = kd_sum;
	st->loss += (1 - alpha) * st->ce + alpha * kd_sum;
	return 0;
}

int TR(leaf_loss)(int C, int K, const int *m, const real_t *z, const int *lab, const int *smp,
		  const struct cigt_trellis_opts *o, real_t *dz, struct cigt_trellis_stats *st)
{
	if (o->ens_share > 0 && !o->warmup && smp)
		return leaf_loss_grouped(C, K, m, z, lab, smp, o, dz, st);
	const bool kd = o->teacher != NULL;
	const double alpha = kd ? o->kd_weight : 0, T = o->kd_t, ls = o->label_smoothing;
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
			if (!kd && ls == 0) {
				ce += log(sum) + mx - zr[c];
				for (int j = 0; j < C; j++)
					d[j] = (real_t)((exp((double)zr[j] - mx) / sum - (j == c)) / me);
			} else {
				ce += smoothed_ce(C, zr, c, ls, log(sum) + mx);
				if (kd)
					kl += kd_row(C, zr, o->teacher + (int64_t)smp[row] * C, T, g);
				for (int j = 0; j < C; j++)
					d[j] = (real_t)(((1 - alpha) * (exp((double)zr[j] - mx) / sum -
									target(j, c, ls, C)) +
							 (kd ? alpha * T / C * g[j] : 0)) /
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
