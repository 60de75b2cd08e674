/* The trellis step's private state (trellis.c: the plan and the step: forward, loss,
 * backward), on top of its threads and row splits (split.h). Compiled twice like them: float,
 * and double with CIGT_NN_DOUBLE (real_t and TR name the variant). */
#ifndef CIGT_TRELLIS_INTERNAL_H
#define CIGT_TRELLIS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "split.h"
#include "trellis.h"

#ifdef CIGT_NN_DOUBLE
#define TR(name) cigt_trellis_##name##_d
#define TR_T cigt_trellis_d
#else
#define TR(name) cigt_trellis_##name
#define TR_T cigt_trellis
#endif

/* ------------------------------------------------------------------ plan */

/* Ops of one expert the step plans for. Below the format's CIGT_MAX_OPS: the step's per-expert
 * tables are sized by it and it does not train residual blocks yet (cigt_arch_is_residual), so
 * cigt_trellis_new refuses a longer chain. */
#define TR_MAX_OPS 64

struct trouter {
	struct cigt_geom pool;
	bool transpose;
	int pin, hidden, k;
	double eps, momentum;
	int64_t w1, b1, gamma, beta, mean, var, w2, b2;
};

struct tlayer {
	int experts, nops;
	int64_t isz, osz;
	struct top ops[TR_MAX_OPS];
	int64_t off[CIGT_MAX_EXPERTS][TR_MAX_OPS][6]; /* per expert: w, b, gamma, beta, mean, var */
	bool has_router;
	struct trouter r;
};

/* Per-step state of one expert. */
struct xstate {
	int m;            /* rows received */
	int *rows;        /* which input rows of the layer */
	real_t *gin;      /* gathered input, m x isz */
	real_t *act[TR_MAX_OPS];  /* output of each op */
	real_t *aux[TR_MAX_OPS];  /* bn mean|invstd, dropout mask, transposed linear input */
	int32_t *idx[TR_MAX_OPS]; /* maxpool winners */
	real_t *wp[TR_MAX_OPS];   /* packed conv weight */
	int64_t out_off;  /* first output row in the layer output */
};

struct lstate {
	int min, mout;
	real_t *in, *out;
	int *lab_in, *lab_out;
	int *smp_in, *smp_out; /* the sample of each row (NULL unless the leaf loss needs it) */
	struct xstate x[CIGT_MAX_EXPERTS];
	/* router */
	real_t *pooled, *flat, *h1, *h2, *bmean, *binv, *logits;
	double *probs;
	int *choice;
	int *second; /* last router with paths that ensemble: the runner-up expert */
};

struct TR_T {
	const struct cigt_model *m;
	const struct cigt_arch *a;
	struct tlayer L[CIGT_MAX_LAYERS];
	struct lstate S[CIGT_MAX_LAYERS];
	int64_t col_max;
	struct crew crew;
	/* arguments of the current region's jobs */
	bool job_split; /* one busy expert: its ops split their rows over the crew */
	int job_layer;
	real_t *job_params, *job_grads, *job_dout;
	const struct cigt_trellis_opts *job_opts;
	struct cigt_rng xrng[CIGT_MAX_EXPERTS];
	int order[CIGT_MAX_EXPERTS];
	real_t *dg[CIGT_MAX_EXPERTS];
};

#endif
