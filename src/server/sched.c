/* The scheduler: worker threads that parse request bodies, batch samples from many requests and
 * run the engine on them, then encode each request's answer. Samples of every model wait in one
 * bounded FIFO; a worker forms a batch from the oldest sample's model version (samples of other
 * versions keep their places: versions never share a batch), of up to that version's max_batch
 * samples as soon as it is free, waiting at most its max_delay_us after the oldest sample's
 * arrival for the batch to fill, and not at all when nothing more can come (--eager-dispatch:
 * every request in flight is already here and parsed, as with one connection that sends a
 * request after each answer; wrk -c1 on the shipped model, both cores busy with other work:
 * mean queue time 7-18 us against 265-273 us, 1.37-1.65k requests/s against 1.06-1.16k). When the oldest sample's version ran the last batch and another
 * version has a batch ready, that one goes first: versions with work take turns, so a busy
 * model's backlog delays another model's samples by about one batch, not by the whole backlog
 * (tests/integration/test_repository.py, group fairness). Samples with different compute dials
 * (their request's operating point or budget) share a batch; run_batch calls the engine once per
 * dial among them, the single path through the plain routed call as before. A worker takes no more than an equal
 * share of the queue among the idle workers, so a backlog runs
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
	if (r->grpc) /* gRPC: the message goes in grpc-message or error_message */
		srv_buf_puts(&r->resp, msg);
	else
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

/* A worker's scratch for one model version, sized for its max_batch. */
struct sched_ws {
	struct srv_model *model; /* referenced; NULL = free slot */
	struct cigt_workspace *ws;
	struct cigt_workspace *ws2[CIGT_MAX_POINTS]; /* per second model of the version */
	float *x;
	float *probs;
	struct cigt_result *res;
	uint64_t used;           /* batch counter when last used (least recently used goes) */
};

/* Versions whose workspaces a worker keeps at once. */
#define SCHED_WS_CACHE 4
/* Largest max_batch a model's config.json may ask for (the batch array's size). */
#define SCHED_BATCH_MAX 4096

struct sched_worker {
	struct srv_sched *s;
	pthread_t tid;
	bool started;
	struct sched_ws cache[SCHED_WS_CACHE];
	uint64_t batches;
	uint64_t retire_seen;
	struct sched_item *batch; /* SCHED_BATCH_MAX items */
	struct sched_item *sorted; /* the batch grouped by dial (SCHED_BATCH_MAX items) */
};

