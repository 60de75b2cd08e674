/* Internal model helpers shared by model.c and safetensors.c. */
#ifndef CIGT_MODEL_INTERNAL_H
#define CIGT_MODEL_INTERNAL_H

#include "cigt/model.h"

/* Fills m->tensors / ntensors / blob_floats from m->arch (m->ops[] must be allocated). */
int cigt__model_tensor_list(struct cigt_model *m);
/* Points every parameter slot into m->blob. */
void cigt__model_bind(struct cigt_model *m);

#endif
