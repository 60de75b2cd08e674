/* The trellis architecture: layers of parallel experts, each expert a chain of ops, and a router
 * after every layer but the last. Parsed from (and written to) the JSON architecture format of
 * proto/model-format.md. Shapes are resolved and MACs counted at parse time, so every consumer
 * (engine, trainer, server) reads the same numbers. Nothing here assumes a particular input size,
 * class count or experts-per-layer. */
#ifndef CIGT_ARCH_H
#define CIGT_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CIGT_MAX_LAYERS 16
#define CIGT_MAX_EXPERTS 64
#define CIGT_MAX_OPS 2048     /* ops of one expert, residual blocks expanded (see below) */
#define CIGT_MAX_CHAIN 256    /* entries of one JSON op chain (a residual block is one) */
#define CIGT_MAX_BRANCH 16    /* ops of a residual block's main or shortcut branch */
#define CIGT_MAX_ROUTER_OPS 16 /* entries of a router's own op chain */
#define CIGT_MAX_CLASSES 4096
#define CIGT_NAME_MAX 64

enum cigt_op_kind {
	CIGT_OP_CONV,
	CIGT_OP_BATCHNORM,
	CIGT_OP_RELU,
	CIGT_OP_MAXPOOL,
	CIGT_OP_AVGPOOL,
	CIGT_OP_FLATTEN,
	CIGT_OP_LINEAR,
	CIGT_OP_DROPOUT,
	CIGT_OP_GLOBALAVGPOOL, /* C x H x W -> C x 1 x 1, the mean of each channel */
	/* A residual block, expanded in place into three markers around its branches:
	 *   RESIDUAL, main ops..., SHORTCUT, shortcut ops (none: identity)..., ADD
	 * RESIDUAL's input is the block input and its outshape the block output; it carries the
	 * branch lengths (nmain, nshort) and whether a ReLU follows the add (relu). SHORTCUT
	 * starts the shortcut branch on the block input (its in and outshape: the block input).
	 * ADD sums the main branch's output and the shortcut's (the block input when nshort is
	 * 0), then applies the ReLU when relu. Blocks do not nest. */
	CIGT_OP_RESIDUAL,
	CIGT_OP_SHORTCUT,
	CIGT_OP_ADD,
};

/* Where an op sits in the JSON chain it was written in (for tensor names and messages):
 * entry `top` of the chain, and within a residual block its branch and index there. */
enum cigt_branch { CIGT_BRANCH_NONE, CIGT_BRANCH_MAIN, CIGT_BRANCH_SHORTCUT };

/* One sample's activation shape, channels-first (C x H x W). A flat vector is C x 1 x 1. */
struct cigt_shape {
	int c, h, w;
};

static inline int64_t cigt_shape_size(struct cigt_shape s)
{
	return (int64_t)s.c * s.h * s.w;
}

struct cigt_op_desc {
	enum cigt_op_kind kind;
	int out;                    /* conv: output channels; linear: output features */
	int kh, kw, sh, sw, ph, pw; /* conv and pooling geometry */
	bool bias;                  /* conv and linear */
	float eps, momentum;        /* batchnorm */
	float p;                    /* dropout probability */
	bool relu;                  /* RESIDUAL and ADD: a ReLU after the add */
	int nmain, nshort;          /* RESIDUAL: ops in its main and shortcut branches */
	int top;                    /* entry of the JSON chain (the block, inside a block) */
	enum cigt_branch branch;    /* inside a block: which branch (markers: NONE) */
	int sub;                    /* inside a block: index within the branch */
	struct cigt_shape in, outshape;
	int64_t macs;   /* multiply-accumulates per sample */
	int64_t params; /* trainable parameters */
};

/* Router after a layer: its own op chain (optional: convs, pools, residual blocks; expanded
 * like an expert's) -> avgpool(kernel = stride = pool) -> flatten -> linear(hidden) ->
 * batchnorm1d -> linear(K of the next layer); routes are softmax(a / T), argmax at inference. */
