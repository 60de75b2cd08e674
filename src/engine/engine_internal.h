/* Engine internals shared by engine.c (planning, the workspace, single-path execution) and
 * multipath.c (tree expansion, escalation, operating points), which calls down into engine.c
 * and never the other way. Not a public interface. */
#ifndef CIGT_ENGINE_INTERNAL_H
#define CIGT_ENGINE_INTERNAL_H

#include "cigt/engine.h"
#include "../common/util.h"
#include "../nn/nn.h"
#include "dnnl.h"

enum xkind {
	X_CONV, X_CONV_POOL, X_LINEAR, X_AFFINE, X_RELU, X_MAXPOOL, X_AVGPOOL, X_FLATTEN, X_COPY,
	X_ADD,   /* residual add: dst = src + src2 (+ relu) */
	X_BLOCK, /* markers, nothing runs: a residual block starts on the current buffer, */
	X_SHORT, /* its shortcut branch starts (again on the block input) */
	X_NOP,   /* an add fused into the conv before it (oneDNN): nothing runs */
};

/* Buffers an op reads and writes, fixed when the chain is planned: the chain's input (read
 * only), its output, and scratch buffers of sub x op_max floats. A residual block keeps its
 * input where it is while the main branch runs (an identity shortcut reads it there), so a
 * chain needs at most XB_NTMP scratch buffers: block input, main branch output, and the
 * shortcut's source and destination. */
enum { XB_IN, XB_OUT, XB_T0, XB_NTMP = 4, XB_N = XB_T0 + XB_NTMP };

struct xop {
	enum xkind kind;
	struct cigt_geom g;  /* conv, pooling; flatten uses c, h, w */
	struct cigt_geom pg; /* X_CONV_POOL: the max pooling on the conv's output */
	int fin, fout;       /* linear */
	int64_t in_sz, out_sz;
	float *w, *b;        /* owned: packed folded weights and bias, or affine scale and shift */
	bool relu;           /* fused ReLU after the op */
	bool inplace;        /* may write over its input */
	signed char src, src2, dst; /* XB_* buffers (src2: X_ADD's shortcut) */
	int desc;                   /* conv, linear: its index in the chain's op list */
	int qslot;                  /* an expert's conv or linear: 1 + its index in m->ops[ql] */
	int ql;
	struct cigt__dnn_op *dnn;   /* owned: the oneDNN primitives of a conv or linear, or NULL */
	struct cigt__dnn_form form; /* what they read and write (form.add: + buffer src2) */
};

struct xchain {
	int nops;
	struct xop *ops; /* owned */
	int64_t in_sz, out_sz;
	int64_t op_max;  /* floats per sample of any op's output */
};

struct xrouter {
	struct xchain chain; /* the router's own ops on the layer output (nops 0: none) */
	struct cigt_geom pool;
	bool transpose;
	int pin, hidden, k;
	float *w1, *b1, *w2, *b2; /* owned; batch norm folded into w1, b1 */
};

struct cigt_engine {
	const struct cigt_model *m;
	const struct cigt_arch *a;
	struct xchain *chains[CIGT_MAX_LAYERS];
	struct xrouter routers[CIGT_MAX_LAYERS];
	int64_t layer_max; /* floats per sample at any layer boundary */
	int64_t op_max;    /* floats per sample of any op's output */
	int64_t col_max;   /* floats of the largest im2col chunk */
	int64_t tmp_max;   /* floats of the largest fused conv-pool band */
	int64_t router_max;
	int64_t rchain_max; /* floats per sample of any router chain's output */
	int sub;           /* samples per pass through an op chain (the scratch budget's) */
	int max_rows;      /* largest batch slice the layer buffers are sized for (budget) */
	int64_t tree_max;  /* most rows one sample can become (paths), capped at CIGT__MAX_TREE */
	int64_t tree_floats; /* floats of one sample's whole tree at its widest layer boundary */
	struct cigt_engine_opts opts;
	char desc[64];     /* cigt_engine_backend */
	bool dnn;          /* convs and linears run on oneDNN: chains run power-of-two slices */
	size_t dnn_scratch; /* bytes of a workspace's oneDNN stream scratch */
};

