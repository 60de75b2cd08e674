/* The loop thread: libuv owns the listening socket's daemon (libmicrohttpd in external epoll
 * mode: its epoll fd is watched by a uv_poll_t, its timeouts by a uv_timer_t), the signals, the
 * timers and the wake-up from the workers (uv_async_t). What a request is answered is decided
 * in handler.c (guard clauses that end in one srv_respond() call); inference requests are
 * suspended while the scheduler has them and resumed when a worker hands them back, repository
 * loads while the registry's rescan runs. Work that must not run inside a libmicrohttpd callback (stopping
 * the daemon) is deferred to a zero-delay timer. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>

#include "cigt/error.h"
#include "cigt/file.h"
#include "cigt/pool.h"
#include "../common/util.h"
#include "grpc.h"
#include "srv.h"

#include "loop.h"

/* ------------------------------------------------------------------------------ helpers */

static char *read_text(const char *path, size_t max, char *err, size_t errlen)
{
	void *buf;
	size_t len;
	if (cigt_file_read(path, max, &buf, &len, err, errlen))
		return NULL;
	char *s = realloc(buf, len + 1);
	if (!s) {
		free(buf);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s[len] = 0;
	return s;
}

static struct srv_conn *conn_of(struct MHD_Connection *mc)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

/* A request's record, made as soon as its request line is parsed (libmicrohttpd's URI log
 * callback), so that the requests libmicrohttpd refuses itself are counted too. It is in flight
 * (and holds up a drain) only once its head is complete and the handler has it. */
static struct srv_req *req_new(struct srv *S, struct MHD_Connection *mc, const char *uri)
{
	struct srv_req *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->t_arrive = cigt_now_ns();
	r->conn = conn_of(mc);
	r->mc = mc;
	r->header_len = r->query_top_k = r->query_timeout_ms = r->query_max_macs = -1;
	r->fd = -1;
	r->resp_json_len = -1;
	r->ep = SRV_EP_OTHER;
	snprintf(r->method, sizeof r->method, "-");
	snprintf(r->path, sizeof r->path, "%s", uri);
	r->bad_target = !srv_framing_target_ok(uri);
	return r;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *mc)
{
	return req_new(cls, mc, uri);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
				  const char *method, const char *version,
				  const char *upload, size_t *upload_size, void **con_cls)
{
	struct srv *S = cls;
	struct srv_req *r = *con_cls;
	if (!r && !(r = *con_cls = req_new(S, mc, url)))
		return MHD_NO;
	if (!r->started) {
		r->started = true;
		/* Counted in flight from here, so the drain answers it even if its body is
		 * still arriving when the signal comes. */
		r->after_drain = S->draining;
		atomic_fetch_add_explicit(&srv_stats.stat_inflight, 1, memory_order_relaxed);
		snprintf(r->method, sizeof r->method, "%s", method);
		snprintf(r->path, sizeof r->path, "%s", url);
		struct srv_route rt;
		srv_route_path(url, &rt);
		r->ep = rt.ep; /* for the metrics, even if the request never completes */
		/* Where the request ends is decided here, once, before any body byte is read. */
		char msg[256];
		int st = r->bad_target ? cigt_fail(msg, sizeof msg, 400, "the request target has a "
									 "space, NUL or control byte")
				       : srv_framing_check(mc, method, version, msg, sizeof msg);
		if (st) {
			r->close = true;
			if (r->conn)
				r->conn->busy = true;
			srv_log(SRV_LOG_DEBUG, "refusing a request from %s: %s",
				r->conn ? r->conn->ip : "-", msg);
			return srv_respond_error(S, mc, r, st, "%s", msg);
		}
		/* Refuse a declared oversized body before reading it. */
		const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		long long n = cl ? srv_parse_ll(cl, 0, LLONG_MAX) : -1;
		if (n > S->cfg->max_body_bytes) {
			r->body_too_large = true;
			if (r->conn)
				r->conn->busy = true;
			return srv_respond_error(S, mc, r, 413, "body of %lld bytes is larger than "
							    "%lld bytes", n,
					     S->cfg->max_body_bytes);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		if (!r->body_too_large) {
			if (r->body.len + *upload_size > (size_t)S->cfg->max_body_bytes) {
				r->body_too_large = true;
				srv_buf_free(&r->body);
			} else {
				srv_buf_put(&r->body, upload, *upload_size);
				if (r->body.oom)
					return MHD_NO;
			}
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->state == SRV_REQ_DONE) {
		struct srv_buf b = r->resp;
		r->resp = (struct srv_buf){0};
		return srv_respond_buf(S, mc, r, r->status, r->resp_ctype, &b);
	}
	if (r->status) /* answered early (framing, or 413 on Content-Length) */
		return MHD_YES;
	if (r->conn)
		r->conn->busy = true;
	return srv_dispatch(S, mc, r, url, method);
}

static void req_free(struct srv_req *r)
{
	srv_job_destroy(&r->job);
	free(r->res);
	free(r->probs);
	free(r->ctype);
	srv_buf_free(&r->body);
	srv_buf_free(&r->resp);
	srv_model_unref(r->model);
	free(r);
}

static void check_drained(struct srv *S);

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct srv *S = cls;
	struct srv_req *r = *con_cls;
	*con_cls = NULL;
	if (!r)
		return;
	/* A request libmicrohttpd refused before the handler saw it: its own status (400, 413,
	 * 431, ...) when it answered. */
	if (!r->started) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(mc, MHD_CONNECTION_INFO_HTTP_STATUS);
		r->status = ci ? (int)ci->http_status : 0;
		if (!r->status) { /* a head that never arrived whole: not a request */
			req_free(r);
			return;
		}
		toe = MHD_REQUEST_TERMINATED_COMPLETED_OK;
	}
	/* A request without an answer, or whose answer could not be delivered: 499. */
	int code = r->status && !r->gone && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? r->status
										    : 499;
	uint64_t dt = cigt_now_ns() - r->t_arrive;
	atomic_fetch_add_explicit(&srv_stats.stat_requests[r->ep][srv_status_index(code)], 1,
				  memory_order_relaxed);
	srv_hist_observe(&srv_stats.stat_request_duration, dt);
	if (r->model)
		srv_api_observe(r->model, code, dt);
	if (S->cfg->access_log && r->model)
		srv_log(SRV_LOG_INFO, "access %s \"%s %s\" %d %zu %.3fms model=%s version=%lld",
			r->conn ? r->conn->ip : "-", r->method, r->path, code, r->resp_bytes,
			(double)dt * 1e-6, r->model->name, r->model->version);
	else if (S->cfg->access_log)
		srv_log(SRV_LOG_INFO, "access %s \"%s %s\" %d %zu %.3fms",
			r->conn ? r->conn->ip : "-", r->method, r->path, code, r->resp_bytes,
			(double)dt * 1e-6);
	if (r->conn) {
		r->conn->busy = false;
		r->conn->deadline = cigt_now_ns() + (uint64_t)S->cfg->read_timeout_ms * 1000000u;
	}
	CIGT_ASSERT(r->state != SRV_REQ_QUEUED);
	bool started = r->started;
	req_free(r);
	if (started)
		atomic_fetch_sub_explicit(&srv_stats.stat_inflight, 1, memory_order_relaxed);
	if (S->draining)
		check_drained(S);
}

static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	struct srv *S = cls;
	if (atomic_load_explicit(&srv_stats.stat_connections, memory_order_relaxed) >=
	    S->cfg->max_connections) {
		atomic_fetch_add_explicit(&srv_stats.stat_connections_rejected, 1,
					  memory_order_relaxed);
		srv_log(SRV_LOG_DEBUG, "connection refused: %d connections open",
			S->cfg->max_connections);
		return MHD_NO;
	}
	return MHD_YES;
}

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct srv *S = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		struct srv_conn *c = calloc(1, sizeof *c);
		*socket_context = c;
		atomic_fetch_add_explicit(&srv_stats.stat_connections, 1, memory_order_relaxed);
		if (!c)
			return;
		c->mc = mc;
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
		c->fd = ci ? ci->connect_fd : -1;
		ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		if (ci && ci->client_addr) {
			const struct sockaddr *sa = ci->client_addr;
			const void *src = sa->sa_family == AF_INET6
						  ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
						  : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
			inet_ntop(sa->sa_family, src, c->ip, sizeof c->ip);
		}
		c->deadline = cigt_now_ns() + (uint64_t)S->cfg->read_timeout_ms * 1000000u;
		c->next = S->conns.next;
		c->prev = &S->conns;
		S->conns.next->prev = c;
		S->conns.next = c;
		return;
	}
	struct srv_conn *c = *socket_context;
	atomic_fetch_sub_explicit(&srv_stats.stat_connections, 1, memory_order_relaxed);
	if (!c)
		return;
	c->prev->next = c->next;
	c->next->prev = c->prev;
	free(c);
	*socket_context = NULL;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	if (srv_log_level > SRV_LOG_DEBUG)
		return;
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	srv_log(SRV_LOG_DEBUG, "http: %s", msg);
}

