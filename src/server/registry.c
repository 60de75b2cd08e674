/* The model registry: which versions of which models are served. The loop thread owns the
 * tables; scans and loads run on libuv's thread pool (a "sync" job: list the repository, read
 * each config.json, load the versions the policy selects whose files changed) and their result
 * is applied on the loop, so nothing touches the disk on the loop. One sync runs at a time; a
 * request for another while one runs is folded into a single follow-up. A loaded version is a
 * reference-counted struct srv_model: unloading drops the registry's reference and marks it
 * retired, requests already holding it finish on it, and the last reference frees it. */
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
#include "../common/util.h"
#include "srv.h"

/* Limits on what one scan reads: more is ignored with a log line. */
#define REG_MAX_MODELS 4096
#define REG_MAX_VERSIONS 100000
#define REG_CONFIG_MAX (64 * 1024)
#define REG_IGNORED_LOGGED 5 /* ignored entries logged by name per model and scan */

/* ------------------------------------------------------------------------ model holder */

static _Atomic uint64_t model_generation;

int srv_model_load(const char *path, struct srv_model **out, char *err, size_t errlen)
{
	*out = NULL;
	struct srv_model *sm = calloc(1, sizeof *sm);
	if (!sm)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	int rc = cigt_model_load(path, &sm->m, err, errlen);
	if (!rc)
		rc = cigt_engine_new(sm->m, &sm->e, err, errlen);
	if (rc) {
		cigt_model_free(sm->m);
		free(sm);
		return rc;
	}
	static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
				      0.05,   0.1,   0.25,   0.5,   1,    2.5, 5, 10};
	srv_hist_init(&sm->st.duration, secs, (int)(sizeof secs / sizeof secs[0]), 1e-9);
	atomic_init(&sm->refs, 1);
	sm->generation = ++model_generation;
	snprintf(sm->name, sizeof sm->name, "%s", sm->m->arch->name);
	sm->version = 1;
	*out = sm;
	return 0;
}

struct srv_model *srv_model_ref(struct srv_model *sm)
{
	if (sm)
		atomic_fetch_add_explicit(&sm->refs, 1, memory_order_relaxed);
	return sm;
}

void srv_model_unref(struct srv_model *sm)
{
	if (!sm || atomic_fetch_sub_explicit(&sm->refs, 1, memory_order_acq_rel) != 1)
		return;
	cigt_engine_free(sm->e);
	cigt_model_free(sm->m);
	free(sm);
}

int srv_model_compatible(const struct cigt_arch *o, const struct cigt_arch *n, char *err,
			 size_t errlen)
{
	if (strcmp(o->name, n->name))
		return cigt_fail(err, errlen, CIGT_EINVAL, "model name '%s' differs from '%s'",
				 n->name, o->name);
	if (o->input.c != n->input.c || o->input.h != n->input.h || o->input.w != n->input.w)
		return cigt_fail(err, errlen, CIGT_EINVAL, "input %dx%dx%d differs from %dx%dx%d",
				 n->input.c, n->input.h, n->input.w, o->input.c, o->input.h,
				 o->input.w);
	if (o->nclasses != n->nclasses || o->nlayers != n->nlayers)
		return cigt_fail(err, errlen, CIGT_EINVAL, "classes or layers differ");
	for (int l = 0; l < o->nlayers; l++)
		if (o->layers[l].experts != n->layers[l].experts)
			return cigt_fail(err, errlen, CIGT_EINVAL,
					 "layer %d has %d experts instead of %d", l,
					 n->layers[l].experts, o->layers[l].experts);
	return 0;
}

/* ---------------------------------------------------------------------------- tables */

struct reg_version {
	long long v;
	struct srv_model *m;   /* serving, or NULL */
	bool listed;           /* its folder was found by the last scan */
	bool selected;         /* the version policy selects it */
	bool failed;           /* the last load of fail_ident failed */
	struct srv_ident fail_ident;
	char reason[256];      /* why it is not serving */
};

struct reg_model {
	char name[CIGT_NAME_MAX + 1];
	bool wanted;           /* explicit mode: loaded by --load-model or the API */
	bool listed;
	bool loading;          /* a sync that loads it is running */
	char reason[256];      /* the model's own problem (config.json), or "" */
	struct srv_model_cfg mc;
	struct reg_version *v; /* descending by version */
	int nv, cap;
	uint64_t loads_ok, loads_failed;
};

