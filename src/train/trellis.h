/* One training step of a whole trellis: forward in training mode (batch-norm batch statistics,
 * dropout, full routing during warm-up or argmax routing with random re-routing after it),
 * the loss (per-leaf mean cross-entropy minus lambda times the routers' information gain), and
 * the backward pass into a gradient array laid out like the model blob.
 * Compiled twice, like the kernels: cigt_trellis_* on float, cigt_trellis_*_d on double (the
 * gradient checks). Gradients mean dL/d(theta) and are accumulated (+=). */
#ifndef CIGT_TRELLIS_H
#define CIGT_TRELLIS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

#include "cigt/model.h"
#include "../common/util.h"

struct cigt_trellis_opts {
	bool warmup;          /* every row goes to every expert of the next layer */
	double temperature;   /* soft routes are softmax(a / T) */
	double ig_lambda;     /* L = CE - lambda * sum IG */
	double ig_beta;       /* IG = beta * H(p(n)) + H(p(c)) - H(p(c,n)) */
	double rho;           /* after warm-up: share of rows re-routed uniformly at random */
	bool dropout;         /* apply dropout (tests may turn it off) */
	/* Distillation (teacher NULL: off): teacher holds n x classes teacher posteriors at
	 * temperature kd_t, one row per sample of the step. Each leaf's loss becomes
	 * (1 - kd_weight) * mean CE + kd_weight * kd_t^2 * mean KL(teacher || softmax(z / kd_t)) /
	 * classes, every leaf row taking its sample's target (see leaf.c). */
	const double *teacher;
	double kd_t, kd_weight;
	/* Paths that ensemble (ens_share 0: off; no effect in warm-up): the first
	 * round(ens_share * n) samples of the step also go to their second-best expert at the
	 * last router (highest soft route among the others), and their two leaf rows are
	 * trained on (1 - ens_weight) * own CE + ens_weight * CE of the mean posterior. */
	double ens_share, ens_weight;
	double label_smoothing; /* eps: each row's own CE target is (1-eps) onehot + eps/C */
};

struct cigt_trellis_stats {
	double loss, ce;
	double distill; /* sum over leaves of kd_t^2 * mean KL / classes (0 when off) */
	double ig[CIGT_MAX_LAYERS];     /* information gain at each router */
	int64_t leaf_rows, leaf_correct;
	int64_t rows[CIGT_MAX_LAYERS][CIGT_MAX_EXPERTS]; /* rows each expert received */
};

/* Whether the step can train arch: every architecture the format describes (residual blocks,
 * global average pooling and router op chains included; the step's per-op tables are sized by
 * each chain's real op count). Kept as the one place a future op the trainer cannot train
 * would be refused: then a one-line reason goes to err (when given) and cigt_trellis_new
 * returns NULL. */
static inline bool cigt_trellis_supported(const struct cigt_arch *a, char *err, size_t errlen)
{
	(void)a, (void)err, (void)errlen;
	return true;
}

#define CIGT_NN_REAL float
#define CIGT_TR(name) cigt_trellis_##name
#define CIGT_TR_T cigt_trellis
#include "trellis_decl.h"
#undef CIGT_NN_REAL
#undef CIGT_TR
#undef CIGT_TR_T
#define CIGT_NN_REAL double
#define CIGT_TR(name) cigt_trellis_##name##_d
#define CIGT_TR_T cigt_trellis_d
#include "trellis_decl.h"
#undef CIGT_NN_REAL
#undef CIGT_TR
#undef CIGT_TR_T

/* The information-gain loss at one router, on M rows: soft routes p (M x K, rows sum to 1),
 * labels (M) of C classes. Returns IG; when dp != NULL writes dIG/dp (M x K). */
double cigt_ig_loss(int M, int K, int C, const double *p, const int *labels, double beta,
		    double *dp);

#endif
