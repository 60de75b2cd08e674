/* cigt train --config CONFIG --out MODEL [...] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cigt/dataset.h"
#include "cigt/error.h"
#include "cigt/train.h"
#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cigt train --config CONFIG.json --out MODEL [--data DIR] [--epochs N]\n"
		"                  [--seed N] [--resume CKPT] [--threads N] [--log FILE]\n"
		"                  [--checkpoint FILE] [--train-samples N] [--validation N]\n"
		"                  [--input-stats] [--cache-mb N]\n"
		"Trains a Conditional Information Gain Trellis. CONFIG holds the architecture and\n"
		"every hyper-parameter (models/fashion_mnist.json is the reference). The model with\n"
		"the best accuracy on the validation split (the last images of the training set)\n"
		"is written to MODEL; the test set is never used.\n"
		"  --data DIR          IDX directory with train-{images-idx3,labels-idx1}-ubyte.gz\n"
		"                      (default " CIGT_DEFAULT_DATA_DIR "), or an image folder:\n"
		"                      DIR/train/<class>/ if it exists, else DIR/<class>/, with\n"
		"                      .png .jpg .jpeg .pgm .ppm files; the folder names must be\n"
		"                      the config's classes\n"
		"  --input-stats       normalise the input with the training images' own per-channel\n"
		"                      mean and std (written into the model's input)\n"
		"  --cache-mb N        bound on a folder's images held as float32 (default 2048)\n"
		"  --epochs N          override the config's epochs\n"
		"  --seed N            override the config's seed\n"
		"  --resume CKPT       continue an interrupted run from its checkpoint\n"
		"  --checkpoint FILE   where checkpoints go (default MODEL.ckpt), every epoch and\n"
		"                      on Ctrl-C\n"
		"  --threads N         OpenBLAS threads (default: online CPUs); same seed and\n"
		"                      threads give a bit-identical model\n"
		"  --log FILE          JSON-lines log, one object per epoch\n"
		"  --train-samples N   train on the first N training images only (smoke tests)\n"
		"  --validation N      hold out the last N images (overrides the config)\n");
}

int cmd_train(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},  {"out", required_argument, NULL, 'o'},
		{"data", required_argument, NULL, 'd'},    {"epochs", required_argument, NULL, 'e'},
		{"seed", required_argument, NULL, 's'},    {"resume", required_argument, NULL, 'r'},
		{"threads", required_argument, NULL, 't'}, {"log", required_argument, NULL, 'l'},
		{"checkpoint", required_argument, NULL, 'k'},
		{"train-samples", required_argument, NULL, 'n'},
		{"validation", required_argument, NULL, 'v'},
		{"input-stats", no_argument, NULL, 'I'},
		{"cache-mb", required_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},          {0},
	};
	struct cigt_train_options o = {.threads = cli_default_threads(), .validation = -1};
	long long v;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config = optarg;
			break;
		case 'o':
			o.out = optarg;
			break;
		case 'd':
			o.data_dir = optarg;
			break;
		case 'e':
			if (cli_int("--epochs", optarg, 1, 100000, &v))
				return 2;
			o.epochs = (int)v;
			break;
		case 's':
			if (cli_int("--seed", optarg, 0, INT64_MAX, &v))
				return 2;
			o.seed = (uint64_t)v;
			o.seed_set = true;
			break;
		case 'r':
			o.resume = optarg;
			break;
		case 't':
			if (cli_int("--threads", optarg, 1, 64, &v))
				return 2;
			o.threads = (int)v;
			break;
		case 'l':
			o.log = optarg;
			break;
		case 'k':
			o.checkpoint = optarg;
			break;
		case 'n':
			if (cli_int("--train-samples", optarg, 1, 100000000, &v))
				return 2;
			o.train_samples = (int)v;
			break;
		case 'v':
			if (cli_int("--validation", optarg, 0, 100000000, &v))
				return 2;
			o.validation = (int)v;
			break;
		case 'I':
			o.input_stats = true;
			break;
		case 'C':
			if (cli_int("--cache-mb", optarg, 1, 1 << 24, &v))
				return 2;
			o.cache_bytes = (size_t)v << 20;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || !o.config || !o.out) {
		usage(stderr);
		return 2;
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
