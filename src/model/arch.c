/* Architecture JSON: strict parsing (unknown keys, wrong types and impossible shapes are errors
 * naming the key), shape resolution, MAC and parameter counting, and canonical serialisation.
 * The format is specified in proto/model-format.md section 2. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/arch.h"
#include "cigt/error.h"
#include "../common/name.h"

_Static_assert(CIGT_NAME_MAX == CIGT__MODEL_NAME_LEN + 1, "arch.name holds a model name");

#define ERR(...) cigt_fail(err, errlen, CIGT_EFORMAT, __VA_ARGS__)

/* Multiply-accumulates and parameters of one conv or linear op, per sample, at most. Far above
 * any real network (the reference is 5.7e6 MACs in all), it keeps every MAC and parameter total
 * exact in int64: 16 layers x 64 experts x 2048 ops x 2^40 < 2^63 (routers add less than
 * 16 x 2^51). */
#define OP_COST_MAX ((int64_t)1 << 40)

static const char *const op_names[] = {
	[CIGT_OP_CONV] = "conv",       [CIGT_OP_BATCHNORM] = "batchnorm",
	[CIGT_OP_RELU] = "relu",       [CIGT_OP_MAXPOOL] = "maxpool",
	[CIGT_OP_AVGPOOL] = "avgpool", [CIGT_OP_FLATTEN] = "flatten",
	[CIGT_OP_LINEAR] = "linear",   [CIGT_OP_DROPOUT] = "dropout",
	[CIGT_OP_GLOBALAVGPOOL] = "globalavgpool", [CIGT_OP_RESIDUAL] = "residual",
	[CIGT_OP_SHORTCUT] = "shortcut", [CIGT_OP_ADD] = "add",
};

const char *cigt_op_name(enum cigt_op_kind k)
{
	return (unsigned)k < sizeof op_names / sizeof op_names[0] ? op_names[k] : "?";
}

/* Fails on any key of obj not in the NULL-terminated allowed list. */
static int check_keys(const json_t *obj, const char *const *allowed, const char *path, char *err,
		      size_t errlen)
{
	const char *key;
	json_t *val;
	json_object_foreach((json_t *)obj, key, val) {
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			ok |= strcmp(*a, key) == 0;
		if (!ok)
			return ERR("%s: unknown key '%s'", path, key);
	}
	return 0;
}

/* Reads an integer member in [lo, hi]; absent -> def (or an error when required). */
static int get_int(const json_t *obj, const char *key, int def, int required, int lo, int hi,
		   const char *path, int *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	if (!v) {
		if (required)
			return ERR("%s: missing key '%s'", path, key);
		*out = def;
		return 0;
	}
	if (!json_is_integer(v))
		return ERR("%s.%s: expected an integer", path, key);
	json_int_t x = json_integer_value(v);
	if (x < lo || x > hi)
		return ERR("%s.%s: %lld is out of range [%d, %d]", path, key, (long long)x, lo, hi);
	*out = (int)x;
	return 0;
}

static int get_num(const json_t *obj, const char *key, double def, double lo, double hi,
		   const char *path, double *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (!json_is_number(v))
		return ERR("%s.%s: expected a number", path, key);
	double x = json_number_value(v);
	if (!isfinite(x) || x < lo || x > hi)
		return ERR("%s.%s: %g is out of range [%g, %g]", path, key, x, lo, hi);
	*out = x;
	return 0;
}

/* An integer or an [h, w] pair. */
static int get_pair(const json_t *obj, const char *key, int def, int required, int lo, int hi,
		    const char *path, int *h, int *w, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	if (v && json_is_array(v)) {
		if (json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 0)) ||
		    !json_is_integer(json_array_get(v, 1)))
			return ERR("%s.%s: expected an integer or [h, w]", path, key);
		json_int_t a = json_integer_value(json_array_get(v, 0));
		json_int_t b = json_integer_value(json_array_get(v, 1));
		if (a < lo || a > hi || b < lo || b > hi)
			return ERR("%s.%s: [%lld, %lld] is out of range [%d, %d]", path, key,
				   (long long)a, (long long)b, lo, hi);
		*h = (int)a;
		*w = (int)b;
		return 0;
	}
	int x = 0, rc = get_int(obj, key, def, required, lo, hi, path, &x, err, errlen);
	if (rc)
		return rc;
	*h = *w = x;
	return 0;
}

static int get_bool(const json_t *obj, const char *key, bool def, const char *path, bool *out,
		    char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (!json_is_boolean(v))
		return ERR("%s.%s: expected true or false", path, key);
	*out = json_is_true(v);
	return 0;
}

static int window_out(int in, int k, int s, int p, int *out)
{
	int span = in + 2 * p - k;
	if (span < 0)
		return -1;
	*out = span / s + 1;
	return 0;
}

/* The op kinds' own keys: each reads its keys into op and sets the output shape *o (a copy of
 * the input shape on entry) and the op's MACs and parameters. */
