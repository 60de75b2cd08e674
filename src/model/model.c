/* The model's tensors: the canonical list derived from the architecture (names, shapes, order;
 * proto/model-format.md section 4), one contiguous blob holding them all, initialisation, and
 * input preprocessing. File reading and writing live in safetensors.c. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/model.h"
#include "model_internal.h"
#include "../common/util.h"

struct tensor_list {
	struct cigt_tensor_info *t;
	int n, cap;
	int64_t floats;
};

static int add(struct tensor_list *tl, float **slot, enum cigt_tensor_role role, int64_t fan_in,
	       int ndim, const int64_t *shape, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

static int add(struct tensor_list *tl, float **slot, enum cigt_tensor_role role, int64_t fan_in,
	       int ndim, const int64_t *shape, const char *fmt, ...)
{
	if (tl->n == tl->cap) {
		int cap = tl->cap ? tl->cap * 2 : 64;
		void *p = realloc(tl->t, (size_t)cap * sizeof *tl->t);
		if (!p)
			return CIGT_ENOMEM;
		tl->t = p;
		tl->cap = cap;
	}
	struct cigt_tensor_info *t = &tl->t[tl->n++];
	memset(t, 0, sizeof *t);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->name, sizeof t->name, fmt, ap);
	va_end(ap);
	t->ndim = ndim;
	t->numel = 1;
	for (int i = 0; i < ndim; i++) {
		t->shape[i] = shape[i];
		t->numel *= shape[i];
	}
	t->offset = tl->floats;
	t->role = role;
	t->fan_in = fan_in;
	t->trainable = role != CIGT_T_BN_MEAN && role != CIGT_T_BN_VAR;
	t->slot = slot;
	tl->floats += t->numel;
	return 0;
}

#define SHAPE(...) (const int64_t[]){__VA_ARGS__}

/* The tensor-name prefix of an expanded op: base (".../ops" of its chain) + ".{top}", and
 * inside a residual block ".main.{sub}" or ".shortcut.{sub}". */
static void op_prefix(char *buf, size_t len, const char *base, const struct cigt_op_desc *op)
{
	if (op->branch == CIGT_BRANCH_NONE)
		snprintf(buf, len, "%s.%d", base, op->top);
	else
		snprintf(buf, len, "%s.%d.%s.%d", base, op->top,
			 op->branch == CIGT_BRANCH_MAIN ? "main" : "shortcut", op->sub);
}

/* The tensors of one op (none for ops without parameters). */
static int op_tensors(struct tensor_list *tl, const struct cigt_op_desc *op,
		      struct cigt_op_params *p, const char *pre)
{
	int64_t c = op->in.c, in = cigt_shape_size(op->in);
	int rc = 0;
	switch (op->kind) {
	case CIGT_OP_CONV:
		rc = add(tl, &p->w, CIGT_T_WEIGHT, c * op->kh * op->kw, 4,
			 SHAPE(op->out, c, op->kh, op->kw), "%s.weight", pre);
		if (!rc && op->bias)
			rc = add(tl, &p->b, CIGT_T_BIAS, c * op->kh * op->kw, 1, SHAPE(op->out),
				 "%s.bias", pre);
		return rc;
	case CIGT_OP_LINEAR:
		rc = add(tl, &p->w, CIGT_T_WEIGHT, in, 2, SHAPE(op->out, in), "%s.weight", pre);
		if (!rc && op->bias)
			rc = add(tl, &p->b, CIGT_T_BIAS, in, 1, SHAPE(op->out), "%s.bias", pre);
		return rc;
	case CIGT_OP_BATCHNORM:
		if ((rc = add(tl, &p->gamma, CIGT_T_BN_GAMMA, 0, 1, SHAPE(c), "%s.weight", pre)) ||
		    (rc = add(tl, &p->beta, CIGT_T_BN_BETA, 0, 1, SHAPE(c), "%s.bias", pre)) ||
		    (rc = add(tl, &p->mean, CIGT_T_BN_MEAN, 0, 1, SHAPE(c), "%s.running_mean",
			      pre)))
			return rc;
		return add(tl, &p->var, CIGT_T_BN_VAR, 0, 1, SHAPE(c), "%s.running_var", pre);
	default:
		return 0;
	}
}

