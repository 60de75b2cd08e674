/* The model repository's internals shared by registry.c (the tables, on the loop),
 * registry_query.c (lookups and renderings of the tables, on the loop) and repo_scan.c (a sync
 * job: scan and load, on libuv's thread pool). A job owns everything in it while it runs; the
 * loop reads its results only in the job's after-work callback. */
#ifndef CIGT_SRV_REPO_H
#define CIGT_SRV_REPO_H

#include "srv.h"

/* ------------------------------------------------------- the registry's tables (loop only) */

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

/* The model named name, or NULL. */
struct reg_model *srv_reg_find_model(const struct srv_registry *reg, const char *name);
/* Whether the registry keeps rm loaded: every model, unless the control mode is explicit
 * without --model (then the ones loaded by --load-model or the API). */
bool srv_reg_model_wanted(const struct srv_registry *reg, const struct reg_model *rm);
/* Whether some version of rm serves. */
bool srv_reg_model_ready(const struct reg_model *rm);
/* A one-line reason why rm serves nothing. */
const char *srv_reg_model_reason(const struct reg_model *rm);

/* ------------------------------------------------------------------------------ sync jobs */

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
	struct srv_registry *reg; /* not touched on the pool */
	const char *root;         /* realpath of the repository, or NULL: the registry's */
	const char *single;       /* --model PATH, or NULL */
	const char *compute;      /* --compute: every version's default point, or NULL */
	int backend, precision;   /* --backend, --precision (a config.json may override them) */
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
	struct reg_waiter *waiters; /* load requests answered after this job */
};

/* Scans the repository (or the --model file) and loads what the job asks (pool thread). */
void srv_repo_job_run(uv_work_t *w);
/* Frees a job and the holders it loaded but nobody took. */
void srv_repo_job_free(struct reg_job *j);
/* Appends a model to a job's results (NULL when out of memory). */
struct job_model *srv_repo_job_add_model(struct reg_job *j, const char *name);

#endif
