/* The scheduler: worker threads that parse request bodies, batch samples from many requests and
 * run the engine on them, then encode each request's answer. Samples wait in one bounded FIFO;
 * a worker forms a batch of up to max_batch samples (all of one model generation) as soon as it
 * is free, waiting at most max_delay_us after the oldest sample's arrival for the batch to fill,
 * and taking no more than an equal share of the queue among the idle workers, so a backlog runs
 * on all the cores at once. The default max_batch of 16 was chosen under wrk (1-image requests,
 * 64 connections, 2 cores): p99 13-15 ms against 19-23 ms with 64, at no throughput cost; see
 * bench/RESULTS.md, "Effect of route grouping", and commit 1fdbe4f for the side-by-side runs.
 * Inside the batch the engine regroups samples by expert at every layer, so each expert runs
 * once per batch on a contiguous group. Samples past their request's deadline are dropped
 * before computing and the request is answered 504.
 *
 * Per-node queues that would fill expert groups across batches are not built. Whether they could
 * win anything is judged afresh by every benchmark run (bench/run): bench/RESULTS.md, section
 * "Per-expert queues across batches", sets the engine's throughput against batch size next to
 * the mean batch this scheduler forms under load. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cigt/error.h"
#include "../common/util.h"
#include "srv.h"

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
	atomic_init(&sm->refs, 1);
	sm->generation = ++model_generation;
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

/* ---------------------------------------------------------------------------- requests */

void srv_req_fail(struct srv_req *r, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	r->status = status;
	r->resp.len = 0;
	r->resp_json_len = -1;
	r->resp_ctype = "application/json";
	srv_encode_error(&r->resp, msg);
}

/* ---------------------------------------------------------------------------- scheduler */

/* The smallest share of a backlog a worker takes when splitting it with the others. One worker
 * (one core) runs a batch of 8 at the speed of a batch of 64 (bench/RESULTS.md, engine at
 * 1 thread: 5,307 vs 5,250 samples/s in the run at 645999b), so smaller shares would cost
 * throughput for nothing. */
#define SCHED_MIN_SHARE 8

struct sched_item {
	struct srv_req *r;
	int idx;
};

struct sched_worker {
	struct srv_sched *s;
	pthread_t tid;
	bool started;
	struct srv_model *model; /* the generation ws was built for */
	struct cigt_workspace *ws;
	float *x;                /* max_batch inputs */
	struct cigt_result *res;
	float *probs;
	struct sched_item *batch;
};

struct srv_sched {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	/* Requests waiting to be parsed, FIFO. */
	struct srv_req *prep_head, *prep_tail;
	/* Samples waiting to run: ring buffer of queue_limit items. */
	struct sched_item *ring;
	int cap, head, depth;
	int max_batch;
	uint64_t max_delay_ns, default_timeout_ns;
	struct srv_limits lim;
	srv_done_fn done;
	void *ctx;
	int nworkers;
	int busy; /* workers running a batch */
	struct sched_worker *workers;
};