int cigt__model_tensor_list(struct cigt_model *m)
{
	const struct cigt_arch *a = m->arch;
	struct tensor_list tl = {0};
	int rc = 0;
	for (int l = 0; l < a->nlayers && !rc; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		for (int e = 0; e < L->experts && !rc; e++) {
			char base[48], pre[80];
			snprintf(base, sizeof base, "layers.%d.experts.%d.ops", l, e);
			for (int i = 0; i < L->nops && !rc; i++) {
				op_prefix(pre, sizeof pre, base, &L->ops[i]);
				rc = op_tensors(&tl, &L->ops[i], &m->ops[l][e * L->nops + i], pre);
			}
		}
		if (rc || !L->has_router)
			continue;
		const struct cigt_router_desc *r = &L->router;
		char base[48], pre[80];
		snprintf(base, sizeof base, "routers.%d.ops", l);
		for (int i = 0; i < r->nops && !rc; i++) {
			op_prefix(pre, sizeof pre, base, &r->ops[i]);
			rc = op_tensors(&tl, &r->ops[i], &m->routers[l].ops[i], pre);
		}
		struct cigt_router_params *rp = &m->routers[l];
		int64_t pin = cigt_shape_size(r->pooled), h = r->hidden, k = r->out;
		if ((rc = add(&tl, &rp->fc1_w, CIGT_T_WEIGHT, pin, 2, SHAPE(h, pin), "routers.%d.fc1.weight",
			      l)) ||
		    (rc = add(&tl, &rp->fc1_b, CIGT_T_BIAS, pin, 1, SHAPE(h), "routers.%d.fc1.bias", l)) ||
		    (rc = add(&tl, &rp->gamma, CIGT_T_BN_GAMMA, 0, 1, SHAPE(h), "routers.%d.bn.weight", l)) ||
		    (rc = add(&tl, &rp->beta, CIGT_T_BN_BETA, 0, 1, SHAPE(h), "routers.%d.bn.bias", l)) ||
		    (rc = add(&tl, &rp->mean, CIGT_T_BN_MEAN, 0, 1, SHAPE(h), "routers.%d.bn.running_mean",
			      l)) ||
		    (rc = add(&tl, &rp->var, CIGT_T_BN_VAR, 0, 1, SHAPE(h), "routers.%d.bn.running_var",
			      l)) ||
		    (rc = add(&tl, &rp->fc2_w, CIGT_T_WEIGHT, h, 2, SHAPE(k, h), "routers.%d.fc2.weight",
			      l)))
			break;
		rc = add(&tl, &rp->fc2_b, CIGT_T_BIAS, h, 1, SHAPE(k), "routers.%d.fc2.bias", l);
	}
	if (rc) {
		free(tl.t);
		return rc;
	}
	m->tensors = tl.t;
	m->ntensors = tl.n;
	m->blob_floats = tl.floats;
	return 0;
}

void cigt__model_bind(struct cigt_model *m)
{
	for (int i = 0; i < m->ntensors; i++)
		*m->tensors[i].slot = m->blob + m->tensors[i].offset;
}

int cigt_model_new(struct cigt_arch *arch, struct cigt_model **out)
{
	*out = NULL;
	struct cigt_model *m = calloc(1, sizeof *m);
	if (!m) {
		cigt_arch_free(arch);
		return CIGT_ENOMEM;
	}
	m->arch = arch;
	for (int k = 0; k < 3; k++)
		m->quant_acc[k] = -1; /* not recorded */
	for (int l = 0; l < arch->nlayers; l++) {
		int n = arch->layers[l].experts * arch->layers[l].nops;
		if (!(m->ops[l] = calloc((size_t)n, sizeof *m->ops[l])))
			goto nomem;
		int nr = arch->layers[l].router.nops;
		if (nr && !(m->routers[l].ops = calloc((size_t)nr, sizeof *m->routers[l].ops)))
			goto nomem;
	}
	if (cigt__model_tensor_list(m))
		goto nomem;
	if (!(m->blob = cigt_alloc_floats(m->blob_floats)))
		goto nomem;
	memset(m->blob, 0, (size_t)m->blob_floats * sizeof(float));
	cigt__model_bind(m);
	*out = m;
	return 0;
nomem:
	cigt_model_free(m);
	return CIGT_ENOMEM;
}

void cigt_model_free(struct cigt_model *m)
{
	if (!m)
		return;
	for (int l = 0; l < CIGT_MAX_LAYERS; l++) {
		free(m->ops[l]);
		free(m->routers[l].ops);
	}
	free(m->tensors);
	free(m->blob);
	free(m->provenance);
	cigt_arch_free(m->arch);
	free(m);
}

