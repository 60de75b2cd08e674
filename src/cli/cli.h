/* Shared pieces of the cigt subcommands: the subcommand entry points, loaders and helpers (the
 * option table is opts.h). */
#ifndef CIGT_CLI_H
#define CIGT_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "cigt/dataset.h"
#include "cigt/engine.h"
#include "cigt/model.h"
#include "opts.h"

int cmd_init(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_average(int argc, char **argv);
int cmd_quantize(int argc, char **argv);

/* --backend (0 auto, 1 openblas, 2 onednn) and --precision (enum cigt_precision) of the
 * command: every engine cli_load and cli_dial build runs on them. */
extern int cli_backend, cli_precision;
/* Threads inside each oneDNN call of the engines cli_load builds (1 unless bench's
 * --blas-threads says otherwise: parallelism comes from the commands' own threads). */
extern int cli_inner_threads;
/* The engine options they name (auto: onednn for bf16, else openblas). */
struct cigt_engine_opts cli_engine_opts(void);
/* Loads a model and builds its engine, printing a one-line error on failure. */
int cli_load(const char *path, struct cigt_model **m, struct cigt_engine **e);
/* Loads split prefix ("train" or "t10k", the test split) of an IDX directory or an image folder
 * (cigt_dataset_open; folder classes matched to the model's by name) and converts it to model
 * inputs (NCHW floats, resized to the model's geometry when needed). *limit (0 = all) is
 * clamped to the size. */
int cli_load_inputs(const char *dir, const char *prefix, const struct cigt_arch *a, int *limit,
		    float **x, uint8_t **labels);
/* Bound on an image-folder dataset as float32 (--cache-mb; 0: the library's default). */
extern size_t cli_cache_bytes;
/* The dial `cigt eval` runs under: the operating point named `compute`, the comma-separated
 * per-router thresholds `thresholds`, or the point cigt_engine_dial_for_budget picks for
 * max_macs (> 0; a budget below one path is an error) -- at most one of the three; none: single
 * path. A point that escalates loads its second model beside `path` (*m2, *e2; NULL when
 * none). Prints a one-line error and returns -1 on failure. */
int cli_dial(const char *path, const struct cigt_engine *e, const char *compute,
	     const char *thresholds, long long max_macs, struct cigt_dial *d,
	     struct cigt_model **m2, struct cigt_engine **e2);
/* Parses "t1,t2,..." (n numbers in [0, 1]) into tau. */
int cli_thresholds(const char *s, int n, float *tau);
/* qsort comparator of int64_t. */
int cli_cmp_i64(const void *a, const void *b);
/* Same, the last *limit images when tail is true (the validation split of `cigt train`);
 * *total (when not NULL) receives the number of images in the split. */
int cli_load_tail(const char *dir, const char *prefix, const struct cigt_arch *a, int *limit,
		  bool tail, float **x, uint8_t **labels, int *total);
/* What a model's provenance says about the data it was trained on (proto/model-format.md
 * section 5): `cigt train` and python/examples/train_folder.py write data.train,
 * data.validation (the last that many images of the training split were held out), data.images
 * (the split's size) and data.dir; older files have only the two counts, or (train_folder.py
 * before it held images out) data as the folder's path. */
struct cli_trained_on {
	int train, validation; /* validation 0: no held-out split */
	long long images;      /* the training split's size; -1 unknown */
	char dir[4096];        /* the data directory or image folder; "" unknown */
};
void cli_trained_on(const struct cigt_model *m, struct cli_trained_on *t);

/* Held-out images (heldout.c). Whether a model's provenance allows the last data.validation
 * images of dir's training split (cli_check_split: it records a split, of dir when it names
 * one; cli_check_images: the split has the size it records), or a folder of images
 * (cli_check_heldout: not the one it was trained on; cli_check_heldout_images: not one it cannot
 * tell from its training data). `what` names the model in the one-line reasons they print. */
int cli_check_split(const char *dir, const char *what, const struct cli_trained_on *p);
int cli_check_heldout(const char *heldout, const char *what, const struct cli_trained_on *p);
int cli_check_heldout_images(const char *heldout, const char *what,
			     const struct cli_trained_on *p, int total);
int cli_check_images(const char *dir, const char *what, const struct cli_trained_on *p,
		     int total);
/* The held-out images of the model at path: --validation-data heldout, or else the last
 * data.validation images of dir's training split (at most limit; 0: all), every check above
 * applied. *n images into *x and *labels (the caller frees them); -1 after printing why. */
int cli_heldout_load(const char *path, const struct cigt_model *m, const char *dir,
		     const char *heldout, int limit, float **x, uint8_t **labels, int *n);
/* Whether dir (resolved) is the folder t names, or its train/ split. */
bool cli_trained_on_dir(const struct cli_trained_on *t, const char *dir);
/* Whether dir is an image folder of one split (no IDX files, no train/ folder): eval and tune
 * read every image of it, as cigt_dataset_open does. */
bool cli_single_split_folder(const char *dir);
/* Whether dir/sub is a directory. */
bool cli_has_subdir(const char *dir, const char *sub);
/* Default worker threads: the online CPUs, at most 64. */
int cli_default_threads(void);

#endif
