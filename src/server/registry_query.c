/* The registry's read side, on the loop thread: the model (and version) a request names, with
 * errors that list what is loaded, readiness, and the tables rendered for the repository API,
 * the v2 index and /metrics. The tables are registry.c's (repo.h); nothing here changes them. */
#include <stdio.h>
#include <string.h>

#include "repo.h"

/* Names the loaded models into buf (for error messages). */
static void loaded_names(const struct srv_registry *reg, char *buf, size_t n)
{
	size_t off = 0;
	buf[0] = 0;
	for (int i = 0; i < reg->nm && off + 1 < n; i++)
		if (srv_reg_model_ready(&reg->m[i]))
			off += (size_t)snprintf(buf + off, n - off, "%s%s", off ? ", " : "",
						reg->m[i].name);
	if (!buf[0])
		snprintf(buf, n, "none");
}

struct srv_model *srv_registry_get(struct srv_registry *reg, const char *name, long long version,
				   int *status, char *err, size_t errlen)
{
	char names[256];
	*status = 404;
	if (!name) {
		if (reg->cfg->default_model) {
			name = reg->cfg->default_model;
		} else {
			const struct reg_model *only = NULL;
			int n = 0;
			for (int i = 0; i < reg->nm; i++)
				if (srv_reg_model_ready(&reg->m[i])) {
					only = &reg->m[i];
					n++;
				}
			if (n > 1) {
				loaded_names(reg, names, sizeof names);
				*status = 400;
				snprintf(err, errlen, "several models are loaded (%s) and no "
						      "--default-model is set: name one in the URL, "
						      "e.g. /v1/models/{name}/classify", names);
				return NULL;
			}
			if (!only) {
				snprintf(err, errlen, "no model is loaded");
				return NULL;
			}
			name = only->name;
		}
	}
	struct reg_model *rm = srv_reg_find_model(reg, name);
	if (!rm || !srv_reg_model_ready(rm)) {
		loaded_names(reg, names, sizeof names);
		snprintf(err, errlen, "model '%.80s' not found: it is not loaded (loaded: %s)", name,
			 names);
		return NULL;
	}
	for (int i = 0; i < rm->nv; i++)
		if (rm->v[i].m && (version == 0 || rm->v[i].v == version))
			return srv_model_ref(rm->v[i].m);
	size_t off = 0;
	for (int i = 0; i < rm->nv && off + 1 < sizeof names; i++)
		if (rm->v[i].m)
			off += (size_t)snprintf(names + off, sizeof names - off, "%s%lld",
						off ? ", " : "", rm->v[i].v);
	snprintf(err, errlen, "model '%.80s' version %lld not found: it is not loaded (loaded "
			      "versions: %s)", name, version, names);
	return NULL;
}

bool srv_registry_ready(const struct srv_registry *reg)
{
	for (int i = 0; i < reg->nm; i++) {
		const struct reg_model *rm = &reg->m[i];
		bool should = reg->mode == SRV_CONTROL_EXPLICIT && !reg->single ? rm->wanted
										 : rm->listed;
		if (should && !srv_reg_model_ready(rm))
			return false;
	}
	return true;
}

void srv_registry_index(const struct srv_registry *reg, bool ready_only, struct srv_buf *b)
{
	srv_buf_puts(b, "[");
	bool first = true;
	for (int i = 0; i < reg->nm; i++) {
		const struct reg_model *rm = &reg->m[i];
		if (!rm->nv && !ready_only) {
			/* A model without version folders (or one asked for and missing). */
			srv_buf_puts(b, first ? "" : ", ");
			first = false;
			srv_buf_puts(b, "{\"name\": ");
			srv_buf_json_str(b, rm->name);
			srv_buf_puts(b, ", \"state\": \"UNAVAILABLE\", \"reason\": ");
			srv_buf_json_str(b, rm->listed ? srv_reg_model_reason(rm)
						       : "no such model in the repository");
			srv_buf_puts(b, "}");
		}
		for (int v = 0; v < rm->nv; v++) {
			const struct reg_version *rv = &rm->v[v];
			if (ready_only && !rv->m)
				continue;
			const char *state = rv->m ? "READY"
					    : rm->loading && rv->selected ? "LOADING"
									  : "UNAVAILABLE";
			const char *reason = rv->m ? ""
					     : rv->reason[0] ? rv->reason
					     : rm->reason[0] && rv->selected ? rm->reason
					     : !srv_reg_model_wanted(reg, rm) ? "not loaded"
					     : !rv->selected ? "not selected by the version policy"
							     : "";
			srv_buf_puts(b, first ? "" : ", ");
			first = false;
			srv_buf_puts(b, "{\"name\": ");
			srv_buf_json_str(b, rm->name);
			srv_buf_printf(b, ", \"version\": \"%lld\", \"state\": \"%s\", \"reason\": ",
				       rv->v, state);
			srv_buf_json_str(b, reason);
			srv_buf_puts(b, "}");
		}
	}
	srv_buf_puts(b, "]\n");
}

