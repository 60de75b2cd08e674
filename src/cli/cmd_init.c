/* cigt init CONFIG -o MODEL [--seed N] [--random-bn] */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/arch.h"
#include "cli.h"

static const char usage[] =
	"usage: cigt init CONFIG -o MODEL [--seed N] [--random-bn]\n"
	"Writes a randomly initialised model (PyTorch default initialisation) for the\n"
	"architecture in CONFIG (a JSON file; see proto/model-format.md).\n";

int cmd_init(int argc, char **argv)
{
	const char *out = NULL;
	long long seed = 1;
	bool random_bn = false;
	const struct cigt_opt opts[] = {
		CIGT_OPT_BIND(cli_opt_out, out),
		{"seed", 0, CIGT_OPT_INT, CIGT_OPT_VAR(seed), .lo = 0, .hi = INT64_MAX, .def = "1",
		 .arg = "N", .help = "random seed"},
		{"random-bn", 0, CIGT_OPT_FLAG, CIGT_OPT_VAR(random_bn),
		 .help = "random batch-norm parameters and running statistics instead\n"
			 "of the identity (for tests of batch-norm folding)"},
		{0},
	};
	const struct cli_cmd cmd = {usage, 18, 1, 1, opts};
	int status, operand = cli_parse(&cmd, argc, argv, &status);
	if (operand < 0)
		return status;
	char err[512];
	struct cigt_arch *arch;
	if (cigt_arch_load(argv[operand], &arch, err, sizeof err)) {
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
