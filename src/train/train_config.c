/* The "train" section of a config file: its option table (cigt__train_rows, read by
 * cigt_train_config_parse; the optional levers' rows are levers.c's), and what it defines step
 * by step: the learning rate of an epoch, the temperature of an iteration, and the augmentation
 * of a training image. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/train.h"
#include "levers.h"
#include "train_config.h"
#include "../common/options.h"

#define ERR(...) cigt_fail(err, errlen, CIGT_EINVAL, __VA_ARGS__)
#define F(f) CIGT_OPT_FIELD(struct cigt_train_config, f)
#define T CIGT_OPT_IN_TRAIN
#define REQ CIGT_OPT_REQUIRED

/* Rows also bound by `cigt train` as --epochs and --seed (src/cli/cmd_train.c). */
const struct cigt_opt cigt__train_opt_epochs = {
	"epochs", 0, CIGT_OPT_INT, .where = T | CIGT_OPT_IN_CLI, .cmds = "train", .lo = 1,
	.hi = 100000, .arg = "N", .help = "epochs in all, warm-up included"};
const struct cigt_opt cigt__train_opt_seed = {
	"seed", 0, CIGT_OPT_INT, .where = T | CIGT_OPT_IN_CLI, .cmds = "train", .lo = 0,
	.hi = INT64_MAX, .arg = "N", .help = "initialisation, shuffling, dropout and re-routing"};

/* "lr_schedule": [[epoch, factor], ...], epochs rising from 0. */
static int lr_schedule_json(const struct cigt_opt *o, void *target, const json_t *s,
			    const char *at, char *err, size_t errlen)
{
	struct cigt_train_config *c = (void *)((char *)target - o->off);
	if (!json_is_array(s) || json_array_size(s) < 1 || json_array_size(s) > CIGT_MAX_LR_STEPS)
		return ERR("%s: expected 1 to %d [epoch, factor] pairs", at, CIGT_MAX_LR_STEPS);
	c->nsteps = (int)json_array_size(s);
	for (int i = 0; i < c->nsteps; i++) {
		json_t *p = json_array_get(s, (size_t)i);
		if (!json_is_array(p) || json_array_size(p) != 2 ||
		    !json_is_integer(json_array_get(p, 0)) || !json_is_number(json_array_get(p, 1)))
			return ERR("%s[%d]: expected [epoch, factor]", at, i);
		c->step_epoch[i] = (int)json_integer_value(json_array_get(p, 0));
		c->step_factor[i] = json_number_value(json_array_get(p, 1));
		if (c->step_epoch[i] < 0 || (i && c->step_epoch[i] <= c->step_epoch[i - 1]) ||
		    !(c->step_factor[i] >= 0 && c->step_factor[i] <= 1000))
			return ERR("%s[%d]: epochs must increase from 0 and factors lie in [0, 1000]",
				   at, i);
	}
	if (c->step_epoch[0] != 0)
		return ERR("%s[0]: must start at epoch 0", at);
	return 0;
}

static const struct cigt_opt temperature_rows[] = {
	{"initial", 0, CIGT_OPT_DOUBLE, F(t0), .where = T, .flags = REQ, .dlo = 1e-6, .dhi = 1e6,
	 .help = "T at the first iteration (before its decay)"},
	{"decay", 0, CIGT_OPT_DOUBLE, F(t_decay), .where = T, .flags = REQ, .dlo = 1e-6, .dhi = 1,
	 .help = "factor per iteration"},
	{"min", 0, CIGT_OPT_DOUBLE, F(t_min), .where = T, .flags = REQ, .dlo = 1e-6, .dhi = 1e6,
	 .help = "floor"},
	{0},
};

static const struct cigt_opt augment_rows[] = {
	{"flip", 0, CIGT_OPT_FLAG, F(aug_flip), .where = T,
	 .help = "mirror left-right with probability 1/2"},
	{"shift", 0, CIGT_OPT_INT, F(aug_shift), .where = T, .lo = 0, .hi = 8,
	 .help = "move by -shift..shift whole pixels on each axis"},
	{0},
};