struct srv_sched {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	uint64_t retire_gen; /* bumped when versions are unloaded: workers drop their workspaces */
	const struct srv_model *last; /* the version of the batch formed last (turns, see pick) */
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
	/* Requests the scheduler holds (submitted and not yet handed back to the server), and
	 * those being parsed now (taken from the prep list, samples not yet queued). */
	int held, parsing;
	bool eager; /* --eager-dispatch */
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

/* Hands r back to the server (its answer or error set). */
static void hand_back(struct srv_sched *s, struct srv_req *r, bool parsing)
{
	pthread_mutex_lock(&s->mu);
	s->held--;
	s->parsing -= parsing;
	pthread_mutex_unlock(&s->mu);
	s->done(s->ctx, r);
}

/* Counts one run of a stage of r's model version taking dt ns (Triton's Duration pairs). */
static void stage_add(_Atomic uint64_t *count, _Atomic uint64_t *ns, uint64_t dt)
{
	atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(ns, dt, memory_order_relaxed);
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
		const uint64_t t0 = cigt_now_ns();
		r->status = 200;
		r->resp_ctype = "application/json";
		r->resp_json_len = -1;
		if (r->grpc) {
			if (srv_grpc_finish(a, r))
				srv_req_fail(r, 500, "out of memory encoding the answer");
		} else if (r->ep == SRV_EP_CLASSIFY) {
			srv_encode_v1(a, r->model->name, r->model->version, &r->job, r->res, r->probs,
				      &r->resp);
		} else {
			srv_encode_v2(a, r->model->name, r->model->version, &r->job, r->res,
				      r->probs, &r->resp, &r->resp_json_len);
			if (r->resp_json_len >= 0)
				r->resp_ctype = "application/octet-stream";
		}
		if (r->resp.oom)
			srv_req_fail(r, 500, "out of memory encoding the answer");
		stage_add(&r->model->st.output_count, &r->model->st.output_ns, cigt_now_ns() - t0);
	}
	hand_back(s, r, false);
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
	const uint64_t t0 = cigt_now_ns();
	r->job = (struct srv_job){.timeout_ms = -1};
	if (r->query_top_k > 0)
		r->job.top_k = (int)r->query_top_k;
	if (r->query_timeout_ms >= 0)
		r->job.timeout_ms = r->query_timeout_ms;
	int status;
	if (r->grpc)
		status = srv_grpc_prep(a, &s->lim, r, err, sizeof err);
	else if (r->ep == SRV_EP_CLASSIFY)
		status = srv_parse_v1(a, &s->lim, r->ctype, r->body.p, r->body.len, &r->job, err,
				      sizeof err);
	else
		status = srv_parse_v2(a, &s->lim, r->ctype, r->header_len, r->body.p, r->body.len,
				      &r->job, err, sizeof err);
	srv_buf_free(&r->body);
	/* The dial: the body's keys, else the query's, else the version's default. */
	if (status == 200 && !r->job.compute[0] && !r->job.max_macs) {
		memcpy(r->job.compute, r->query_compute, sizeof r->job.compute);
		r->job.max_macs = r->query_max_macs > 0 ? r->query_max_macs : 0;
	}
	if (status == 200)
		status = srv_dial_resolve(r->model, &r->job, &r->dial, err, sizeof err);
	/* Decoding costs the same whether the request is then refused or queued. */
	struct srv_vstats *vs = &r->model->st;
	stage_add(&vs->input_count, &vs->input_ns, r->decode_ns + (cigt_now_ns() - t0));
	atomic_fetch_add_explicit(&vs->receive_ns, r->t_submit - r->t_arrive - r->decode_ns,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&vs->wait_ns, t0 - r->t_submit, memory_order_relaxed);
	if (status != 200) {
		srv_req_fail(r, status, "%s", err);
		hand_back(s, r, true);
		return;
	}
	if (r->dial.point >= 0)
		snprintf(r->job.ran, sizeof r->job.ran, "%s", r->model->m->points[r->dial.point].name);
	if (r->job.timeout_ms < 0)
		r->job.timeout_ms = r->model->bat.timeout_ms;
	r->deadline = r->t_arrive + (uint64_t)r->job.timeout_ms * 1000000u;
	const int n = r->job.n, K = a->nclasses;
	r->res = calloc((size_t)n, sizeof *r->res);
	r->probs = malloc((size_t)n * K * sizeof(float));
	if (!r->res || !r->probs) {
		srv_req_fail(r, 500, "out of memory");
		hand_back(s, r, true);
		return;
	}
	atomic_store(&r->pending, n);
	r->t_enqueue = cigt_now_ns();
	pthread_mutex_lock(&s->mu);
	struct srv_model *m = r->model;
	if (s->depth + n > s->cap || m->queued + n > m->bat.queue_limit) {
		bool mine = s->depth + n <= s->cap;
		int depth = mine ? m->queued : s->depth, cap = mine ? m->bat.queue_limit : s->cap;
		pthread_mutex_unlock(&s->mu);
		atomic_fetch_add_explicit(&srv_stats.stat_queue_full, 1, memory_order_relaxed);
		srv_req_fail(r, 503, "queue%s full (%d samples waiting, limit %d); retry later",
			     mine ? " of this model version" : "", depth, cap);
		hand_back(s, r, true);
		return;
	}
	m->queued += n;
	s->parsing--;
	for (int i = 0; i < n; i++)
		s->ring[(s->head + s->depth++) % s->cap] = (struct sched_item){r, i};
	atomic_store_explicit(&srv_stats.stat_queue_depth, s->depth, memory_order_relaxed);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void ws_drop(struct sched_ws *c)
{
	cigt_workspace_free(c->ws);
	for (int k = 0; c->model && k < c->model->nsecond; k++)
		cigt_workspace_free(c->ws2[k]);
	srv_model_unref(c->model);
	free(c->x);
	free(c->probs);
	free(c->res);
	*c = (struct sched_ws){0};
}

/* The worker's scratch for m: cached, else built in the least recently used slot. */
static struct sched_ws *worker_ws(struct sched_worker *w, struct srv_model *m)
{
	struct sched_ws *c = &w->cache[0];
	for (int i = 0; i < SCHED_WS_CACHE; i++) {
		if (w->cache[i].model == m) {
			w->cache[i].used = ++w->batches;
			return &w->cache[i];
		}
		if (w->cache[i].used < c->used)
			c = &w->cache[i];
	}
	ws_drop(c);
	const int B = m->bat.max_batch;
	c->model = srv_model_ref(m);
	c->ws = cigt_workspace_new(m->e, B);
	c->x = malloc((size_t)B * (size_t)cigt_arch_input_size(m->m->arch) * sizeof(float));
	c->probs = malloc((size_t)B * (size_t)m->m->arch->nclasses * sizeof(float));
	c->res = calloc((size_t)B, sizeof *c->res);
	bool ok = c->ws && c->x && c->probs && c->res;
	for (int k = 0; ok && k < m->nsecond; k++)
		ok = (c->ws2[k] = cigt_workspace_new(m->second_e[k], B)) != NULL;
	if (ok) {
		c->used = ++w->batches;
		return c;
	}
	/* Leave nothing half-built: the next batch tries again. */
	ws_drop(c);
	return NULL;
}

/* Drops the workspaces of retired versions, so their memory goes with their last request. */
static void worker_drop_retired(struct sched_worker *w)
{
	for (int i = 0; i < SCHED_WS_CACHE; i++)
		if (w->cache[i].model && atomic_load(&w->cache[i].model->retired))
			ws_drop(&w->cache[i]);
}

/* Counts the expert runs of one sample into groups[l][e]: on the single path its route; with
 * several paths every distinct prefix of the paths that ran (the trellis expands as a tree, so
 * an expert runs once per opened parent). */
static void count_runs(const struct cigt_arch *a, const struct cigt_result *r,
		       int groups[CIGT_MAX_LAYERS][CIGT_MAX_EXPERTS])
{
	if (r->npaths <= 1 || !r->paths) {
		for (int l = 0; l < a->nlayers; l++)
			groups[l][r->route[l]]++;
		return;
	}
	int below = 1; /* paths under one node of layer l */
	for (int l = a->nlayers - 1; l >= 0; l--) {
		uint64_t seen = 0;
		for (int p = 0; p < 64; p++)
			if (r->paths >> p & 1)
				seen |= 1ull << (p / below);
		for (int q = 0; q < 64; q++)
			if (seen >> q & 1)
				groups[l][q % a->layers[l].experts]++;
		below *= a->layers[l].experts;
	}
}

/* Runs samples [0, n) of c->x under the dial of their request, statistics included. */
static void run_group(struct sched_ws *c, struct srv_model *m, const struct srv_req *r0, int n)
{
	const struct cigt_arch *a = m->m->arch;
	const struct cigt_dial *d = &r0->dial;
	uint64_t t0 = cigt_now_ns();
	int rc;
	if (d->point < 0) {
		/* The single path: exactly the engine's plain routed call. */
		rc = cigt_engine_classify(m->e, c->ws, c->x, n, CIGT_EXEC_ROUTED, c->res, c->probs,
					  NULL);
	} else {
		int k = m->point_second[d->point];
		cigt_workspace_set_second(c->ws, k >= 0 ? c->ws2[k] : NULL);
		rc = cigt_engine_classify_dial(m->e, c->ws, c->x, n, d, c->res, c->probs, NULL);
	}
	CIGT_ASSERT(rc == 0);
	const uint64_t dt = cigt_now_ns() - t0;
	struct srv_vstats *vs = &m->st;
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	atomic_fetch_add_explicit(&vs->compute_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&vs->compute_ns, dt, memory_order_relaxed);
	/* A group is never larger than the batch, nor the batch than max_batch. */
	CIGT_ASSERT(n >= 1 && n < vs->nbatch);
	atomic_fetch_add_explicit(&vs->batch[n].count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&vs->batch[n].ns, dt, memory_order_relaxed);
	atomic_fetch_add_explicit(&vs->inference_count, (uint64_t)n, memory_order_relaxed);
	atomic_store_explicit(&vs->last_inference_ms,
			      (uint64_t)wall.tv_sec * 1000u + (uint64_t)wall.tv_nsec / 1000000u,
			      memory_order_relaxed);
	srv_hist_observe(&srv_stats.stat_batch_size, (uint64_t)n);
	/* Expert group sizes of this batch, from the paths the samples took. */
	int groups[CIGT_MAX_LAYERS][CIGT_MAX_EXPERTS];
	memset(groups, 0, sizeof groups);
	uint64_t macs = 0, escalated = 0;
	for (int i = 0; i < n; i++) {
		count_runs(a, &c->res[i], groups);
		macs += (uint64_t)c->res[i].macs;
		escalated += c->res[i].escalated;
		int np = c->res[i].npaths;
		atomic_fetch_add_explicit(&vs->npaths[np >= 1 && np <= SRV_NPATHS_MAX ? np : 0], 1,
					  memory_order_relaxed);
	}
	for (int l = 0; l < a->nlayers; l++)
		for (int e = 0; e < a->layers[l].experts; e++) {
			if (!groups[l][e])
				continue;
			srv_hist_observe(&srv_stats.stat_group_size[l], (uint64_t)groups[l][e]);
			atomic_fetch_add_explicit(&srv_stats.stat_route_samples[l][e],
						  (uint64_t)groups[l][e], memory_order_relaxed);
			atomic_fetch_add_explicit(&vs->route[l][e], (uint64_t)groups[l][e],
						  memory_order_relaxed);
		}
	atomic_fetch_add_explicit(&vs->point[d->point >= 0 ? d->point : CIGT_MAX_POINTS],
				  (uint64_t)n, memory_order_relaxed);
	atomic_fetch_add_explicit(&vs->escalated, escalated, memory_order_relaxed);
	atomic_fetch_add_explicit(&srv_stats.stat_samples, (uint64_t)n, memory_order_relaxed);
	atomic_fetch_add_explicit(&srv_stats.stat_macs, macs, memory_order_relaxed);
	atomic_fetch_add_explicit(&srv_stats.stat_dense_macs, (uint64_t)a->dense_macs * n,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&vs->macs, macs, memory_order_relaxed);
	atomic_fetch_add_explicit(&vs->dense_macs, (uint64_t)a->dense_macs * n,
				  memory_order_relaxed);
}

/* Runs one batch (lock not held): one engine call per dial among its samples (the engine runs
 * one dial per call), in the order the dials first appear. */
static void run_batch(struct sched_worker *w, int n)
{
	struct srv_sched *s = w->s;
	struct srv_model *m = w->batch[0].r->model;
	struct sched_ws *c = worker_ws(w, m);
	if (!c) {
		srv_log(SRV_LOG_ERROR, "out of memory for a worker workspace");
		for (int i = 0; i < n; i++) {
			struct srv_req *r = w->batch[i].r;
			if (!r->status)
				srv_req_fail(r, 500, "out of memory");
			sample_done(s, r);
		}
		return;
	}
	/* Group the batch by dial (its point; -1 = the single path), stably. */
	struct sched_item *items = w->batch;
	int key0 = items[0].r->dial.point, i = 1;
	while (i < n && items[i].r->dial.point == key0)
		i++;
	if (i < n) {
		int k = 0;
		bool done[CIGT_MAX_POINTS + 1] = {false};
		for (int j = 0; j < n; j++) {
			int key = items[j].r->dial.point;
			if (done[key + 1])
				continue;
			done[key + 1] = true;
			for (int q = j; q < n; q++)
				if (items[q].r->dial.point == key)
					w->sorted[k++] = items[q];
		}
		items = w->sorted;
	}
	const struct cigt_arch *a = m->m->arch;
	const int64_t isz = cigt_arch_input_size(a);
	const int K = a->nclasses;
	for (int g0 = 0; g0 < n;) {
		int g1 = g0 + 1;
		while (g1 < n && items[g1].r->dial.point == items[g0].r->dial.point)
			g1++;
		for (int j = g0; j < g1; j++)
			memcpy(c->x + (j - g0) * isz, items[j].r->job.x + items[j].idx * isz,
			       (size_t)isz * sizeof(float));
		run_group(c, m, items[g0].r, g1 - g0);
		for (int j = g0; j < g1; j++) {
			struct srv_req *r = items[j].r;
			int idx = items[j].idx;
			r->res[idx] = c->res[j - g0];
			memcpy(r->probs + (int64_t)idx * K, c->probs + (int64_t)(j - g0) * K,
			       (size_t)K * sizeof(float));
			sample_done(s, r);
		}
		g0 = g1;
	}
}

static void abs_deadline(struct timespec *ts, uint64_t mono_ns)
{
	ts->tv_sec = (time_t)(mono_ns / 1000000000u);
	ts->tv_nsec = (long)(mono_ns % 1000000000u);
}

/* Takes up to take samples of model m out of the ring (lock held), in queue order; samples of
 * other models keep their order and places ahead of later ones. Expired or abandoned samples of
 * m go to expired (at most *nexp < 64). Returns the samples taken into w->batch. */
static int gather(struct srv_sched *s, struct sched_worker *w, struct srv_model *m, int take,
		  uint64_t now, struct sched_item *expired, int *nexp)
{
	int n = 0, i = 0;
	for (; i < s->depth && n < take && *nexp < 64; i++) {
		struct sched_item it = s->ring[(s->head + i) % s->cap];
		if (it.r->model != m)
			continue;
		m->queued--;
		/* A request's first sample checks that its client is still there. */
		if (it.idx == 0 && (srv_peer_gone(it.r->fd) || atomic_load(&it.r->cancelled)))
			it.r->gone = true;
		if (it.r->gone || now >= it.r->deadline) {
			expired[(*nexp)++] = it;
			continue;
		}
		uint64_t q = now - it.r->t_enqueue;
		srv_hist_observe(&srv_stats.stat_queue_duration, q);
		atomic_fetch_add_explicit(&m->st.queue_count, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&m->st.queue_ns, q, memory_order_relaxed);
		w->batch[n++] = it;
	}
	/* Items [0, i) that stay move to the end of that prefix, in order; the head advances past
	 * the removed ones. */
	int wpos = i - 1;
	for (int k = i - 1; k >= 0; k--) {
		struct sched_item it = s->ring[(s->head + k) % s->cap];
		if (it.r->model != m)
			s->ring[(s->head + wpos--) % s->cap] = it;
	}
	int removed = wpos + 1;
	s->head = (s->head + removed) % s->cap;
	s->depth -= removed;
	return n;
}

/* Among the first SCHED_PREP_LOOK requests waiting to be parsed, one for a model version
 * other than m that has no sample queued (lock held), or NULL. While a batch of m is ready,
 * parsing waits (see worker_main), but not for such a request: otherwise a busy model's
 * backlog would hold another model's requests unparsed until it drained. */
#define SCHED_PREP_LOOK 64

static struct srv_req *prep_other(struct srv_sched *s, const struct srv_model *m)
{
	int k = 0;
	for (struct srv_req *r = s->prep_head; r && k < SCHED_PREP_LOOK; r = r->next, k++)
		if (r->model != m && r->model->queued == 0)
			return r;
	return NULL;
}

/* Takes r out of the list of requests waiting to be parsed (lock held). */
static void prep_remove(struct srv_sched *s, struct srv_req *r)
{
	struct srv_req **pp = &s->prep_head, *prev = NULL;
	while (*pp != r) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	*pp = r->next;
	if (s->prep_tail == r)
		s->prep_tail = prev;
}

/* True when no sample can join the queue before the delay runs out but from a request not yet
 * begun: every request in flight (received in part or whole, HTTP or gRPC) is held here, and
 * none is waiting to be parsed or being parsed (lock held). One connection sending a request
 * after each answer then never waits out the delay for samples that cannot come. */
static bool nothing_coming(const struct srv_sched *s)
{
	return s->eager && !s->prep_head && s->parsing == 0 &&
	       atomic_load_explicit(&srv_stats.stat_inflight, memory_order_relaxed) <= s->held;
}

/* Is m's batch ready: a full batch queued, its oldest sample (at t_enqueue) past its delay,
 * nothing more coming, or the scheduler stopping? *fill_by: when it will be (lock held). */
static bool model_ready(const struct srv_sched *s, const struct srv_model *m, uint64_t t_enqueue,
			uint64_t now, uint64_t *fill_by)
{
	*fill_by = t_enqueue + (uint64_t)m->bat.max_delay_us * 1000u;
	return m->queued >= m->bat.max_batch || now >= *fill_by || s->stop || nothing_coming(s);
}

/* The model version whose batch goes next (lock held, queue not empty): the oldest sample's,
 * unless that version ran the last batch and another version has a batch ready, which then
 * goes first. Versions with work thus take turns, and a busy model's backlog delays another's
 * sample by about one batch, not by the whole backlog. */
static struct srv_model *pick(struct srv_sched *s, uint64_t now, bool *ready, uint64_t *fill_by)
{
	const struct sched_item *head = &s->ring[s->head];
	struct srv_model *m = head->r->model;
	*ready = model_ready(s, m, head->r->t_enqueue, now, fill_by);
	if (m != s->last || m->queued == s->depth)
		return m;
	for (int i = 1; i < s->depth; i++) {
		const struct sched_item *it = &s->ring[(s->head + i) % s->cap];
		uint64_t other_fill;
		if (it->r->model == m)
			continue;
		/* The first sample of another version is that version's oldest. */
		if (model_ready(s, it->r->model, it->r->t_enqueue, now, &other_fill)) {
			*ready = true;
			*fill_by = other_fill;
			return it->r->model;
		}
		break;
	}
	return m;
}

static void *worker_main(void *arg)
{
	struct sched_worker *w = arg;
	struct srv_sched *s = w->s;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (w->retire_seen != s->retire_gen) {
			w->retire_seen = s->retire_gen;
			pthread_mutex_unlock(&s->mu);
			worker_drop_retired(w);
			pthread_mutex_lock(&s->mu);
		}
		/* A batch that is ready runs before more requests are parsed: parsing first would
		 * let a flood of requests (each refused 503 once the queue is full) keep every
		 * worker parsing while the queued samples never run. */
		uint64_t now = cigt_now_ns(), fill_by = 0;
		bool ready = false;
		struct srv_model *m = NULL;
		if (s->depth > 0)
			m = pick(s, now, &ready, &fill_by);
		struct srv_req *r = !ready ? s->prep_head : prep_other(s, m);
		if (r) {
			prep_remove(s, r);
			s->parsing++;
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
		if (!ready) {
			struct timespec ts;
			abs_deadline(&ts, fill_by);
			pthread_cond_timedwait(&s->cv, &s->mu, &ts);
			continue;
		}
		/* Take up to max_batch samples of the head's model version, but no more than an
		 * equal share of its queued samples among the workers not running a batch (this
		 * one included; at least SCHED_MIN_SHARE), so that a backlog is split over the idle
		 * cores rather than run on one while the others wait; drop expired samples. */
		int take = m->bat.max_batch;
		const int idle = s->nworkers - s->busy;
		if (idle > 1) {
			int share = (m->queued + idle - 1) / idle;
			if (share < SCHED_MIN_SHARE)
				share = SCHED_MIN_SHARE;
			if (share < take)
				take = share;
		}
		struct sched_item expired[64]; /* expired or abandoned */
		int nexp = 0;
		int n = gather(s, w, m, take, now, expired, &nexp);
		s->last = m; /* compared by address only: never dereferenced after this batch */
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
	s->eager = cfg->eager_dispatch;
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
		w->batch = calloc(SCHED_BATCH_MAX, sizeof *w->batch);
		w->sorted = calloc(SCHED_BATCH_MAX, sizeof *w->sorted);
		if (!w->batch || !w->sorted)
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
	r->t_submit = cigt_now_ns();
	pthread_mutex_lock(&s->mu);
	if (s->prep_tail)
		s->prep_tail->next = r;
	else
		s->prep_head = r;
	s->prep_tail = r;
	s->held++;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

void srv_sched_wake(struct srv_sched *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->retire_gen++;
	pthread_cond_broadcast(&s->cv);
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
		for (int k = 0; k < SCHED_WS_CACHE; k++)
			ws_drop(&w->cache[k]);
		free(w->batch);
		free(w->sorted);
	}
	free(s->workers);
	free(s->ring);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}