static int parse_conv(const json_t *j, const char *path, const struct cigt_shape *shape,
		      struct cigt_shape *o, struct cigt_op_desc *op, char *err, size_t errlen)
{
	static const char *const keys[] = {"type", "out", "kernel", "stride", "padding", "bias",
					   NULL};
	int rc;
	if ((rc = check_keys(j, keys, path, err, errlen)) ||
	    (rc = get_int(j, "out", 0, 1, 1, 65536, path, &op->out, err, errlen)) ||
	    (rc = get_pair(j, "kernel", 0, 1, 1, 1024, path, &op->kh, &op->kw, err, errlen)) ||
	    (rc = get_pair(j, "stride", 1, 0, 1, 1024, path, &op->sh, &op->sw, err, errlen)) ||
	    (rc = get_pair(j, "padding", 0, 0, 0, 1024, path, &op->ph, &op->pw, err, errlen)) ||
	    (rc = get_bool(j, "bias", true, path, &op->bias, err, errlen)))
		return rc;
	if (window_out(shape->h, op->kh, op->sh, op->ph, &o->h) ||
	    window_out(shape->w, op->kw, op->sw, op->pw, &o->w))
		return ERR("%s: kernel %dx%d does not fit the %dx%d input", path, op->kh, op->kw,
			   shape->h, shape->w);
	o->c = op->out;
	/* Checked before multiplying: the product of the largest allowed sizes overflows. */
	const int64_t per_out = (int64_t)shape->c * op->kh * op->kw; /* < 2^47 */
	if (per_out > OP_COST_MAX / cigt_shape_size(*o) || per_out > OP_COST_MAX / o->c)
		return ERR("%s: more than 2^40 multiply-accumulates or parameters", path);
	op->macs = (int64_t)o->h * o->w * o->c * shape->c * op->kh * op->kw;
	op->params = (int64_t)o->c * shape->c * op->kh * op->kw + (op->bias ? o->c : 0);
	return 0;
}

static int parse_batchnorm(const json_t *j, const char *path, const struct cigt_shape *shape,
			   struct cigt_op_desc *op, char *err, size_t errlen)
{
	static const char *const keys[] = {"type", "eps", "momentum", NULL};
	double eps = 0, mom = 0;
	int rc;
	if ((rc = check_keys(j, keys, path, err, errlen)) ||
	    (rc = get_num(j, "eps", 1e-5, 1e-12, 1.0, path, &eps, err, errlen)) ||
	    (rc = get_num(j, "momentum", 0.1, 0.0, 1.0, path, &mom, err, errlen)))
		return rc;
	op->eps = (float)eps;
	op->momentum = (float)mom;
	op->params = 2 * (int64_t)shape->c;
	return 0;
}

static int parse_pool(const json_t *j, const char *path, const struct cigt_shape *shape,
		      struct cigt_shape *o, struct cigt_op_desc *op, char *err, size_t errlen)
{
	static const char *const keys[] = {"type", "kernel", "stride", "padding", NULL};
	int rc;
	if ((rc = check_keys(j, keys, path, err, errlen)) ||
	    (rc = get_pair(j, "kernel", 0, 1, 1, 1024, path, &op->kh, &op->kw, err, errlen)) ||
	    (rc = get_pair(j, "stride", 0, 0, 0, 1024, path, &op->sh, &op->sw, err, errlen)) ||
	    (rc = get_pair(j, "padding", 0, 0, 0, 1024, path, &op->ph, &op->pw, err, errlen)))
		return rc;
	if (op->sh == 0)
		op->sh = op->kh;
	if (op->sw == 0)
		op->sw = op->kw;
	if (2 * op->ph > op->kh || 2 * op->pw > op->kw)
		return ERR("%s: padding must be at most half the kernel", path);
	if (window_out(shape->h, op->kh, op->sh, op->ph, &o->h) ||
	    window_out(shape->w, op->kw, op->sw, op->pw, &o->w))
		return ERR("%s: kernel %dx%d does not fit the %dx%d input", path, op->kh, op->kw,
			   shape->h, shape->w);
	return 0;
}

static int parse_linear(const json_t *j, const char *path, const struct cigt_shape *shape,
			struct cigt_shape *o, struct cigt_op_desc *op, char *err, size_t errlen)
{
	static const char *const keys[] = {"type", "out", "bias", NULL};
	int rc;
	if ((rc = check_keys(j, keys, path, err, errlen)) ||
	    (rc = get_int(j, "out", 0, 1, 1, 1 << 20, path, &op->out, err, errlen)) ||
	    (rc = get_bool(j, "bias", true, path, &op->bias, err, errlen)))
		return rc;
	int64_t in = cigt_shape_size(*shape);
	if (in * op->out > OP_COST_MAX) /* < 2^47, no overflow */
		return ERR("%s: more than 2^40 multiply-accumulates or parameters", path);
	o->c = op->out;
	o->h = o->w = 1;
	op->macs = in * op->out;
	op->params = in * op->out + (op->bias ? op->out : 0);
	return 0;
}

static int parse_dropout(const json_t *j, const char *path, struct cigt_op_desc *op, char *err,
			 size_t errlen)
{
	static const char *const keys[] = {"type", "p", NULL};
	double p = 0;
	int rc;
	if ((rc = check_keys(j, keys, path, err, errlen)) ||
	    (rc = get_num(j, "p", 0.5, 0.0, 0.999, path, &p, err, errlen)))
		return rc;
	op->p = (float)p;
	return 0;
}

