/* The model registry: which versions of which models are served. The loop thread owns the
 * tables; scans and loads run on libuv's thread pool (a "sync" job, repo_scan.c: list the
 * repository, read each config.json, load the versions the policy selects whose files changed)
 * and their result is applied here on the loop, so nothing touches the disk on the loop. One sync runs at a time; a
 * request for another while one runs is folded into a single follow-up. A loaded version is a
 * reference-counted struct srv_model: unloading drops the registry's reference and marks it
 * retired, requests already holding it finish on it, and the last reference frees it.
 * Lookups for requests and the renderings of the tables for the APIs are registry_query.c's. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cigt/error.h"
#include "cigt/image.h"
#include "../common/name.h"
#include "../common/util.h"
#include "repo.h"

/* ---------------------------------------------------------------------------- tables */

/* The tables themselves are declared in repo.h (registry_query.c reads them too). */

struct reg_model *srv_reg_find_model(const struct srv_registry *reg, const char *name)
{
	for (int i = 0; i < reg->nm; i++)
		if (!strcmp(reg->m[i].name, name))
			return &reg->m[i];
	return NULL;
}

static struct reg_model *add_model(struct srv_registry *reg, const char *name)
{
	if (reg->nm == reg->capm) {
		int cap = reg->capm ? reg->capm * 2 : 8;
		struct reg_model *m = realloc(reg->m, (size_t)cap * sizeof *m);
		if (!m)
			return NULL;
		reg->m = m;
		reg->capm = cap;
	}
	struct reg_model *rm = &reg->m[reg->nm++];
	*rm = (struct reg_model){.mc = {.policy = SRV_POLICY_LATEST, .latest = 1}};
	snprintf(rm->name, sizeof rm->name, "%s", name);
	return rm;
}

bool srv_reg_model_wanted(const struct srv_registry *reg, const struct reg_model *rm)
{
	return reg->mode != SRV_CONTROL_EXPLICIT || reg->single ? true : rm->wanted;
}

/* ------------------------------------------------------------------ applying (loop) */

static void retire(struct srv_registry *reg, struct reg_model *rm, struct reg_version *rv,
		   const char *why)
{
	if (!rv->m)
		return;
	srv_log(SRV_LOG_INFO, "model %s version %lld unloaded (%s)", rm->name, rv->v, why);
	atomic_store(&rv->m->retired, true);
	srv_model_unref(rv->m);
	rv->m = NULL;
}

static struct srv_batching effective(const struct srv_registry *reg, const struct srv_model_cfg *mc)
{
	const struct srv_config *c = reg->cfg;
	struct srv_batching b = mc->bat;
	if (!b.max_batch)
		b.max_batch = c->max_batch;
	b.max_delay_us = b.max_delay_us == 0 ? c->max_delay_us : b.max_delay_us < 0 ? 0
										: b.max_delay_us;
	if (!b.queue_limit || b.queue_limit > c->queue_limit)
		b.queue_limit = c->queue_limit;
	if (!b.timeout_ms)
		b.timeout_ms = c->timeout_ms;
	return b;
}

static struct reg_version *find_version(struct reg_model *rm, long long v)
{
	for (int i = 0; i < rm->nv; i++)
		if (rm->v[i].v == v)
			return &rm->v[i];
	return NULL;
}

