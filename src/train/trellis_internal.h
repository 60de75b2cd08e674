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

/* An op chain of the plan: an expert's ops, or a router's own. Residual blocks are expanded as
 * in the format (cigt/arch.h: RESIDUAL, main ops, SHORTCUT, shortcut ops, ADD); the tables are
 * sized by the real op count, so a ResNet-110 expert (about 150 ops) costs what it holds. */
struct tchain {
	int nops;
	struct top *ops; /* nops, owned */
	int64_t isz, osz;
};

/* Parameter offsets of one op in the blob: w, b, gamma, beta, mean, var (-1: none). An array
 * type, not a struct, so that off[i] passes as the `const int64_t *off` the row-split batch
 * norm of split.h takes. */
typedef int64_t toff_t[6];

struct trouter {
	struct tchain ch; /* its own op chain (nops 0: the pool reads the layer output) */
	toff_t *choff;    /* ch.nops, owned */
	int64_t csz;      /* what the pool reads, per row */
	struct cigt_geom pool;
	bool transpose;
	int pin, hidden, k;
	double eps, momentum;
	int64_t w1, b1, gamma, beta, mean, var, w2, b2;
};

struct tlayer {
	int experts;
	struct tchain ch;
	toff_t *off; /* experts x ch.nops, expert-major, owned */
	bool has_router;
	struct trouter r;
};

/* One run of a chain on m rows: what its backward pass reads (from the step's arenas). */
struct cstate {
	const real_t **act; /* output of each op (markers: their block input, ADD: the sum) */
	real_t **aux;       /* bn mean|invstd, dropout mask, transposed linear input */
	int32_t **idx;      /* maxpool winners */
	real_t **wp;        /* packed conv weight */
};

/* Per-step state of one expert. */
struct xstate {
	int m;            /* rows received */
	int *rows;        /* which input rows of the layer */
	real_t *gin;      /* gathered input, m x isz */
	struct cstate c;
	int64_t out_off;  /* first output row in the layer output */
};

struct lstate {
	int min, mout;
	real_t *in, *out;
	int *lab_in, *lab_out;
	int *smp_in, *smp_out; /* the sample of each row (NULL unless the leaf loss needs it) */
	struct xstate x[CIGT_MAX_EXPERTS];
	/* router */
	struct cstate rc;   /* the router's own chain */
	real_t *rout;       /* its output (S->out when it has none) */
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
	bool crew_up; /* crew started (cigt_trellis_free stops it) */
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