/* Which ops a chain may hold: an expert's chain takes every kind; a residual block's branches
 * and a router's chain only those that keep a feature map (a router's chain may hold blocks). */
enum chain_ctx { CHAIN_EXPERT, CHAIN_BRANCH, CHAIN_ROUTER };

static const enum cigt_op_kind json_kinds[] = {
	CIGT_OP_CONV,	 CIGT_OP_BATCHNORM, CIGT_OP_RELU,    CIGT_OP_MAXPOOL,	    CIGT_OP_AVGPOOL,
	CIGT_OP_FLATTEN, CIGT_OP_LINEAR,    CIGT_OP_DROPOUT, CIGT_OP_GLOBALAVGPOOL, CIGT_OP_RESIDUAL,
};

static bool kind_allowed(enum cigt_op_kind k, enum chain_ctx ctx)
{
	switch (k) {
	case CIGT_OP_CONV:
	case CIGT_OP_BATCHNORM:
	case CIGT_OP_RELU:
	case CIGT_OP_MAXPOOL:
	case CIGT_OP_AVGPOOL:
		return true;
	case CIGT_OP_DROPOUT:
		return ctx != CHAIN_ROUTER;
	case CIGT_OP_RESIDUAL:
		return ctx != CHAIN_BRANCH;
	default:
		return ctx == CHAIN_EXPERT;
	}
}

static const char *ctx_expected(enum chain_ctx ctx)
{
	switch (ctx) {
	case CHAIN_BRANCH:
		return "conv, batchnorm, relu, maxpool, avgpool or dropout (a residual branch)";
	case CHAIN_ROUTER:
		return "conv, batchnorm, relu, maxpool, avgpool or residual (a router's chain)";
	default:
		return "conv, batchnorm, relu, maxpool, avgpool, globalavgpool, flatten, linear, "
		       "dropout or residual";
	}
}

/* A chain being expanded: the flat op list it grows into. */
struct oplist {
	struct cigt_op_desc *ops;
	int n, cap, max;
};

static struct cigt_op_desc *oplist_push(struct oplist *ol)
{
	if (ol->n == ol->cap) {
		int cap = ol->cap ? 2 * ol->cap : 16;
		void *p = realloc(ol->ops, (size_t)cap * sizeof *ol->ops);
		if (!p)
			return NULL;
		ol->ops = p;
		ol->cap = cap;
	}
	struct cigt_op_desc *op = &ol->ops[ol->n++];
	memset(op, 0, sizeof *op);
	return op;
}

static int parse_chain(const json_t *arr, const char *path, enum chain_ctx ctx, int lo, int hi,
		       struct cigt_shape *shape, struct oplist *ol, int top,
		       enum cigt_branch branch, char *err, size_t errlen);

/* The shape a block's branch ends in, as text. */
static void shape_text(char *buf, size_t len, struct cigt_shape s)
{
	snprintf(buf, len, "%dx%dx%d", s.c, s.h, s.w);
}

/* A residual block: its RESIDUAL marker is ol->ops[at]; main, SHORTCUT, shortcut, ADD follow. */
static int parse_residual(const json_t *j, const char *path, struct cigt_shape *shape,
			  struct oplist *ol, int at, char *err, size_t errlen)
{
	static const char *const keys[] = {"type", "main", "shortcut", "relu", NULL};
	char sub[200];
	int rc;
	bool relu = true;
	if ((rc = check_keys(j, keys, path, err, errlen)) ||
	    (rc = get_bool(j, "relu", true, path, &relu, err, errlen)))
		return rc;
	const struct cigt_shape in = *shape;
	const int top = ol->ops[at].top;
	const json_t *main = json_object_get(j, "main"), *sc = json_object_get(j, "shortcut");
	if (!main)
		return ERR("%s: missing key 'main'", path);
	snprintf(sub, sizeof sub, "%s.main", path);
	struct cigt_shape mo = in, so = in;
	int n0 = ol->n;
	if ((rc = parse_chain(main, sub, CHAIN_BRANCH, 1, CIGT_MAX_BRANCH, &mo, ol, top,
			      CIGT_BRANCH_MAIN, err, errlen)))
		return rc;
	const int nmain = ol->n - n0;
	struct cigt_op_desc *m = oplist_push(ol);
	if (!m)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	m->kind = CIGT_OP_SHORTCUT;
	m->top = top;
	m->in = m->outshape = in;
	n0 = ol->n;
	if (sc && !(json_is_array(sc) && json_array_size(sc) == 0)) {
		snprintf(sub, sizeof sub, "%s.shortcut", path);
		if ((rc = parse_chain(sc, sub, CHAIN_BRANCH, 0, CIGT_MAX_BRANCH, &so, ol, top,
				      CIGT_BRANCH_SHORTCUT, err, errlen)))
			return rc;
	}
	const int nshort = ol->n - n0;
	if (mo.c != so.c || mo.h != so.h || mo.w != so.w) {
		char a[48], b[48];
		shape_text(a, sizeof a, mo);
		shape_text(b, sizeof b, so);
		return nshort ? ERR("%s: the main branch outputs %s but the shortcut %s", path, a, b)
			      : ERR("%s: the main branch outputs %s but the identity shortcut "
				    "passes the input %s (give a shortcut chain, such as a 1x1 conv "
				    "with the main branch's stride, and a batchnorm)",
				    path, a, b);
	}
	struct cigt_op_desc *add = oplist_push(ol);
	if (!add)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	add->kind = CIGT_OP_ADD;
	add->top = top;
	add->relu = relu;
	add->in = add->outshape = mo;
	struct cigt_op_desc *r = &ol->ops[at]; /* the list may have moved */
	r->relu = relu;
	r->nmain = nmain;
	r->nshort = nshort;
	r->in = in;
	r->outshape = mo;
	*shape = mo;
	return 0;
}