struct reg_waiter {
	struct srv_req *r;
	char name[CIGT_NAME_MAX + 1];
	struct reg_waiter *next;
};

/* The input and output of a sync job (owned by the job while it runs on the pool). */
struct job_known {
	char name[CIGT_NAME_MAX + 1];
	long long v;
	struct srv_ident ident;
	bool loaded; /* else: failed with this identity */
};

struct job_version {
	long long v;
	bool selected;
	struct srv_ident ident;
	enum { JV_NONE, JV_KEEP, JV_NEW, JV_FAIL, JV_FAIL_SAME } act;
	struct srv_model *m; /* JV_NEW */
	char reason[256];
};

struct job_model {
	char name[CIGT_NAME_MAX + 1];
	bool want;
	bool cfg_ok;
	char reason[256];
	struct srv_model_cfg mc;
	struct job_version *v;
	int nv, cap;
};

struct reg_job {
	struct srv_registry *reg;
	uv_work_t work;
	bool force;         /* reload loaded versions even if unchanged (SIGHUP, --model) */
	bool verbose;       /* log ignored entries by name (not on every poll) */
	bool all;           /* load every model (none and poll modes) */
	char (*want)[CIGT_NAME_MAX + 1]; /* else: these models */
	int nwant;
	struct job_known *known;
	int nknown;
	struct job_model *m;
	int nm, capm;
	char err[512];
	int rc;
	struct reg_waiter *waiters;
};

struct srv_registry {
	const struct srv_config *cfg;
	char *root;        /* realpath of the repository, or NULL */
	char *single;      /* --model PATH */
	enum srv_control mode;
	struct reg_model *m;
	int nm, capm;
	uv_loop_t *loop;
	uv_timer_t poll;
	bool poll_started;
	struct reg_job *job;      /* running */
	bool again, again_force;  /* another sync asked for while one runs */
	struct reg_waiter *waiting; /* load requests for the follow-up sync */
	srv_load_done_fn load_done;
	srv_retired_fn retired;
	void *ctx;
	bool stopped;
};

static struct reg_model *find_model(const struct srv_registry *reg, const char *name)
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

static bool model_wanted(const struct srv_registry *reg, const struct reg_model *rm)
{
	return reg->mode != SRV_CONTROL_EXPLICIT || reg->single ? true : rm->wanted;
}

/* ------------------------------------------------------------------- the sync job (pool) */

static int job_add_version(struct job_model *jm, long long v)
{
	if (jm->nv == jm->cap) {
		int cap = jm->cap ? jm->cap * 2 : 8;
		struct job_version *p = realloc(jm->v, (size_t)cap * sizeof *p);
		if (!p)
			return -1;
		jm->v = p;
		jm->cap = cap;
	}
	jm->v[jm->nv++] = (struct job_version){.v = v};
	return 0;
}

static struct job_model *job_add_model(struct reg_job *j, const char *name)
{
	if (j->nm == j->capm) {
		int cap = j->capm ? j->capm * 2 : 8;
		struct job_model *p = realloc(j->m, (size_t)cap * sizeof *p);
		if (!p)
			return NULL;
		j->m = p;
		j->capm = cap;
	}
	struct job_model *jm = &j->m[j->nm++];
	*jm = (struct job_model){.cfg_ok = true, .mc = {.policy = SRV_POLICY_LATEST, .latest = 1}};
	snprintf(jm->name, sizeof jm->name, "%s", name);
	return jm;
}

static bool job_wants(const struct reg_job *j, const char *name)
{
	if (j->all)
		return true;
	for (int i = 0; i < j->nwant; i++)
		if (!strcmp(j->want[i], name))
			return true;
	return false;
}

static const struct job_known *job_known(const struct reg_job *j, const char *name, long long v)
{
	for (int i = 0; i < j->nknown; i++)
		if (j->known[i].v == v && !strcmp(j->known[i].name, name))
			return &j->known[i];
	return NULL;
}