bool srv_peer_gone(int fd)
{
	char c;
	if (fd < 0)
		return false;
	ssize_t k = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void finish(struct srv_sched *s, struct srv_req *r)
{
	if (r->gone) {
		srv_req_fail(r, 499, "client closed the connection");
	} else if (atomic_load(&r->expired)) {
		srv_req_fail(r, 504, "deadline of %lld ms passed before the sample was computed",
			     r->job.timeout_ms);
	} else if (r->status == 0) {
		const struct cigt_arch *a = r->model->m->arch;
		r->status = 200;
		r->resp_ctype = "application/json";
		r->resp_json_len = -1;
		if (r->ep == SRV_EP_CLASSIFY) {
			srv_encode_v1(a, &r->job, r->res, r->probs, &r->resp);
		} else {
			srv_encode_v2(a, &r->job, r->res, r->probs, &r->resp, &r->resp_json_len);
			if (r->resp_json_len >= 0)
				r->resp_ctype = "application/octet-stream";
		}
		if (r->resp.oom)
			srv_req_fail(r, 500, "out of memory encoding the answer");
	}
	s->done(s->ctx, r);
}

static void sample_done(struct srv_sched *s, struct srv_req *r)
{
	if (atomic_fetch_sub_explicit(&r->pending, 1, memory_order_acq_rel) == 1)
		finish(s, r);
}

/* Parses a request and queues its samples (worker thread, lock not held). */
static void prep(struct srv_sched *s, struct srv_req *r)
{
	char err[512];
	const struct cigt_arch *a = r->model->m->arch;
	r->job = (struct srv_job){.timeout_ms = -1};
	if (r->query_top_k > 0)
		r->job.top_k = (int)r->query_top_k;
	if (r->query_timeout_ms >= 0)
		r->job.timeout_ms = r->query_timeout_ms;
	int status;
	if (r->ep == SRV_EP_CLASSIFY)
		status = srv_parse_v1(a, &s->lim, r->ctype, r->body.p, r->body.len, &r->job, err,
				      sizeof err);
	else
		status = srv_parse_v2(a, &s->lim, r->ctype, r->header_len, r->body.p, r->body.len,
				      &r->job, err, sizeof err);
	srv_buf_free(&r->body);
	if (status != 200) {
		srv_req_fail(r, status, "%s", err);
		s->done(s->ctx, r);
		return;
	}
	if (r->job.timeout_ms < 0)
		r->job.timeout_ms = (long long)(s->default_timeout_ns / 1000000);
	r->deadline = r->t_arrive + (uint64_t)r->job.timeout_ms * 1000000u;
	const int n = r->job.n, K = a->nclasses;
	r->res = calloc((size_t)n, sizeof *r->res);
	r->probs = malloc((size_t)n * K * sizeof(float));
	if (!r->res || !r->probs) {
		srv_req_fail(r, 500, "out of memory");
		s->done(s->ctx, r);
		return;
	}
	atomic_store(&r->pending, n);
	r->t_enqueue = cigt_now_ns();
	pthread_mutex_lock(&s->mu);
	if (s->depth + n > s->cap) {
		pthread_mutex_unlock(&s->mu);
		atomic_fetch_add_explicit(&srv_stats.stat_queue_full, 1, memory_order_relaxed);
		srv_req_fail(r, 503, "queue full (%d samples waiting, limit %d); retry later",
			     s->depth, s->cap);
		s->done(s->ctx, r);
		return;
	}
	for (int i = 0; i < n; i++)
		s->ring[(s->head + s->depth++) % s->cap] = (struct sched_item){r, i};
	atomic_store_explicit(&srv_stats.stat_queue_depth, s->depth, memory_order_relaxed);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static int worker_ensure_ws(struct sched_worker *w, struct srv_model *m)
{
	if (w->model == m)
		return 0;
	cigt_workspace_free(w->ws);
	srv_model_unref(w->model);
	free(w->x);
	free(w->probs);
	w->model = srv_model_ref(m);
	const int B = w->s->max_batch;
	w->ws = cigt_workspace_new(m->e, B);
	w->x = malloc((size_t)B * (size_t)cigt_arch_input_size(m->m->arch) * sizeof(float));
	w->probs = malloc((size_t)B * (size_t)m->m->arch->nclasses * sizeof(float));
	if (w->ws && w->x && w->probs)
		return 0;
	/* Leave nothing half-built: the next batch tries again. */
	cigt_workspace_free(w->ws);
	free(w->x);
	free(w->probs);
	w->ws = NULL;
	w->x = w->probs = NULL;
	srv_model_unref(w->model);
	w->model = NULL;
	return CIGT_ENOMEM;
}

/* Runs one batch (lock not held). */
static void run_batch(struct sched_worker *w, int n)
{
	struct srv_sched *s = w->s;
	struct srv_model *m = w->batch[0].r->model;
	if (worker_ensure_ws(w, m)) {
		srv_log(SRV_LOG_ERROR, "out of memory for a worker workspace");
		for (int i = 0; i < n; i++) {
			struct srv_req *r = w->batch[i].r;
			if (!r->status)
				srv_req_fail(r, 500, "out of memory");
			sample_done(s, r);
		}
		return;
	}
	const struct cigt_arch *a = m->m->arch;
	const int64_t isz = cigt_arch_input_size(a);
	const int K = a->nclasses;
	for (int i = 0; i < n; i++)
		memcpy(w->x + i * isz, w->batch[i].r->job.x + w->batch[i].idx * isz,
		       (size_t)isz * sizeof(float));
	int rc = cigt_engine_classify(m->e, w->ws, w->x, n, CIGT_EXEC_ROUTED, w->res, w->probs,
				      NULL);
	CIGT_ASSERT(rc == 0);
	srv_hist_observe(&srv_stats.stat_batch_size, (uint64_t)n);
	/* Expert group sizes of this batch, from the routes the samples took. */
	int groups[CIGT_MAX_LAYERS][CIGT_MAX_EXPERTS];
	memset(groups, 0, sizeof groups);
	uint64_t macs = 0;
	for (int i = 0; i < n; i++) {
		for (int l = 0; l < a->nlayers; l++)
			groups[l][w->res[i].route[l]]++;
		macs += (uint64_t)w->res[i].macs;
	}
	for (int l = 0; l < a->nlayers; l++)
		for (int e = 0; e < a->layers[l].experts; e++) {
			if (!groups[l][e])
				continue;
			srv_hist_observe(&srv_stats.stat_group_size[l], (uint64_t)groups[l][e]);
			atomic_fetch_add_explicit(&srv_stats.stat_route_samples[l][e],
						  (uint64_t)groups[l][e], memory_order_relaxed);
		}
	atomic_fetch_add_explicit(&srv_stats.stat_samples, (uint64_t)n, memory_order_relaxed);
	atomic_fetch_add_explicit(&srv_stats.stat_macs, macs, memory_order_relaxed);
	atomic_fetch_add_explicit(&srv_stats.stat_dense_macs, (uint64_t)a->dense_macs * n,
				  memory_order_relaxed);
	for (int i = 0; i < n; i++) {
		struct srv_req *r = w->batch[i].r;
		int idx = w->batch[i].idx;
		r->res[idx] = w->res[i];
		memcpy(r->probs + (int64_t)idx * K, w->probs + (int64_t)i * K,
		       (size_t)K * sizeof(float));
		sample_done(s, r);
	}
}

static void abs_deadline(struct timespec *ts, uint64_t mono_ns)
{
	ts->tv_sec = (time_t)(mono_ns / 1000000000u);
	ts->tv_nsec = (long)(mono_ns % 1000000000u);
}

static void *worker_main(void *arg)
{
	struct sched_worker *w = arg;
	struct srv_sched *s = w->s;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		/* A batch that is ready runs before more requests are parsed: parsing first would
		 * let a flood of requests (each refused 503 once the queue is full) keep every
		 * worker parsing while the queued samples never run. */
		uint64_t now = cigt_now_ns(), fill_by = 0;
		bool ready = false;
		if (s->depth > 0) {
			fill_by = s->ring[s->head].r->t_enqueue + s->max_delay_ns;
			ready = s->depth >= s->max_batch || now >= fill_by || s->stop;
		}
		if (!ready && s->prep_head) {
			struct srv_req *r = s->prep_head;
			s->prep_head = r->next;
			if (!s->prep_head)
				s->prep_tail = NULL;
			pthread_mutex_unlock(&s->mu);
			prep(s, r);
			pthread_mutex_lock(&s->mu);
			continue;
		}
		if (s->depth == 0) {
			if (s->stop)
				break;
			pthread_cond_wait(&s->cv, &s->mu);
			continue;
		}
		struct srv_req *oldest = s->ring[s->head].r;
		if (!ready) {
			struct timespec ts;
			abs_deadline(&ts, fill_by);
			pthread_cond_timedwait(&s->cv, &s->mu, &ts);
			continue;
		}
		/* Take up to max_batch samples of the head's model generation, but no more than
		 * an equal share of the queue among the workers not running a batch (this one
		 * included; at least SCHED_MIN_SHARE), so that a backlog is split over the idle
		 * cores rather than run on one while the others wait; drop expired samples. */
		int take = s->max_batch;
		const int idle = s->nworkers - s->busy;
		if (idle > 1) {
			int share = (s->depth + idle - 1) / idle;
			if (share < SCHED_MIN_SHARE)
				share = SCHED_MIN_SHARE;
			if (share < take)
				take = share;
		}
		struct srv_model *m = oldest->model;
		int n = 0, nexp = 0;
		struct sched_item expired[64]; /* expired or abandoned */
		while (s->depth > 0 && n < take && nexp < 64) {
			struct sched_item it = s->ring[s->head];
			if (it.r->model != m)
				break;
			s->head = (s->head + 1) % s->cap;
			s->depth--;
			/* A request's first sample checks that its client is still there. */
			if (it.idx == 0 && srv_peer_gone(it.r->fd))
				it.r->gone = true;
			if (it.r->gone) {
				expired[nexp++] = it;
				continue;
			}
			if (now >= it.r->deadline) {
				expired[nexp++] = it;
				continue;
			}
			srv_hist_observe(&srv_stats.stat_queue_duration, now - it.r->t_enqueue);
			w->batch[n++] = it;
		}
		atomic_store_explicit(&srv_stats.stat_queue_depth, s->depth, memory_order_relaxed);
		s->busy++;
		pthread_mutex_unlock(&s->mu);
		for (int i = 0; i < nexp; i++) {
			if (!expired[i].r->gone) {
				atomic_store(&expired[i].r->expired, true);
				atomic_fetch_add_explicit(&srv_stats.stat_samples_expired, 1,
							  memory_order_relaxed);
			}
			sample_done(s, expired[i].r);
		}
		if (n)
			run_batch(w, n);
		pthread_mutex_lock(&s->mu);
		s->busy--;
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

int srv_sched_new(const struct srv_config *cfg, srv_done_fn done, void *ctx,
		  struct srv_sched **out)
{
	*out = NULL;
	struct srv_sched *s = calloc(1, sizeof *s);
	if (!s)
		return CIGT_ENOMEM;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->cap = cfg->queue_limit;
	atomic_store_explicit(&srv_stats.stat_queue_limit, cfg->queue_limit, memory_order_relaxed);
	s->max_batch = cfg->max_batch;
	s->max_delay_ns = (uint64_t)cfg->max_delay_us * 1000u;
	s->default_timeout_ns = (uint64_t)cfg->timeout_ms * 1000000u;
	s->lim = (struct srv_limits){.max_images = cfg->max_images,
				     .max_image_pixels = cfg->max_image_pixels};
	s->done = done;
	s->ctx = ctx;
	s->nworkers = cfg->workers;
	s->ring = calloc((size_t)s->cap, sizeof *s->ring);
	s->workers = calloc((size_t)s->nworkers, sizeof *s->workers);
	if (!s->ring || !s->workers)
		goto err;
	for (int i = 0; i < s->nworkers; i++) {
		struct sched_worker *w = &s->workers[i];
		w->s = s;
		w->res = calloc((size_t)s->max_batch, sizeof *w->res);
		w->batch = calloc((size_t)s->max_batch, sizeof *w->batch);
		if (!w->res || !w->batch)
			goto err;
		if (pthread_create(&w->tid, NULL, worker_main, w))
			goto err;
		w->started = true;
	}
	*out = s;
	return 0;
err:
	srv_sched_free(s);
	return CIGT_ENOMEM;
}

void srv_sched_submit(struct srv_sched *s, struct srv_req *r)
{
	r->next = NULL;
	pthread_mutex_lock(&s->mu);
	if (s->prep_tail)
		s->prep_tail->next = r;
	else
		s->prep_head = r;
	s->prep_tail = r;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

void srv_sched_free(struct srv_sched *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	for (int i = 0; s->workers && i < s->nworkers; i++) {
		struct sched_worker *w = &s->workers[i];
		if (w->started)
			pthread_join(w->tid, NULL);
		cigt_workspace_free(w->ws);
		srv_model_unref(w->model);
		free(w->x);
		free(w->probs);
		free(w->res);
		free(w->batch);
	}
	free(s->workers);
	free(s->ring);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}