/* Parses one op and resolves its output shape from *shape (updated). A residual block expands
 * into several list entries; every other op is one. */
static int parse_op(const json_t *j, const char *path, enum chain_ctx ctx, struct cigt_shape *shape,
		    struct oplist *ol, int top, enum cigt_branch branch, int sub, char *err,
		    size_t errlen)
{
	static const char *const bare_keys[] = {"type", NULL};
	int rc = 0;
	if (!json_is_object(j))
		return ERR("%s: expected an object", path);
	json_t *t = json_object_get(j, "type");
	if (!t || !json_is_string(t))
		return ERR("%s: missing string key 'type'", path);
	const char *type = json_string_value(t);
	int kind = -1;
	for (unsigned i = 0; i < sizeof json_kinds / sizeof json_kinds[0]; i++)
		if (strcmp(type, op_names[json_kinds[i]]) == 0)
			kind = (int)json_kinds[i];
	if (kind < 0)
		return ERR("%s.type: unknown op '%s' (expected %s)", path, type,
			   ctx_expected(CHAIN_EXPERT));
	if (!kind_allowed((enum cigt_op_kind)kind, ctx))
		return ERR("%s.type: '%s' cannot go here (expected %s)", path, type,
			   ctx_expected(ctx));
	if (ol->n >= ol->max)
		return ERR("%s: more than %d ops once residual blocks are expanded", path, ol->max);
	const int at = ol->n;
	struct cigt_op_desc *op = oplist_push(ol);
	if (!op)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	op->kind = (enum cigt_op_kind)kind;
	op->in = *shape;
	op->top = top;
	op->branch = branch;
	op->sub = sub;
	struct cigt_shape o = *shape;
	switch (op->kind) {
	case CIGT_OP_CONV:
		rc = parse_conv(j, path, shape, &o, op, err, errlen);
		break;
	case CIGT_OP_BATCHNORM:
		rc = parse_batchnorm(j, path, shape, op, err, errlen);
		break;
	case CIGT_OP_RELU:
		rc = check_keys(j, bare_keys, path, err, errlen);
		break;
	case CIGT_OP_FLATTEN:
		rc = check_keys(j, bare_keys, path, err, errlen);
		o.c = (int)cigt_shape_size(*shape);
		o.h = o.w = 1;
		break;
	case CIGT_OP_GLOBALAVGPOOL:
		rc = check_keys(j, bare_keys, path, err, errlen);
		o.h = o.w = 1;
		break;
	case CIGT_OP_MAXPOOL:
	case CIGT_OP_AVGPOOL:
		rc = parse_pool(j, path, shape, &o, op, err, errlen);
		break;
	case CIGT_OP_LINEAR:
		rc = parse_linear(j, path, shape, &o, op, err, errlen);
		break;
	case CIGT_OP_DROPOUT:
		rc = parse_dropout(j, path, op, err, errlen);
		break;
	case CIGT_OP_RESIDUAL:
		return parse_residual(j, path, shape, ol, at, err, errlen);
	default:
		break;
	}
	if (rc)
		return rc;
	if (cigt_shape_size(o) > (1 << 26))
		return ERR("%s: output %dx%dx%d is too large", path, o.c, o.h, o.w);
	op->outshape = o;
	*shape = o;
	return 0;
}

/* An op chain (a JSON array of lo..hi entries) expanded onto ol from *shape (updated). Entries
 * of a top-level chain get their own index as `top`; a branch's entries the block's. */
static int parse_chain(const json_t *arr, const char *path, enum chain_ctx ctx, int lo, int hi,
		       struct cigt_shape *shape, struct oplist *ol, int top,
		       enum cigt_branch branch, char *err, size_t errlen)
{
	char p[160];
	if (!arr || !json_is_array(arr) || json_array_size(arr) < (size_t)lo ||
	    json_array_size(arr) > (size_t)hi)
		return ERR("%s: expected an array of %d to %d ops", path, lo, hi);
	const int n = (int)json_array_size(arr);
	for (int i = 0; i < n; i++) {
		snprintf(p, sizeof p, "%s[%d]", path, i);
		int at = ol->n;
		int rc = parse_op(json_array_get(arr, (size_t)i), p, ctx, shape, ol,
				  branch == CIGT_BRANCH_NONE ? i : top, branch, i, err, errlen);
		if (rc)
			return rc;
		if (ol->ops[at].kind == CIGT_OP_BATCHNORM && i > 0 &&
		    ol->ops[at - 1].kind == CIGT_OP_BATCHNORM)
			return ERR("%s: two batchnorms in a row", p);
	}
	return 0;
}

static void sum_costs(const struct cigt_op_desc *ops, int n, int64_t *macs, int64_t *params)
{
	for (int i = 0; i < n; i++) {
		*macs += ops[i].macs;
		*params += ops[i].params;
	}
}

