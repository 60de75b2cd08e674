/* The int8 calibration table kept as JSON text in the model file's __metadata__.quantization
 * (proto/model-format.md section 7): the input range of every expert conv and linear, measured
 * by `cigt quantize` on held-out images. Parsing with full validation, and writing. The scales
 * themselves are the engine's: it derives them from these ranges and from the weights. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/model.h"

#define ERR(...) cigt_fail(err, errlen, CIGT_EFORMAT, __VA_ARGS__)
#define QUANT_FORMAT "cigt-int8-1"

void cigt_op_tensor_prefix(char *buf, size_t len, int layer, int expert,
			   const struct cigt_op_desc *op)
{
	if (op->branch == CIGT_BRANCH_NONE)
		snprintf(buf, len, "layers.%d.experts.%d.ops.%d", layer, expert, op->top);
	else
		snprintf(buf, len, "layers.%d.experts.%d.ops.%d.%s.%d", layer, expert, op->top,
			 op->branch == CIGT_BRANCH_MAIN ? "main" : "shortcut", op->sub);
}

static bool quantized_kind(const struct cigt_op_desc *op)
{
	return op->kind == CIGT_OP_CONV || op->kind == CIGT_OP_LINEAR;
}

/* The ranges of inputs, every expert op, into lo/hi (indexed as m->ops); 0 or an error. */
static int read_inputs(json_t *inputs, const struct cigt_model *m, float **lo, float **hi,
		       char *err, size_t errlen)
{
	const struct cigt_arch *a = m->arch;
	size_t want = 0;
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		for (int e = 0; e < L->experts; e++)
			for (int i = 0; i < L->nops; i++) {
				if (!quantized_kind(&L->ops[i]))
					continue;
				char pre[96];
				cigt_op_tensor_prefix(pre, sizeof pre, l, e, &L->ops[i]);
				json_t *v = json_object_get(inputs, pre);
				want++;
				if (!v)
					return ERR("quantization.inputs has no range for %s", pre);
				json_t *v0 = json_array_get(v, 0), *v1 = json_array_get(v, 1);
				if (!json_is_array(v) || json_array_size(v) != 2 ||
				    !json_is_number(v0) || !json_is_number(v1))
					return ERR("quantization.inputs.%s is not [min, max]", pre);
				double x0 = json_number_value(v0), x1 = json_number_value(v1);
				if (!isfinite(x0) || !isfinite(x1) || x0 > x1 || fabs(x0) > 3e38 ||
				    fabs(x1) > 3e38)
					return ERR("quantization.inputs.%s is [%g, %g]: expected finite "
						   "min <= max", pre, x0, x1);
				lo[l][e * L->nops + i] = (float)x0;
				hi[l][e * L->nops + i] = (float)x1;
			}
	}
	if (json_object_size(inputs) != want) {
		/* Every wanted key was found: the rest are names of no expert conv or linear. */
		const char *key;
		json_t *v;
		json_object_foreach(inputs, key, v) {
			bool known = false;
			for (int l = 0; l < a->nlayers && !known; l++) {
				const struct cigt_layer_desc *L = &a->layers[l];
				for (int e = 0; e < L->experts && !known; e++)
					for (int i = 0; i < L->nops && !known; i++) {
						char pre[96];
						cigt_op_tensor_prefix(pre, sizeof pre, l, e, &L->ops[i]);
						known = quantized_kind(&L->ops[i]) && !strcmp(pre, key);
					}
			}
			if (!known)
				return ERR("quantization.inputs.%.100s is not an expert's conv or "
					   "linear", key);
		}
	}
	return 0;
}