struct cigt_router_desc {
	int nops;                   /* 0: the pool reads the layer output */
	struct cigt_op_desc *ops;   /* nops, owned */
	struct cigt_shape chain_out; /* what the pool reads (the layer output when nops is 0) */
	int pool_h, pool_w;
	int hidden;
	int out;
	float bn_eps, bn_momentum;
	struct cigt_shape in;   /* the layer's output shape */
	struct cigt_shape pooled;
	int64_t macs;   /* the chain's and both linears' */
	int64_t params;
};

struct cigt_layer_desc {
	int experts;
	int nops;                 /* expanded: residual blocks count their markers and branches */
	struct cigt_op_desc *ops; /* nops, owned */
	bool has_router; /* every layer but the last */
	struct cigt_router_desc router;
	struct cigt_shape in, out;
	int64_t expert_macs;   /* one expert, per sample */
	int64_t expert_params; /* one expert */
};

#define CIGT_MAX_NORM_CHANNELS 16 /* input.mean/std: channels they can describe */

struct cigt_arch {
	char name[CIGT_NAME_MAX];
	struct cigt_shape input;
	/* Input scaling, one of two forms. range (normalized false): pixel p becomes
	 * range_lo + (range_hi - range_lo) * p / 255. mean/std (normalized true, torchvision's
	 * Normalize): p becomes (p / 255 - mean[c]) / std[c]; range_lo/range_hi then hold the
	 * smallest and largest value any channel can take (the bounds float inputs are checked
	 * against). */
	float range_lo, range_hi;
	bool normalized;
	float mean[CIGT_MAX_NORM_CHANNELS], std[CIGT_MAX_NORM_CHANNELS];
	int nclasses;
	char **classes;           /* nclasses labels, owned */
	int nlayers;
	struct cigt_layer_desc layers[CIGT_MAX_LAYERS];
	int64_t path_macs;  /* one route, routers included */
	int64_t dense_macs; /* every expert of every layer, routers included */
	int64_t params;
	int npaths;
};

/* Parses and validates an architecture from a JSON text (the config's model part; a "train"
 * member is ignored here and read by the trainer). Unknown keys, impossible shapes and missing
 * fields fail with a message naming the key, e.g. "layers[1].ops[0]: unknown key 'kernal'".
 * On success *out is a new arch to free with cigt_arch_free. */
int cigt_arch_parse(const char *json, size_t len, struct cigt_arch **out, char *err, size_t errlen);
/* Same, from a file path. */
int cigt_arch_load(const char *path, struct cigt_arch **out, char *err, size_t errlen);
/* Same, from a jansson object (borrowed). */
struct json_t;
int cigt_arch_from_json(const struct json_t *root, struct cigt_arch **out, char *err,
			size_t errlen);
/* Serialises the architecture to canonical JSON (caller frees with free()). NULL on ENOMEM. */
char *cigt_arch_to_json(const struct cigt_arch *a);
/* Builds the jansson object the serialiser writes (new reference). */
struct json_t *cigt_arch_json(const struct cigt_arch *a);
void cigt_arch_free(struct cigt_arch *a);
/* True when b takes the same input as a (geometry, range or mean/std scaling) and answers the
 * same classes (count and names, in order): what the second model of an escalating operating
 * point must share with the first (proto/model-format.md section 6). */
bool cigt_arch_same_io(const struct cigt_arch *a, const struct cigt_arch *b);

const char *cigt_op_name(enum cigt_op_kind k);

/* True when the architecture uses a residual block, global average pooling or a router op
 * chain: the format's additions of cigt 0.2 (proto/model-format.md), which a reader of an
 * earlier version refuses. The engine runs them and the trainer trains them. */
bool cigt_arch_is_residual(const struct cigt_arch *a);

/* Switches the input to the mean/std form with one mean and std per channel (nc = input.c, at
 * most CIGT_MAX_NORM_CHANNELS; every std > 0), updating range_lo/range_hi. Returns 0 or
 * CIGT_EINVAL (nothing changed). */
int cigt_arch_set_normalization(struct cigt_arch *a, const double *mean, const double *std);
/* The model input value of 8-bit pixel p in channel c, as cigt_model_preprocess_u8 computes it. */
float cigt_arch_pixel_value(const struct cigt_arch *a, int c, uint8_t p);

/* Per-sample input size in floats (C*H*W). */
static inline int64_t cigt_arch_input_size(const struct cigt_arch *a)
{
	return cigt_shape_size(a->input);
}

#endif