/* -------------------------------------------------------------------- loop callbacks */

static void mhd_drive(struct srv *S);

static void on_mhd_timer(uv_timer_t *t)
{
	mhd_drive(t->data);
}

static void on_mhd_poll(uv_poll_t *p, int status, int events)
{
	mhd_drive(p->data);
}

static void mhd_drive(struct srv *S)
{
	if (!S->d)
		return;
	MHD_run(S->d);
	MHD_UNSIGNED_LONG_LONG to;
	if (S->mhd_rerun) { /* MHD_get_timeout does not count resumed connections */
		S->mhd_rerun = false;
		uv_timer_start(&S->mhd_timer, on_mhd_timer, 0, 0);
	} else if (MHD_get_timeout(S->d, &to) == MHD_YES)
		uv_timer_start(&S->mhd_timer, on_mhd_timer, to, 0);
	else
		uv_timer_stop(&S->mhd_timer);
}

/* Worker thread: hand a finished request to the loop. */
static void on_worker_done(void *ctx, struct srv_req *r)
{
	struct srv *S = ctx;
	pthread_mutex_lock(&S->done_mu);
	r->next = S->done_head;
	S->done_head = r;
	pthread_mutex_unlock(&S->done_mu);
	uv_async_send(&S->done_async);
}

/* Loop thread: sends coalesce, so drain the whole list. */
static void on_done_async(uv_async_t *h)
{
	struct srv *S = h->data;
	pthread_mutex_lock(&S->done_mu);
	struct srv_req *r = S->done_head;
	S->done_head = NULL;
	pthread_mutex_unlock(&S->done_mu);
	for (struct srv_req *next; r; r = next) {
		next = r->next;
		if (r->grpc) { /* a gRPC call's */
			srv_grpc_done(S->grpc, r);
			continue;
		}
		r->state = SRV_REQ_DONE;
		S->nsuspended--;
		if (srv_peer_gone(r->fd))
			r->gone = true;
		MHD_resume_connection(r->mc);
	}
	mhd_drive(S);
}

