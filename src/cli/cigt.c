/* cigt: train, evaluate, inspect and run Conditional Information Gain Trellis models.
 * This file only dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#ifndef CIGT_VERSION
#define CIGT_VERSION "dev"
#endif

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *summary;
} commands[] = {
	{"train", cmd_train, "train a trellis (information-gain routing) on a dataset"},
	{"average", cmd_average, "average models of one architecture (weight averaging)"},
	{"init", cmd_init, "write a randomly initialised model from an architecture config"},
	{"info", cmd_info, "show a model's architecture, parameters and MACs"},
	{"eval", cmd_eval, "accuracy, speed, compute saved and routes on a test set"},
	{"tune", cmd_tune, "choose operating points (multipath, escalation) on validation"},
	{"classify", cmd_classify, "classify PNG, JPEG, PGM or PPM images"},
	{"bench", cmd_bench, "measure engine throughput"},
	{"grad", cmd_grad, "one deterministic training step's gradients (for cross-checks)"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: cigt COMMAND [ARGS]   (cigt COMMAND --help for details)\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("cigt %s\n", CIGT_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "cigt: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
