/* cigt: train, evaluate, inspect and run Conditional Information Gain Trellis models.
 * This file dispatches to the subcommands, and describes their option tables for the docs'
 * tests (the hidden `cigt options --json`). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "../train/train_config.h"

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
	{"quantize", cmd_quantize, "calibrate int8 (--precision int8) on validation"},
	{"classify", cmd_classify, "classify PNG, JPEG, PGM or PPM images"},
	{"bench", cmd_bench, "measure engine throughput"},
	{"grad", cmd_grad, "one deterministic training step's gradients (for cross-checks)"},
};

/* cigt options --json: {"cigt": {COMMAND: {"usage", "options": [rows]}}, "train": [rows]},
 * each command's table as cli_parse gets it (cli_describe). */
static json_t *described;

static void describe(const char *name, const struct cli_cmd *c)
{
	json_object_set_new(json_object_get(described, "cigt"), name,
			    json_pack("{ss so}", "usage", c->usage, "options",
				      cigt__opts_describe(c->opts)));
}

static int cmd_options(int argc, char **argv)
{
	if (argc != 2 || strcmp(argv[1], "--json")) {
		fprintf(stderr, "usage: cigt options --json\n");
		return 2;
	}
	described = json_pack("{s{} so}", "cigt", "train", cigt__opts_describe(cigt__train_rows));
	cli_describe = describe;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		static char name[32];
		char *args[] = {name, NULL};
		snprintf(name, sizeof name, "%s", commands[i].name);
		commands[i].fn(1, args);
	}
	cli_describe = NULL;
	int rc = json_dumpf(described, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	putchar('\n');
	json_decref(described);
	return rc ? 1 : 0;
}

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
	if (!strcmp(argv[1], "options")) /* hidden: for the docs' tests */
		return cmd_options(argc - 1, argv + 1);
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
