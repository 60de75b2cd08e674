/* Internal: the optional levers of the "train" section (levers.c) and their use by the
 * training run. */
#ifndef CIGT_TRAIN_LEVERS_H
#define CIGT_TRAIN_LEVERS_H

#include <stddef.h>

struct json_t;
struct cigt_train_config;

/* The option rows (src/common/options.h) of the optional lever objects of a "train" section,
 * bound into its table by train_config.c: SECTION rows whose keys write cigt_train_config. */
struct cigt_opt;
extern const struct cigt_opt cigt__train_opt_init, cigt__train_opt_distill,
	cigt__train_opt_ensemble;

/* A path written in the config file `config`: absolute, or relative to the config's directory.
 * Malloc'd (the caller frees); NULL on ENOMEM. */
char *cigt__config_path(const char *config, const char *path);

/* The teacher of train.distill (distill.c). */
struct cigt__teacher;
struct cigt_arch;
/* Loads the teacher model at path and plans it for batches of up to max_batch; its classes
 * and input geometry and range must equal the student's (else CIGT_ESHAPE, one line naming
 * both). */
int cigt__teacher_open(const char *path, const struct cigt_arch *student, int max_batch,
		       struct cigt__teacher **out, char *err, size_t errlen);
void cigt__teacher_free(struct cigt__teacher *t);
/* The teacher's posteriors at temperature T for n <= max_batch inputs x (NCHW, the model's
 * input range) into q (n x classes, doubles). Returns 0 or a negative CIGT_E* code. */
int cigt__teacher_posteriors(struct cigt__teacher *t, const float *x, int n, double T,
			     double *q);
/* q = softmax(z / T) for one row of C logits. */
void cigt__softmax_t(int C, const float *z, double T, double *q);

#endif
