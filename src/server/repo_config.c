/* The outside inputs of the model repository, as pure functions (the fuzz targets call them):
 * a model's config.json (version policy and batching overrides, Triton's key names; an option
 * table, src/common/options.h), the bodies
 * of the repository API (index, load, unload), model folder names and version folder names. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "../common/options.h"
#include "../common/name.h"
#include "srv.h"

long long srv_version_parse(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 15 || s[0] == '0')
		return -1;
	long long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

#define F(f) CIGT_OPT_FIELD(struct srv_model_cfg, f)
#define R CIGT_OPT_IN_REPO

static struct srv_model_cfg *cfg_of(const struct cigt_opt *o, void *target)
{
	return (void *)((char *)target - o->off);
}

/* "versions": 1 to SRV_SPECIFIC_MAX versions. */
static int versions_json(const struct cigt_opt *o, void *target, const json_t *a,
			 const char *at, char *err, size_t errlen)
{
	struct srv_model_cfg *c = cfg_of(o, target);
	size_t i;
	json_t *e;
	if (!json_is_array(a) || !json_array_size(a) || json_array_size(a) > SRV_SPECIFIC_MAX)
		return cigt_fail(err, errlen, -1, "%s: expected a list of 1 to %d versions", at,
				 SRV_SPECIFIC_MAX);
	c->nspecific = 0;
	json_array_foreach((json_t *)a, i, e) {
		long long x;
		if (cigt__opt_json_int(o, e, at, &x, err, errlen))
			return -1;
		c->specific[c->nspecific++] = x;
	}
	return 0;
}

static const struct cigt_opt latest_rows[] = {
	{"num_versions", 0, CIGT_OPT_INT, F(latest), .where = R, .flags = CIGT_OPT_REQUIRED,
	 .lo = 1, .hi = 1000000, .help = "serve the N highest versions that load"},
	{0},
};
static const struct cigt_opt specific_rows[] = {
	{"versions", 0, CIGT_OPT_CALL, F(specific), .where = R, .flags = CIGT_OPT_REQUIRED,
	 .lo = 1, .hi = 999999999999999LL, .json = versions_json, .arg = "[V, ...]",
	 .help = "serve these versions"},
	{0},
};
static const struct cigt_opt no_rows[] = {{0}};
static const struct cigt_opt policy_rows[] = {
	{"latest", 0, CIGT_OPT_SECTION, .where = R, .sub = latest_rows,
	 .arg = "{\"num_versions\": N}", .help = "the N highest versions"},
	{"specific", 0, CIGT_OPT_SECTION, .where = R, .sub = specific_rows,
	 .arg = "{\"versions\": [V, ...]}", .help = "the versions listed"},
	{"all", 0, CIGT_OPT_SECTION, .where = R, .sub = no_rows, .arg = "{}",
	 .help = "every version"},
	{0},
};

/* "version_policy": exactly one of latest, specific, all. */
static int policy_json(const struct cigt_opt *o, void *target, const json_t *p, const char *at,
		       char *err, size_t errlen)
{
	struct srv_model_cfg *c = cfg_of(o, target);
	if (!json_is_object(p) || json_object_size(p) != 1)
		return cigt_fail(err, errlen, -1, "%s: expected an object with one of latest, "
						  "specific, all", at);
	if (cigt__opts_read_json(policy_rows, 0, c, p, "", at, err, errlen))
		return -1;
	const char *k = json_object_iter_key(json_object_iter((json_t *)p));
	c->policy = !strcmp(k, "all")	     ? SRV_POLICY_ALL
		    : !strcmp(k, "latest") ? SRV_POLICY_LATEST
					   : SRV_POLICY_SPECIFIC;
	return 0;
}

/* Triton configs carry the name; it must then be the folder's, checked by the caller. Here
 * only its form. */
static int name_json(const struct cigt_opt *o, void *target, const json_t *v, const char *at,
		     char *err, size_t errlen)
{
	if (!json_is_string(v) || !cigt__model_file_name_ok(json_string_value(v), json_string_length(v)))
		return cigt_fail(err, errlen, -1, "%s: expected a model name", at);
	return 0;
}

/* 0 means "the server's" in struct srv_batching: an explicit 0 becomes -1. */
static int delay_json(const struct cigt_opt *o, void *target, const json_t *v, const char *at,
		      char *err, size_t errlen)
{
	long long x;
	if (cigt__opt_json_int(o, v, at, &x, err, errlen))
		return -1;
	*(int *)target = x ? (int)x : -1;
	return 0;
}

static int timeout_json(const struct cigt_opt *o, void *target, const json_t *v, const char *at,
			char *err, size_t errlen)
{
	long long x;
	if (cigt__opt_json_int(o, v, at, &x, err, errlen))
		return -1;
	*(int *)target = (int)(x / 1000);
	return 0;
}

/* "backend" and "precision": a name from the row's choices, stored as its index + 1 (0 is
 * the server's). */
static int choice_json(const struct cigt_opt *o, void *target, const json_t *v, const char *at,
		       char *err, size_t errlen)
{
	const char *s = json_string_value(v);
	for (int i = 0; s && o->choices[i]; i++)
		if (!strcmp(s, o->choices[i])) {
			*(int *)target = i + 1;
			return 0;
		}
	char list[128] = "";
	for (int i = 0; o->choices[i]; i++)
		snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
			 o->choices[i]);
	return cigt_fail(err, errlen, -1, "%s: expected one of %s", at, list);
}

