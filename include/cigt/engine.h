/* Inference engine: folds batch norm into the preceding conv/linear, packs weights for the
 * channels-last kernels, and classifies batches the conditional way: every sample runs exactly
 * one expert per layer, and the samples that share an expert run together as one contiguous
 * group (one im2col + one sgemm per conv). A dense mode runs every expert on every sample, as a
 * framework without routing would, for comparison.
 *
 * Threads: an engine is read-only after cigt_engine_new and may be shared by any number of
 * threads; each thread owns its own workspace. */
#ifndef CIGT_ENGINE_H
#define CIGT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cigt/model.h"

struct cigt_engine;
struct cigt_workspace;

enum cigt_exec_mode {
	CIGT_EXEC_ROUTED, /* one expert per layer per sample, grouped by expert */
	CIGT_EXEC_DENSE,  /* every expert on every sample; same predictions */
};

struct cigt_result {
	int cls;                       /* argmax class */
	int route[CIGT_MAX_LAYERS];    /* expert index per layer, layer 0 included */
	int64_t macs;                  /* multiply-accumulates executed for this sample */
};

/* Time spent per part of a routed batch, accumulated while profiling is on (nanoseconds). */
enum cigt_prof_part {
	CIGT_PROF_IM2COL,
	CIGT_PROF_SGEMM,
	CIGT_PROF_POOL,
	CIGT_PROF_ELEMENTWISE, /* bias, relu, unfolded batch norm, softmax */
	CIGT_PROF_ROUTER,
	CIGT_PROF_REGROUP,
	CIGT_PROF_COUNT,
};

struct cigt_profile {
	uint64_t ns[CIGT_PROF_COUNT];
	uint64_t batches;
	/* group-size histogram per (layer, expert): groups[l][e] counts runs, rows[l][e] rows */
	uint64_t groups[CIGT_MAX_LAYERS][CIGT_MAX_EXPERTS];
	uint64_t rows[CIGT_MAX_LAYERS][CIGT_MAX_EXPERTS];
};

const char *cigt_prof_part_name(enum cigt_prof_part p);

/* Builds an engine from a loaded model (borrowed; must outlive the engine). */
int cigt_engine_new(const struct cigt_model *m, struct cigt_engine **out, char *err,
		    size_t errlen);
void cigt_engine_free(struct cigt_engine *e);
const struct cigt_model *cigt_engine_model(const struct cigt_engine *e);

/* Scratch memory for one thread, sized for batches of up to max_batch samples (larger calls are
 * processed in slices of max_batch). NULL on ENOMEM. */
struct cigt_workspace *cigt_workspace_new(const struct cigt_engine *e, int max_batch);
void cigt_workspace_free(struct cigt_workspace *ws);
/* Turns per-part timing on (prof != NULL; accumulates into *prof) or off (NULL). */
void cigt_workspace_profile(struct cigt_workspace *ws, struct cigt_profile *prof);

/* Classifies n samples. x holds n inputs in NCHW float layout, already scaled to the model's
 * input range. res[n] receives class, route and MACs; probs and logits (n x classes each) may be
 * NULL. Returns 0, or CIGT_EINVAL for n < 0 / NULL arguments. Never allocates. */
int cigt_engine_classify(const struct cigt_engine *e, struct cigt_workspace *ws, const float *x,
			 int n, enum cigt_exec_mode mode, struct cigt_result *res, float *probs,
			 float *logits);

/* Node-level execution for schedulers that group samples across batches.
 * Activations between layers use the engine's internal layout; their per-sample size in floats
 * is cigt_engine_act_size(e, l) for the input of layer l (l = 0 is the NCHW model input, which
 * the engine converts itself) and cigt_engine_act_size(e, nlayers) = classes (the logits).
 * Runs expert `expert` of layer `layer` on n rows of `in` (contiguous) into `out`; when the layer
 * has a router, next[i] receives the chosen expert of the next layer for each row. */
int64_t cigt_engine_act_size(const struct cigt_engine *e, int layer);
int cigt_engine_run_expert(const struct cigt_engine *e, struct cigt_workspace *ws, int layer,
			   int expert, int n, const float *in, float *out, int *next);

/* Softmax of one row of logits into probs (numerically stable). */
void cigt_softmax(const float *logits, int n, float *probs);

#endif
