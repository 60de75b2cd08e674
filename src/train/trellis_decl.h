/* Prototypes of the trellis step, included twice by trellis.h (float and double). */
struct CIGT_TR_T;

/* Plans training for the model's architecture (borrowed; must outlive the trellis), with
 * `threads` threads (1..8) running a layer's experts in parallel; OpenBLAS must be set to one
 * thread. Which thread runs which expert does not change the result. NULL on
 * ENOMEM. */
struct CIGT_TR_T *CIGT_TR(new)(const struct cigt_model *m, int threads);
void CIGT_TR(free)(struct CIGT_TR_T *t);
/* One step on n samples (x: NCHW inputs, labels < classes): params is laid out like the model
 * blob (batch-norm running statistics in it are updated), grads (same layout) accumulates
 * dL/dparams. rng draws dropout masks and random re-routing. Returns 0 or CIGT_ENOMEM. */
int CIGT_TR(step)(struct CIGT_TR_T *t, CIGT_NN_REAL *params, CIGT_NN_REAL *grads,
		  const CIGT_NN_REAL *x, const uint8_t *labels, int n,
		  const struct cigt_trellis_opts *o, struct cigt_rng *rng,
		  struct cigt_trellis_stats *st);
/* The leaves' loss (leaf.c): K leaves, leaf e holding m[e] consecutive rows of z (logits,
 * rows x C) with labels lab and samples smp (smp may be NULL when o uses neither a teacher nor
 * paired rows). Writes dL/dz into dz, adds the loss to st->loss and fills st->ce,
 * st->distill, st->leaf_rows and st->leaf_correct. Returns 0 or CIGT_ENOMEM. */
int CIGT_TR(leaf_loss)(int C, int K, const int *m, const CIGT_NN_REAL *z, const int *lab,
		       const int *smp, const struct cigt_trellis_opts *o, CIGT_NN_REAL *dz,
		       struct cigt_trellis_stats *st);
