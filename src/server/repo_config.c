/* The outside inputs of the model repository, as pure functions (the fuzz targets call them):
 * a model's config.json (version policy and batching overrides, Triton's key names), the bodies
 * of the repository API (index, load, unload), model folder names and version folder names. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
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

/* An integer member in [lo, hi], or an error naming it. */
static int get_int(json_t *v, const char *what, long long lo, long long hi, long long *out,
		   char *err, size_t errlen)
{
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return cigt_fail(err, errlen, -1, "config.json: %s must be an integer in [%lld, "
						  "%lld]", what, lo, hi);
	*out = json_integer_value(v);
	return 0;
}

static int parse_policy(json_t *p, struct srv_model_cfg *c, char *err, size_t errlen)
{
	if (!json_is_object(p) || json_object_size(p) != 1)
		return cigt_fail(err, errlen, -1, "config.json: version_policy must be an object "
						  "with one of latest, specific, all");
	const char *k = json_object_iter_key(json_object_iter(p));
	json_t *v = json_object_iter_value(json_object_iter(p));
	if (!json_is_object(v))
		return cigt_fail(err, errlen, -1, "config.json: version_policy.%s must be an object",
				 k);
	long long x = 0;
	if (!strcmp(k, "all")) {
		if (json_object_size(v))
			return cigt_fail(err, errlen, -1, "config.json: version_policy.all takes no "
							  "keys");
		c->policy = SRV_POLICY_ALL;
	} else if (!strcmp(k, "latest")) {
		json_t *n = json_object_get(v, "num_versions");
		if (!n || json_object_size(v) != 1)
			return cigt_fail(err, errlen, -1, "config.json: version_policy.latest takes "
							  "num_versions only");
		if (get_int(n, "version_policy.latest.num_versions", 1, 1000000, &x, err, errlen))
			return -1;
		c->policy = SRV_POLICY_LATEST;
		c->latest = (int)x;
	} else if (!strcmp(k, "specific")) {
		json_t *a = json_object_get(v, "versions");
		if (!a || json_object_size(v) != 1 || !json_is_array(a) || !json_array_size(a) ||
		    json_array_size(a) > SRV_SPECIFIC_MAX)
			return cigt_fail(err, errlen, -1, "config.json: version_policy.specific takes "
							  "versions, a list of 1 to %d versions",
					 SRV_SPECIFIC_MAX);
		size_t i;
		json_t *e;
		c->nspecific = 0;
		json_array_foreach(a, i, e) {
			if (get_int(e, "each of version_policy.specific.versions", 1,
				    999999999999999LL, &x, err, errlen))
				return -1;
			c->specific[c->nspecific++] = x;
		}
		c->policy = SRV_POLICY_SPECIFIC;
	} else {
		return cigt_fail(err, errlen, -1, "config.json: unknown version_policy '%.40s' "
						  "(latest, specific or all)", k);
	}
	return 0;
}

int srv_model_cfg_parse(const char *text, size_t len, struct srv_model_cfg *c, char *err,
			size_t errlen)
{
	*c = (struct srv_model_cfg){.policy = SRV_POLICY_LATEST, .latest = 1};
	json_error_t je;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return cigt_fail(err, errlen, -1, "config.json: line %d: %s", je.line, je.text);
	int rc = -1;
	const char *k;
	json_t *v;
	long long x = 0;
	if (!json_is_object(root)) {
		cigt_fail(err, errlen, -1, "config.json: expected a JSON object");
		goto out;
	}
	json_object_foreach(root, k, v) {
		if (!strcmp(k, "name")) {
			/* Triton configs carry the name; it must then be the folder's, checked by
			 * the caller. Here only its form. */
			if (!json_is_string(v) ||
			    !cigt__model_file_name_ok(json_string_value(v),
						      json_string_length(v))) {
				cigt_fail(err, errlen, -1, "config.json: name must be a model name");
				goto out;
			}
		} else if (!strcmp(k, "version_policy")) {
			if (parse_policy(v, c, err, errlen))
				goto out;
		} else if (!strcmp(k, "max_batch_size")) {
			if (get_int(v, "max_batch_size", 1, 4096, &x, err, errlen))
				goto out;
			c->bat.max_batch = (int)x;
		} else if (!strcmp(k, "dynamic_batching")) {
			const char *k2;
			json_t *v2;
			if (!json_is_object(v)) {
				cigt_fail(err, errlen, -1, "config.json: dynamic_batching must be an "
							   "object");
				goto out;
			}
			json_object_foreach(v, k2, v2) {
				if (!strcmp(k2, "max_queue_delay_microseconds")) {
					if (get_int(v2, "dynamic_batching.max_queue_delay_microseconds",
						    0, 1000000, &x, err, errlen))
						goto out;
					/* 0 means "the server's" in struct srv_batching. */
					c->bat.max_delay_us = x ? (int)x : -1;
					continue;
				}
				if (strcmp(k2, "default_queue_policy") || !json_is_object(v2)) {
					cigt_fail(err, errlen, -1, "config.json: dynamic_batching: "
								   "unknown key '%.40s'", k2);
					goto out;
				}
				const char *k3;
				json_t *v3;
				json_object_foreach(v2, k3, v3) {
					if (!strcmp(k3, "max_queue_size")) {
						if (get_int(v3, "default_queue_policy.max_queue_size",
							    1, 1000000, &x, err, errlen))
							goto out;
						c->bat.queue_limit = (int)x;
					} else if (!strcmp(k3, "default_timeout_microseconds")) {
						if (get_int(v3, "default_queue_policy.default_timeout_"
								"microseconds",
							    1000, 3600000000LL, &x, err, errlen))
							goto out;
						c->bat.timeout_ms = (int)(x / 1000);
					} else {
						cigt_fail(err, errlen, -1, "config.json: "
									   "default_queue_policy: unknown "
									   "key '%.40s'", k3);
						goto out;
					}
				}
			}
		} else {
			cigt_fail(err, errlen, -1, "config.json: unknown key '%.40s' (version_policy, "
						   "max_batch_size, dynamic_batching)", k);
			goto out;
		}
	}
	rc = 0;
out:
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