static const struct cigt_opt queue_rows[] = {
	{"max_queue_size", 0, CIGT_OPT_INT, F(bat.queue_limit), .where = R, .lo = 1,
	 .hi = 1000000, .help = "this model's share of the queue (default: the server's)"},
	{"default_timeout_microseconds", 0, CIGT_OPT_CALL, F(bat.timeout_ms), .where = R,
	 .lo = 1000, .hi = 3600000000LL, .json = timeout_json,
	 .help = "the default request deadline (default: the server's)"},
	{0},
};
static const struct cigt_opt batching_rows[] = {
	{"max_queue_delay_microseconds", 0, CIGT_OPT_CALL, F(bat.max_delay_us), .where = R,
	 .lo = 0, .hi = 1000000, .json = delay_json,
	 .help = "longest wait for a batch to fill (default: the server's)"},
	{"default_queue_policy", 0, CIGT_OPT_SECTION, .where = R, .sub = queue_rows,
	 .arg = "{\"max_queue_size\", \"default_timeout_microseconds\"}",
	 .help = "queue settings"},
	{0},
};

const struct cigt_opt srv_model_cfg_rows[] = {
	{"name", 0, CIGT_OPT_CALL, .where = R, .json = name_json, .arg = "NAME",
	 .help = "the model's name: its folder's"},
	{"version_policy", 0, CIGT_OPT_CALL, F(policy), .where = R, .json = policy_json,
	 .sub = policy_rows, .arg = "{\"latest\": ...} | {\"specific\": ...} | {\"all\": {}}",
	 .help = "the versions served (default: latest 1)"},
	{"max_batch_size", 0, CIGT_OPT_INT, F(bat.max_batch), .where = R, .lo = 1, .hi = 4096,
	 .help = "samples per engine batch (default: the server's)"},
	{"dynamic_batching", 0, CIGT_OPT_SECTION, .where = R, .sub = batching_rows,
	 .arg = "{\"max_queue_delay_microseconds\", \"default_queue_policy\"}",
	 .help = "batching settings"},
	{"backend", 0, CIGT_OPT_CALL, F(backend), .where = R, .json = choice_json,
	 .choices = srv_backends, .arg = "\"auto\" | \"openblas\" | \"onednn\"",
	 .help = "where this model's convs and linears run (default: the\n"
		 "server's --backend)"},
	{"precision", 0, CIGT_OPT_CALL, F(precision), .where = R, .json = choice_json,
	 .choices = srv_precisions, .arg = "\"fp32\" | \"bf16\" | \"int8\" | \"auto\"",
	 .help = "this model's precision (default: the server's --precision)"},
	{0},
};

int srv_model_cfg_parse(const char *text, size_t len, struct srv_model_cfg *c, char *err,
			size_t errlen)
{
	*c = (struct srv_model_cfg){.policy = SRV_POLICY_LATEST, .latest = 1};
	json_error_t je;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return cigt_fail(err, errlen, -1, "config.json: line %d: %s", je.line, je.text);
	int rc = 0;
	if (!json_is_object(root))
		rc = cigt_fail(err, errlen, -1, "config.json: expected a JSON object");
	else if (cigt__opts_read_json(srv_model_cfg_rows, 0, c, root, "config.json: ", NULL, err,
				      errlen))
		rc = -1;
	json_decref(root);
	return rc;
}

int srv_parse_repo_body(const void *body, size_t len, bool index, bool *ready_only, char *err,
			size_t errlen)
{
	*ready_only = false;
	size_t i = 0;
	while (i < len && strchr(" \t\r\n", ((const char *)body)[i]))
		i++;
	if (i == len)
		return 0; /* an empty body: no filter, no parameters */
	json_error_t je;
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return cigt_fail(err, errlen, -1, "body is not JSON: line %d: %s", je.line, je.text);
	int rc = -1;
	const char *k;
	json_t *v;
	if (!json_is_object(root)) {
		cigt_fail(err, errlen, -1, "body must be a JSON object");
		goto out;
	}
	json_object_foreach(root, k, v) {
		if (index && !strcmp(k, "ready")) {
			if (!json_is_boolean(v)) {
				cigt_fail(err, errlen, -1, "\"ready\" must be true or false");
				goto out;
			}
			*ready_only = json_is_true(v);
		} else if (!index && !strcmp(k, "parameters")) {
			/* Triton's load takes a config or files here, its unload
			 * unload_dependents: none applies to cigt models. */
			if (!json_is_object(v)) {
				cigt_fail(err, errlen, -1, "\"parameters\" must be an object");
				goto out;
			}
			const char *pk;
			json_t *pv;
			json_object_foreach(v, pk, pv) {
				if (strcmp(pk, "unload_dependents") || !json_is_boolean(pv)) {
					cigt_fail(err, errlen, -1, "parameter '%.40s' is not supported (only "
						  "unload_dependents, true or false)",
						  pk);
					goto out;
				}
			}
		} else {
			cigt_fail(err, errlen, -1, "unknown key '%.40s' (expected %s)", k,
				  index ? "\"ready\"" : "\"parameters\"");
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}
