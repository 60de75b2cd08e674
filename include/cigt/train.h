/* Training a trellis: the "train" section of a config file, and the training run (SGD with
 * momentum, learning-rate steps by epoch, temperature annealed per iteration, full-routing
 * warm-up then argmax routing with random re-routing, model selection on a validation split
 * carved from the training set, per-epoch checkpoints, resumable).
 * Gradients throughout mean dL/d(theta), the derivative of the loss with respect to a
 * parameter; backward passes accumulate them. */
#ifndef CIGT_TRAIN_H
#define CIGT_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CIGT_MAX_LR_STEPS 16

struct cigt_train_config {
	int epochs, warmup_epochs, batch_size;
	double lr;
	int nsteps;
	int step_epoch[CIGT_MAX_LR_STEPS];     /* from this epoch on ... */
	double step_factor[CIGT_MAX_LR_STEPS]; /* ... lr = lr0 * factor */
	double momentum, weight_decay;
	double ig_lambda, ig_beta;
	double t0, t_decay, t_min; /* T = max(t0 * t_decay^(t+1), t_min), t the iteration */
	double rho;                /* routing randomisation after warm-up */
	int validation_samples;
	uint64_t seed;
	/* Optional "augment": {"flip": bool, "shift": 0..8}: each training image (never a
	 * validation one) is mirrored left-right with probability 1/2 and shifted by a whole number
	 * of pixels in [-shift, shift] on each axis, the uncovered border filled with the value of a
	 * black pixel. Absent: no augmentation. */
	bool aug_flip;
	int aug_shift;
	/* Optional "init": {"from": PATH, "noise": 0..1}: the model starts from a trained one
	 * (cigt_train_init_from). PATH as written in the config; relative paths are resolved
	 * against the config file's directory by cigt_train_run. Empty: random initialisation. */
	char init_from[1024];
	double init_noise;
	/* Optional "distill": {"teacher": PATH, "temperature": 6, "weight": 0.5}: knowledge
	 * distillation from a trained model (path resolved like init_from). Empty: off. */
	char distill_teacher[1024];
	double distill_t, distill_weight;
	/* Optional "ensemble": {"share": 0.5, "weight": 1, "from_epoch": E0, "to_epoch": E1}:
	 * paths that ensemble (see models/README.md). share 0: off. from/to -1: the first routed
	 * epoch / the end. */
	double ens_share, ens_weight;
	int ens_from, ens_to;
	/* Optional "label_smoothing": eps in [0, 0.5] (0: off). */
	double label_smoothing;
	/* Optional "router_weight_decay": the routers' own L2 decay (absent: weight_decay). */
	double router_weight_decay;
	/* Optional "lr_cosine": the schedule's factor times 0.5 (1 + cos(pi epoch / epochs)). */
	bool lr_cosine;
};

struct json_t;
/* Reads the "train" member of a config (every key required except those with defaults, see
 * models/README.md); unknown keys fail with a message naming them. */
int cigt_train_config_parse(const struct json_t *train, struct cigt_train_config *c, char *err,
			    size_t errlen);
/* Copies a trained model's weights into dst before training. src of the same architecture
 * (same tensors and ops): every tensor, routers included (a warm start). src single-path (one
 * expert per layer): sparse upcycling, its ops taken in order and cut at dst's layer boundaries,
 * every expert of a dst layer receiving the matching conv / linear / batch-norm parameters and
 * running statistics; dst's routers are left as they are. Input geometry, input range, classes
 * and every op (kind, shapes, kernel geometry, bias) must match, or CIGT_ESHAPE with a message
 * naming the first mismatching op (dst may then be partly overwritten). noise > 0 scales each
 * copied weight of a layer with several experts by (1 + noise * u), u uniform in [-1, 1],
 * drawn from seed. */
struct cigt_model;
int cigt_train_init_from(struct cigt_model *dst, const struct cigt_model *src, double noise,
			 uint64_t seed, char *err, size_t errlen);
/* Mirrors (flip) and then shifts one channels-first image in place: out(y, x) = m(y - dy, x - dx)
 * where m(y, x) = in(y, W-1-x) when flipping, else in(y, x); pixels from outside are `fill`. |dx|, |dy|
 * below W, H. `tmp` holds C*H*W floats. */
void cigt_train_augment(float *chw, float *tmp, int C, int H, int W, bool flip, int dx, int dy,
			float fill);
/* The learning rate and temperature of an epoch / iteration. */
double cigt_train_lr(const struct cigt_train_config *c, int epoch);
double cigt_train_temperature(const struct cigt_train_config *c, int64_t iteration);

struct cigt_train_options {
	const char *config;      /* config file: architecture + "train" */
	const char *out;         /* best model (by validation accuracy) goes here */
	const char *data_dir;    /* IDX directory with train-*.gz, or an image folder */
	const char *resume;      /* checkpoint to continue from, or NULL */
	const char *checkpoint;  /* where checkpoints go (default: OUT.ckpt) */
	const char *log;         /* JSON-lines log, one object per epoch, or NULL */
	int epochs;              /* 0: the config's */
	int threads;             /* OpenBLAS threads */
	int train_samples;       /* 0: all training images not held out */
	int validation;          /* -1: the config's validation_samples */
	bool seed_set;
	uint64_t seed;
	FILE *progress;          /* progress output (a live line when it is a terminal) */
	bool input_stats;        /* set the input's mean/std to the training images' own */
	size_t cache_bytes;      /* image folders: bound on the float32 images (0: default) */
	int snapshots_from;      /* 0: none; else also save the model after every epoch from
				  * this one (1-based) on, to cigt_train_snapshot_path() */
};

/* Where the snapshot of `epoch` (1-based) of a run writing `out` goes: "m.safetensors" ->
 * "m.e007.safetensors" (any other name gets ".e007.safetensors" appended). Caller frees;
 * NULL when out of memory. */
char *cigt_train_snapshot_path(const char *out, int epoch);

/* Runs training to the end (or until SIGINT/SIGTERM, which saves a checkpoint first: returns
 * CIGT_EINTR). Every input problem is reported before training starts. */
int cigt_train_run(const struct cigt_train_options *o, char *err, size_t errlen);

#endif