static int parse_router(const json_t *j, const char *path, struct cigt_shape in, int next_k,
			struct cigt_router_desc *r, char *err, size_t errlen)
{
	static const char *const keys[] = {"ops", "pool", "hidden", "bn_eps", "bn_momentum", NULL};
	char sub[128];
	int rc;
	double eps = 0, mom = 0;
	if (!json_is_object(j))
		return ERR("%s: expected an object", path);
	if ((rc = check_keys(j, keys, path, err, errlen)))
		return rc;
	r->in = in;
	int64_t chain_macs = 0, chain_params = 0;
	const json_t *ops = json_object_get(j, "ops");
	if (ops) {
		struct oplist ol = {.max = CIGT_MAX_OPS};
		snprintf(sub, sizeof sub, "%s.ops", path);
		rc = parse_chain(ops, sub, CHAIN_ROUTER, 1, CIGT_MAX_ROUTER_OPS, &in, &ol, 0,
				 CIGT_BRANCH_NONE, err, errlen);
		r->ops = ol.ops;
		r->nops = ol.n;
		if (rc)
			return rc;
		sum_costs(r->ops, r->nops, &chain_macs, &chain_params);
	}
	r->chain_out = in;
	if (
	    (rc = get_pair(j, "pool", 0, 1, 1, 4096, path, &r->pool_h, &r->pool_w, err, errlen)) ||
	    (rc = get_int(j, "hidden", 0, 1, 1, 65536, path, &r->hidden, err, errlen)) ||
	    (rc = get_num(j, "bn_eps", 1e-5, 1e-12, 1.0, path, &eps, err, errlen)) ||
	    (rc = get_num(j, "bn_momentum", 0.1, 0.0, 1.0, path, &mom, err, errlen)))
		return rc;
	if (r->pool_h > in.h || r->pool_w > in.w)
		return ERR("%s.pool: %dx%d is larger than the %s %dx%d", path, r->pool_h,
			   r->pool_w, r->nops ? "router chain's output" : "layer output", in.h,
			   in.w);
	r->bn_eps = (float)eps;
	r->bn_momentum = (float)mom;
	r->pooled = (struct cigt_shape){in.c, in.h / r->pool_h, in.w / r->pool_w};
	r->out = next_k;
	int64_t p = cigt_shape_size(r->pooled);
	r->macs = chain_macs + p * r->hidden + (int64_t)r->hidden * next_k;
	r->params = chain_params + p * r->hidden + r->hidden + 2 * (int64_t)r->hidden +
		    (int64_t)r->hidden * next_k + next_k;
	return 0;
}

/* input.mean / input.std: arrays of one number per channel (or one number for all), both or
 * neither, and never with input.range. */
static int parse_normalization(const json_t *in, struct cigt_arch *a, char *err, size_t errlen)
{
	const json_t *mj = json_object_get(in, "mean"), *sj = json_object_get(in, "std");
	if (!mj && !sj)
		return 0;
	if (!mj || !sj)
		return ERR("input: 'mean' and 'std' go together");
	if (json_object_get(in, "range"))
		return ERR("input: give either 'range' or 'mean' and 'std', not both");
	const int C = a->input.c;
	if (C > CIGT_MAX_NORM_CHANNELS)
		return ERR("input: mean/std describe at most %d channels, not %d",
			   CIGT_MAX_NORM_CHANNELS, C);
	double v[2][CIGT_MAX_NORM_CHANNELS];
	const json_t *arr[2] = {mj, sj};
	const char *key[2] = {"mean", "std"};
	for (int k = 0; k < 2; k++) {
		size_t n = json_is_array(arr[k]) ? json_array_size(arr[k]) : 0;
		if (n != 1 && n != (size_t)C)
			return ERR("input.%s: expected an array of %d number%s (one per channel)%s",
				   key[k], C, C == 1 ? "" : "s", C == 1 ? "" : " or of 1");
		for (int c = 0; c < C; c++) {
			const json_t *x = json_array_get(arr[k], n == 1 ? 0 : (size_t)c);
			if (!json_is_number(x))
				return ERR("input.%s[%d]: expected a number", key[k], c);
			v[k][c] = json_number_value(x);
			bool ok = k == 0 ? isfinite(v[k][c]) && fabs(v[k][c]) <= 1e3
					 : v[k][c] >= 1e-6 && v[k][c] <= 1e3;
			if (!ok)
				return ERR("input.%s[%d]: %g is outside %s", key[k], c, v[k][c],
					   k == 0 ? "[-1000, 1000]" : "[1e-6, 1000]");
		}
	}
	return cigt_arch_set_normalization(a, v[0], v[1]) ? ERR("input: bad mean/std") : 0;
}

/* name: the model's name. */
static int parse_name(const json_t *root, struct cigt_arch *a, char *err, size_t errlen)
{
	json_t *name = json_object_get(root, "name");
	if (!name || !json_is_string(name))
		return ERR("name: missing string key 'name'");
	const char *nm = json_string_value(name);
	if (!cigt__model_name_ok(nm, strlen(nm)))
		return ERR("name: '%s' must be 1-63 characters of [A-Za-z0-9_.-]",
			   json_string_value(name));
	snprintf(a->name, sizeof a->name, "%s", json_string_value(name));
	return 0;
}