int cigt_model_average(const struct cigt_model *const *src, const char *const *names, int n,
		       struct cigt_model **out, char *err, size_t errlen)
{
	*out = NULL;
	if (n < 1)
		return cigt_fail(err, errlen, CIGT_EINVAL, "no models to average");
	char *first = cigt_arch_to_json(src[0]->arch), *text = NULL;
	struct cigt_arch *arch = NULL;
	int rc = 0;
	if (!first)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	for (int i = 1; i < n && !rc; i++) {
		if (!(text = cigt_arch_to_json(src[i]->arch)))
			rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
		else if (strcmp(text, first) != 0) {
			char a[32], b[32];
			snprintf(a, sizeof a, "model %d", i);
			snprintf(b, sizeof b, "model 0");
			rc = cigt_fail(err, errlen, CIGT_EINVAL,
				       "%s (%s) has another architecture than %s (%s): only models "
				       "of one architecture average",
				       names ? names[i] : a, src[i]->arch->name,
				       names ? names[0] : b, src[0]->arch->name);
		}
		free(text);
	}
	char e2[256];
	if (!rc && (rc = cigt_arch_parse(first, strlen(first), &arch, e2, sizeof e2)))
		rc = cigt_fail(err, errlen, rc, "%s", e2);
	free(first);
	struct cigt_model *m = NULL;
	if (!rc && (rc = cigt_model_new(arch, &m))) /* arch is m's, or freed, from here on */
		rc = cigt_fail(err, errlen, rc, "out of memory");
	if (rc)
		return rc;
	for (int64_t k = 0; k < m->blob_floats; k++) {
		double sum = 0;
		for (int i = 0; i < n; i++)
			sum += src[i]->blob[k];
		m->blob[k] = (float)(sum / n);
	}
	*out = m;
	return 0;
}

const struct cigt_tensor_info *cigt_model_tensor(const struct cigt_model *m, const char *name)
{
	for (int i = 0; i < m->ntensors; i++)
		if (strcmp(m->tensors[i].name, name) == 0)
			return &m->tensors[i];
	return NULL;
}

static void fill_uniform(struct cigt_rng *r, float *x, int64_t n, double lo, double hi)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)(lo + (hi - lo) * cigt_rng_uniform(r));
}

void cigt_model_init_random(struct cigt_model *m, uint64_t seed, bool random_bn)
{
	struct cigt_rng rng;
	cigt_rng_seed(&rng, seed);
	for (int i = 0; i < m->ntensors; i++) {
		const struct cigt_tensor_info *t = &m->tensors[i];
		float *x = m->blob + t->offset;
		double bound = t->fan_in > 0 ? 1.0 / sqrt((double)t->fan_in) : 1.0;
		switch (t->role) {
		case CIGT_T_WEIGHT:
		case CIGT_T_BIAS:
			fill_uniform(&rng, x, t->numel, -bound, bound);
			break;
		case CIGT_T_BN_GAMMA:
		case CIGT_T_BN_VAR:
			if (random_bn)
				fill_uniform(&rng, x, t->numel, 0.5, 1.5);
			else
				for (int64_t k = 0; k < t->numel; k++)
					x[k] = 1.0f;
			break;
		case CIGT_T_BN_BETA:
		case CIGT_T_BN_MEAN:
			if (random_bn)
				fill_uniform(&rng, x, t->numel, -0.2, 0.2);
			else
				for (int64_t k = 0; k < t->numel; k++)
					x[k] = 0.0f;
			break;
		}
	}
}

void cigt_model_preprocess_u8(const struct cigt_arch *a, const uint8_t *hwc, float *chw)
{
	int C = a->input.c, HW = a->input.h * a->input.w;
	if (a->normalized) {
		for (int c = 0; c < C; c++) {
			const float m = a->mean[c], s = a->std[c];
			for (int i = 0; i < HW; i++)
				chw[(size_t)c * HW + i] =
					((float)hwc[(size_t)i * C + c] / 255.0f - m) / s;
		}
		return;
	}
	float lo = a->range_lo, span = a->range_hi - a->range_lo;
	for (int c = 0; c < C; c++)
		for (int i = 0; i < HW; i++)
			chw[(size_t)c * HW + i] = lo + span * (float)hwc[(size_t)i * C + c] / 255.0f;
}

void cigt_model_preprocess_chw(const struct cigt_arch *a, float *x, size_t n)
{
	const size_t HW = (size_t)a->input.h * a->input.w, C = (size_t)a->input.c;
	if (a->normalized) {
		for (size_t i = 0; i < n; i++) {
			size_t c = i / HW % C;
			x[i] = (x[i] / 255.0f - a->mean[c]) / a->std[c];
		}
		return;
	}
	float lo = a->range_lo, span = a->range_hi - a->range_lo;
	for (size_t i = 0; i < n; i++)
		x[i] = lo + span * x[i] / 255.0f;
}