static bool ident_eq(const struct srv_ident *a, const struct srv_ident *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

/* True when real (a resolved path) lies inside the directory root (resolved). */
static bool inside(const char *root, const char *real)
{
	size_t n = strlen(root);
	return !strncmp(real, root, n) && real[n] == '/';
}

static int cmp_desc(const void *a, const void *b)
{
	long long x = ((const struct job_version *)a)->v, y = ((const struct job_version *)b)->v;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* Loads (or keeps) one selected version of jm from path. */
static void job_load_version(struct reg_job *j, struct job_model *jm, struct job_version *jv,
			     const char *path)
{
	char real[PATH_MAX], err[256];
	struct stat st;
	if (!realpath(path, real)) {
		snprintf(jv->reason, sizeof jv->reason, "%s: %s", errno == ENOENT ?
			 "no model.safetensors in the version folder" : "cannot resolve the path",
			 strerror(errno));
		jv->act = JV_FAIL;
		return;
	}
	if (j->reg->root && !inside(j->reg->root, real)) {
		snprintf(jv->reason, sizeof jv->reason, "model.safetensors resolves outside the "
							"repository; refused");
		jv->act = JV_FAIL;
		return;
	}
	if (stat(real, &st) || !S_ISREG(st.st_mode)) {
		snprintf(jv->reason, sizeof jv->reason, "model.safetensors is not a regular file");
		jv->act = JV_FAIL;
		return;
	}
	jv->ident = (struct srv_ident){(unsigned long long)st.st_dev,
				       (unsigned long long)st.st_ino,
				       (unsigned long long)st.st_size,
				       (long long)st.st_mtim.tv_sec * 1000000000LL +
					       st.st_mtim.tv_nsec,
				       (long long)st.st_ctim.tv_sec * 1000000000LL +
					       st.st_ctim.tv_nsec};
	const struct job_known *k = job_known(j, jm->name, jv->v);
	if (k && ident_eq(&k->ident, &jv->ident) && (!k->loaded || !j->force)) {
		jv->act = k->loaded ? JV_KEEP : JV_FAIL_SAME;
		return;
	}
	struct srv_model *m = NULL;
	if (srv_model_load(real, &m, err, sizeof err)) {
		snprintf(jv->reason, sizeof jv->reason, "%s", err);
		jv->act = JV_FAIL;
		return;
	}
	if (j->reg->root && strcmp(m->m->arch->name, jm->name)) {
		snprintf(jv->reason, sizeof jv->reason, "the model's name '%s' does not match its "
							"folder '%s'", m->m->arch->name, jm->name);
		srv_model_unref(m);
		jv->act = JV_FAIL;
		return;
	}
	m->version = jv->v;
	m->ident = jv->ident;
	jv->m = m;
	jv->act = JV_NEW;
}

/* Reads DIR/<name>/config.json if there is one. */
static void job_read_config(struct reg_job *j, struct job_model *jm, const char *dir)
{
	char path[PATH_MAX], real[PATH_MAX], err[256];
	if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
		return;
	struct stat st;
	if (lstat(path, &st) && errno == ENOENT)
		return;
	void *buf = NULL;
	size_t len = 0;
	if (!realpath(path, real) || !inside(j->reg->root, real)) {
		snprintf(jm->reason, sizeof jm->reason, "config.json resolves outside the repository "
							"or not at all; refused");
		jm->cfg_ok = false;
		return;
	}
	if (cigt_read_file(real, REG_CONFIG_MAX, &buf, &len, err, sizeof err)) {
		snprintf(jm->reason, sizeof jm->reason, "config.json: %.200s", err);
		jm->cfg_ok = false;
		return;
	}
	if (srv_model_cfg_parse(buf, len, &jm->mc, err, sizeof err)) {
		snprintf(jm->reason, sizeof jm->reason, "%s", err);
		jm->cfg_ok = false;
	}
	free(buf);
}

/* Lists one model folder and loads what its policy selects (when the job wants the model). */
static void job_scan_model(struct reg_job *j, const char *name)
{
	char dir[PATH_MAX], path[PATH_MAX], real[PATH_MAX];
	if (snprintf(dir, sizeof dir, "%s/%s", j->reg->root, name) >= (int)sizeof dir)
		return;
	if (!realpath(dir, real) || !inside(j->reg->root, real))
		return; /* a symlink leaving the repository: not a model folder (logged below) */
	struct stat st;
	if (stat(real, &st) || !S_ISDIR(st.st_mode))
		return;
	struct job_model *jm = job_add_model(j, name);
	if (!jm)
		return;
	jm->want = job_wants(j, name);
	job_read_config(j, jm, dir);
	DIR *d = opendir(dir);
	if (!d) {
		snprintf(jm->reason, sizeof jm->reason, "cannot list the model folder: %s",
			 strerror(errno));
		jm->cfg_ok = false;
		return;
	}
	int ignored = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    !strcmp(e->d_name, "config.json"))
			continue;
		long long v = srv_version_parse(e->d_name);
		bool isdir = false;
		if (v > 0) {
			isdir = snprintf(path, sizeof path, "%s/%s", dir, e->d_name) <
					(int)sizeof path &&
				!stat(path, &st) && S_ISDIR(st.st_mode);
		}
		if (v <= 0 || !isdir || jm->nv >= REG_MAX_VERSIONS) {
			if (j->verbose && ignored < REG_IGNORED_LOGGED)
				srv_log(SRV_LOG_WARN, "repository: %s/%.80s ignored: %s", name,
					e->d_name, v <= 0 ? "not a version (a positive integer)"
					: !isdir ? "not a folder" : "too many versions");
			ignored++;
			continue;
		}
		if (job_add_version(jm, v))
			break;
	}
	closedir(d);
	if (j->verbose && ignored > REG_IGNORED_LOGGED)
		srv_log(SRV_LOG_WARN, "repository: %s: %d more entries ignored", name,
			ignored - REG_IGNORED_LOGGED);
	qsort(jm->v, (size_t)jm->nv, sizeof *jm->v, cmp_desc);
	/* latest N selects the N highest versions that load: one that fails (a file still
	 * being copied, a broken one) does not displace a version that serves. */
	const bool load = jm->want && jm->cfg_ok;
	int good = 0;
	for (int i = 0; i < jm->nv; i++) {
		struct job_version *jv = &jm->v[i];
		switch (jm->mc.policy) {
		case SRV_POLICY_ALL:
			jv->selected = true;
			break;
		case SRV_POLICY_LATEST:
			jv->selected = load ? good < jm->mc.latest : i < jm->mc.latest;
			break;
		case SRV_POLICY_SPECIFIC:
			for (int k = 0; k < jm->mc.nspecific; k++)
				jv->selected |= jm->mc.specific[k] == jv->v;
			break;
		}
		if (!load || !jv->selected)
			continue;
		if (snprintf(path, sizeof path, "%s/%lld/model.safetensors", dir, jv->v) >=
		    (int)sizeof path) {
			snprintf(jv->reason, sizeof jv->reason, "path too long");
			jv->act = JV_FAIL;
			continue;
		}
		job_load_version(j, jm, jv, path);
		good += jv->act == JV_KEEP || jv->act == JV_NEW;
	}
}

