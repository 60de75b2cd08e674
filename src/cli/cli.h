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
/* Same, the last *limit images when tail is true (the validation split of `cigt train`). */
int cli_load_tail(const char *dir, const char *prefix, const struct cigt_arch *a, int *limit,
		  bool tail, float **x, uint8_t **labels);
/* Default worker threads: the online CPUs, at most 64. */
int cli_default_threads(void);

#endif
