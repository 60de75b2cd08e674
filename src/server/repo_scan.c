/* A sync job of the model repository, run on libuv's thread pool: list the model folders,
 * read each config.json, list the version folders, and load the versions the version policy
 * selects whose files changed since the loop's snapshot (job->known). Everything read here is
 * outside input: names and versions are checked, paths are resolved and must stay inside the
 * repository, only regular files are opened, and a file is served only if it validates
 * completely (srv_model_load, holder.c). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cigt/error.h"
#include "cigt/file.h"
#include "../common/name.h"
#include "../common/util.h"
#include "repo.h"

/* Limits on what one scan reads: more is ignored with a log line. */
#define REG_MAX_MODELS 4096
#define REG_MAX_VERSIONS 100000
#define REG_CONFIG_MAX (64 * 1024)
#define REG_IGNORED_LOGGED 5 /* ignored entries logged by name per model and scan */

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

struct job_model *srv_repo_job_add_model(struct reg_job *j, const char *name)
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
	if (j->root && !inside(j->root, real)) {
		snprintf(jv->reason, sizeof jv->reason, "model.safetensors resolves outside the "
							"repository; refused");
		jv->act = JV_FAIL;
		return;
	}
	bool there = stat(real, &st) == 0;
	if (!there || !S_ISREG(st.st_mode)) {
		struct srv_model *none = NULL;
		/* --model DIR: the loader says what the directory holds (a repository?). */
		if (!(there && S_ISDIR(st.st_mode) && !j->root &&
		      srv_model_load(path, j->compute, NULL, &none, err, sizeof err)))
			snprintf(err, sizeof err, "model.safetensors is not a regular file");
		srv_model_unref(none);
		snprintf(jv->reason, sizeof jv->reason, "%s", err);
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
	if (k && ident_eq(&k->ident, &jv->ident) && !j->force) {
		jv->act = k->loaded ? JV_KEEP : JV_FAIL_SAME;
		return;
	}
	struct srv_model *m = NULL;
	const struct cigt_engine_opts eo = srv_engine_opts(
		jm->mc.backend ? jm->mc.backend - 1 : j->backend,
		jm->mc.precision ? jm->mc.precision - 1 : j->precision);
	if (srv_model_load(real, j->compute, &eo, &m, err, sizeof err)) {
		snprintf(jv->reason, sizeof jv->reason, "%s", err);
		jv->act = JV_FAIL;
		return;
	}
	if (j->root && strcmp(m->m->arch->name, jm->name)) {
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
	if (!realpath(path, real) || !inside(j->root, real)) {
		snprintf(jm->reason, sizeof jm->reason, "config.json resolves outside the repository "
							"or not at all; refused");
		jm->cfg_ok = false;
		return;
	}
	if (cigt_file_read(real, REG_CONFIG_MAX, &buf, &len, err, sizeof err)) {
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
	if (snprintf(dir, sizeof dir, "%s/%s", j->root, name) >= (int)sizeof dir)
		return;
	if (!realpath(dir, real) || !inside(j->root, real))
		return; /* a symlink leaving the repository: not a model folder (logged below) */
	struct stat st;
	if (stat(real, &st) || !S_ISDIR(st.st_mode))
		return;
	struct job_model *jm = srv_repo_job_add_model(j, name);
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

void srv_repo_job_run(uv_work_t *w)
{
	struct reg_job *j = w->data;
	if (j->single) {
		/* --model PATH: one model, version 1, named after its metadata. */
		const char *name = j->nknown ? j->known[0].name : "";
		struct job_model *jm = srv_repo_job_add_model(j, name);
		if (!jm || job_add_version(jm, 1)) {
			snprintf(j->err, sizeof j->err, "out of memory");
			j->rc = -1;
			return;
		}
		jm->want = true;
		jm->v[0].selected = true;
		j->force = true;
		job_load_version(j, jm, &jm->v[0], j->single);
		/* The first load names the model; a reload keeps the name, and one of another
		 * name is refused on the loop (srv_model_compatible). */
		if (jm->v[0].m && !j->nknown)
			snprintf(jm->name, sizeof jm->name, "%s", jm->v[0].m->name);
		return;
	}
	DIR *d = opendir(j->root);
	if (!d) {
		snprintf(j->err, sizeof j->err, "cannot list the model repository %s: %s",
			 j->root, strerror(errno));
		j->rc = -1;
		return;
	}
	int ignored = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (!cigt__model_file_name_ok(e->d_name, strlen(e->d_name)) ||
		    j->nm >= REG_MAX_MODELS) {
			if (j->verbose && e->d_name[0] != '.' && ignored++ < REG_IGNORED_LOGGED)
				srv_log(SRV_LOG_WARN, "repository: %.80s ignored: not a model name "
						      "(1-63 of A-Z a-z 0-9 _ . -)", e->d_name);
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

void srv_repo_job_free(struct reg_job *j)
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