static void job_run(uv_work_t *w)
{
	struct reg_job *j = w->data;
	struct srv_registry *reg = j->reg;
	if (reg->single) {
		/* --model PATH: one model, version 1, named after its metadata. */
		const char *name = j->nknown ? j->known[0].name : "";
		struct job_model *jm = job_add_model(j, name);
		if (!jm || job_add_version(jm, 1)) {
			snprintf(j->err, sizeof j->err, "out of memory");
			j->rc = -1;
			return;
		}
		jm->want = true;
		jm->v[0].selected = true;
		j->force = true;
		job_load_version(j, jm, &jm->v[0], reg->single);
		if (jm->v[0].m)
			snprintf(jm->name, sizeof jm->name, "%s", jm->v[0].m->name);
		return;
	}
	DIR *d = opendir(reg->root);
	if (!d) {
		snprintf(j->err, sizeof j->err, "cannot list the model repository %s: %s",
			 reg->root, strerror(errno));
		j->rc = -1;
		return;
	}
	int ignored = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (!srv_model_name_ok(e->d_name, strlen(e->d_name)) || j->nm >= REG_MAX_MODELS) {
			if (j->verbose && e->d_name[0] != '.' && ignored++ < REG_IGNORED_LOGGED)
				srv_log(SRV_LOG_WARN, "repository: %.80s ignored: not a model name "
						      "(1-64 of A-Z a-z 0-9 _ . -)", e->d_name);
			continue;
		}
		int before = j->nm;
		job_scan_model(j, e->d_name);
		if (j->nm == before && j->verbose)
			srv_log(SRV_LOG_WARN, "repository: %.80s ignored: not a folder inside the "
					      "repository", e->d_name);
	}
	closedir(d);
}

