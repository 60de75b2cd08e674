/* Internal: the state of a training run between two steps (train.c) and its checkpoint file
 * (checkpoint.c): the model with its momentum tensors, and the run's position, best
 * validation result, random generator, config and the partial sums of the current epoch. */
#ifndef CIGT_TRAIN_CHECKPOINT_H
#define CIGT_TRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "cigt/arch.h"
#include "cigt/model.h"
#include "../common/util.h"

/* The running sums of an epoch's training statistics, kept in a checkpoint taken mid-epoch
 * so the epoch's log line after a resume covers the whole epoch. */
struct cigt__epoch_sums {
	double loss, ce, ig[CIGT_MAX_LAYERS];
	double distill; /* kept in the checkpoint only when distilling */
	int64_t rows, correct;
	int steps;
};

struct cigt__train_state {
	int epoch, step;   /* next step to run */
	int64_t iteration; /* global step counter (drives the temperature) */
	double best_acc;
	int best_epoch;
	struct cigt_rng rng;
	struct cigt__epoch_sums part; /* of steps 0..step-1 of this epoch */
};

/* Writes the checkpoint `path`: the model m with the momentum mom (laid out like m's blob) as
 * "momentum/<tensor>" tensors, and s and config_text (the run's config, compact) in the
 * metadata. Returns 0 or a negative CIGT_E* code with a message in err. */
int cigt__checkpoint_save(const char *path, const struct cigt_model *m, const float *mom,
			  const struct cigt__train_state *s, const char *config_text, char *err,
			  size_t errlen);
/* Loads a checkpoint written by cigt__checkpoint_save: *m and *mom (malloc'd; the caller
 * frees them) and *s. A checkpoint made with another config than config_text is refused
 * (CIGT_EINVAL), a malformed one too (CIGT_EFORMAT); nothing is returned then. */
int cigt__checkpoint_load(const char *path, const char *config_text, struct cigt_model **m,
			  float **mom, struct cigt__train_state *s, char *err, size_t errlen);

#endif