/* Closes connections that did not deliver a complete request in time (slowloris). */
static void on_sweep(uv_timer_t *t)
{
	struct srv *S = t->data;
	uint64_t now = cigt_now_ns();
	for (struct srv_conn *c = S->conns.next; c != &S->conns; c = c->next) {
		if (c->busy || now < c->deadline || c->fd < 0)
			continue;
		srv_log(SRV_LOG_DEBUG, "closing connection from %s: no complete request within "
				       "%d ms", c->ip, S->cfg->read_timeout_ms);
		shutdown(c->fd, SHUT_RDWR);
		c->deadline = UINT64_MAX;
		atomic_fetch_add_explicit(&srv_stats.stat_connections_slow, 1,
					  memory_order_relaxed);
	}
	mhd_drive(S);
}

static void on_watchdog(uv_timer_t *t)
{
	sd_notify(0, "WATCHDOG=1");
}

static void on_close_noop(uv_handle_t *h)
{
}

/* Stops everything; runs outside libmicrohttpd callbacks. */
static void shutdown_now(struct srv *S)
{
	if (S->stopping)
		return;
	S->stopping = true;
	/* Workers finish what is queued and hand it back; resume those connections so the
	 * daemon can close them (nothing is left queued after a clean drain). */
	srv_sched_free(S->sched);
	S->sched = NULL;
	on_done_async(&S->done_async);
	srv_registry_stop(S->reg); /* answers waiting loads 503 */
	MHD_stop_daemon(S->d);
	S->d = NULL;
	srv_grpc_close(S->grpc); /* flushes and closes its connections; frees itself */
	S->grpc = NULL;
	uv_handle_t *hs[] = {
		(uv_handle_t *)&S->mhd_poll,    (uv_handle_t *)&S->mhd_timer,
		(uv_handle_t *)&S->sweep_timer, (uv_handle_t *)&S->watchdog_timer,
		(uv_handle_t *)&S->drain_timer, (uv_handle_t *)&S->stop_timer,
		(uv_handle_t *)&S->done_async,
	};
	for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
		if (!uv_is_closing(hs[i]))
			uv_close(hs[i], on_close_noop);
	for (int i = 0; i < srv_nsignals; i++)
		if (!uv_is_closing((uv_handle_t *)&S->sigs[i]))
			uv_close((uv_handle_t *)&S->sigs[i], on_close_noop);
}

