/* The optional training levers of a config's "train" section (models/README.md): "init" (start
 * from a trained model), "distill" (a teacher's soft targets), "ensemble" (paths that
 * ensemble), and two numbers: "label_smoothing", "router_weight_decay". Each is an object whose keys are checked here; an absent lever leaves
 * training exactly as without it. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/train.h"
#include "levers.h"

#define ERR(...) cigt_fail(err, errlen, CIGT_EINVAL, __VA_ARGS__)

/* A number in [lo, hi] at obj.key, or def when absent. */
static int opt_num(const json_t *obj, const char *path, const char *key, double lo, double hi,
		   double def, double *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi))
		return ERR("%s.%s: expected a number in [%g, %g]", path, key, lo, hi);
	*out = json_number_value(v);
	return 0;
}

/* A non-empty path string at obj.key (required) into buf. */
static int path_at(const json_t *obj, const char *path, const char *key, char *buf, size_t n,
		   char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return ERR("%s.%s: missing", path, key);
	if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) >= n ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return ERR("%s.%s: expected a file path (1 to %zu bytes)", path, key, n - 1);
	memcpy(buf, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

/* Fails naming the first key of obj not in keys. */
static int only_keys(const json_t *obj, const char *path, const char *const *keys, char *err,
		     size_t errlen)
{
	const char *key;
	json_t *val;
	json_object_foreach((json_t *)obj, key, val) {
		int ok = 0;
		for (const char *const *k = keys; *k; k++)
			ok |= !strcmp(*k, key);
		if (!ok)
			return ERR("%s: unknown key '%s'", path, key);
	}
	return 0;
}

static int parse_init(const json_t *j, struct cigt_train_config *c, char *err, size_t errlen)
{
	static const char *const keys[] = {"from", "noise", NULL};
	if (!json_is_object(j))
		return ERR("train.init: expected {\"from\": PATH, \"noise\": 0..1}");
	int rc;
	if ((rc = only_keys(j, "train.init", keys, err, errlen)) ||
	    (rc = path_at(j, "train.init", "from", c->init_from, sizeof c->init_from, err,
			  errlen)) ||
	    (rc = opt_num(j, "train.init", "noise", 0, 1, 0, &c->init_noise, err, errlen)))
		return rc;
	return 0;
}

static int parse_distill(const json_t *j, struct cigt_train_config *c, char *err,
			 size_t errlen)
{
	static const char *const keys[] = {"teacher", "temperature", "weight", NULL};
	if (!json_is_object(j))
		return ERR("train.distill: expected {\"teacher\": PATH, \"temperature\": 6, "
			   "\"weight\": 0.5}");
	int rc;
	if ((rc = only_keys(j, "train.distill", keys, err, errlen)) ||
	    (rc = path_at(j, "train.distill", "teacher", c->distill_teacher,
			  sizeof c->distill_teacher, err, errlen)) ||
	    (rc = opt_num(j, "train.distill", "temperature", 0.01, 100, 6, &c->distill_t, err,
			  errlen)) ||
	    (rc = opt_num(j, "train.distill", "weight", 0, 1, 0.5, &c->distill_weight, err,
			  errlen)))
		return rc;
	return 0;
}

static int parse_ensemble(const json_t *j, struct cigt_train_config *c, char *err,
			  size_t errlen)
{
	static const char *const keys[] = {"share", "weight", "from_epoch", "to_epoch", NULL};
	if (!json_is_object(j))
		return ERR("train.ensemble: expected {\"share\": 0.5, \"weight\": 1, "
			   "\"from_epoch\": E, \"to_epoch\": E}");
	int rc;
	double from = -1, to = -1;
	if ((rc = only_keys(j, "train.ensemble", keys, err, errlen)) ||
	    (rc = opt_num(j, "train.ensemble", "share", 0.001, 1, 0.5, &c->ens_share, err,
			  errlen)) ||
	    (rc = opt_num(j, "train.ensemble", "weight", 0, 1, 1, &c->ens_weight, err, errlen)) ||
	    (rc = opt_num(j, "train.ensemble", "from_epoch", 0, 100000, -1, &from, err, errlen)) ||
	    (rc = opt_num(j, "train.ensemble", "to_epoch", 1, 100000, -1, &to, err, errlen)))
		return rc;
	if ((from >= 0 && from != (int)from) || (to >= 0 && to != (int)to))
		return ERR("train.ensemble: from_epoch and to_epoch must be whole epochs");
	if (from >= 0 && to >= 0 && to <= from)
		return ERR("train.ensemble: to_epoch must be above from_epoch");
	c->ens_from = (int)from;
	c->ens_to = (int)to;
	return 0;
}

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

int cigt__train_levers_parse(const json_t *t, struct cigt_train_config *c, char *err,
			     size_t errlen)
{
	json_t *j;
	int rc;
	if ((j = json_object_get(t, "init")) && (rc = parse_init(j, c, err, errlen)))
		return rc;
	if ((j = json_object_get(t, "distill")) && (rc = parse_distill(j, c, err, errlen)))
		return rc;
	if ((j = json_object_get(t, "ensemble")) && (rc = parse_ensemble(j, c, err, errlen)))
		return rc;
	if ((rc = opt_num(t, "train", "label_smoothing", 0, 0.5, 0, &c->label_smoothing, err,
			  errlen)) ||
	    (rc = opt_num(t, "train", "router_weight_decay", 0, 1, c->weight_decay,
			  &c->router_weight_decay, err, errlen)))
		return rc;
	return 0;
}
