/* The trellis step's private state, shared by its two files: trellis.c (the plan and the step:
 * forward, loss, backward) and trellis_par.c (the per-thread arenas, the worker pool and the
 * row-split ops). Compiled twice like them: float, and double with CIGT_NN_DOUBLE (real_t,
 * TR and TRI name the variant). */
#ifndef CIGT_TRELLIS_INTERNAL_H
#define CIGT_TRELLIS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trellis.h"
#include "../nn/nn.h"
#include "../nn/nn_real.h"

#ifdef CIGT_NN_DOUBLE
#define TR(name) cigt_trellis_##name##_d
#define TR_T cigt_trellis_d
#define TRI(name) cigt__trellis_##name##_d
#else
#define TR(name) cigt_trellis_##name
#define TR_T cigt_trellis
#define TRI(name) cigt__trellis_##name
#endif

/* ------------------------------------------------------------------ arena */

struct chunk {
	struct chunk *next;
	size_t cap, used;
	_Alignas(64) unsigned char data[];
};

struct arena {
	struct chunk *head, *cur;
};

/* ------------------------------------------------------------------ plan */

struct top {
	enum cigt_op_kind kind;
	struct cigt_geom g;
	int64_t in_sz, out_sz;
	int64_t rows_per_sample; /* batch-norm rows: h*w */
	int c;                   /* batch-norm channels */
	int64_t w, b, gamma, beta, mean, var; /* offsets into params, -1 if none */
	double eps, momentum, p;
	bool transpose; /* flatten / linear on a feature map: HWC -> CHW */
	int fin, fout;
};

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
	struct top ops[CIGT_MAX_OPS];
	int64_t off[CIGT_MAX_EXPERTS][CIGT_MAX_OPS][6]; /* per expert: w, b, gamma, beta, mean, var */
	bool has_router;
	struct trouter r;
};

/* Per-step state of one expert. */
struct xstate {
	int m;            /* rows received */
	int *rows;        /* which input rows of the layer */
	real_t *gin;      /* gathered input, m x isz */
	real_t *act[CIGT_MAX_OPS];  /* output of each op */
	real_t *aux[CIGT_MAX_OPS];  /* bn mean|invstd, dropout mask, transposed linear input */
	int32_t *idx[CIGT_MAX_OPS]; /* maxpool winners */
	real_t *wp[CIGT_MAX_OPS];   /* packed conv weight */
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

#define MAX_THREADS 8

/* A row-split op: when a layer has fewer busy experts than threads (layer 0 has one), the ops
 * of an expert split their samples into one contiguous chunk per thread. */
enum cj_kind {
	CJ_CONV_F, CJ_RELU_F, CJ_MAXPOOL_F, CJ_AVGPOOL_F, CJ_BN_SUM, CJ_BN_SQ, CJ_BN_APPLY,
	CJ_CONV_B, CJ_RELU_B, CJ_MAXPOOL_B, CJ_MAXPOOL_RELU_B, CJ_AVGPOOL_B, CJ_BN_GSUM, CJ_BN_GAPPLY,
};

struct chunk_job {
	enum cj_kind kind;
	const struct top *op;
	int m;
	const real_t *in, *wp, *b, *dy, *gamma, *beta, *mean, *invstd, *yact;
	real_t *y, *dx;
	int32_t *idx;
	const double *dmean, *sdy, *sdyx;
	double *acc[MAX_THREADS], *acc2[MAX_THREADS];
	real_t *dw[MAX_THREADS], *db[MAX_THREADS];
};

/* One thread's scratch: its arena and im2col buffers. Worker 0 is the calling thread. */
struct worker {
	struct TR_T *t;
	int id;
	pthread_t th;
	struct arena arena;
	real_t *col, *dcol;
};

struct TR_T {
	const struct cigt_model *m;
	const struct cigt_arch *a;
	struct tlayer L[CIGT_MAX_LAYERS];
	struct lstate S[CIGT_MAX_LAYERS];
	int64_t col_max;
	int nthreads;
	struct worker w[MAX_THREADS];
	/* the parallel region: items 0..nitems-1 handed out in order */
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	uint64_t gen;
	int running, next_item, nitems, job_rc;
	bool stop;
	int (*job)(struct TR_T *t, struct worker *w, int item);
	/* arguments of the current job */
	int job_layer;
	real_t *job_params, *job_grads, *job_dout;
	const struct cigt_trellis_opts *job_opts;
	struct cigt_rng xrng[CIGT_MAX_EXPERTS];
	int order[CIGT_MAX_EXPERTS];
	real_t *dg[CIGT_MAX_EXPERTS];
	struct chunk_job *cj;
};

/* Allocates from the arena `ar` in scope; a failure returns CIGT_ENOMEM. */
#define ALLOC(ptr, count)                                                               \
	do {                                                                            \
		if (!((ptr) = TRI(arena_alloc)(ar, (size_t)(count) * sizeof *(ptr)))) \
			return CIGT_ENOMEM;                                             \
	} while (0)

/* ------------------------------------------------- trellis_par.c: arenas */

/* 64-byte aligned memory for `bytes` from the arena (a new chunk of at least 64 MiB when the
 * current ones are full); valid until the arena is reset. NULL on ENOMEM. */
void *TRI(arena_alloc)(struct arena *a, size_t bytes);
/* Makes all of the arena's memory free again, keeping its chunks. */
void TRI(arena_reset)(struct arena *a);
/* Releases the arena's chunks. */
void TRI(arena_free)(struct arena *a);

/* ------------------------------------------- trellis_par.c: worker pool */

/* The loop of worker threads 1..nthreads-1 (arg: its struct worker): runs the items of each
 * parallel region until TR(free) sets stop. */
void *TRI(worker_main)(void *arg);
/* Runs job(0..nitems-1) on every thread (the caller included) and waits for all of them.
 * Returns the first failure, or 0. */
int TRI(parallel_run)(struct TR_T *t, int (*job)(struct TR_T *, struct worker *, int),
		      int nitems);
/* Runs a row-split op on every thread, from inside a one-item parallel region. */
int TRI(par)(struct TR_T *t, struct chunk_job *cj);

/* ------------------------------------------ trellis_par.c: row-split ops */

/* Training-mode batch norm of m samples, rows split across the threads: y, the running
 * statistics at off[4], off[5] updated, save = batch mean | invstd. 0 or CIGT_ENOMEM. */
int TRI(bn_forward_split)(struct TR_T *t, struct arena *ar, const struct top *op, int m,
			  const real_t *in, real_t *params, const int64_t *off, real_t *y,
			  real_t *save);
/* Its backward: gamma and beta gradients accumulated into grads, dx (when not NULL)
 * written. 0 or CIGT_ENOMEM. */
int TRI(bn_backward_split)(struct TR_T *t, struct arena *ar, const struct top *op, int m,
			   const real_t *in, const real_t *dy, real_t *params, real_t *grads,
			   const int64_t *off, const real_t *save, real_t *dx);
/* Conv backward, rows split: packed weight gradient added to dwp, bias gradient to db (when
 * not NULL), dx (when not NULL) written. 0 or CIGT_ENOMEM. */
int TRI(conv_backward_split)(struct TR_T *t, struct arena *ar, const struct top *op, int m,
			     const real_t *in, const real_t *wp, const real_t *dy, real_t *dwp,
			     real_t *db, real_t *dx);

#endif