/* input: geometry, then range or mean/std. */
static int parse_input(const json_t *root, struct cigt_arch *a, char *err, size_t errlen)
{
	static const char *const input_keys[] = {"channels", "height", "width", "range", "mean",
						 "std", NULL};
	int rc;
	json_t *in = json_object_get(root, "input");
	if (!in || !json_is_object(in))
		return ERR("input: missing object key 'input'");
	if ((rc = check_keys(in, input_keys, "input", err, errlen)) ||
	    (rc = get_int(in, "channels", 0, 1, 1, 4096, "input", &a->input.c, err, errlen)) ||
	    (rc = get_int(in, "height", 0, 1, 1, 4096, "input", &a->input.h, err, errlen)) ||
	    (rc = get_int(in, "width", 0, 1, 1, 4096, "input", &a->input.w, err, errlen)))
		return rc;
	a->range_lo = 0.0f;
	a->range_hi = 1.0f;
	json_t *range = json_object_get(in, "range");
	if (range) {
		if (!json_is_array(range) || json_array_size(range) != 2 ||
		    !json_is_number(json_array_get(range, 0)) ||
		    !json_is_number(json_array_get(range, 1)))
			return ERR("input.range: expected [lo, hi]");
		double lo = json_number_value(json_array_get(range, 0));
		double hi = json_number_value(json_array_get(range, 1));
		if (!isfinite(lo) || !isfinite(hi) || fabs(lo) > 1e6 || fabs(hi) > 1e6 || lo == hi)
			return ERR("input.range: [%g, %g] must be finite, distinct and within 1e6",
				   lo, hi);
		a->range_lo = (float)lo;
		a->range_hi = (float)hi;
	}
	if ((rc = parse_normalization(in, a, err, errlen)))
		return rc;
	if (cigt_shape_size(a->input) > (1 << 24))
		return ERR("input: %dx%dx%d is too large", a->input.c, a->input.h, a->input.w);
	return 0;
}

/* classes: the labels, in logit order. */
static int parse_classes(const json_t *root, struct cigt_arch *a, char *err, size_t errlen)
{
	json_t *classes = json_object_get(root, "classes");
	if (!classes || !json_is_array(classes) || json_array_size(classes) < 1 ||
	    json_array_size(classes) > CIGT_MAX_CLASSES)
		return ERR("classes: expected an array of 1 to %d labels", CIGT_MAX_CLASSES);
	a->nclasses = (int)json_array_size(classes);
	a->classes = calloc((size_t)a->nclasses, sizeof *a->classes);
	if (!a->classes)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	for (int i = 0; i < a->nclasses; i++) {
		json_t *c = json_array_get(classes, (size_t)i);
		if (!json_is_string(c) || json_string_length(c) < 1 ||
		    json_string_length(c) > 255)
			return ERR("classes[%d]: expected a label of 1 to 255 characters", i);
		if (!(a->classes[i] = strdup(json_string_value(c))))
			return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	}
	return 0;
}

/* layers[].experts, read first: a router's output size is the next layer's count. */
static int parse_experts(const json_t *layers, struct cigt_arch *a, char *err, size_t errlen)
{
	static const char *const layer_keys[] = {"experts", "ops", "router", NULL};
	char path[96];
	int rc;
	if (!layers || !json_is_array(layers) || json_array_size(layers) < 1 ||
	    json_array_size(layers) > CIGT_MAX_LAYERS)
		return ERR("layers: expected an array of 1 to %d layers", CIGT_MAX_LAYERS);
	a->nlayers = (int)json_array_size(layers);
	for (int l = 0; l < a->nlayers; l++) {
		json_t *jl = json_array_get(layers, (size_t)l);
		snprintf(path, sizeof path, "layers[%d]", l);
		if (!json_is_object(jl))
			return ERR("%s: expected an object", path);
		if ((rc = check_keys(jl, layer_keys, path, err, errlen)) ||
		    (rc = get_int(jl, "experts", 0, 1, 1, CIGT_MAX_EXPERTS, path,
				  &a->layers[l].experts, err, errlen)))
			return rc;
	}
	if (a->layers[0].experts != 1)
		return ERR("layers[0].experts: the first layer must have exactly 1 expert");
	return 0;
}

/* Layer l's op chain and router from *shape (updated to the layer's output), and its share
 * of the architecture's MACs, parameters and paths. */
