/* Internal model helpers shared by model.c and safetensors.c. */
#ifndef CIGT_MODEL_INTERNAL_H
#define CIGT_MODEL_INTERNAL_H

#include "cigt/model.h"

/* Fills m->tensors / ntensors / blob_floats from m->arch (m->ops[] must be allocated). */
int cigt__model_tensor_list(struct cigt_model *m);
/* Points every parameter slot into m->blob. */
void cigt__model_bind(struct cigt_model *m);

/* Extra content of a checkpoint beside the model: tensors named prefix + name and one
 * metadata string. Writing: count/names/numel/data describe the tensors, meta_value the string.
 * Reading: fn receives each tensor whose name starts with prefix (finite values, checked);
 * meta_value receives a malloc'd copy of __metadata__[meta_key] (required). */
struct cigt__extras {
	const char *prefix;
	int count;
	const char *const *names;
	const int64_t *numel;
	const float *const *data;
	int (*fn)(void *ctx, const struct cigt_model *m, const char *name, const void *data,
		  int64_t numel, char *err, size_t errlen);
	void *ctx;
	const char *meta_key;
	char *meta_value;
};

/* sniff.c: when buf cannot be a model (or is a training checkpoint and checkpoint_ok is
 * false), fails with CIGT_EFORMAT and a message naming what it is and the command that takes
 * it ("NAME: a JSON config ...: `cigt train --config NAME ...`"; name NULL: "the file");
 * otherwise 0. */
int cigt__model_sniff(const void *buf, size_t len, const char *name, bool checkpoint_ok,
		      char *err, size_t errlen);
/* A directory given where a model file was expected: CIGT_EINVAL and what it holds (a version
 * folder's model file, a model repository for cigtd --model-repository, or neither). */
int cigt__model_sniff_dir(const char *path, char *err, size_t errlen);

int cigt__model_load_ex(const void *buf, size_t len, struct cigt__extras *ex,
			struct cigt_model **out, char *err, size_t errlen);
int cigt__model_load_file_ex(const char *path, struct cigt__extras *ex, struct cigt_model **out,
			     char *err, size_t errlen);
int cigt__model_serialize_ex(const struct cigt_model *m, const struct cigt__extras *ex,
			     void **buf, size_t *len);
int cigt__model_save_ex(const struct cigt_model *m, const struct cigt__extras *ex,
			const char *path, char *err, size_t errlen);

#endif