int cigt_quant_parse(const char *json, size_t len, struct cigt_model *m, char *err,
		     size_t errlen)
{
	static const char *const keys[] = {"format", "method", "samples", "split", "inputs",
					   "accuracy", NULL};
	static const char *const precs[] = {"fp32", "bf16", "int8"};
	const struct cigt_arch *a = m->arch;
	json_error_t je;
	float *lo[CIGT_MAX_LAYERS] = {0}, *hi[CIGT_MAX_LAYERS] = {0};
	int rc = 0;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return ERR("quantization is not valid JSON: %s", je.text);
	const char *key;
	json_t *v;
	if (!json_is_object(root)) {
		rc = ERR("quantization is not a JSON object");
		goto out;
	}
	json_object_foreach(root, key, v) {
		int k = 0;
		while (keys[k] && strcmp(keys[k], key))
			k++;
		if (!keys[k]) {
			rc = ERR("quantization: unknown key '%.40s'", key);
			goto out;
		}
	}
	json_t *f = json_object_get(root, "format"), *me = json_object_get(root, "method");
	json_t *s = json_object_get(root, "samples"), *sp = json_object_get(root, "split");
	json_t *in = json_object_get(root, "inputs");
	if (!json_is_string(f) || strcmp(json_string_value(f), QUANT_FORMAT)) {
		rc = ERR("quantization.format must be \"%s\"", QUANT_FORMAT);
		goto out;
	}
	if (!json_is_string(me) || strcmp(json_string_value(me), "max")) {
		rc = ERR("quantization.method must be \"max\"");
		goto out;
	}
	if (!json_is_integer(s) || json_integer_value(s) < 1 || json_integer_value(s) > 1 << 30) {
		rc = ERR("quantization.samples must be an integer in 1..2^30");
		goto out;
	}
	if (!json_is_string(sp) || json_string_length(sp) == 0 ||
	    json_string_length(sp) >= sizeof m->quant_split) {
		rc = ERR("quantization.split must be a string of 1-%zu bytes",
			 sizeof m->quant_split - 1);
		goto out;
	}
	if (!json_is_object(in)) {
		rc = ERR("quantization.inputs must be an object");
		goto out;
	}
	/* accuracy (optional): {"fp32": a, "bf16": b, "int8": c}, each in [0, 1], any subset. */
	double acc[3] = {-1, -1, -1};
	json_t *aj = json_object_get(root, "accuracy");
	if (aj) {
		if (!json_is_object(aj)) {
			rc = ERR("quantization.accuracy must be an object");
			goto out;
		}
		json_object_foreach(aj, key, v) {
			int k = 0;
			while (k < 3 && strcmp(precs[k], key))
				k++;
			double x = json_number_value(v);
			if (k == 3 || !json_is_number(v) || !(x >= 0 && x <= 1)) {
				rc = ERR("quantization.accuracy.%.20s: expected fp32, bf16 or int8 with "
					 "a number in [0, 1]", key);
				goto out;
			}
			acc[k] = x;
		}
	}
	for (int l = 0; l < a->nlayers; l++) {
		size_t n = (size_t)a->layers[l].experts * (size_t)a->layers[l].nops;
		lo[l] = calloc(n ? n : 1, sizeof(float));
		hi[l] = calloc(n ? n : 1, sizeof(float));
		if (!lo[l] || !hi[l]) {
			rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
			goto out;
		}
	}
	if ((rc = read_inputs(in, m, lo, hi, err, errlen)))
		goto out;
	for (int l = 0; l < a->nlayers; l++)
		for (int k = 0; k < a->layers[l].experts * a->layers[l].nops; k++) {
			m->ops[l][k].in_min = lo[l][k];
			m->ops[l][k].in_max = hi[l][k];
		}
	m->quant_samples = (int)json_integer_value(s);
	memcpy(m->quant_acc, acc, sizeof acc);
	snprintf(m->quant_split, sizeof m->quant_split, "%s", json_string_value(sp));
out:
	for (int l = 0; l < CIGT_MAX_LAYERS; l++)
		free(lo[l]), free(hi[l]);
	json_decref(root);
	return rc;
}

char *cigt_quant_to_json(const struct cigt_model *m)
{
	if (m->quant_samples <= 0)
		return NULL;
	const struct cigt_arch *a = m->arch;
	json_t *in = json_object();
	for (int l = 0; in && l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		for (int e = 0; e < L->experts; e++)
			for (int i = 0; i < L->nops; i++) {
				if (!quantized_kind(&L->ops[i]))
					continue;
				char pre[96];
				cigt_op_tensor_prefix(pre, sizeof pre, l, e, &L->ops[i]);
				const struct cigt_op_params *p = &m->ops[l][e * L->nops + i];
				json_object_set_new(in, pre, json_pack("[ff]", (double)p->in_min,
								      (double)p->in_max));
			}
	}
	json_t *root = json_pack("{ss ss si ss so}", "format", QUANT_FORMAT, "method", "max",
				 "samples", m->quant_samples, "split", m->quant_split, "inputs", in);
	static const char *const precs[] = {"fp32", "bf16", "int8"};
	json_t *acc = json_object();
	for (int k = 0; k < 3; k++)
		if (m->quant_acc[k] >= 0)
			json_object_set_new(acc, precs[k], json_real(m->quant_acc[k]));
	if (root && json_object_size(acc))
		json_object_set(root, "accuracy", acc);
	json_decref(acc);
	char *s = root ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
	json_decref(root);
	return s;
}
