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
