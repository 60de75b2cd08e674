/* Inference engine: folds batch norm into the preceding conv/linear, packs weights for the
 * channels-last kernels, and classifies batches the conditional way: every sample runs exactly
 * one expert per layer, and the samples that share an expert run together as one contiguous
 * group (one im2col + one sgemm per conv). A dense mode runs every expert on every sample, as a
 * framework without routing would, for comparison.
 *
 * The compute dial (cigt_engine_classify_dial): a struct cigt_dial spends more compute on a
 * sample than its single path, in two ways that combine.
 *  - Multipath (the authors' rule): at the router after layer l a sample takes its argmax expert
 *    and every other expert whose routing probability (softmax of the router's logits, T = 1)
 *    is >= tau[l]. The trellis expands as a tree: each opened child gets its own copy of its
 *    parent's output, so a leaf reached from two parents runs twice. The answer is the mean of
 *    the softmax posteriors at the ends of all opened paths. tau = 1 is the single path; tau = 0
 *    opens everything (on the reference model 8 paths, 11,442,944 MACs). Copies join the group
 *    of the expert they reach, so every expert still runs once per batch (of up to the
 *    workspace's max_batch samples) on a contiguous group. The workspace reserves room for a
 *    whole batch of fully opened trees when that is at most 4x the single path's (2x on the
 *    reference model); otherwise multipath batches are cut into slices that fit.
 *  - Escalation: when the answer's top probability is below `confidence`, a second model (same
 *    classes and input) classifies the sample too and the answer is the mean of the two
 *    posteriors. Escalated samples of a batch run as one batch of the second engine.
 * A sample's MACs count exactly what ran for it: every expert copy, every router evaluation and
 * the second model's path when escalated. Operating points (named dials chosen on validation by
 * `cigt tune`) live in the model file (cigt_model.points); cigt_engine_dial_from_point turns one
 * into a dial, cigt_engine_dial_for_budget picks one for a per-sample MAC budget.
 *
 * Typical server use: load the model and, for each point naming a second model, that model
 * (cigt_model_load_second; at start-up, so a missing one fails there); one engine each; per
 * worker one workspace per engine, cigt_workspace_set_second(ws, ws_second); per request a dial
 * from a point name or a budget; cigt_engine_classify_dial. cigt_result.paths and .escalated
 * say what ran. One call runs one dial: a scheduler that batches requests with different dials
 * groups the batch by dial and calls once per group. A workspace lends escalation one second
 * workspace at a time; with points escalating to different models, attach the one the dial
 * names (cigt_workspace_set_second) before the call.
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
	int cls;                       /* argmax class (of the mean posterior when several ran) */
	int route[CIGT_MAX_LAYERS];    /* the argmax path: expert index per layer, layer 0 included */
	int64_t macs;                  /* multiply-accumulates executed for this sample */
	int npaths;                    /* paths whose leaf ran (1 on the single path) */
	uint64_t paths;                /* bit r set: path r ran (r = mixed-radix route index,
					* route[0] most significant); 0 if the trellis has > 64 */
	bool escalated;                /* the second model ran too */
};

/* A per-request compute setting. The zero value is not meaningful: start from cigt_dial_single
 * (every tau 1, no escalation). */