void srv_registry_foreach(const struct srv_registry *reg,
			  void (*fn)(void *ctx, const struct srv_model *m), void *ctx)
{
	for (int i = 0; i < reg->nm; i++)
		for (int v = 0; v < reg->m[i].nv; v++)
			if (reg->m[i].v[v].m)
				fn(ctx, reg->m[i].v[v].m);
}

void srv_registry_render_loads(const struct srv_registry *reg, struct srv_buf *b)
{
	srv_buf_puts(b, "# HELP cigt_model_loads_total Version loads (start, rescans, the API), by "
			"model and result.\n# TYPE cigt_model_loads_total counter\n");
	for (int i = 0; i < reg->nm; i++) {
		srv_buf_printf(b, "cigt_model_loads_total{model=\"%s\",result=\"success\"} %llu\n",
			       reg->m[i].name, (unsigned long long)reg->m[i].loads_ok);
		srv_buf_printf(b, "cigt_model_loads_total{model=\"%s\",result=\"failure\"} %llu\n",
			       reg->m[i].name, (unsigned long long)reg->m[i].loads_failed);
	}
	srv_buf_puts(b, "# HELP cigt_model_ready 1 for each version that serves.\n"
			"# TYPE cigt_model_ready gauge\n");
	for (int i = 0; i < reg->nm; i++)
		for (int v = 0; v < reg->m[i].nv; v++)
			if (reg->m[i].v[v].m)
				srv_buf_printf(b, "cigt_model_ready{model=\"%s\",version=\"%lld\"} "
						  "1\n", reg->m[i].name, reg->m[i].v[v].v);
}

void srv_registry_versions(const struct srv_registry *reg, const char *name, struct srv_buf *b)
{
	const struct reg_model *rm = srv_reg_find_model(reg, name);
	srv_buf_puts(b, "[");
	bool first = true;
	for (int v = 0; rm && v < rm->nv; v++)
		if (rm->v[v].m) {
			srv_buf_printf(b, "%s\"%lld\"", first ? "" : ", ", rm->v[v].v);
			first = false;
		}
	srv_buf_puts(b, "]");
}

const struct srv_model_cfg *srv_registry_model_cfg(const struct srv_registry *reg,
						   const char *name)
{
	static const struct srv_model_cfg def = {.policy = SRV_POLICY_LATEST, .latest = 1};
	const struct reg_model *rm = srv_reg_find_model(reg, name);
	return rm ? &rm->mc : &def;
}

void srv_registry_list(const struct srv_registry *reg, struct srv_buf *b)
{
	srv_buf_puts(b, "{\"default\": ");
	char err[256];
	int st;
	struct srv_model *d = srv_registry_get((struct srv_registry *)reg, NULL, 0, &st, err,
					       sizeof err);
	if (d)
		srv_buf_json_str(b, d->name);
	else
		srv_buf_puts(b, "null");
	srv_model_unref(d);
	srv_buf_puts(b, ", \"models\": [");
	bool first = true;
	for (int i = 0; i < reg->nm; i++) {
		const struct reg_model *rm = &reg->m[i];
		if (!srv_reg_model_ready(rm))
			continue;
		srv_buf_puts(b, first ? "{\"name\": " : ", {\"name\": ");
		first = false;
		srv_buf_json_str(b, rm->name);
		srv_buf_puts(b, ", \"versions\": [");
		bool fv = true;
		for (int v = 0; v < rm->nv; v++)
			if (rm->v[v].m) {
				srv_buf_printf(b, "%s\"%lld\"", fv ? "" : ", ", rm->v[v].v);
				fv = false;
			}
		srv_buf_puts(b, "]}");
	}
	srv_buf_puts(b, "]}\n");
}