struct cigt_workspace {
	const struct cigt_engine *e;
	int max_batch;
	float *in, *out, *dense, *col, *ctmp;
	float *t[XB_NTMP];                 /* scratch of an op chain: sub x op_max each */
	float *rchain;                     /* a router chain's output: sub x rchain_max */
	float *rpool, *rflat, *rhid, *rlog;
	int *perm, *perm2, *next;
	struct cigt_profile *prof;
	/* multipath and escalation (used by multipath.c, sized by engine.c): in/out hold cap_floats floats and the per-row
	 * arrays rows_cap rows (both at least one sample's whole tree); multipath slices are
	 * sized so a slice's worst-case tree fits both */
	int64_t cap_floats;
	int rows_cap;
	int *rroute, *rroute2;     /* path index so far (mixed radix) of each row */
	unsigned char *rmain, *rmain2; /* row lies on the argmax path */
	uint64_t *rmask;           /* experts each row opens at the current router */
	float *acc;                /* max_batch x classes: the posterior of each sample */
	float *esc_x, *esc_probs;  /* escalated samples' inputs and second posteriors */
	int *esc_idx;
	struct cigt_result *esc_res;
	struct cigt_workspace *second; /* borrowed: the second model's workspace */
	struct cigt__dnn_stream *dnn;  /* the oneDNN backend's stream (e->dnn) */
	/* Calibration (calibrate.c): per layer, the running [min, max] of each expert conv and
	 * linear's input, indexed as m->ops[l]; NULL when not calibrating. */
	float *calib_lo[CIGT_MAX_LAYERS], *calib_hi[CIGT_MAX_LAYERS];
	bool calib;
};

/* Most paths a sample may open at once (rows per sample); a trellis whose every path would be
 * more than this refuses thresholds that could open them all. */
#define CIGT__MAX_TREE 512

/* Bit of a route's path (mixed-radix index over the layers) in cigt_result.paths; 0 when the
 * trellis has more than 64 paths. */
static inline uint64_t cigt__path_bit(const struct cigt_arch *a, const int *route)
{
	if (a->npaths > 64)
		return 0;
	int idx = 0;
	for (int l = 0; l < a->nlayers; l++)
		idx = idx * a->layers[l].experts + route[l];
	return (uint64_t)1 << idx;
}

/* Times the code between them into ws->prof->ns[part] when profiling is on. */
#define PROF_START(ws) uint64_t prof_t0_ = (ws)->prof ? cigt_now_ns() : 0
#define PROF_END(ws, part) \
	if ((ws)->prof)    \
	(ws)->prof->ns[part] += cigt_now_ns() - prof_t0_

/* Runs expert ex of layer l on its group of n rows (in -> out) and counts the group and its
 * rows in the profile; nothing when n is 0. The one way an expert runs on a routed group. */
void cigt__run_group(struct cigt_workspace *ws, int l, int ex, int n, const float *in,
		     float *out);
/* Puts n input samples (NCHW) into ws->in in the engine's layout (HWC). */
void cigt__slice_input(struct cigt_workspace *ws, const float *x, int n);
/* The router of layer l on n rows of layer outputs: next[i] = argmax of its logits (the
 * logits stay in ws->rlog). */
void cigt__route_rows(struct cigt_workspace *ws, int l, int n, const float *x, int *next);
/* One slice of at most ws->max_batch samples on the single path (or dense). */
void cigt__classify_slice(const struct cigt_engine *e, struct cigt_workspace *ws,
			  const float *x, int n, enum cigt_exec_mode mode, struct cigt_result *res,
			  float *probs, float *logits);

#endif
