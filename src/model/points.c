/* Operating points: the table of named compute settings (`cigt tune` writes it) kept as JSON
 * text in the model file's __metadata__.operating_points: its parsing with full validation, and
 * its writing. Only text in, text out: loading the second model a point escalates to is the
 * loader's (safetensors.c, cigt_model_load_second). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/model.h"
#include "../common/name.h"

_Static_assert(CIGT_POINT_NAME_MAX == CIGT__POINT_NAME_LEN + 1 &&
		       CIGT_NAME_MAX == CIGT__MODEL_NAME_LEN + 1,
	       "struct cigt_point holds a point name and a model name");

#define ERR(...) cigt_fail(err, errlen, CIGT_EFORMAT, __VA_ARGS__)

static bool good_hex(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (int i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static int get_number(json_t *o, const char *key, int i, double lo, double hi, bool lo_open,
		      double *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	if (!v)
		return ERR("operating_points[%d].%s is missing", i, key);
	if (!json_is_number(v))
		return ERR("operating_points[%d].%s is not a number", i, key);
	double x = json_number_value(v);
	if (!isfinite(x) || x < lo || x > hi || (lo_open && x == lo))
		return ERR("operating_points[%d].%s is %g, not in %c%g, %g]", i, key, x,
			   lo_open ? '(' : '[', lo, hi);
	*out = x;
	return 0;
}

int cigt_points_parse(const char *json, size_t len, const struct cigt_arch *arch,
		      struct cigt_point *points, int *npoints, char *err, size_t errlen)
{
	static const char *const keys[] = {"name",   "thresholds",    "confidence", "second",
					   "second_sha256", "val_accuracy", "mean_macs",  NULL};
	const int nrouters = arch->nlayers - 1;
	json_error_t je;
	int rc = 0;
	*npoints = 0;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return ERR("operating_points is not valid JSON: %s", je.text);
	if (!json_is_array(root)) {
		rc = ERR("operating_points is not a JSON array");
		goto out;
	}
	if (json_array_size(root) > CIGT_MAX_POINTS) {
		rc = ERR("operating_points has %zu points, more than %d", json_array_size(root),
			 CIGT_MAX_POINTS);
		goto out;
	}
	size_t i;
	json_t *o;
	json_array_foreach(root, i, o) {
		struct cigt_point *p = &points[i];
		memset(p, 0, sizeof *p);
		int ii = (int)i;
		if (!json_is_object(o)) {
			rc = ERR("operating_points[%d] is not an object", ii);
			goto out;
		}
		const char *key;
		json_t *v;
		json_object_foreach(o, key, v) {
			int k = 0;
			while (keys[k] && strcmp(keys[k], key) != 0)
				k++;
			if (!keys[k]) {
				rc = ERR("operating_points[%d]: unknown key '%s'", ii, key);
				goto out;
			}
		}
		v = json_object_get(o, "name");
		if (!json_is_string(v) ||
		    !cigt__point_name_ok(json_string_value(v), strlen(json_string_value(v)))) {
			rc = ERR("operating_points[%d].name must be 1-%d characters of "
				 "[A-Za-z0-9_.-], not starting with '.'",
				 ii, CIGT_POINT_NAME_MAX - 1);
			goto out;
		}
		strcpy(p->name, json_string_value(v));
		for (size_t j = 0; j < i; j++)
			if (strcmp(points[j].name, p->name) == 0) {
				rc = ERR("operating_points[%d].name '%s' is used twice", ii,
					 p->name);
				goto out;
			}
		v = json_object_get(o, "thresholds");
		if (!json_is_array(v) || json_array_size(v) != (size_t)nrouters) {
			rc = ERR("operating_points[%d].thresholds must be an array of %d numbers "
				 "(one per router)",
				 ii, nrouters);
			goto out;
		}
		for (int l = 0; l < CIGT_MAX_LAYERS; l++)
			p->tau[l] = 1.0f;
		for (int l = 0; l < nrouters; l++) {
			json_t *t = json_array_get(v, (size_t)l);
			double x = json_is_number(t) ? json_number_value(t) : NAN;
			if (!(x >= 0.0 && x <= 1.0)) {
				rc = ERR("operating_points[%d].thresholds[%d] is not a number in "
					 "[0, 1]",
					 ii, l);
				goto out;
			}
			p->tau[l] = (float)x;
		}
		double x = 0.0;
		if (json_object_get(o, "confidence") &&
		    (rc = get_number(o, "confidence", ii, 0.0, 1.0, false, &x, err, errlen)))
			goto out;
		p->confidence = (float)x;
		json_t *sn = json_object_get(o, "second"), *sh = json_object_get(o, "second_sha256");
		if (sn || sh || p->confidence > 0.0f) {
			if (!sn || !json_is_string(sn) ||
			    !cigt__model_file_name_ok(json_string_value(sn),
						      strlen(json_string_value(sn)))) {
				rc = ERR("operating_points[%d].second must name the second model "
					 "(1-%d characters of [A-Za-z0-9_.-])",
					 ii, CIGT_NAME_MAX - 1);
				goto out;
			}
			if (!sh || !json_is_string(sh) || !good_hex(json_string_value(sh))) {
				rc = ERR("operating_points[%d].second_sha256 must be 64 lowercase "
					 "hex digits",
					 ii);
				goto out;
			}
			if (!(p->confidence > 0.0f)) {
				rc = ERR("operating_points[%d] names a second model but its "
					 "confidence is not above 0",
					 ii);
				goto out;
			}
			strcpy(p->second, json_string_value(sn));
			strcpy(p->second_sha256, json_string_value(sh));
		}
		if ((rc = get_number(o, "val_accuracy", ii, 0.0, 1.0, false, &p->val_accuracy, err,
				     errlen)) ||
		    (rc = get_number(o, "mean_macs", ii, 0.0, 1e18, true, &p->mean_macs, err,
				     errlen)))
			goto out;
	}
	*npoints = (int)json_array_size(root);
out:
	json_decref(root);
	return rc;
}

/* The shortest decimal that reads back as the same float (thresholds and confidences). */
static json_t *float_json(float v)
{
	char buf[32];
	for (int prec = 1; prec <= 9; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
		if ((float)strtod(buf, NULL) == v)
			break;
	}
	return json_real(strtod(buf, NULL));
}

char *cigt_points_to_json(const struct cigt_arch *arch, const struct cigt_point *points,
			  int npoints)
{
	json_t *root = json_array();
	if (!root)
		return NULL;
	for (int i = 0; i < npoints; i++) {
		const struct cigt_point *p = &points[i];
		json_t *t = json_array();
		for (int l = 0; l + 1 < arch->nlayers; l++)
			json_array_append_new(t, float_json(p->tau[l]));
		json_t *o = json_pack("{ss so}", "name", p->name, "thresholds", t);
		if (!o)
			goto fail;
		if (p->second[0]) {
			json_object_set_new(o, "confidence", float_json(p->confidence));
			json_object_set_new(o, "second", json_string(p->second));
			json_object_set_new(o, "second_sha256", json_string(p->second_sha256));
		}
		json_object_set_new(o, "val_accuracy", json_real(p->val_accuracy));
		json_object_set_new(o, "mean_macs", json_real(p->mean_macs));
		json_array_append_new(root, o);
	}
	char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
	json_decref(root);
	return s;
fail:
	json_decref(root);
	return NULL;
}

int cigt_model_point(const struct cigt_model *m, const char *name)
{
	for (int i = 0; i < m->npoints; i++)
		if (strcmp(m->points[i].name, name) == 0)
			return i;
	return -1;
}
