/* cigt train --config CONFIG --out MODEL [...] */
#include <stdio.h>
#include <stdlib.h>

#include "cigt/dataset.h"
#include "cigt/error.h"
#include "cigt/train.h"
#include "cli.h"
#include "../train/train_config.h"

static const char usage[] =
	"usage: cigt train --config CONFIG.json --out MODEL [--data DIR] [--epochs N]\n"
	"                  [--seed N] [--resume CKPT] [--threads N] [--log FILE]\n"
	"                  [--checkpoint FILE] [--train-samples N] [--validation N]\n"
	"                  [--input-stats] [--cache-mb N] [--snapshots-from N]\n"
	"Trains a Conditional Information Gain Trellis. CONFIG holds the architecture and\n"
	"every hyper-parameter (models/fashion_mnist.json is the reference). The model with\n"
	"the best accuracy on the validation split (the last images of the training set)\n"
	"is written to MODEL; the test set is never used.\n";

int cmd_train(int argc, char **argv)
{
	struct cigt_train_options o = {.threads = cli_default_threads(), .validation = -1};
	long long seed = -1;
	const struct cigt_opt opts[] = {
		CIGT_OPT_BIND(cli_opt_config, o.config),
		{.like = &cli_opt_out, CIGT_OPT_VAR(o.out),
		 .help = "where the model of the best validation accuracy goes\n(required)"},
		{.like = &cli_opt_data, CIGT_OPT_VAR(o.data_dir),
		 .help = "IDX directory with train-{images-idx3,labels-idx1}-ubyte.gz,\n"
			 "or an image folder: DIR/train/<class>/ if it exists, else\n"
			 "DIR/<class>/, with .png .jpg .jpeg .pgm .ppm files; the folder\n"
			 "names must be the config's classes"},
		{"input-stats", 0, CIGT_OPT_FLAG, CIGT_OPT_VAR(o.input_stats),
		 .help = "normalise the input with the training images' own per-channel\n"
			 "mean and std (written into the model's input)"},
		CIGT_OPT_BIND(cli_opt_cache_mb, o.cache_bytes),
		{.like = &cigt__train_opt_epochs, CIGT_OPT_VAR(o.epochs),
		 .help = "override the config's epochs"},
		{.like = &cigt__train_opt_seed, CIGT_OPT_VAR(seed), .help = "override the config's seed"},
		{"resume", 0, CIGT_OPT_STR, CIGT_OPT_VAR(o.resume), .arg = "CKPT",
		 .help = "continue an interrupted run from its checkpoint"},
		{"checkpoint", 0, CIGT_OPT_STR, CIGT_OPT_VAR(o.checkpoint), .arg = "FILE",
		 .help = "where checkpoints go (default MODEL.ckpt), every epoch and\n"
			 "on Ctrl-C"},
		{.like = &cli_opt_threads, CIGT_OPT_VAR(o.threads),
		 .help = "OpenBLAS threads (default: online CPUs); same seed and\n"
			 "threads give a bit-identical model"},
		{"log", 0, CIGT_OPT_STR, CIGT_OPT_VAR(o.log), .arg = "FILE",
		 .help = "JSON-lines log, one object per epoch"},
		{"train-samples", 0, CIGT_OPT_INT, CIGT_OPT_VAR(o.train_samples), .lo = 1,
		 .hi = 100000000, .arg = "N",
		 .help = "train on the first N training images only (smoke tests)"},
		{"validation", 0, CIGT_OPT_INT, CIGT_OPT_VAR(o.validation), .lo = 0, .hi = 100000000,
		 .arg = "N", .help = "hold out the last N images (overrides the config)"},
		{"snapshots-from", 0, CIGT_OPT_INT, CIGT_OPT_VAR(o.snapshots_from), .lo = 1,
		 .hi = 100000, .arg = "N",
		 .help = "also save the model after every epoch from N on, as\n"
			 "MODEL.eNNN.safetensors (for weight averaging); training\n"
			 "itself is unchanged"},
		{0},
	};
	const struct cli_cmd cmd = {usage, 20, 0, 0, opts};
	int status;
	if (cli_parse(&cmd, argc, argv, &status) < 0)
		return status;
	if (seed >= 0) {
		o.seed = (uint64_t)seed;
		o.seed_set = true;
	}
	char err[600];
	int rc = cigt_train_run(&o, err, sizeof err);
	if (rc == CIGT_EINTR) {
		fprintf(stderr, "cigt: %s\n", err);
		return 130;
	}
	if (rc) {
		fprintf(stderr, "cigt: %s\n", err);
		return 1;
	}
	return 0;
}