/* The section's keys in the order of models/README.md's table (and of the checks). */
const struct cigt_opt cigt__train_rows[] = {
	{.like = &cigt__train_opt_epochs, F(epochs), .flags = REQ},
	{"warmup_epochs", 0, CIGT_OPT_INT, F(warmup_epochs), .where = T, .flags = REQ, .lo = 0,
	 .hi = 100000, .help = "full routing: every row goes to every expert of the next layer"},
	{"batch_size", 0, CIGT_OPT_INT, F(batch_size), .where = T, .flags = REQ, .lo = 1,
	 .hi = 65536, .help = "samples per step"},
	{"lr", 0, CIGT_OPT_DOUBLE, F(lr), .where = T, .flags = REQ, .dlo = 0, .dhi = 100,
	 .help = "initial learning rate (SGD)"},
	{"lr_schedule", 0, CIGT_OPT_CALL, F(nsteps), .where = T, .flags = REQ,
	 .json = lr_schedule_json, .arg = "[[epoch, factor], ...]",
	 .help = "from epoch e on, lr = lr0 * factor"},
	{"momentum", 0, CIGT_OPT_DOUBLE, F(momentum), .where = T, .flags = REQ, .dlo = 0,
	 .dhi = 0.9999, .help = "SGD momentum"},
	{"weight_decay", 0, CIGT_OPT_DOUBLE, F(weight_decay), .where = T, .flags = REQ, .dlo = 0,
	 .dhi = 1, .help = "L2 weight decay"},
	{"information_gain_weight", 0, CIGT_OPT_DOUBLE, F(ig_lambda), .where = T, .flags = REQ,
	 .dlo = 0, .dhi = 1000, .help = "lambda, the weight of the routers' information gain"},
	{"information_gain_beta", 0, CIGT_OPT_DOUBLE, F(ig_beta), .where = T, .flags = REQ,
	 .dlo = 0, .dhi = 1000, .help = "beta: IG = beta H(p(n)) + H(p(c)) - H(p(c,n))"},
	{"temperature", 0, CIGT_OPT_SECTION, .where = T, .flags = REQ, .sub = temperature_rows,
	 .arg = "{\"initial\", \"decay\", \"min\"}",
	 .help = "soft routes softmax(a/T), T = max(initial * decay^(t+1), min)"},
	{"routing_randomization", 0, CIGT_OPT_DOUBLE, F(rho), .where = T, .flags = REQ, .dlo = 0,
	 .dhi = 1, .help = "after warm-up, the share of rows re-routed uniformly at random"},
	{"validation_samples", 0, CIGT_OPT_INT, F(validation_samples), .where = T, .flags = REQ,
	 .lo = 0, .hi = 1000000, .help = "the last images of the training set, held out"},
	{.like = &cigt__train_opt_seed, F(seed), .flags = REQ},
	{"augment", 0, CIGT_OPT_SECTION, .where = T, .sub = augment_rows,
	 .arg = "{\"flip\": true|false, \"shift\": 0..8}",
	 .help = "training-image augmentation (absent: none)"},
	{.like = &cigt__train_opt_init},
	{.like = &cigt__train_opt_distill},
	{.like = &cigt__train_opt_ensemble},
	{"label_smoothing", 0, CIGT_OPT_DOUBLE, F(label_smoothing), .where = T, .dlo = 0,
	 .dhi = 0.5, .def = "0", .help = "epsilon of each leaf row's smoothed target"},
	{"router_weight_decay", 0, CIGT_OPT_DOUBLE, F(router_weight_decay), .where = T, .dlo = 0,
	 .dhi = 1, .help = "the routers' own L2 decay (absent: weight_decay)"},
	{"lr_cosine", 0, CIGT_OPT_FLAG, F(lr_cosine), .where = T,
	 .help = "cosine annealing: lr also times 0.5 (1 + cos(pi epoch / epochs))"},
	{0},
};

int cigt_train_config_parse(const json_t *t, struct cigt_train_config *c, char *err,
			    size_t errlen)
{
	memset(c, 0, sizeof *c);
	if (!t || !json_is_object(t))
		return ERR("train: missing object (the config needs a \"train\" section)");
	int rc;
	if ((rc = cigt__opts_defaults(cigt__train_rows, c)) ||
	    (rc = cigt__opts_read_json(cigt__train_rows, 0, c, t, "", "train", err, errlen)))
		return rc;
	if (!json_object_get(t, "router_weight_decay"))
		c->router_weight_decay = c->weight_decay;
	return 0;
}

void cigt_train_augment(float *chw, float *tmp, int C, int H, int W, bool flip, int dx, int dy,
			float fill)
{
	const size_t n = (size_t)C * (size_t)H * (size_t)W;
	memcpy(tmp, chw, n * sizeof(float));
	for (int c = 0; c < C; c++)
		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++) {
				int sy = y - dy, sx = x - dx; /* shift ... */
				if (flip)
					sx = W - 1 - sx; /* ... the mirrored image */
				float v = fill;
				if (sy >= 0 && sy < H && sx >= 0 && sx < W)
					v = tmp[((size_t)c * H + sy) * W + sx];
				chw[((size_t)c * H + y) * W + x] = v;
			}
}

double cigt_train_lr(const struct cigt_train_config *c, int epoch)
{
	double f = c->step_factor[0];
	for (int i = 0; i < c->nsteps; i++)
		if (epoch >= c->step_epoch[i])
			f = c->step_factor[i];
	if (c->lr_cosine)
		f *= 0.5 * (1 + cos(M_PI * epoch / c->epochs));
	return c->lr * f;
}

double cigt_train_temperature(const struct cigt_train_config *c, int64_t iteration)
{
	double t = c->t0 * pow(c->t_decay, (double)(iteration + 1));
	return t > c->t_min ? t : c->t_min;
}
