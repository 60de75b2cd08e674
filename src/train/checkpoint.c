/* Checkpoints of a training run (see checkpoint.h): a model file with the momentum tensors
 * beside the weights and the run's state as JSON under __metadata__.checkpoint. The random
 * generator's state is saved whole, so a resumed run continues bit-identically. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "checkpoint.h"
#include "../model/model_internal.h"

struct ckpt_ctx {
	float *mom;
	int loaded;
};

static int ckpt_tensor(void *ctx, const struct cigt_model *m, const char *name,
		       const void *data, int64_t numel, char *err, size_t errlen)
{
	struct ckpt_ctx *c = ctx;
	const struct cigt_tensor_info *t = cigt_model_tensor(m, name);
	if (!t || !t->trainable || t->numel != numel)
		return cigt_fail(err, errlen, CIGT_EFORMAT,
				 "momentum for '%s' does not match the model", name);
	if (!c->mom && !(c->mom = calloc((size_t)m->blob_floats, sizeof(float))))
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	memcpy(c->mom + t->offset, data, (size_t)numel * sizeof(float));
	c->loaded++;
	return 0;
}

int cigt__checkpoint_save(const char *path, const struct cigt_model *m, const float *mom,
			  const struct cigt__train_state *s, const char *config_text, char *err,
			  size_t errlen)
{
	const char **names = calloc((size_t)m->ntensors, sizeof *names);
	int64_t *numel = calloc((size_t)m->ntensors, sizeof *numel);
	const float **data = calloc((size_t)m->ntensors, sizeof *data);
	if (!names || !numel || !data) {
		free(names), free(numel), free(data);
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	}
	int k = 0;
	for (int i = 0; i < m->ntensors; i++) {
		if (!m->tensors[i].trainable)
			continue;
		names[k] = m->tensors[i].name;
		numel[k] = m->tensors[i].numel;
		data[k] = mom + m->tensors[i].offset;
		k++;
	}
	char rng[4][24];
	for (int i = 0; i < 4; i++)
		snprintf(rng[i], sizeof rng[i], "%llu", (unsigned long long)s->rng.s[i]);
	json_t *igj = json_array();
	for (int l = 0; l < CIGT_MAX_LAYERS; l++)
		json_array_append_new(igj, json_real(s->part.ig[l]));
	json_t *j = json_pack("{si si sI sf si s[ssss] ss s{sf sf so sI sI si}}", "epoch",
			      s->epoch, "step", s->step, "iteration", (json_int_t)s->iteration,
			      "best_accuracy", s->best_acc, "best_epoch", s->best_epoch, "rng",
			      rng[0], rng[1], rng[2], rng[3], "config", config_text, "epoch_sums",
			      "loss", s->part.loss, "ce", s->part.ce, "ig", igj, "rows",
			      (json_int_t)s->part.rows, "correct", (json_int_t)s->part.correct,
			      "steps", s->part.steps);
	if (s->part.distill != 0)
		json_object_set_new(json_object_get(j, "epoch_sums"), "distill",
				    json_real(s->part.distill));
	char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	struct cigt__extras ex = {.prefix = "momentum/", .count = k, .names = names,
				  .numel = numel, .data = data, .meta_key = "checkpoint",
				  .meta_value = text};
	int rc = text ? cigt__model_save_ex(m, &ex, path, err, errlen)
		      : cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	free(text);
	free(names), free(numel), free(data);
	return rc;
}

int cigt__checkpoint_load(const char *path, const char *config_text, struct cigt_model **m,
			  float **mom, struct cigt__train_state *s, char *err, size_t errlen)
{
	struct ckpt_ctx ctx = {0};
	struct cigt_model *mm = NULL;
	struct cigt__extras ex = {.prefix = "momentum/", .fn = ckpt_tensor, .ctx = &ctx,
				  .meta_key = "checkpoint"};
	json_t *j = NULL;
	int rc = cigt__model_load_file_ex(path, &ex, &mm, err, errlen);
	if (rc)
		goto fail;
	int trainable = 0;
	for (int i = 0; i < mm->ntensors; i++)
		trainable += mm->tensors[i].trainable;
	json_error_t je;
	j = json_loads(ex.meta_value, 0, &je);
	json_t *rng = j ? json_object_get(j, "rng") : NULL;
	json_t *cfg = j ? json_object_get(j, "config") : NULL;
	if (ctx.loaded != trainable || !j || !json_is_integer(json_object_get(j, "epoch")) ||
	    !json_is_integer(json_object_get(j, "step")) ||
	    !json_is_integer(json_object_get(j, "iteration")) ||
	    !json_is_number(json_object_get(j, "best_accuracy")) ||
	    !json_is_integer(json_object_get(j, "best_epoch")) || !json_is_array(rng) ||
	    json_array_size(rng) != 4 || !json_is_string(cfg)) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT, "%s: malformed checkpoint state", path);
		goto fail;
	}
	if (strcmp(json_string_value(cfg), config_text) != 0) {
		rc = cigt_fail(err, errlen, CIGT_EINVAL,
			       "%s: the checkpoint was made with a different config", path);
		goto fail;
	}
	s->epoch = (int)json_integer_value(json_object_get(j, "epoch"));
	s->step = (int)json_integer_value(json_object_get(j, "step"));
	s->iteration = json_integer_value(json_object_get(j, "iteration"));
	s->best_acc = json_number_value(json_object_get(j, "best_accuracy"));
	s->best_epoch = (int)json_integer_value(json_object_get(j, "best_epoch"));
	for (int i = 0; i < 4; i++) {
		json_t *v = json_array_get(rng, (size_t)i);
		s->rng.s[i] = json_is_string(v) ? strtoull(json_string_value(v), NULL, 10) : 0;
	}
	/* Checkpoints from before epoch_sums was kept have none: the resumed epoch's log line
	 * then covers the steps after the resume only. */
	json_t *es = json_object_get(j, "epoch_sums"), *ig = json_object_get(es, "ig");
	if (es && json_is_array(ig) && json_array_size(ig) == CIGT_MAX_LAYERS) {
		s->part.loss = json_number_value(json_object_get(es, "loss"));
		s->part.ce = json_number_value(json_object_get(es, "ce"));
		for (int l = 0; l < CIGT_MAX_LAYERS; l++)
			s->part.ig[l] = json_number_value(json_array_get(ig, (size_t)l));
		s->part.rows = json_integer_value(json_object_get(es, "rows"));
		s->part.correct = json_integer_value(json_object_get(es, "correct"));
		s->part.steps = (int)json_integer_value(json_object_get(es, "steps"));
		s->part.distill = json_number_value(json_object_get(es, "distill"));
	}
	json_decref(j);
	free(ex.meta_value);
	*m = mm;
	*mom = ctx.mom;
	return 0;
fail:
	json_decref(j);
	free(ex.meta_value);
	free(ctx.mom);
	cigt_model_free(mm);
	return rc;
}

