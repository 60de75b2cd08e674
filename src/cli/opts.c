/* Option parsing for every cigt subcommand from its table (opts.h): resolves the rows (shared
 * rows bound to the command's variables), stores their defaults, builds getopt_long's arrays,
 * stores each value through the table (cigt__opt_set), checks operands and required options,
 * and prints --help from the same rows. The rows shared by several subcommands are here. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/dataset.h"
#include "../common/util.h"
#include "opts.h"

#define CLI_MAX_OPTS 40
/* getopt_long's value of a row without a short name: above every char. */
#define CLI_LONG_ONLY 256

void (*cli_describe)(const char *name, const struct cli_cmd *c);

const struct cigt_opt cli_opt_data = {
	"data", 0, CIGT_OPT_STR, .where = CIGT_OPT_IN_CLI,
	.cmds = "bench eval grad quantize train tune",
	.def = CIGT_DEFAULT_DATA_DIR, .arg = "DIR",
	.help = "IDX directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz"};
const struct cigt_opt cli_opt_threads = {
	"threads", 0, CIGT_OPT_INT, .where = CIGT_OPT_IN_CLI, .cmds = "bench eval quantize train tune",
	.lo = 1, .hi = 64, .arg = "N", .help = "worker threads (default: online CPUs)"};
const struct cigt_opt cli_opt_cache_mb = {
	"cache-mb", 0, CIGT_OPT_CALL, .where = CIGT_OPT_IN_CLI, .cmds = "eval train", .lo = 1,
	.hi = 1 << 24, .text = cigt__opt_mebibytes, .def = "2048", .arg = "N",
	.help = "bound on a folder's images held as float32, in MiB"};
const struct cigt_opt cli_opt_json = {"json", 0, CIGT_OPT_FLAG, .where = CIGT_OPT_IN_CLI,
				      .cmds = "bench eval info",
				      .help = "one JSON object instead of text"};
const struct cigt_opt cli_opt_compute = {
	"compute", 0, CIGT_OPT_STR, .where = CIGT_OPT_IN_CLI, .cmds = "bench eval", .arg = "NAME",
	.help = "the model's operating point NAME (cigt info lists them); one that\n"
		"escalates loads its second model from beside MODEL"};
const struct cigt_opt cli_opt_dense = {"dense", 0, CIGT_OPT_FLAG, .where = CIGT_OPT_IN_CLI,
				       .cmds = "bench classify eval",
				       .help = "run every expert on every sample"};
const struct cigt_opt cli_opt_out = {
	"out", 'o', CIGT_OPT_STR, .where = CIGT_OPT_IN_CLI,
	.cmds = "average grad init quantize train",
	.flags = CIGT_OPT_REQUIRED, .arg = "MODEL", .help = "output .safetensors file (required)"};
const struct cigt_opt cli_opt_config = {
	"config", 'c', CIGT_OPT_STR, .where = CIGT_OPT_IN_CLI, .cmds = "grad train",
	.flags = CIGT_OPT_REQUIRED, .arg = "CONFIG",
	.help = "architecture and \"train\" section, JSON (required)"};

static const char *const backends[] = {"auto", "openblas", "onednn", NULL};
static const char *const precisions[] = {"fp32", "bf16", "int8", "auto", NULL};
const struct cigt_opt cli_opt_backend = {
	"backend", 0, CIGT_OPT_CHOICE, .where = CIGT_OPT_IN_CLI, .cmds = "bench classify eval",
	.choices = backends, .def = "auto", .arg = "B",
	.help = "where convs and linears run: openblas (im2col + sgemm, fp32),\n"
		"onednn, or auto (onednn for bf16 and int8, openblas for fp32)"};
const struct cigt_opt cli_opt_precision = {
	"precision", 0, CIGT_OPT_CHOICE, .where = CIGT_OPT_IN_CLI, .cmds = "bench classify eval",
	.choices = precisions, .def = "fp32", .arg = "P",
	.help = "fp32, bf16 (oneDNN: bf16 weights and inputs, fp32 sums),\n"
		"int8 (oneDNN, a model cigt quantize calibrated), or auto (the\n"
		"fastest the CPU has whose accuracy cigt quantize validated)"};