static void on_stop_timer(uv_timer_t *t)
{
	shutdown_now(t->data);
}

static void check_drained(struct srv *S)
{
	if (atomic_load(&srv_stats.stat_inflight) == 0 && !S->stopping) {
		srv_log(SRV_LOG_INFO, "drained: every accepted request answered; exiting");
		uv_timer_start(&S->stop_timer, on_stop_timer, 0, 0);
	}
}

static void on_drain_timeout(uv_timer_t *t)
{
	struct srv *S = t->data;
	srv_log(SRV_LOG_WARN, "drain timeout after %d ms with %lld requests unanswered; exiting",
		S->cfg->drain_timeout_ms, (long long)atomic_load(&srv_stats.stat_inflight));
	S->exit_code = 1;
	shutdown_now(S);
}

static void begin_drain(struct srv *S, const char *why)
{
	if (S->draining) {
		srv_log(SRV_LOG_WARN, "%s again: exiting without waiting", why);
		S->exit_code = 1;
		shutdown_now(S);
		return;
	}
	S->draining = true;
	S->ready = false;
	sd_notify(0, "STOPPING=1");
	srv_log(SRV_LOG_INFO, "%s: draining %lld requests in flight (up to %d ms)", why,
		(long long)atomic_load(&srv_stats.stat_inflight), S->cfg->drain_timeout_ms);
	int fd = MHD_quiesce_daemon(S->d);
	if (fd >= 0)
		close(fd); /* returned to us: stop accepting */
	uv_timer_start(&S->drain_timer, on_drain_timeout, (uint64_t)S->cfg->drain_timeout_ms, 0);
	srv_grpc_drain(S->grpc); /* GOAWAY; calls in flight are answered */
	check_drained(S);
}

/* The registry applied a rescan: workers drop the workspaces of unloaded versions, and a
 * SIGHUP reload tells systemd it is done. */
static void on_synced(void *ctx)
{
	struct srv *S = ctx;
	srv_sched_wake(S->sched);
	if (S->reloading) {
		S->reloading = false;
		if (!S->draining)
			sd_notify(0, "READY=1");
	}
}

/* A repository load request finished: answer it through the usual done path. */
static void on_load_done(void *ctx, struct srv_req *r, int status, const char *msg)
{
	struct srv *S = ctx;
	if (r->grpc) { /* a gRPC call's */
		srv_grpc_load_done(S->grpc, r, status, msg);
		return;
	}
	r->status = status;
	r->resp_ctype = "application/json";
	r->resp_json_len = -1;
	r->resp.len = 0;
	if (status != 200)
		srv_encode_error(&r->resp, msg);
	r->state = SRV_REQ_DONE;
	S->nsuspended--;
	MHD_resume_connection(r->mc);
	if (!S->stopping)
		mhd_drive(S);
}

static void reload_start(struct srv *S)
{
	S->reloading = true;
	char msg[64];
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
	sd_notify(0, msg);
	srv_registry_rescan(S->reg, "SIGHUP");
}

/* The loaded versions as "name/version generation G, ..." for the SIGUSR1 status line. */
struct status_line {
	char text[512];
	size_t n;
};