struct cigt_dial {
	float tau[CIGT_MAX_LAYERS];       /* threshold at the router after layer l, in [0, 1] */
	float confidence;                 /* escalate when the top probability is below; 0 = never */
	const struct cigt_engine *second; /* the escalation model's engine; needed if confidence > 0 */
	int point;                        /* index of the model's operating point it came from, or -1 */
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

/* Where convolutions and fully connected layers run, and in what precision.
 *  - CIGT_BACKEND_OPENBLAS: im2col + OpenBLAS sgemm, fp32 only (the trainer's kernels).
 *  - CIGT_BACKEND_ONEDNN: oneDNN primitives (Debian's libdnnl) on the same channels-last
 *    activations, fp32, bf16 (bf16 weights and inputs, fp32 accumulation and outputs) or int8
 *    (the experts' convs and linears: s8 weights per output channel, u8/s8 inputs per tensor
 *    from the ranges in the model's quantization table, s32 sums scaled back to fp32; the
 *    routers stay fp32 so routes hold). int8 needs a model `cigt quantize` calibrated.
 * Routers (their own convs included), pooling, adds and the rest stay fp32 on either. */
enum cigt_backend { CIGT_BACKEND_OPENBLAS, CIGT_BACKEND_ONEDNN };
enum cigt_precision {
	CIGT_PRECISION_FP32,
	CIGT_PRECISION_BF16,
	CIGT_PRECISION_INT8,
	CIGT_PRECISION_AUTO, /* cigt_precision_auto's choice for the model, at load */
};

struct cigt_engine_opts {
	enum cigt_backend backend;
	enum cigt_precision precision; /* bf16 and int8 need CIGT_BACKEND_ONEDNN */
	int threads; /* oneDNN: OpenMP threads inside each call (0 = 1); parallelism across calls
		      * comes from the caller's threads, as with cigt_blas_threads(1) */
};

/* Builds an engine from a loaded model (borrowed; must outlive the engine): OpenBLAS, fp32. */
int cigt_engine_new(const struct cigt_model *m, struct cigt_engine **out, char *err,
		    size_t errlen);
/* The same with a backend and precision (NULL: OpenBLAS fp32). CIGT_EINVAL + message for a
 * combination that does not exist (bf16 on OpenBLAS) or that oneDNN cannot make. */
int cigt_engine_new_opts(const struct cigt_model *m, const struct cigt_engine_opts *o,
			 struct cigt_engine **out, char *err, size_t errlen);
/* What the engine runs on, e.g. "openblas fp32 (SkylakeX)" or "onednn bf16 (avx512_core_bf16)":
 * backend, precision and, in brackets, the kernels' ISA (cigt_engine_isa). */
const char *cigt_engine_backend(const struct cigt_engine *e);
/* The options it was built with, and the ISA its kernels use: oneDNN's effective ISA
 * (dnnl_get_effective_cpu_isa, e.g. "avx512_core_bf16", "avx2") or OpenBLAS's core name. */
struct cigt_engine_opts cigt_engine_opts_of(const struct cigt_engine *e);
const char *cigt_engine_isa(const struct cigt_engine *e);
/* The backend "auto" means for a precision: oneDNN for bf16 and int8 (only it has them),
 * OpenBLAS for fp32. (oneDNN fp32 is 1.8x OpenBLAS on AVX-512 with the same answers, but a
 * daemon's first reload on it grows its memory once by 12-41 MB, more than the hostile
 * suite's bound; the default waits until that is understood.) */
enum cigt_backend cigt_backend_auto(enum cigt_precision p);
/* The fastest precision whose accuracy was validated for m on this CPU: int8 where oneDNN's
 * kernels have VNNI, bf16 where they have AVX512_BF16, each only when m's quantization table
 * records its accuracy on the calibration images at most 0.2 points below fp32's (cigt quantize
 * measures all three); else fp32. On OpenBLAS (backend given as openblas): fp32. */
enum cigt_precision cigt_precision_auto(const struct cigt_model *m, enum cigt_backend b);
/* Names for the enums ("openblas", "onednn"; "fp32", "bf16", "int8", "auto") and back (-1:
 * unknown). */
const char *cigt_backend_name(enum cigt_backend b);
const char *cigt_precision_name(enum cigt_precision p);
int cigt_backend_parse(const char *s);
int cigt_precision_parse(const char *s);
void cigt_engine_free(struct cigt_engine *e);
const struct cigt_model *cigt_engine_model(const struct cigt_engine *e);

/* Scratch memory for one thread, sized for batches of up to max_batch samples (larger calls are
 * processed in slices of max_batch). A model with large activations holds fewer: a layer
 * buffer is at most 128 MiB, so max_batch is lowered to what fits (cigt_workspace_max_batch;
 * 41 samples for 16 channels at 224x224) and classify runs larger batches in slices of that.
 * NULL on ENOMEM. */
struct cigt_workspace *cigt_workspace_new(const struct cigt_engine *e, int max_batch);
/* Samples the workspace runs at once (at most the max_batch it was made with). */
int cigt_workspace_max_batch(const struct cigt_workspace *ws);
void cigt_workspace_free(struct cigt_workspace *ws);
/* Turns per-part timing on (prof != NULL; accumulates into *prof) or off (NULL). */
void cigt_workspace_profile(struct cigt_workspace *ws, struct cigt_profile *prof);

/* Classifies n samples. x holds n inputs in NCHW float layout, already scaled to the model's
 * input range. res[n] receives class, route and MACs; probs and logits (n x classes each) may be
 * NULL. Returns 0, or CIGT_EINVAL for n < 0 / NULL arguments. Never allocates. */
int cigt_engine_classify(const struct cigt_engine *e, struct cigt_workspace *ws, const float *x,
			 int n, enum cigt_exec_mode mode, struct cigt_result *res, float *probs,
			 float *logits);

/* The single-path dial: every tau 1, no escalation, point -1. */
void cigt_dial_single(struct cigt_dial *d);

/* Checks a dial against the engine: each tau in [0, 1] for the routers, confidence in [0, 1],
 * a second engine with the same classes and input geometry when confidence > 0, and no more
 * paths per sample than the engine allows (CIGT__MAX_TREE, 512). 0 or CIGT_EINVAL + message. */
int cigt_engine_dial_check(const struct cigt_engine *e, const struct cigt_dial *d, char *err,
			   size_t errlen);

/* The most MACs a sample can take under the dial: at router l at most min(K, floor(1.0001/tau))
 * experts can reach tau (their probabilities sum to 1), every opened path runs its routers, and
 * the second model's path when confidence > 0. The engine never runs more than this. */
int64_t cigt_engine_dial_worst_macs(const struct cigt_engine *e, const struct cigt_dial *d);

/* Turns operating point `point` of the engine's model into a dial. second: the engine of the
 * point's second model (NULL when the point has none). CIGT_EINVAL + message when the point
 * needs a second model and none is given, or it does not match. */
int cigt_engine_dial_from_point(const struct cigt_engine *e, int point,
				const struct cigt_engine *second, struct cigt_dial *out, char *err,
				size_t errlen);

/* Picks the dial for a per-sample budget of max_macs: the operating point with the highest
 * validation accuracy whose worst-case MACs (cigt_engine_dial_worst_macs) fit in max_macs, so
 * the budget is a hard cap that never depends on the image; the single path when no point fits
 * but one path does. seconds[i] is the engine of point i's second model or NULL (points without
 * one loaded are skipped); seconds may be NULL. A budget below one path (arch->path_macs) is
 * CIGT_EINVAL with a message saying the least budget: never a silent downgrade. */
int cigt_engine_dial_for_budget(const struct cigt_engine *e,
				const struct cigt_engine *const *seconds, int64_t max_macs,
				struct cigt_dial *out, char *err, size_t errlen);

/* Lends ws the workspace of the second model (for escalation); ws2 must outlive its use and
 * belong to the same thread. NULL detaches. */
void cigt_workspace_set_second(struct cigt_workspace *ws, struct cigt_workspace *ws2);

/* Classifies n samples under a dial (NULL = single path, exactly cigt_engine_classify in routed
 * mode). probs receive the final posterior (the mean over paths, then with the second model's);
 * logits (may be NULL) the argmax path's logits. Returns 0, or CIGT_EINVAL for bad arguments, a
 * dial that fails cigt_engine_dial_check, or escalation without a second workspace of the
 * dial's second engine. Never allocates; a thread-safe read of e and of d->second. */
int cigt_engine_classify_dial(const struct cigt_engine *e, struct cigt_workspace *ws,
			      const float *x, int n, const struct cigt_dial *d,
			      struct cigt_result *res, float *probs, float *logits);

/* Node-level execution for schedulers that group samples across batches.
 * Activations between layers use the engine's internal layout; their per-sample size in floats
 * is cigt_engine_act_size(e, l) for the input of layer l (l = 0 is the NCHW model input, which
 * the engine converts itself) and cigt_engine_act_size(e, nlayers) = classes (the logits).
 * Runs expert `expert` of layer `layer` on n rows of `in` (contiguous) into `out`; when the layer
 * has a router, next[i] receives the chosen expert of the next layer for each row. */
int64_t cigt_engine_act_size(const struct cigt_engine *e, int layer);
int cigt_engine_run_expert(const struct cigt_engine *e, struct cigt_workspace *ws, int layer,
			   int expert, int n, const float *in, float *out, int *next);

/* int8 calibration: runs every expert on each of the n samples (x, NCHW as classify takes;
 * the engine fp32, built from m) and stores the range of each expert conv and linear's input in
 * m (cigt_op_params in_min, in_max), with quant_samples = n and quant_split = split (what the
 * samples were: "validation", a folder). m's weights are untouched; save it to keep the table.
 * CIGT_EINVAL for another model, a bf16 or int8 engine, n < 1. */
int cigt_engine_calibrate(const struct cigt_engine *e, struct cigt_model *m, const float *x,
			  int n, const char *split, char *err, size_t errlen);

/* Softmax of one row of logits into probs (numerically stable). */
void cigt_softmax(const float *logits, int n, float *probs);

#endif
