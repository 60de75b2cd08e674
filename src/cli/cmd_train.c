/* cigt train --config CONFIG --out MODEL [...] */
#include <stdio.h>
#include <stdlib.h>

#include "cigt/dataset.h"
#include "cigt/error.h"
#include "cigt/train.h"
#include "cli.h"

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
	const struct cli_opt opts[] = {
		{"config", 'c', CLI_STR, &o.config, .required = true},
		{"out", 'o', CLI_STR, &o.out, .required = true},
		{"data", 0, CLI_STR, &o.data_dir, .arg = "DIR",
		 .help = "IDX directory with train-{images-idx3,labels-idx1}-ubyte.gz\n"
			 "(default " CIGT_DEFAULT_DATA_DIR "), or an image folder:\n"
			 "DIR/train/<class>/ if it exists, else DIR/<class>/, with\n"
			 ".png .jpg .jpeg .pgm .ppm files; the folder names must be\n"
			 "the config's classes"},
		{"input-stats", 0, CLI_FLAG, &o.input_stats,
		 .help = "normalise the input with the training images' own per-channel\n"
			 "mean and std (written into the model's input)"},
		{"cache-mb", 0, CLI_CALL, &o.cache_bytes, 1, 1 << 24, .fn = cli_mebibytes,
		 .arg = "N", .help = "bound on a folder's images held as float32 (default 2048)"},
		{"epochs", 0, CLI_INT, &o.epochs, 1, 100000, .arg = "N",
		 .help = "override the config's epochs"},
		{"seed", 0, CLI_LLONG, &seed, 0, INT64_MAX, .arg = "N",
		 .help = "override the config's seed"},
		{"resume", 0, CLI_STR, &o.resume, .arg = "CKPT",
		 .help = "continue an interrupted run from its checkpoint"},
		{"checkpoint", 0, CLI_STR, &o.checkpoint, .arg = "FILE",
		 .help = "where checkpoints go (default MODEL.ckpt), every epoch and\n"
			 "on Ctrl-C"},
		{"threads", 0, CLI_INT, &o.threads, 1, 64, .arg = "N",
		 .help = "OpenBLAS threads (default: online CPUs); same seed and\n"
			 "threads give a bit-identical model"},
		{"log", 0, CLI_STR, &o.log, .arg = "FILE",
		 .help = "JSON-lines log, one object per epoch"},
		{"train-samples", 0, CLI_INT, &o.train_samples, 1, 100000000, .arg = "N",
		 .help = "train on the first N training images only (smoke tests)"},
		{"validation", 0, CLI_INT, &o.validation, 0, 100000000, .arg = "N",
		 .help = "hold out the last N images (overrides the config)"},
		{"snapshots-from", 0, CLI_INT, &o.snapshots_from, 1, 100000, .arg = "N",
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