static int parse_layer(const json_t *jl, int l, struct cigt_shape *shape, struct cigt_arch *a,
		       char *err, size_t errlen)
{
	struct cigt_layer_desc *L = &a->layers[l];
	char path[96];
	int rc;
	json_t *ops = json_object_get(jl, "ops");
	snprintf(path, sizeof path, "layers[%d].ops", l);
	L->in = *shape;
	struct oplist ol = {.max = CIGT_MAX_OPS};
	rc = parse_chain(ops, path, CHAIN_EXPERT, 1, CIGT_MAX_CHAIN, shape, &ol, 0,
			 CIGT_BRANCH_NONE, err, errlen);
	L->ops = ol.ops;
	L->nops = ol.n;
	if (rc)
		return rc;
	sum_costs(L->ops, L->nops, &L->expert_macs, &L->expert_params);
	L->out = *shape;
	json_t *jr = json_object_get(jl, "router");
	snprintf(path, sizeof path, "layers[%d].router", l);
	if (l + 1 < a->nlayers) {
		if (!jr)
			return ERR("%s: missing (every layer but the last needs a router)", path);
		if ((rc = parse_router(jr, path, *shape, a->layers[l + 1].experts, &L->router, err,
				       errlen)))
			return rc;
		L->has_router = true;
	} else if (jr) {
		return ERR("%s: the last layer cannot have a router", path);
	}
	a->path_macs += L->expert_macs + (L->has_router ? L->router.macs : 0);
	a->dense_macs += L->experts * L->expert_macs + (L->has_router ? L->router.macs : 0);
	a->params += L->experts * L->expert_params + (L->has_router ? L->router.params : 0);
	a->npaths *= L->experts;
	return 0;
}

int cigt_arch_from_json(const json_t *root, struct cigt_arch **out, char *err, size_t errlen)
{
	static const char *const top_keys[] = {"name", "input", "classes", "layers", "train",
					       NULL};
	int rc;
	*out = NULL;
	if (!json_is_object(root))
		return ERR("architecture: expected a JSON object");
	if ((rc = check_keys(root, top_keys, "architecture", err, errlen)))
		return rc;
	struct cigt_arch *a = calloc(1, sizeof *a);
	if (!a)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	json_t *layers = json_object_get(root, "layers");
	if ((rc = parse_name(root, a, err, errlen)) || (rc = parse_input(root, a, err, errlen)) ||
	    (rc = parse_classes(root, a, err, errlen)) ||
	    (rc = parse_experts(layers, a, err, errlen)))
		goto fail;
	struct cigt_shape shape = a->input;
	a->npaths = 1;
	for (int l = 0; l < a->nlayers; l++)
		if ((rc = parse_layer(json_array_get(layers, (size_t)l), l, &shape, a, err, errlen)))
			goto fail;
	if (shape.h != 1 || shape.w != 1 || shape.c != a->nclasses) {
		rc = ERR("layers[%d]: the last layer outputs %dx%dx%d but there are %d classes (end "
			 "with a linear of %d outputs)",
			 a->nlayers - 1, shape.c, shape.h, shape.w, a->nclasses, a->nclasses);
		goto fail;
	}
	*out = a;
	return 0;
fail:
	cigt_arch_free(a);
	return rc;
}

int cigt_arch_parse(const char *text, size_t len, struct cigt_arch **out, char *err,
		    size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	*out = NULL;
	if (!root)
		return ERR("architecture JSON: %s at line %d column %d", je.text, je.line,
			   je.column);
	int rc = cigt_arch_from_json(root, out, err, errlen);
	json_decref(root);
	return rc;
}

int cigt_arch_load(const char *path, struct cigt_arch **out, char *err, size_t errlen)
{
	json_error_t je;
	*out = NULL;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return je.line < 1 ? ERR("%s", je.text) /* "unable to open PATH: ..." */
				   : ERR("%s: %s (line %d column %d)", path, je.text, je.line,
					 je.column);
	int rc = cigt_arch_from_json(root, out, err, errlen);
	json_decref(root);
	return rc;
}

void cigt_arch_free(struct cigt_arch *a)
{
	if (!a)
		return;
	if (a->classes)
		for (int i = 0; i < a->nclasses; i++)
			free(a->classes[i]);
	free(a->classes);
	for (int l = 0; l < CIGT_MAX_LAYERS; l++) {
		free(a->layers[l].ops);
		free(a->layers[l].router.ops);
	}
	free(a);
}

bool cigt_arch_is_residual(const struct cigt_arch *a)
{
	for (int l = 0; l < a->nlayers; l++) {
		if (a->layers[l].router.nops)
			return true;
		for (int i = 0; i < a->layers[l].nops; i++)
			if (a->layers[l].ops[i].kind >= CIGT_OP_GLOBALAVGPOOL)
				return true;
	}
	return false;
}

bool cigt_arch_same_io(const struct cigt_arch *a, const struct cigt_arch *b)
{
	if (a->nclasses != b->nclasses || a->input.c != b->input.c || a->input.h != b->input.h ||
	    a->input.w != b->input.w || a->range_lo != b->range_lo || a->range_hi != b->range_hi ||
	    a->normalized != b->normalized)
		return false;
	for (int c = 0; a->normalized && c < a->input.c && c < CIGT_MAX_NORM_CHANNELS; c++)
		if (a->mean[c] != b->mean[c] || a->std[c] != b->std[c])
			return false;
	for (int c = 0; c < a->nclasses; c++)
		if (strcmp(a->classes[c], b->classes[c]) != 0)
			return false;
	return true;
}

static json_t *pair_json(int h, int w)
{
	return h == w ? json_integer(h) : json_pack("[ii]", h, w);
}