static void job_free(struct reg_job *j)
{
	if (!j)
		return;
	for (int i = 0; i < j->nm; i++) {
		for (int k = 0; k < j->m[i].nv; k++)
			srv_model_unref(j->m[i].v[k].m);
		free(j->m[i].v);
	}
	free(j->m);
	free(j->want);
	free(j->known);
	free(j);
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
	struct reg_model *rm = find_model(reg, jm->name);
	if (!rm && !(rm = add_model(reg, jm->name)))
		return; /* out of memory: the new holders are dropped with the job */
	rm->listed = true;
	bool want = model_wanted(reg, rm) && jm->want;
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
			if (jv->act == JV_NEW) {
				jv->m->bat = effective(reg, &rm->mc);
				bool had = rv->m != NULL;
				retire(reg, rm, rv, "replaced by a new file");
				rv->m = jv->m;
				jv->m = NULL;
				rv->failed = false;
				rv->reason[0] = 0;
				rm->loads_ok++;
				if (reg->loop) /* loads after the start */
					atomic_fetch_add(&srv_stats.stat_reloads_ok, 1);
				srv_log(SRV_LOG_INFO, "model %s version %lld %s (generation %llu)",
					rm->name, rv->v, had ? "reloaded" : "loaded",
					(unsigned long long)rv->m->generation);
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

static bool model_ready(const struct reg_model *rm)
{
	for (int i = 0; i < rm->nv; i++)
		if (rm->v[i].m)
			return true;
	return false;
}

/* A one-line reason why rm serves nothing. */
static const char *model_reason(const struct reg_model *rm)
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
		job_free(j);
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
		const struct reg_model *rm = find_model(reg, w->name);
		char buf[400];
		int status = 200;
		if (status_override) {
			status = status_override;
			snprintf(buf, sizeof buf, "%s", msg);
		} else if (!rm || !rm->listed) {
			status = 404;
			snprintf(buf, sizeof buf, "no model '%s' in the repository", w->name);
		} else if (!model_ready(rm)) {
			status = 400;
			snprintf(buf, sizeof buf, "failed to load '%s': %s", w->name,
				 model_reason(rm));
		} else {
			snprintf(buf, sizeof buf, "loaded");
		}
		/* A load that failed leaves the model unwanted when nothing serves it. */
		struct reg_model *m = find_model(reg, w->name);
		if (status != 200 && m && !model_ready(m))
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
		job_free(j);
		return;
	}
	apply(reg, j);
	answer_waiters(reg, j->waiters, 0, NULL);
	job_free(j);
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
		reg->m[i].loading = model_wanted(reg, &reg->m[i]);
	reg->job = j;
	j->work.data = j;
	uv_queue_work(reg->loop, &j->work, job_run, job_done);
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
		if (!srv_model_name_ok(cfg->load_models[i], strlen(cfg->load_models[i]))) {
			srv_registry_free(reg);
			return cigt_fail(err, errlen, -1, "--load-model '%.80s' is not a model name",
					 cfg->load_models[i]);
		}
		struct reg_model *rm = find_model(reg, cfg->load_models[i]);
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
	job_run(&j->work);
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
			if (model_wanted(reg, rm) && !model_ready(rm))
				srv_log(SRV_LOG_ERROR, "model %s serves nothing: %s", rm->name,
					model_reason(rm));
			if (rm->wanted && !rm->listed)
				srv_log(SRV_LOG_ERROR, "--load-model %s: no such model in %s",
					rm->name, reg->root);
		}
	}
	job_free(j);
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
	if (!srv_model_name_ok(name, strlen(name))) {
		snprintf(err, errlen, "'%.80s' is not a model name", name);
		return 400;
	}
	struct reg_waiter *w = calloc(1, sizeof *w);
	struct reg_model *rm = find_model(reg, name);
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
	struct reg_model *rm = find_model(reg, name);
	if (!rm || (!rm->wanted && !model_ready(rm))) {
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

/* Names the loaded models into buf (for error messages). */
static void loaded_names(const struct srv_registry *reg, char *buf, size_t n)
{
	size_t off = 0;
	buf[0] = 0;
	for (int i = 0; i < reg->nm && off + 1 < n; i++)
		if (model_ready(&reg->m[i]))
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
				if (model_ready(&reg->m[i])) {
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
	struct reg_model *rm = find_model(reg, name);
	if (!rm || !model_ready(rm)) {
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
		if (should && !model_ready(rm))
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
			srv_buf_json_str(b, rm->listed ? model_reason(rm)
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
					     : !model_wanted(reg, rm) ? "not loaded"
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
	const struct reg_model *rm = find_model(reg, name);
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
	const struct reg_model *rm = find_model(reg, name);
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
		if (!model_ready(rm))
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