void cli_usage(const struct cli_cmd *c, FILE *f)
{
	fputs(c->usage, f);
	cigt__opts_help(c->opts, 0, c->width, f);
}

/* A shared row is bound only by the commands its cmds name. */
static bool names_command(const char *cmds, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = cmds; (p = strstr(p, name)); p += n)
		if ((p == cmds || p[-1] == ' ') && (p[n] == ' ' || !p[n]))
			return true;
	return false;
}

int cli_parse(const struct cli_cmd *c, int argc, char **argv, int *status)
{
	struct cigt_opt rows[CLI_MAX_OPTS];
	struct option lopts[CLI_MAX_OPTS + 2];
	char sopts[2 * CLI_MAX_OPTS + 2];
	char err[512];
	int n = 0, ns = 0;
	if (cli_describe) {
		cli_describe(argv[0], c);
		*status = 0;
		return -1;
	}
	for (; !cigt__opt_end(&c->opts[n]); n++) {
		CIGT_ASSERT(n < CLI_MAX_OPTS);
		struct cigt_opt tmp;
		rows[n] = *cigt__opt_resolve(&c->opts[n], &tmp);
		const struct cigt_opt *o = &rows[n];
		CIGT_ASSERT(o->p || o->type == CIGT_OPT_CALL);
		CIGT_ASSERT(o->short_name != 'h' && o->type != CIGT_OPT_SECTION);
		CIGT_ASSERT(!(o->flags & CIGT_OPT_REQUIRED) || o->type == CIGT_OPT_STR);
		CIGT_ASSERT(!o->cmds || names_command(o->cmds, argv[0]));
		bool has_arg = o->type != CIGT_OPT_FLAG;
		lopts[n] = (struct option){o->name, has_arg ? required_argument : no_argument, NULL,
					   o->short_name ? o->short_name : CLI_LONG_ONLY + n};
		if (o->short_name) {
			sopts[ns++] = o->short_name;
			if (has_arg)
				sopts[ns++] = ':';
		}
	}
	rows[n] = (struct cigt_opt){0};
	lopts[n] = (struct option){"help", no_argument, NULL, 'h'};
	lopts[n + 1] = (struct option){0};
	sopts[ns++] = 'h';
	sopts[ns] = '\0';
	if (cigt__opts_defaults(rows, NULL)) {
		fprintf(stderr, "cigt: out of memory\n");
		*status = 1;
		return -1;
	}

	int ch;
	optind = 0; /* a full reset of getopt's state (glibc), so a process may parse twice */
	while ((ch = getopt_long(argc, argv, sopts, lopts, NULL)) != -1) {
		if (ch == 'h') {
			cli_usage(c, stdout);
			*status = 0;
			return -1;
		}
		/* The row getopt_long's value stands for; none: getopt's '?' (it said why). */
		const struct cigt_opt *o = NULL;
		for (int i = 0; i < n && !o; i++)
			if (rows[i].short_name ? ch == rows[i].short_name : ch == CLI_LONG_ONLY + i)
				o = &rows[i];
		if (!o) {
			cli_usage(c, stderr);
			*status = 2;
			return -1;
		}
		int rc = 0;
		if (o->type == CIGT_OPT_FLAG)
			*(bool *)o->p = true;
		else
			rc = cigt__opt_set(o, NULL, optarg, "--", err, sizeof err);
		if (rc) {
			fprintf(stderr, "cigt: %s\n", err);
			*status = 2;
			return -1;
		}
	}
	int operands = argc - optind;
	bool ok = operands >= c->min_operands &&
		  (c->max_operands < 0 || operands <= c->max_operands);
	for (int i = 0; i < n; i++)
		if ((rows[i].flags & CIGT_OPT_REQUIRED) && !*(const char **)rows[i].p)
			ok = false;
	if (!ok) {
		cli_usage(c, stderr);
		*status = 2;
		return -1;
	}
	return optind;
}