static json_t *op_json(const struct cigt_op_desc *op)
{
	json_t *o = json_pack("{ss}", "type", cigt_op_name(op->kind));
	switch (op->kind) {
	case CIGT_OP_CONV:
		json_object_set_new(o, "out", json_integer(op->out));
		json_object_set_new(o, "kernel", pair_json(op->kh, op->kw));
		json_object_set_new(o, "stride", pair_json(op->sh, op->sw));
		json_object_set_new(o, "padding", pair_json(op->ph, op->pw));
		json_object_set_new(o, "bias", json_boolean(op->bias));
		break;
	case CIGT_OP_LINEAR:
		json_object_set_new(o, "out", json_integer(op->out));
		json_object_set_new(o, "bias", json_boolean(op->bias));
		break;
	case CIGT_OP_BATCHNORM:
		json_object_set_new(o, "eps", json_real(op->eps));
		json_object_set_new(o, "momentum", json_real(op->momentum));
		break;
	case CIGT_OP_MAXPOOL:
	case CIGT_OP_AVGPOOL:
		json_object_set_new(o, "kernel", pair_json(op->kh, op->kw));
		json_object_set_new(o, "stride", pair_json(op->sh, op->sw));
		json_object_set_new(o, "padding", pair_json(op->ph, op->pw));
		break;
	case CIGT_OP_DROPOUT:
		json_object_set_new(o, "p", json_real(op->p));
		break;
	default:
		break;
	}
	return o;
}

/* The JSON chain of n expanded ops: a residual block's markers and branches become one
 * entry again. */
static json_t *chain_json(const struct cigt_op_desc *ops, int n)
{
	json_t *arr = json_array();
	for (int i = 0; i < n; i++) {
		const struct cigt_op_desc *op = &ops[i];
		if (op->kind != CIGT_OP_RESIDUAL) {
			json_array_append_new(arr, op_json(op));
			continue;
		}
		json_t *main = chain_json(op + 1, op->nmain);
		json_t *sc = chain_json(op + 2 + op->nmain, op->nshort);
		json_array_append_new(arr, json_pack("{ss so so sb}", "type", "residual", "main",
						     main, "shortcut", sc, "relu", op->relu));
		i += op->nmain + op->nshort + 2; /* the block's branches, SHORTCUT and ADD */
	}
	return arr;
}

json_t *cigt_arch_json(const struct cigt_arch *a)
{
	json_t *classes = json_array();
	for (int i = 0; i < a->nclasses; i++)
		json_array_append_new(classes, json_string(a->classes[i]));
	json_t *layers = json_array();
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		json_t *ops = chain_json(L->ops, L->nops);
		json_t *jl = json_pack("{si so}", "experts", L->experts, "ops", ops);
		if (L->has_router) {
			json_t *r = json_pack("{so si sf sf}", "pool",
					      pair_json(L->router.pool_h, L->router.pool_w),
					      "hidden", L->router.hidden, "bn_eps",
					      (double)L->router.bn_eps, "bn_momentum",
					      (double)L->router.bn_momentum);
			if (L->router.nops)
				json_object_set_new(r, "ops",
						    chain_json(L->router.ops, L->router.nops));
			json_object_set_new(jl, "router", r);
		}
		json_array_append_new(layers, jl);
	}
	json_t *in = json_pack("{si si si}", "channels", a->input.c, "height", a->input.h, "width",
			       a->input.w);
	if (a->normalized) {
		json_t *mean = json_array(), *std = json_array();
		for (int c = 0; c < a->input.c; c++) {
			json_array_append_new(mean, json_real(a->mean[c]));
			json_array_append_new(std, json_real(a->std[c]));
		}
		json_object_set_new(in, "mean", mean);
		json_object_set_new(in, "std", std);
	} else {
		json_object_set_new(in, "range", json_pack("[ff]", (double)a->range_lo,
							   (double)a->range_hi));
	}
	return json_pack("{ss so so so}", "name", a->name, "input", in, "classes", classes,
			 "layers", layers);
}

int cigt_arch_set_normalization(struct cigt_arch *a, const double *mean, const double *std)
{
	if (a->input.c > CIGT_MAX_NORM_CHANNELS)
		return CIGT_EINVAL;
	for (int c = 0; c < a->input.c; c++)
		if (!isfinite(mean[c]) || fabs(mean[c]) > 1e3 || !isfinite(std[c]) ||
		    !(std[c] >= 1e-6 && std[c] <= 1e3))
			return CIGT_EINVAL;
	a->normalized = true;
	for (int c = 0; c < a->input.c; c++) {
		a->mean[c] = (float)mean[c];
		a->std[c] = (float)std[c];
	}
	float lo = cigt_arch_pixel_value(a, 0, 0), hi = cigt_arch_pixel_value(a, 0, 255);
	for (int c = 1; c < a->input.c; c++) {
		lo = fminf(lo, cigt_arch_pixel_value(a, c, 0));
		hi = fmaxf(hi, cigt_arch_pixel_value(a, c, 255));
	}
	a->range_lo = lo;
	a->range_hi = hi;
	return 0;
}

float cigt_arch_pixel_value(const struct cigt_arch *a, int c, uint8_t p)
{
	if (a->normalized)
		return ((float)p / 255.0f - a->mean[c]) / a->std[c];
	return a->range_lo + (a->range_hi - a->range_lo) * (float)p / 255.0f;
}

char *cigt_arch_to_json(const struct cigt_arch *a)
{
	json_t *j = cigt_arch_json(a);
	if (!j)
		return NULL;
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
	json_decref(j);
	return s;
}
