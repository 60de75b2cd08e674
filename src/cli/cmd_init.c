/* cigt init CONFIG -o MODEL [--seed N] [--random-bn] */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/arch.h"
#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cigt init CONFIG -o MODEL [--seed N] [--random-bn]\n"
		"Writes a randomly initialised model (PyTorch default initialisation) for the\n"
		"architecture in CONFIG (a JSON file; see proto/model-format.md).\n"
		"  -o, --out MODEL   output .safetensors file (required)\n"
		"  --seed N          random seed (default 1)\n"
		"  --random-bn       random batch-norm parameters and running statistics instead\n"
		"                    of the identity (for tests of batch-norm folding)\n");
}

int cmd_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{"out", required_argument, NULL, 'o'},  {"seed", required_argument, NULL, 's'},
		{"random-bn", no_argument, NULL, 'b'},  {"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *out = NULL;
	long long seed = 1;
	bool random_bn = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 's':
			if (cli_int("--seed", optarg, 0, INT64_MAX, &seed))
				return 2;
			break;
		case 'b':
			random_bn = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1 || !out) {
		usage(stderr);
		return 2;
	}
	char err[512];
	struct cigt_arch *arch;
	if (cigt_arch_load(argv[optind], &arch, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		return 1;
	}
	struct cigt_model *m;
	if (cigt_model_new(arch, &m)) {
		fprintf(stderr, "cigt: out of memory\n");
		return 1;
	}
	cigt_model_init_random(m, (uint64_t)seed, random_bn);
	json_t *prov = json_pack("{ss ss sI sb}", "tool", "cigt init", "version", CIGT_VERSION,
				 "seed", (json_int_t)seed, "random_bn", random_bn);
	m->provenance = json_dumps(prov, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(prov);
	int rc = cigt_model_save(m, out, err, sizeof err);
	if (rc)
		fprintf(stderr, "cigt: %s\n", err);
	else
		printf("wrote %s: %s, %lld parameters, %d paths\n", out, m->arch->name,
		       (long long)m->arch->params, m->arch->npaths);
	cigt_model_free(m);
	return rc ? 1 : 0;
}