static int cmp_rv_desc(const void *a, const void *b)
{
	long long x = ((const struct reg_version *)a)->v, y = ((const struct reg_version *)b)->v;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* Applies one scanned model to the tables. */
static void apply_model(struct srv_registry *reg, struct reg_job *j, struct job_model *jm)
{
	struct reg_model *rm = srv_reg_find_model(reg, jm->name);
	if (!rm && !(rm = add_model(reg, jm->name)))
		return; /* out of memory: the new holders are dropped with the job */
	rm->listed = true;
	bool want = srv_reg_model_wanted(reg, rm) && jm->want;
	/* The new listing: every version folder found, plus versions still serving. */
	for (int i = 0; i < rm->nv; i++)
		rm->v[i].listed = rm->v[i].selected = false;
	if (rm->nv + jm->nv > rm->cap) {
		int cap = rm->nv + jm->nv;
		struct reg_version *p = realloc(rm->v, (size_t)cap * sizeof *p);
		if (!p)
			return;
		rm->v = p;
		rm->cap = cap;
	}
	for (int i = 0; i < jm->nv; i++) {
		struct job_version *jv = &jm->v[i];
		struct reg_version *rv = find_version(rm, jv->v);
		if (!rv) {
			rv = &rm->v[rm->nv++];
			*rv = (struct reg_version){.v = jv->v};
		}
		rv->listed = true;
		rv->selected = jv->selected;
	}
	if (want && !jm->cfg_ok) {
		/* A broken config.json loads nothing and keeps whatever serves. */
		snprintf(rm->reason, sizeof rm->reason, "%s", jm->reason);
		rm->loads_failed++;
		if (reg->loop)
			atomic_fetch_add(&srv_stats.stat_reloads_failed, 1);
		srv_log(SRV_LOG_ERROR, "model %s not loaded: %s", rm->name, jm->reason);
	} else if (want) {
		rm->reason[0] = 0;
		rm->mc = jm->mc;
		for (int i = 0; i < jm->nv; i++) {
			struct job_version *jv = &jm->v[i];
			struct reg_version *rv = find_version(rm, jv->v);
			char err[256];
			if (jv->act == JV_NEW && reg->single && rv->m &&
			    srv_model_compatible(rv->m->m->arch, jv->m->m->arch, err, sizeof err)) {
				snprintf(jv->reason, sizeof jv->reason, "%s", err);
				srv_model_unref(jv->m);
				jv->m = NULL;
				jv->act = JV_FAIL;
			}
			struct srv_batching bat = effective(reg, &rm->mc);
			if (jv->act == JV_NEW && srv_model_set_batching(jv->m, &bat)) {
				snprintf(jv->reason, sizeof jv->reason, "out of memory");
				srv_model_unref(jv->m);
				jv->m = NULL;
				jv->act = JV_FAIL;
			}
			if (jv->act == JV_NEW) {
				bool had = rv->m != NULL;
				retire(reg, rm, rv, "replaced by a new file");
				rv->m = jv->m;
				jv->m = NULL;
				rv->failed = false;
				rv->reason[0] = 0;
				rm->loads_ok++;
				if (reg->loop) /* loads after the start */
					atomic_fetch_add(&srv_stats.stat_reloads_ok, 1);
				const struct srv_model *lm = rv->m;
				srv_log(SRV_LOG_INFO, "model %s version %lld %s (%s; generation %llu; "
					"%d operating points, %d second model%s, default %s)", rm->name,
					rv->v, had ? "reloaded" : "loaded", cigt_engine_backend(rv->m->e),
					(unsigned long long)lm->generation, lm->m->npoints,
					lm->nsecond, lm->nsecond == 1 ? "" : "s",
					lm->default_point >= 0 ? lm->m->points[lm->default_point].name
							       : "the single path");
			} else if (jv->act == JV_FAIL) {
				rv->failed = true;
				rv->fail_ident = jv->ident;
				snprintf(rv->reason, sizeof rv->reason, "%s%.190s",
					 rv->m ? "reload failed, still serving the previous model: "
					       : "", jv->reason);
				rm->loads_failed++;
				if (reg->loop)
					atomic_fetch_add(&srv_stats.stat_reloads_failed, 1);
				srv_log(SRV_LOG_ERROR, "model %s version %lld: %s", rm->name, rv->v,
					rv->reason);
			}
		}
	}
	for (int i = 0; i < rm->nv; i++) {
		struct reg_version *rv = &rm->v[i];
		if (rv->m && !want && reg->mode == SRV_CONTROL_EXPLICIT)
			retire(reg, rm, rv, "unloaded");
		else if (rv->m && !rv->listed)
			retire(reg, rm, rv, "its folder is gone");
		else if (rv->m && !rv->selected && want)
			retire(reg, rm, rv, "no longer selected by the version policy");
		if (!rv->selected)
			rv->reason[0] = 0;
	}
	/* Drop versions neither listed nor serving. */
	int k = 0;
	for (int i = 0; i < rm->nv; i++)
		if (rm->v[i].listed || rm->v[i].m)
			rm->v[k++] = rm->v[i];
	rm->nv = k;
	qsort(rm->v, (size_t)rm->nv, sizeof *rm->v, cmp_rv_desc);
}

bool srv_reg_model_ready(const struct reg_model *rm)
{
	for (int i = 0; i < rm->nv; i++)
		if (rm->v[i].m)
			return true;
	return false;
}

/* A one-line reason why rm serves nothing. */
const char *srv_reg_model_reason(const struct reg_model *rm)
{
	if (rm->reason[0])
		return rm->reason;
	for (int i = 0; i < rm->nv; i++)
		if (rm->v[i].selected && rm->v[i].reason[0])
			return rm->v[i].reason;
	return rm->nv ? "no version selected by the version policy loaded"
		      : "no version folder (a positive integer) holds a model";
}

static void apply(struct srv_registry *reg, struct reg_job *j)
{
	if (j->rc) {
		srv_log(SRV_LOG_ERROR, "%s; keeping the models that serve", j->err);
		return;
	}
	for (int i = 0; i < reg->nm; i++)
		reg->m[i].listed = false;
	for (int i = 0; i < j->nm; i++)
		if (j->m[i].name[0])
			apply_model(reg, j, &j->m[i]);
	/* Models whose folder is gone unload; entries with nothing left go. */
	int k = 0;
	for (int i = 0; i < reg->nm; i++) {
		struct reg_model *rm = &reg->m[i];
		if (!rm->listed && !reg->single)
			for (int v = 0; v < rm->nv; v++)
				retire(reg, rm, &rm->v[v], "its model folder is gone");
		if (!rm->listed && !reg->single && !rm->wanted) {
			free(rm->v);
			continue;
		}
		reg->m[k++] = *rm;
	}
	reg->nm = k;
}

/* --------------------------------------------------------------------- running syncs */

static struct reg_job *job_new(struct srv_registry *reg, bool force)
{
	struct reg_job *j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	j->reg = reg;
	j->root = reg->root;
	j->single = reg->single;
	j->compute = reg->cfg->compute;
	j->backend = reg->cfg->backend;
	j->precision = reg->cfg->precision;
	j->force = force;
	j->all = reg->mode != SRV_CONTROL_EXPLICIT;
	int nv = 0, nw = 0;
	for (int i = 0; i < reg->nm; i++) {
		nv += reg->m[i].nv;
		nw += reg->m[i].wanted;
	}
	j->known = calloc((size_t)nv + 1, sizeof *j->known);
	j->want = calloc((size_t)nw + 1, sizeof *j->want);
	if (!j->known || !j->want) {
		srv_repo_job_free(j);
		return NULL;
	}
	for (int i = 0; i < reg->nm; i++) {
		struct reg_model *rm = &reg->m[i];
		if (rm->wanted)
			snprintf(j->want[j->nwant++], sizeof *j->want, "%s", rm->name);
		for (int v = 0; v < rm->nv; v++) {
			struct reg_version *rv = &rm->v[v];
			if (!rv->m && !rv->failed)
				continue;
			struct job_known *k = &j->known[j->nknown++];
			snprintf(k->name, sizeof k->name, "%s", rm->name);
			k->v = rv->v;
			k->loaded = rv->m != NULL;
			k->ident = rv->m ? rv->m->ident : rv->fail_ident;
		}
	}
	return j;
}

static void sync_start(struct srv_registry *reg, bool force, bool verbose);

static void answer_waiters(struct srv_registry *reg, struct reg_waiter *w, int status_override,
			   const char *msg)
{
	while (w) {
		struct reg_waiter *next = w->next;
		const struct reg_model *rm = srv_reg_find_model(reg, w->name);
		char buf[400];
		int status = 200;
		if (status_override) {
			status = status_override;
			snprintf(buf, sizeof buf, "%s", msg);
		} else if (!rm || !rm->listed) {
			status = 404;
			snprintf(buf, sizeof buf, "no model '%s' in the repository", w->name);
		} else if (!srv_reg_model_ready(rm)) {
			status = 400;
			snprintf(buf, sizeof buf, "failed to load '%s': %s", w->name,
				 srv_reg_model_reason(rm));
		} else {
			snprintf(buf, sizeof buf, "loaded");
		}
		/* A load that failed leaves the model unwanted when nothing serves it. */
		struct reg_model *m = srv_reg_find_model(reg, w->name);
		if (status != 200 && m && !srv_reg_model_ready(m))
			m->wanted = false;
		if (reg->load_done)
			reg->load_done(reg->ctx, w->r, status, buf);
		free(w);
		w = next;
	}
}

static void job_done(uv_work_t *w, int status)
{
	struct reg_job *j = w->data;
	struct srv_registry *reg = j->reg;
	reg->job = NULL;
	for (int i = 0; i < reg->nm; i++)
		reg->m[i].loading = false;
	if (reg->stopped) {
		answer_waiters(reg, j->waiters, 503, "shutting down");
		srv_repo_job_free(j);
		return;
	}
	apply(reg, j);
	answer_waiters(reg, j->waiters, 0, NULL);
	srv_repo_job_free(j);
	if (reg->retired)
		reg->retired(reg->ctx);
	if (reg->again) {
		bool force = reg->again_force;
		reg->again = reg->again_force = false;
		sync_start(reg, force, true);
	}
}

static void sync_start(struct srv_registry *reg, bool force, bool verbose)
{
	if (reg->stopped)
		return;
	if (reg->job) {
		reg->again = true;
		reg->again_force |= force;
		return;
	}
	struct reg_job *j = job_new(reg, force);
	if (!j) {
		srv_log(SRV_LOG_ERROR, "repository: out of memory for a rescan");
		answer_waiters(reg, reg->waiting, 500, "out of memory");
		reg->waiting = NULL;
		return;
	}
	j->verbose = verbose;
	j->waiters = reg->waiting;
	reg->waiting = NULL;
	for (int i = 0; i < reg->nm; i++)
		reg->m[i].loading = srv_reg_model_wanted(reg, &reg->m[i]);
	reg->job = j;
	j->work.data = j;
	uv_queue_work(reg->loop, &j->work, srv_repo_job_run, job_done);
}

static void on_poll(uv_timer_t *t)
{
	struct srv_registry *reg = t->data;
	sync_start(reg, false, false);
}

/* ------------------------------------------------------------------------- public API */

int srv_registry_new(const struct srv_config *cfg, struct srv_registry **out, char *err,
		     size_t errlen)
{
	*out = NULL;
	struct srv_registry *reg = calloc(1, sizeof *reg);
	if (!reg)
		return cigt_fail(err, errlen, -1, "out of memory");
	reg->cfg = cfg;
	reg->mode = (enum srv_control)cfg->control_mode;
	if (cfg->model_repository) {
		char real[PATH_MAX];
		struct stat st;
		if (!realpath(cfg->model_repository, real) || stat(real, &st) ||
		    !S_ISDIR(st.st_mode)) {
			free(reg);
			return cigt_fail(err, errlen, -1, "model repository %s is not a readable "
							  "folder", cfg->model_repository);
		}
		reg->root = strdup(real);
	} else {
		reg->single = strdup(cfg->model);
	}
	if (!reg->root && !reg->single) {
		free(reg);
		return cigt_fail(err, errlen, -1, "out of memory");
	}
	for (int i = 0; i < cfg->nload_models; i++) {
		const char *name = cfg->load_models[i];
		if (!cigt__model_file_name_ok(name, strlen(name))) {
			srv_registry_free(reg);
			return cigt_fail(err, errlen, -1, "--load-model '%.80s' is not a model name",
					 cfg->load_models[i]);
		}
		struct reg_model *rm = srv_reg_find_model(reg, cfg->load_models[i]);
		if (!rm && !(rm = add_model(reg, cfg->load_models[i]))) {
			srv_registry_free(reg);
			return cigt_fail(err, errlen, -1, "out of memory");
		}
		rm->wanted = true;
	}
	*out = reg;
	return 0;
}

int srv_registry_load_initial(struct srv_registry *reg, char *err, size_t errlen)
{
	struct reg_job *j = job_new(reg, true);
	if (!j)
		return cigt_fail(err, errlen, -1, "out of memory");
	j->verbose = true;
	j->work.data = j;
	srv_repo_job_run(&j->work);
	int rc = 0;
	if (j->rc) {
		rc = cigt_fail(err, errlen, -1, "%s", j->err);
	} else if (reg->single && j->m[0].v[0].act != JV_NEW) {
		rc = cigt_fail(err, errlen, -1, "cannot load model %s: %s", reg->single,
			       j->m[0].v[0].reason);
	} else {
		apply(reg, j);
		for (int i = 0; i < reg->nm; i++) {
			const struct reg_model *rm = &reg->m[i];
			if (srv_reg_model_wanted(reg, rm) && !srv_reg_model_ready(rm))
				srv_log(SRV_LOG_ERROR, "model %s serves nothing: %s", rm->name,
					srv_reg_model_reason(rm));
			if (rm->wanted && !rm->listed)
				srv_log(SRV_LOG_ERROR, "--load-model %s: no such model in %s",
					rm->name, reg->root);
		}
	}
	srv_repo_job_free(j);
	return rc;
}

void srv_registry_start(struct srv_registry *reg, uv_loop_t *loop, srv_load_done_fn load_done,
			srv_retired_fn retired, void *ctx)
{
	reg->loop = loop;
	reg->load_done = load_done;
	reg->retired = retired;
	reg->ctx = ctx;
	if (reg->mode == SRV_CONTROL_POLL) {
		uint64_t ms = (uint64_t)reg->cfg->repository_poll_secs * 1000u;
		uv_timer_init(loop, &reg->poll);
		reg->poll.data = reg;
		uv_timer_start(&reg->poll, on_poll, ms, ms);
		reg->poll_started = true;
	}
}

void srv_registry_rescan(struct srv_registry *reg, const char *why)
{
	srv_log(SRV_LOG_INFO, "%s: rescanning %s", why, reg->root ? reg->root : reg->single);
	sync_start(reg, reg->single != NULL, true);
}

enum srv_control srv_registry_mode(const struct srv_registry *reg)
{
	return reg->mode;
}

static int refuse_mode(const struct srv_registry *reg, char *err, size_t errlen)
{
	if (reg->mode == SRV_CONTROL_EXPLICIT)
		return 0;
	snprintf(err, errlen, "model control mode is %s: the repository API cannot load or unload "
			      "models (start cigtd with --model-control-mode explicit)",
		 reg->mode == SRV_CONTROL_NONE ? "none" : "poll");
	return 400;
}

int srv_registry_load(struct srv_registry *reg, const char *name, struct srv_req *r, char *err,
		      size_t errlen)
{
	int st = refuse_mode(reg, err, errlen);
	if (st)
		return st;
	if (!cigt__model_file_name_ok(name, strlen(name))) {
		snprintf(err, errlen, "'%.80s' is not a model name", name);
		return 400;
	}
	struct reg_waiter *w = calloc(1, sizeof *w);
	struct reg_model *rm = srv_reg_find_model(reg, name);
	if (!rm)
		rm = add_model(reg, name);
	if (!w || !rm) {
		free(w);
		snprintf(err, errlen, "out of memory");
		return 500;
	}
	rm->wanted = true;
	w->r = r;
	snprintf(w->name, sizeof w->name, "%s", name);
	w->next = reg->waiting;
	reg->waiting = w;
	srv_log(SRV_LOG_INFO, "repository API: loading %s", name);
	sync_start(reg, false, true); /* versions whose files did not change stay as they are */
	return 0;
}

int srv_registry_unload(struct srv_registry *reg, const char *name, char *err, size_t errlen)
{
	int st = refuse_mode(reg, err, errlen);
	if (st)
		return st;
	struct reg_model *rm = srv_reg_find_model(reg, name);
	if (!rm || (!rm->wanted && !srv_reg_model_ready(rm))) {
		snprintf(err, errlen, "model '%.80s' is not loaded", name);
		return 404;
	}
	rm->wanted = false;
	for (int i = 0; i < rm->nv; i++)
		retire(reg, rm, &rm->v[i], "unloaded through the repository API");
	if (reg->retired)
		reg->retired(reg->ctx);
	return 0;
}

static void on_close_noop(uv_handle_t *h)
{
}

void srv_registry_stop(struct srv_registry *reg)
{
	if (!reg || reg->stopped)
		return;
	reg->stopped = true;
	if (reg->poll_started)
		uv_close((uv_handle_t *)&reg->poll, on_close_noop);
	answer_waiters(reg, reg->waiting, 503, "shutting down");
	reg->waiting = NULL;
	if (reg->job) {
		answer_waiters(reg, reg->job->waiters, 503, "shutting down");
		reg->job->waiters = NULL;
	}
}

void srv_registry_free(struct srv_registry *reg)
{
	if (!reg)
		return;
	CIGT_ASSERT(!reg->job);
	for (int i = 0; i < reg->nm; i++) {
		for (int v = 0; v < reg->m[i].nv; v++)
			srv_model_unref(reg->m[i].v[v].m);
		free(reg->m[i].v);
	}
	free(reg->m);
	free(reg->root);
	free(reg->single);
	free(reg);
}
