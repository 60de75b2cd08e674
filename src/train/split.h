/* The threads of a trellis step and the row splits that run on them. The crew is cigt's worker
 * pool (src/common/workers.h) with each thread's scratch: its arena and im2col buffers. A row
 * split spreads the samples of one expert's op over every thread, one contiguous chunk each,
 * when a layer has fewer busy experts than threads (layer 0 has one). Sums over threads are
 * taken in thread order, so a split does not change the result. Compiled twice like the step
 * (trellis.c): float, and double with CIGT_NN_DOUBLE (real_t; SPLIT names the variant). */
#ifndef CIGT_SPLIT_H
#define CIGT_SPLIT_H

#include <stdbool.h>
#include <stdint.h>

#include "cigt/arch.h"
#include "arena.h"
#include "../common/workers.h"
#include "../nn/nn.h"
#include "../nn/nn_real.h"

#ifdef CIGT_NN_DOUBLE
#define SPLIT(name) cigt__split_##name##_d
#else
#define SPLIT(name) cigt__split_##name
#endif

#define MAX_THREADS 8

/* One op of the step's plan (trellis.c plans it from the architecture). */
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
	/* relu: ADD, a ReLU after a residual block's add. from_input: the op reads the chain's
	 * input (the first op, and the first op of each branch of a block that starts the
	 * chain), so its dx is needed only when the chain's is. */
	bool relu, from_input;
};

/* One thread's scratch. Worker 0 is the calling thread. */
struct worker {
	struct arena arena;
	real_t *col, *dcol;
};

struct crew {
	struct cigt__workers *pool;
	int nthreads;
	struct worker w[MAX_THREADS];
};

/* A row-split op: which kernel, on which tensors (the unused ones NULL). */
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

/* Starts a crew of nthreads (1..MAX_THREADS) threads, each with im2col buffers of col_max
 * elements. 0 or CIGT_ENOMEM (then nothing is left to destroy). */
int SPLIT(crew_init)(struct crew *c, int nthreads, int64_t col_max);
/* Stops the threads and frees the scratch. */
void SPLIT(crew_destroy)(struct crew *c);

/* Runs a row-split op on every thread (0; the kernels cannot fail). Called from inside a
 * region that runs on the calling thread alone (a layer with one busy expert). */
int SPLIT(run)(struct crew *c, struct chunk_job *cj);
/* Training-mode batch norm of m samples, rows split: y, the running statistics at off[4],
 * off[5] updated, save = batch mean | invstd. Scratch from ar. 0 or CIGT_ENOMEM. */
int SPLIT(bn_forward)(struct crew *c, struct arena *ar, const struct top *op, int m,
		      const real_t *in, real_t *params, const int64_t *off, real_t *y,
		      real_t *save);
/* Its backward: gamma and beta gradients accumulated into grads, dx (when not NULL)
 * written. 0 or CIGT_ENOMEM. */
int SPLIT(bn_backward)(struct crew *c, struct arena *ar, const struct top *op, int m,
		       const real_t *in, const real_t *dy, real_t *params, real_t *grads,
		       const int64_t *off, const real_t *save, real_t *dx);
/* Conv backward, rows split: packed weight gradient added to dwp, bias gradient to db (when
 * not NULL), dx (when not NULL) written. 0 or CIGT_ENOMEM. */
int SPLIT(conv_backward)(struct crew *c, struct arena *ar, const struct top *op, int m,
			 const real_t *in, const real_t *wp, const real_t *dy, real_t *dwp,
			 real_t *db, real_t *dx);

#endif