static void status_model(void *ctx, const struct srv_model *m)
{
	struct status_line *sl = ctx;
	if (sl->n >= sizeof sl->text - 1)
		return;
	int k = snprintf(sl->text + sl->n, sizeof sl->text - sl->n, "%s%s/%lld generation %llu",
			 sl->n ? ", " : "", m->name, m->version, (unsigned long long)m->generation);
	sl->n = k < 0 ? sl->n : sl->n + (size_t)k >= sizeof sl->text ? sizeof sl->text - 1
								     : sl->n + (size_t)k;
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct srv *S = h->data;
	const struct srv_signal *sg = &srv_signals[h - S->sigs];
	switch (sg->action) {
	case SRV_SIG_RELOAD:
		if (!S->draining)
			reload_start(S);
		else
			srv_log(SRV_LOG_INFO, "%s: draining, not reloading", sg->name);
		return;
	case SRV_SIG_DRAIN:
		begin_drain(S, sg->name);
		return;
	case SRV_SIG_STATUS: {
		struct status_line sl = {.n = 0};
		srv_registry_foreach(S->reg, status_model, &sl);
		srv_log(SRV_LOG_INFO, "%s: %s, %lld requests in flight, %lld connections open, "
				      "serving %s", sg->name,
			S->draining ? "draining" : S->ready ? "ready" : "not ready",
			(long long)atomic_load(&srv_stats.stat_inflight),
			(long long)atomic_load(&srv_stats.stat_connections),
			sl.n ? sl.text : "no model");
		return;
	}
	case SRV_SIG_IGNORE:
		srv_log(SRV_LOG_WARN, "%s (%d): ignored; cigtd keeps serving (see cigtd --help)",
			sg->name, signum);
		return;
	}
}

/* --------------------------------------------------------------------------- startup */

static int load_secrets(struct srv *S, const struct srv_config *cfg, char *err, size_t errlen)
{
	if (cfg->auth_token_file) {
		if (!(S->token = read_text(cfg->auth_token_file, 4096, err, errlen)))
			return -1;
		S->token_len = strcspn(S->token, "\r\n");
		bool blank_first = S->token_len == 0 && S->token[0];
		S->token[S->token_len] = 0;
		if (blank_first)
			return cigt_fail(err, errlen, -1, "auth token file %s starts with a line break: "
							  "the token must be on its first line",
					 cfg->auth_token_file);
		if (S->token_len == 0)
			return cigt_fail(err, errlen, -1, "auth token file %s is empty",
					 cfg->auth_token_file);
	}
	if (cfg->tls_cert) {
		if (!MHD_is_feature_supported(MHD_FEATURE_TLS))
			return cigt_fail(err, errlen, -1, "libmicrohttpd was built without TLS");
		if (!(S->tls_cert = read_text(cfg->tls_cert, 1 << 20, err, errlen)) ||
		    !(S->tls_key = read_text(cfg->tls_key, 1 << 20, err, errlen)))
			return -1;
	}
	return 0;
}

static void print_model(void *ctx, const struct srv_model *sm)
{
	const struct cigt_arch *a = sm->m->arch;
	printf("model %s version %lld: input %dx%dx%d, %d classes, %d paths, max batch %d\n",
	       sm->name, sm->version, a->input.c, a->input.h, a->input.w, a->nclasses, a->npaths,
	       sm->bat.max_batch);
}

