/* The "train" section of a config file (cigt_train_config_parse; the optional levers are
 * levers.c's) and what it defines step by step: the learning rate of an epoch, the temperature
 * of an iteration, and the augmentation of a training image. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/train.h"
#include "levers.h"

#define ERR(...) cigt_fail(err, errlen, CIGT_EINVAL, __VA_ARGS__)

static int num_at(const json_t *o, const char *path, const char *k, double lo, double hi,
		  double *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, k);
	if (!v)
		return ERR("%s.%s: missing", path, k);
	if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi))
		return ERR("%s.%s: expected a number in [%g, %g]", path, k, lo, hi);
	*out = json_number_value(v);
	return 0;
}

static int num(const json_t *o, const char *k, double lo, double hi, double *out, char *err,
	       size_t errlen)
{
	return num_at(o, "train", k, lo, hi, out, err, errlen);
}

static int integer(const json_t *o, const char *k, long long lo, long long hi, long long *out,
		   char *err, size_t errlen)
{
	json_t *v = json_object_get(o, k);
	if (!v)
		return ERR("train.%s: missing", k);
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return ERR("train.%s: expected an integer in [%lld, %lld]", k, lo, hi);
	*out = json_integer_value(v);
	return 0;
}

int cigt_train_config_parse(const json_t *t, struct cigt_train_config *c, char *err,
			    size_t errlen)
{
	static const char *const keys[] = {
		"epochs", "warmup_epochs", "batch_size", "lr", "lr_schedule", "momentum",
		"weight_decay", "information_gain_weight", "information_gain_beta", "temperature",
		"routing_randomization", "validation_samples", "seed", "augment", "init", "distill", "ensemble", "label_smoothing",
		"router_weight_decay", NULL};
	memset(c, 0, sizeof *c);
	if (!t || !json_is_object(t))
		return ERR("train: missing object (the config needs a \"train\" section)");
	const char *key;
	json_t *val;
	json_object_foreach((json_t *)t, key, val) {
		int ok = 0;
		for (const char *const *k = keys; *k; k++)
			ok |= !strcmp(*k, key);
		if (!ok)
			return ERR("train: unknown key '%s'", key);
	}
	long long ep, wu, bs, vs, seed;
	int rc;
	if ((rc = integer(t, "epochs", 1, 100000, &ep, err, errlen)) ||
	    (rc = integer(t, "warmup_epochs", 0, 100000, &wu, err, errlen)) ||
	    (rc = integer(t, "batch_size", 1, 65536, &bs, err, errlen)) ||
	    (rc = num(t, "lr", 0, 100, &c->lr, err, errlen)) ||
	    (rc = num(t, "momentum", 0, 0.9999, &c->momentum, err, errlen)) ||
	    (rc = num(t, "weight_decay", 0, 1, &c->weight_decay, err, errlen)) ||
	    (rc = num(t, "information_gain_weight", 0, 1000, &c->ig_lambda, err, errlen)) ||
	    (rc = num(t, "information_gain_beta", 0, 1000, &c->ig_beta, err, errlen)) ||
	    (rc = num(t, "routing_randomization", 0, 1, &c->rho, err, errlen)) ||
	    (rc = integer(t, "validation_samples", 0, 1000000, &vs, err, errlen)) ||
	    (rc = integer(t, "seed", 0, INT64_MAX, &seed, err, errlen)))
		return rc;
	c->epochs = (int)ep;
	c->warmup_epochs = (int)wu;
	c->batch_size = (int)bs;
	c->validation_samples = (int)vs;
	c->seed = (uint64_t)seed;
	json_t *tj = json_object_get(t, "temperature");
	if (!tj || !json_is_object(tj))
		return ERR("train.temperature: expected {\"initial\", \"decay\", \"min\"}");
	json_object_foreach(tj, key, val) {
		if (strcmp(key, "initial") && strcmp(key, "decay") && strcmp(key, "min"))
			return ERR("train.temperature: unknown key '%s'", key);
	}
	if ((rc = num_at(tj, "train.temperature", "initial", 1e-6, 1e6, &c->t0, err, errlen)) ||
	    (rc = num_at(tj, "train.temperature", "decay", 1e-6, 1, &c->t_decay, err, errlen)) ||
	    (rc = num_at(tj, "train.temperature", "min", 1e-6, 1e6, &c->t_min, err, errlen)))
		return rc;
	json_t *s = json_object_get(t, "lr_schedule");
	if (!s || !json_is_array(s) || json_array_size(s) < 1 ||
	    json_array_size(s) > CIGT_MAX_LR_STEPS)
		return ERR("train.lr_schedule: expected 1 to %d [epoch, factor] pairs",
			   CIGT_MAX_LR_STEPS);
	c->nsteps = (int)json_array_size(s);
	for (int i = 0; i < c->nsteps; i++) {
		json_t *p = json_array_get(s, (size_t)i);
		if (!json_is_array(p) || json_array_size(p) != 2 ||
		    !json_is_integer(json_array_get(p, 0)) || !json_is_number(json_array_get(p, 1)))
			return ERR("train.lr_schedule[%d]: expected [epoch, factor]", i);
		c->step_epoch[i] = (int)json_integer_value(json_array_get(p, 0));
		c->step_factor[i] = json_number_value(json_array_get(p, 1));
		if (c->step_epoch[i] < 0 || (i && c->step_epoch[i] <= c->step_epoch[i - 1]) ||
		    !(c->step_factor[i] >= 0 && c->step_factor[i] <= 1000))
			return ERR("train.lr_schedule[%d]: epochs must increase from 0 and factors "
				   "lie in [0, 1000]",
				   i);
	}
	if (c->step_epoch[0] != 0)
		return ERR("train.lr_schedule[0]: must start at epoch 0");
	json_t *aj = json_object_get(t, "augment");
	if (aj) {
		if (!json_is_object(aj))
			return ERR("train.augment: expected {\"flip\": true|false, \"shift\": 0..8}");
		json_object_foreach(aj, key, val) {
			if (!strcmp(key, "flip")) {
				if (!json_is_boolean(val))
					return ERR("train.augment.flip: expected true or false");
				c->aug_flip = json_is_true(val);
			} else if (!strcmp(key, "shift")) {
				if (!json_is_integer(val) || json_integer_value(val) < 0 ||
				    json_integer_value(val) > 8)
					return ERR("train.augment.shift: expected an integer in [0, 8]");
				c->aug_shift = (int)json_integer_value(val);
			} else {
				return ERR("train.augment: unknown key '%s'", key);
			}
		}
	}
	return cigt__train_levers_parse(t, c, err, errlen);
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
	return c->lr * f;
}

double cigt_train_temperature(const struct cigt_train_config *c, int64_t iteration)
{
	double t = c->t0 * pow(c->t_decay, (double)(iteration + 1));
	return t > c->t_min ? t : c->t_min;
}
