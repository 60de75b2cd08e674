/* The option rows of the optional training levers of a config's "train" section
 * (models/README.md): "init" (start from a trained model), "distill" (a teacher's soft
 * targets), "ensemble" (paths that ensemble), each an object read by the option table
 * (train_config.c binds them); an absent lever leaves training exactly as without it. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/train.h"
#include "levers.h"
#include "../common/options.h"

#define F(f) CIGT_OPT_FIELD(struct cigt_train_config, f)
#define T CIGT_OPT_IN_TRAIN

static const struct cigt_opt init_rows[] = {
	{"from", 0, CIGT_OPT_PATH, F(init_from), .where = T, .flags = CIGT_OPT_REQUIRED,
	 .arg = "PATH", .help = "a trained model, absolute or relative to the config's directory"},
	{"noise", 0, CIGT_OPT_DOUBLE, F(init_noise), .where = T, .dlo = 0, .dhi = 1, .def = "0",
	 .help = "scales each copied weight of a layer with several experts by 1 + noise u"},
	{0},
};

const struct cigt_opt cigt__train_opt_init = {
	"init", 0, CIGT_OPT_SECTION, .where = T, .sub = init_rows,
	.arg = "{\"from\": PATH, \"noise\": 0..1}",
	.help = "start from a trained model (warm start, or sparse upcycling of a single-path one)"};

static const struct cigt_opt distill_rows[] = {
	{"teacher", 0, CIGT_OPT_PATH, F(distill_teacher), .where = T, .flags = CIGT_OPT_REQUIRED,
	 .arg = "PATH", .help = "the teacher model (resolved like init.from)"},
	{"temperature", 0, CIGT_OPT_DOUBLE, F(distill_t), .where = T, .dlo = 0.01, .dhi = 100,
	 .def = "6", .help = "T of the soft targets softmax(z_teacher / T)"},
	{"weight", 0, CIGT_OPT_DOUBLE, F(distill_weight), .where = T, .dlo = 0, .dhi = 1,
	 .def = "0.5", .help = "each leaf's loss: (1 - weight) CE + weight T^2 KL / C"},
	{0},
};

const struct cigt_opt cigt__train_opt_distill = {
	"distill", 0, CIGT_OPT_SECTION, .where = T, .sub = distill_rows,
	.arg = "{\"teacher\": PATH, \"temperature\": 6, \"weight\": 0.5}",
	.help = "knowledge distillation from a trained model's soft targets"};

/* from_epoch and to_epoch: a number in the row's range that is a whole epoch, into an int. */
static int epoch_json(const struct cigt_opt *o, void *target, const json_t *v, const char *at,
		      char *err, size_t errlen)
{
	double x = json_number_value(v);
	if (!json_is_number(v) || !(x >= (double)o->lo && x <= (double)o->hi))
		return cigt_fail(err, errlen, CIGT_EINVAL, "%s: expected a number in [%lld, %lld]",
				 at, o->lo, o->hi);
	if (x != (int)x) {
		const char *dot = strrchr(at, '.');
		return cigt_fail(err, errlen, CIGT_EINVAL,
				 "%.*s: from_epoch and to_epoch must be whole epochs",
				 (int)(dot ? dot - at : (long)strlen(at)), at);
	}
	*(int *)target = (int)x;
	return 0;
}

/* Their default, -1 (not in the range: "not set"). */
static int epoch_text(const struct cigt_opt *o, void *target, const char *arg, const char *at,
		      char *err, size_t errlen)
{
	*(int *)target = atoi(arg);
	return 0;
}

static int ensemble_check(const struct cigt_opt *o, void *base, const json_t *obj,
			  const char *at, char *err, size_t errlen)
{
	const struct cigt_train_config *c = base;
	if (c->ens_from >= 0 && c->ens_to >= 0 && c->ens_to <= c->ens_from)
		return cigt_fail(err, errlen, CIGT_EINVAL, "%s: to_epoch must be above from_epoch",
				 at);
	return 0;
}

static const struct cigt_opt ensemble_rows[] = {
	{"share", 0, CIGT_OPT_DOUBLE, F(ens_share), .where = T, .dlo = 0.001, .dhi = 1,
	 .def = "0.5", .help = "the share of each batch that also trains its runner-up leaf"},
	{"weight", 0, CIGT_OPT_DOUBLE, F(ens_weight), .where = T, .dlo = 0, .dhi = 1, .def = "1",
	 .help = "(1 - weight) CE(own posterior) + weight CE(mean of the two posteriors)"},
	{"from_epoch", 0, CIGT_OPT_CALL, F(ens_from), .where = T, .lo = 0, .hi = 100000,
	 .def = "-1", .json = epoch_json, .text = epoch_text,
	 .help = "first epoch (-1: the first routed epoch)"},
	{"to_epoch", 0, CIGT_OPT_CALL, F(ens_to), .where = T, .lo = 1, .hi = 100000, .def = "-1",
	 .json = epoch_json, .text = epoch_text, .help = "epoch it stops before (-1: the end)"},
	{0},
};

const struct cigt_opt cigt__train_opt_ensemble = {
	"ensemble", 0, CIGT_OPT_SECTION, .where = T, .sub = ensemble_rows, .check = ensemble_check,
	.arg = "{\"share\": 0.5, \"weight\": 1, \"from_epoch\": E, \"to_epoch\": E}",
	.help = "paths that ensemble: part of each batch also trains its runner-up leaf"};

char *cigt__config_path(const char *config, const char *path)
{
	char *out;
	const char *slash = strrchr(config, '/');
	if (path[0] == '/' || !slash)
		return strdup(path);
	if (asprintf(&out, "%.*s/%s", (int)(slash - config), config, path) < 0)
		return NULL;
	return out;
}