int srv_check_config(const struct srv_config *cfg)
{
	struct srv S = {0};
	char err[512];
	struct srv_registry *reg = NULL;
	int rc = 1;
	if (load_secrets(&S, cfg, err, sizeof err)) {
		fprintf(stderr, "cigtd: %s\n", err);
		goto out;
	}
	if (srv_registry_new(cfg, &reg, err, sizeof err) ||
	    srv_registry_load_initial(reg, err, sizeof err)) {
		fprintf(stderr, "cigtd: %s\n", err);
		goto out;
	}
	srv_registry_foreach(reg, print_model, NULL);
	printf("listen %s, %d workers, max batch %d, max delay %d us, queue %d, timeout %d ms\n",
	       cfg->listen, cfg->workers, cfg->max_batch, cfg->max_delay_us, cfg->queue_limit,
	       cfg->timeout_ms);
	json_t *eff = srv_config_json(cfg);
	char *text = eff ? json_dumps(eff, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	printf("effective configuration: %s\n", text ? text : "(out of memory)");
	free(text);
	json_decref(eff);
	if (cfg->grpc_listen)
		printf("grpc-listen %s, max message %lld bytes, %d streams per connection\n",
		       cfg->grpc_listen, cfg->grpc_max_message_bytes, cfg->grpc_max_streams);
	if (!srv_registry_ready(reg)) {
		fprintf(stderr, "cigtd: some models failed to load (see the log above)\n");
		goto out;
	}
	printf("configuration OK\n");
	rc = 0;
out:
	srv_registry_free(reg);
	free(S.token);
	free(S.tls_cert);
	free(S.tls_key);
	return rc;
}

/* The HTTP daemon on the listening socket, driven from the loop through its epoll fd. */
static int start_mhd(struct srv *S, char *err, size_t errlen)
{
	const struct srv_config *cfg = S->cfg;
	struct MHD_OptionItem tls[] = {
		{MHD_OPTION_HTTPS_MEM_CERT, 0, S->tls_cert},
		{MHD_OPTION_HTTPS_MEM_KEY, 0, S->tls_key},
		{MHD_OPTION_END, 0, NULL},
	};
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
			 (S->tls_cert ? MHD_USE_TLS : 0);
	S->d = MHD_start_daemon(
		flags, 0, on_accept, S, on_request, S, MHD_OPTION_LISTEN_SOCKET, S->listen_fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections + 64,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_connections_per_ip,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout_s,
		MHD_OPTION_URI_LOG_CALLBACK, on_uri, S,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, S, MHD_OPTION_NOTIFY_CONNECTION,
		on_connection, S, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, S, MHD_OPTION_ARRAY,
		S->tls_cert ? tls : tls + 2, MHD_OPTION_END);
	if (!S->d) {
		snprintf(err, errlen, "cannot start the HTTP daemon");
		return -1;
	}
	S->listen_fd = -1; /* the daemon owns it now */
	return 0;
}

/* The loop's handles: the daemon's poll, the timers, the signals (when asked) and the
 * workers' async; started, with the registry's loads and the systemd watchdog. */
static void start_handles(struct srv *S, bool signals)
{
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(S->d, MHD_DAEMON_INFO_EPOLL_FD);
	uv_timer_init(&S->loop, &S->mhd_timer);
	uv_timer_init(&S->loop, &S->sweep_timer);
	uv_timer_init(&S->loop, &S->watchdog_timer);
	uv_timer_init(&S->loop, &S->drain_timer);
	uv_timer_init(&S->loop, &S->stop_timer);
	CIGT_ASSERT(srv_nsignals <= (int)(sizeof S->sigs / sizeof S->sigs[0]));
	for (int i = 0; i < srv_nsignals; i++) {
		uv_signal_init(&S->loop, &S->sigs[i]);
		S->sigs[i].data = S;
	}
	uv_async_init(&S->loop, &S->done_async, on_done_async);
	uv_poll_init(&S->loop, &S->mhd_poll, di->epoll_fd);
	S->mhd_poll.data = S->mhd_timer.data = S->sweep_timer.data = S->watchdog_timer.data =
		S->drain_timer.data = S->stop_timer.data = S->done_async.data = S;
	uv_poll_start(&S->mhd_poll, UV_READABLE, on_mhd_poll);
	uv_timer_start(&S->sweep_timer, on_sweep, 250, 250);
	if (signals)
		for (int i = 0; i < srv_nsignals; i++)
			uv_signal_start(&S->sigs[i], on_signal, srv_signals[i].signum);
	uint64_t wd_usec = 0;
	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0)
		uv_timer_start(&S->watchdog_timer, on_watchdog, wd_usec / 2000 ? wd_usec / 2000 : 1,
			       wd_usec / 2000 ? wd_usec / 2000 : 1);
	srv_registry_start(S->reg, &S->loop, on_load_done, on_synced, S);
}

/* The "serving ..." line (tests and scripts read the address from it). */
static void log_serving(struct srv *S)
{
	const struct srv_config *cfg = S->cfg;
	if (S->grpc) {
		int ghost = (int)(strrchr(cfg->grpc_listen, ':') - cfg->grpc_listen);
		srv_log(SRV_LOG_INFO, "gRPC (%s) on %.*s:%d", SRV_GRPC_SERVICE, ghost,
			cfg->grpc_listen, S->grpc_port);
	}
	int hostlen = (int)(strrchr(cfg->listen, ':') - cfg->listen);
	char what[300], err[512];
	int st;
	struct srv_model *dm = srv_registry_get(S->reg, NULL, 0, &st, err, sizeof err);
	if (cfg->model_repository)
		snprintf(what, sizeof what, "repository %s (control mode %s)", cfg->model_repository,
			 (const char *[]){"none", "poll", "explicit"}[cfg->control_mode]);
	else
		snprintf(what, sizeof what, "model %s (%s)", dm ? dm->name : "?", cfg->model);
	srv_model_unref(dm);
	srv_log(SRV_LOG_INFO, "serving %s on %s://%.*s:%d/ with %d workers, max batch %d, max "
			      "delay %d us",
		what, S->tls_cert ? "https" : "http", hostlen, cfg->listen, S->port, cfg->workers,
		cfg->max_batch, cfg->max_delay_us);
}

void srv_close(struct srv *S)
{
	if (!S)
		return;
	/* After a normal run shutdown_now has stopped both; these are startup failures. */
	srv_sched_free(S->sched);
	if (S->d)
		MHD_stop_daemon(S->d);
	if (S->listen_fd >= 0)
		close(S->listen_fd);
	srv_grpc_close(S->grpc); /* a startup failure after it opened (a normal run: NULL) */
	S->grpc = NULL;
	if (S->loop_ok) {
		uv_run(&S->loop, UV_RUN_DEFAULT); /* close callbacks, a pending reload */
		int lc = uv_loop_close(&S->loop);
		if (lc)
			srv_log(SRV_LOG_WARN, "event loop did not close cleanly: %s",
				uv_strerror(lc));
	}
	srv_registry_free(S->reg);
	free(S->token);
	free(S->tls_cert);
	free(S->tls_key);
	pthread_mutex_destroy(&S->done_mu);
	free(S);
}

int srv_open(const struct srv_config *cfg, unsigned flags, struct srv **out)
{
	struct srv *S = calloc(1, sizeof *S);
	char err[512];
	*out = S;
	if (!S) {
		srv_log(SRV_LOG_ERROR, "out of memory");
		return 1;
	}
	S->cfg = cfg;
	S->listen_fd = -1;
	S->conns.next = S->conns.prev = &S->conns;
	pthread_mutex_init(&S->done_mu, NULL);
	srv_stats_init();
	signal(SIGPIPE, SIG_IGN);
#ifdef __GLIBC__
	/* A fixed mmap threshold: blocks of 512 KiB and more (model files, weights, workspaces)
	 * go back to the system when freed. glibc's default raises the threshold after the first
	 * such free, so every reload's model then landed in the heaps of whichever threads
	 * allocated it, and resident memory doubled over a few dozen reloads (tests/soak). */
	mallopt(M_MMAP_THRESHOLD, 512 * 1024);
#endif
	if (load_secrets(S, cfg, err, sizeof err))
		goto fail;
	if (srv_registry_new(cfg, &S->reg, err, sizeof err))
		goto fail;
	if (srv_registry_load_initial(S->reg, err, sizeof err))
		goto fail;
	cigt_blas_threads(1);
	if (srv_sched_new(cfg, on_worker_done, S, &S->sched)) {
		snprintf(err, sizeof err, "cannot start %d workers", cfg->workers);
		goto fail;
	}
	if ((S->listen_fd = srv_open_listener(cfg->listen, &S->port, err, sizeof err)) < 0)
		goto fail;
	if (uv_loop_init(&S->loop)) {
		snprintf(err, sizeof err, "cannot create the event loop");
		goto fail;
	}
	S->loop_ok = true;
	/* Before any handle of the loop runs: a failure here leaves nothing started. */
	if (cfg->grpc_listen &&
	    srv_grpc_start(S, &(struct srv_grpc_hooks){srv_grpc_service_call, check_drained},
			   &S->grpc, &S->grpc_port, err, sizeof err))
		goto fail;
	if (start_mhd(S, err, sizeof err))
		goto fail;
	start_handles(S, flags & SRV_OPEN_SIGNALS);
	S->ready = true;
	mhd_drive(S);
	return 0;
fail:
	srv_log(SRV_LOG_ERROR, "%s", err);
	return 1;
}

int srv_run(const struct srv_config *cfg)
{
	struct srv *S;
	int rc = srv_open(cfg, SRV_OPEN_SIGNALS, &S);
	if (rc == 0) {
		log_serving(S);
		sd_notify(0, "READY=1");
		uv_run(&S->loop, UV_RUN_DEFAULT);
		rc = S->exit_code;
	}
	srv_close(S);
	if (rc == 0)
		srv_log(SRV_LOG_INFO, "stopped");
	return rc;
}
