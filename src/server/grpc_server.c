/* gRPC's transport: HTTP/2 (nghttp2, one server session per connection) driven from the libuv
 * loop, with gRPC's framing on top (5-byte length-prefixed messages, the status in trailers,
 * grpc-timeout deadlines, cancellation by RST_STREAM). The loop thread owns every connection,
 * session and call; inference work crosses to the workers inside an srv_req exactly as HTTP's
 * does and comes back through on_done_async (srv_grpc_done).
 *
 * Lifetimes. A connection owns its calls (one per stream). A call whose stream or connection
 * goes away while requests of it are still at the workers (or a load at the registry) becomes
 * an orphan: its requests are marked cancelled (a worker then drops them uncomputed) and the
 * call is freed when the last one comes back. Every call counts as in flight (the drain waits
 * for it) from its first HEADERS frame until it is freed.
 *
 * Backpressure. Nothing is read from a socket faster than the session processes it; a
 * connection writes one buffer at a time and asks nghttp2 for more only when it is written, so
 * a client that does not read stalls in HTTP/2 flow control, not in our memory. Request bytes
 * are given back to flow control (WINDOW_UPDATE) as soon as they are read, except on a stream
 * of ModelStreamInfer whose answers pile up (64 waiting, or 1 MiB unsent): that stream's window
 * then stays shut until its client reads. Limits (config.c): message size, concurrent streams,
 * header list size, idle time; nghttp2's own: RST_STREAM rate (the rapid-reset attack,
 * CVE-2023-44487), CONTINUATION frames, outbound ACK floods, SETTINGS entries. */
#include <arpa/inet.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "cigt/error.h"
#include "../common/util.h"
#include "grpc.h"
#include "loop.h"

/* A ModelStreamInfer stream stops taking input while this many answers wait, or this many
 * bytes of answers are unsent. */
#define STREAM_PENDING_MAX 64
#define STREAM_UNSENT_MAX (1u << 20)
/* Bytes handed to one uv_write at most. */
#define WRITE_CHUNK (256u << 10)
/* HTTP/2 receive windows (stream and connection): a large request arrives without waiting for
 * window updates. */
#define RECV_WINDOW (1 << 20)
/* A header list this many times over the limit ends the connection (an HPACK bomb): beyond
 * the limit a call is refused, far beyond it the client is not worth decoding. */
#define HEADER_ABUSE_FACTOR 64

/* ------------------------------------------------------------------------------- stats */

struct srv_grpc_stats {
	_Atomic uint64_t stat_calls[SRV_GM_COUNT][SRV_GRPC_NCODES];
	struct srv_hist stat_duration[SRV_GM_COUNT];      /* ns */
	_Atomic uint64_t stat_stream_messages[SRV_GRPC_NCODES];
	_Atomic int64_t stat_connections;
	_Atomic uint64_t stat_connections_rejected;
	_Atomic uint64_t stat_protocol_errors;            /* sessions ended by a protocol error */
	_Atomic uint64_t stat_idle_closed;
};

static struct srv_grpc_stats gstats;

/* ---------------------------------------------------------------------- the structures */

struct grpc_conn;

struct srv_grpc_call {
	struct srv_grpc *G;
	struct grpc_conn *c;           /* NULL: an orphan, waiting for its requests */
	struct srv_grpc_call *prev, *next;
	int32_t sid;
	int method;
	uint64_t t_start;
	/* The request's head. */
	char path[128];
	size_t hdr_bytes;
	bool hdr_over;                 /* the header list is larger than the limit */
	bool post, ctype_seen, ctype_ok, auth_ok, enc_identity;
	char ctype[48], enc[32];
	long long timeout_ms;          /* grpc-timeout; -1 none, -2 malformed */
	bool accepted;                 /* the head passed the checks */
	/* The request's body. */
	struct srv_buf in;             /* an incomplete message */
	int nmsg;
	struct srv_buf msg1;           /* a unary call's message */
	bool remote_closed;
	size_t unconsumed;             /* bytes read and not given back to flow control */
	uint64_t t_partial;            /* when the incomplete message in `in` began */
	/* The answer. */
	bool responded;                /* HEADERS submitted */
	bool finished;                 /* the status is decided; trailers follow out */
	bool trailers_sent;
	int code;
	char message[512];
	struct srv_buf out;            /* framed messages not yet taken by nghttp2 */
	size_t out_off;
	bool deferred;                 /* the data provider is waiting for out */
	bool closed;                   /* nghttp2 closed the stream */
	/* Work at the workers or the registry, in request order. */
	struct srv_grpc_infer *q_head, *q_tail;
	int npending;
};

struct grpc_conn {
	uv_tcp_t tcp;
	struct srv_grpc *G;
	nghttp2_session *h2;
	struct grpc_conn *prev, *next;
	struct srv_grpc_call *calls;
	int ncalls;
	char ip[INET6_ADDRSTRLEN];
	uint64_t t_open, t_active, t_write;
	bool preface;                  /* a frame has arrived (the preface was good) */
	bool writing, closing, fatal, goaway;
	bool in_h2;                    /* inside nghttp2 (mem_recv, mem_send): no re-entry */
	uv_write_t wreq;
	struct srv_buf wbuf;
	uv_shutdown_t sreq;
};

struct srv_grpc {
	struct srv *S;
	struct srv_grpc_hooks hooks; /* the service and the drain, above this file */
	const struct srv_config *cfg;
	uv_tcp_t listener;
	bool listening;
	uv_timer_t sweep;
	uv_timer_t close_timer;
	struct grpc_conn conns; /* list sentinel */
	int nconns;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	bool draining, closing;
	int handles; /* libuv handles of G still open (listener, timers, connections) */
	char rbuf[64 << 10];
};

static void conn_flush(struct grpc_conn *c);
static void conn_close(struct grpc_conn *c);
static void on_handle_closed(uv_handle_t *h);
static void call_pump(struct srv_grpc_call *k);

/* ------------------------------------------------------------------------- requests */

struct srv_req *srv_grpc_req_new(struct srv_grpc_call *k, uint64_t t_arrive)
{
	struct srv_req *r = calloc(1, sizeof *r);
	struct srv_grpc_infer *gi = calloc(1, sizeof *gi);
	if (!r || !gi) {
		free(r);
		free(gi);
		return NULL;
	}
	r->t_arrive = t_arrive;
	r->header_len = r->query_top_k = r->query_timeout_ms = r->query_max_macs = -1;
	r->fd = -1;
	r->resp_json_len = -1;
	r->ep = SRV_EP_V2_INFER;
	r->grpc = gi;
	gi->r = r;
	gi->call = k;
	gi->err_code = -1;
	snprintf(r->method, sizeof r->method, "POST");
	if (k)
		snprintf(r->path, sizeof r->path, "%s", k->path);
	return r;
}

void srv_grpc_req_free(struct srv_req *r)
{
	if (!r)
		return;
	srv_job_destroy(&r->job);
	free(r->res);
	free(r->probs);
	free(r->ctype);
	srv_buf_free(&r->body);
	srv_buf_free(&r->resp);
	srv_model_unref(r->model);
	if (r->grpc) {
		if (r->grpc->msg)
			inference__model_infer_request__free_unpacked(r->grpc->msg, NULL);
		free(r->grpc);
	}
	free(r);
}

/* ---------------------------------------------------------------------------- calls */

static void call_free(struct srv_grpc_call *k)
{
	struct srv_grpc *G = k->G;
	CIGT_ASSERT(k->npending == 0 && !k->c);
	srv_buf_free(&k->in);
	srv_buf_free(&k->msg1);
	srv_buf_free(&k->out);
	free(k);
	atomic_fetch_sub_explicit(&srv_stats.stat_inflight, 1, memory_order_relaxed);
	if (G->S->draining)
		G->hooks.drained(G->S);
}

/* The call's stream is gone (closed by nghttp2, or its connection went away): it is counted,
 * leaves its connection, and is freed now or, with work still out, when that comes back. */
static void call_gone(struct srv_grpc_call *k)
{
	struct grpc_conn *c = k->c;
	struct srv_grpc *G = k->G;
	int code = k->finished && k->trailers_sent ? k->code : SRV_GRPC_CANCELLED;
	uint64_t dt = cigt_now_ns() - k->t_start;
	atomic_fetch_add_explicit(&gstats.stat_calls[k->method][code], 1, memory_order_relaxed);
	srv_hist_observe(&gstats.stat_duration[k->method], dt);
	if (G->cfg->access_log)
		srv_log(SRV_LOG_INFO, "access-grpc %s \"%s\" %s %.3fms", c->ip,
			srv_grpc_method_name(k->method), srv_grpc_code_name(code),
			(double)dt * 1e-6);
	if (k->prev)
		k->prev->next = k->next;
	else
		c->calls = k->next;
	if (k->next)
		k->next->prev = k->prev;
	c->ncalls--;
	c->t_active = cigt_now_ns();
	k->c = NULL;
	k->closed = true;
	for (struct srv_grpc_infer *gi = k->q_head; gi; gi = gi->next)
		atomic_store(&gi->r->cancelled, true);
	if (k->npending == 0)
		call_free(k);
}

/* The data provider: the call's framed messages, then (once finished) the trailers. */
static ssize_t on_data_read(nghttp2_session *h2, int32_t sid, uint8_t *buf, size_t length,
			    uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct srv_grpc_call *k = src->ptr;
	size_t avail = k->out.len - k->out_off, n = avail < length ? avail : length;
	if (n)
		memcpy(buf, k->out.p + k->out_off, n);
	k->out_off += n;
	if (k->out_off == k->out.len)
		k->out.len = k->out_off = 0;
	if (!n && !k->finished) {
		k->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (k->finished && k->out.len == 0) {
		char code[8], msg[600];
		snprintf(code, sizeof code, "%d", k->code);
		srv_grpc_percent_encode(k->message, msg, sizeof msg);
		nghttp2_nv tr[] = {
			{(uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code), 0},
			{(uint8_t *)"grpc-message", (uint8_t *)msg, 12, strlen(msg), 0},
		};
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (nghttp2_submit_trailer(h2, sid, tr, msg[0] ? 2 : 1) == 0) {
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			k->trailers_sent = true;
		}
	}
	/* Answers left the buffer: a stream that stopped taking input may take more. */
	if (k->unconsumed && k->c && k->out.len - k->out_off < STREAM_UNSENT_MAX &&
	    k->npending < STREAM_PENDING_MAX) {
		nghttp2_session_consume(h2, sid, k->unconsumed);
		k->unconsumed = 0;
	}
	return (ssize_t)n;
}

static void nv_set(nghttp2_nv *nv, const char *name, const char *value)
{
	*nv = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
			   NGHTTP2_NV_FLAG_NONE};
}

/* Submits the response HEADERS with the data provider (answers follow). */
static void call_respond(struct srv_grpc_call *k)
{
	if (k->responded || k->closed || !k->c)
		return;
	k->responded = true;
	nghttp2_nv nv[2];
	nv_set(&nv[0], ":status", "200");
	nv_set(&nv[1], "content-type", "application/grpc");
	nghttp2_data_provider dp = {.source.ptr = k, .read_callback = on_data_read};
	nghttp2_submit_response(k->c->h2, k->sid, nv, 2, &dp);
}

/* Ends the call with a status: trailers after the answers sent, or one HEADERS frame
 * (trailers-only) when nothing was sent. http_status other than 200 for requests that are not
 * gRPC at all (405, 415). */
static void call_end(struct srv_grpc_call *k, int code, const char *msg, int http_status)
{
	if (k->finished)
		return;
	k->finished = true;
	k->code = code;
	snprintf(k->message, sizeof k->message, "%s", msg ? msg : "");
	if (k->closed || !k->c)
		return;
	if (k->responded) {
		if (k->deferred) {
			k->deferred = false;
			nghttp2_session_resume_data(k->c->h2, k->sid);
		}
		return;
	}
	if (code == SRV_GRPC_OK) {
		call_respond(k);
		return;
	}
	k->responded = k->trailers_sent = true;
	char st[8], cs[8], pm[600];
	snprintf(st, sizeof st, "%d", http_status);
	snprintf(cs, sizeof cs, "%d", code);
	srv_grpc_percent_encode(k->message, pm, sizeof pm);
	nghttp2_nv nv[5];
	int n = 0;
	nv_set(&nv[n++], ":status", st);
	nv_set(&nv[n++], "content-type", "application/grpc");
	nv_set(&nv[n++], "grpc-status", cs);
	if (pm[0])
		nv_set(&nv[n++], "grpc-message", pm);
	if (code == SRV_GRPC_UNIMPLEMENTED && k->enc[0] && !k->enc_identity)
		nv_set(&nv[n++], "grpc-accept-encoding", "identity");
	nghttp2_submit_response(k->c->h2, k->sid, nv, (size_t)n, NULL);
}

/* Appends a framed message to the answer and makes sure it will be sent. */
static void call_send(struct srv_grpc_call *k, const struct srv_buf *framed)
{
	if (k->closed || !k->c || k->finished)
		return;
	srv_buf_put(&k->out, framed->p, framed->len);
	if (k->out.oom) {
		call_end(k, SRV_GRPC_INTERNAL, "out of memory", 200);
		return;
	}
	call_respond(k);
	if (k->deferred) {
		k->deferred = false;
		nghttp2_session_resume_data(k->c->h2, k->sid);
	}
}

/* The answer of a unary call. Never flushes: the caller does once it no longer needs k (a
 * flush may end the stream and free the call). */
static void call_reply(struct srv_grpc_call *k, struct srv_buf *framed)
{
	if (framed->oom) {
		call_end(k, SRV_GRPC_INTERNAL, "out of memory", 200);
	} else {
		call_send(k, framed);
		call_end(k, SRV_GRPC_OK, NULL, 200);
	}
	srv_buf_free(framed);
}

void srv_grpc_reply(struct srv_grpc_call *k, struct srv_buf *framed)
{
	struct grpc_conn *c = k->c;
	call_reply(k, framed);
	if (c)
		conn_flush(c); /* k may be gone after this */
}

/* Queues a piece of work of the call: its answer goes out in request order (call_pump). */
void srv_grpc_hold(struct srv_grpc_call *k, struct srv_req *r)
{
	struct srv_grpc_infer *gi = r->grpc;
	gi->next = NULL;
	if (k->q_tail)
		k->q_tail->next = gi;
	else
		k->q_head = gi;
	k->q_tail = gi;
	k->npending++;
}

void srv_grpc_fail(struct srv_grpc_call *k, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (k->method != SRV_GM_MODEL_STREAM_INFER) {
		struct grpc_conn *c = k->c;
		call_end(k, code, msg, 200);
		if (c)
			conn_flush(c); /* k may be gone after this */
		return;
	}
	/* On a stream an error is one answer among the others, in its place. */
	struct srv_req *r = srv_grpc_req_new(k, cigt_now_ns());
	if (!r) {
		call_end(k, SRV_GRPC_INTERNAL, "out of memory", 200);
		return;
	}
	r->status = 400;
	srv_buf_puts(&r->resp, msg);
	r->grpc->done = true;
	r->grpc->err_code = code;
	srv_grpc_hold(k, r);
	call_pump(k);
}

void srv_grpc_submit(struct srv_grpc_call *k, struct srv_req *r)
{
	srv_grpc_hold(k, r);
	r->state = SRV_REQ_QUEUED;
	srv_sched_submit(k->G->S->sched, r);
}

/* The answer of one finished piece of work, as the method wants it. */
static void answer_one(struct srv_grpc_call *k, struct srv_req *r)
{
	const int code = r->grpc->err_code >= 0 ? r->grpc->err_code
						 : srv_grpc_code_of_http(r->status);
	const char *msg = r->resp.p ? r->resp.p : "";
	if (r->ep == SRV_EP_REPO_LOAD) {
		if (r->status == 200) {
			struct srv_buf b = {0};
			Inference__RepositoryModelLoadResponse m =
				INFERENCE__REPOSITORY_MODEL_LOAD_RESPONSE__INIT;
			srv_grpc_pack(&m.base, &b);
			call_reply(k, &b);
		} else {
			call_end(k, code, msg, 200);
		}
		return;
	}
	if (k->method == SRV_GM_MODEL_STREAM_INFER) {
		atomic_fetch_add_explicit(&gstats.stat_stream_messages[code], 1,
					  memory_order_relaxed);
		if (code == SRV_GRPC_OK) {
			call_send(k, &r->resp);
			return;
		}
		struct srv_buf b = {0};
		if (srv_grpc_stream_error(msg, &b))
			call_end(k, SRV_GRPC_INTERNAL, "out of memory", 200);
		else
			call_send(k, &b);
		srv_buf_free(&b);
		return;
	}
	if (code == SRV_GRPC_OK) {
		call_send(k, &r->resp);
		call_end(k, SRV_GRPC_OK, NULL, 200);
	} else {
		call_end(k, code, msg, 200);
	}
}

/* Takes the finished pieces of work off the front of the call's queue: answered in request
 * order while the call has its stream, dropped when it is an orphan. */
static void call_take_done(struct srv_grpc_call *k)
{
	while (k->q_head && k->q_head->done) {
		struct srv_grpc_infer *gi = k->q_head;
		k->q_head = gi->next;
		if (!k->q_head)
			k->q_tail = NULL;
		k->npending--;
		if (k->c && !k->closed)
			answer_one(k, gi->r);
		srv_grpc_req_free(gi->r);
	}
}

/* Sends the answers that are ready; ends a stream whose client has closed its side once every
 * answer is out (or, draining, at once); lets a throttled stream read again. Does not flush. */
static void call_settle(struct srv_grpc_call *k)
{
	call_take_done(k);
	struct grpc_conn *c = k->c;
	if (!c)
		return;
	if (k->method == SRV_GM_MODEL_STREAM_INFER && k->accepted && !k->finished &&
	    k->npending == 0) {
		if (k->remote_closed)
			call_end(k, SRV_GRPC_OK, NULL, 200);
		else if (k->G->draining)
			call_end(k, SRV_GRPC_UNAVAILABLE, "shutting down; reconnect elsewhere", 200);
	}
	if (k->unconsumed && !k->closed && k->out.len - k->out_off < STREAM_UNSENT_MAX &&
	    k->npending < STREAM_PENDING_MAX) {
		nghttp2_session_consume(c->h2, k->sid, k->unconsumed);
		k->unconsumed = 0;
	}
}

/* call_settle, then the connection writes; k may be freed by the write (its stream ends). */
static void call_pump(struct srv_grpc_call *k)
{
	struct grpc_conn *c = k->c;
	call_settle(k);
	if (c)
		conn_flush(c);
}

/* A request (or load) of a call is back: counted in its version's statistics, then answered
 * in its place, or dropped with its call when that is an orphan. */
static void work_back(struct srv_req *r)
{
	struct srv_grpc_infer *gi = r->grpc;
	struct srv_grpc_call *k = gi->call;
	gi->done = true;
	r->state = SRV_REQ_DONE;
	if (r->model)
		srv_api_observe(r->model, k->c ? r->status : 499, cigt_now_ns() - r->t_arrive);
	if (k->c) {
		call_pump(k);
		return;
	}
	call_take_done(k);
	if (k->npending == 0)
		call_free(k);
}

void srv_grpc_done(struct srv_grpc *G, struct srv_req *r)
{
	work_back(r);
}

void srv_grpc_load_done(struct srv_grpc *G, struct srv_req *r, int status, const char *msg)
{
	r->status = status;
	r->resp.len = 0;
	srv_buf_puts(&r->resp, msg ? msg : "");
	work_back(r);
}

/* ----------------------------------------------------------------- request parsing */

static bool header_is(const uint8_t *name, size_t n, const char *lit)
{
	return n == strlen(lit) && !memcmp(name, lit, n);
}

static bool token_equal(const char *a, size_t alen, const uint8_t *b, size_t blen)
{
	unsigned char diff = alen != blen;
	for (size_t i = 0; i < blen; i++)
		diff |= (unsigned char)(a[i % (alen ? alen : 1)] ^ b[i]);
	return alen > 0 && diff == 0;
}

static struct srv_grpc_call *call_of(nghttp2_session *h2, int32_t sid)
{
	return nghttp2_session_get_stream_user_data(h2, sid);
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
	struct grpc_conn *c = user;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct srv_grpc_call *k = calloc(1, sizeof *k);
	if (!k)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 resets the stream */
	k->G = c->G;
	k->c = c;
	k->sid = f->hd.stream_id;
	k->method = SRV_GM_UNKNOWN;
	k->t_start = cigt_now_ns();
	k->timeout_ms = -1;
	k->next = c->calls;
	if (c->calls)
		c->calls->prev = k;
	c->calls = k;
	c->ncalls++;
	atomic_fetch_add_explicit(&srv_stats.stat_inflight, 1, memory_order_relaxed);
	nghttp2_session_set_stream_user_data(h2, k->sid, k);
	return 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user)
{
	struct grpc_conn *c = user;
	struct srv_grpc_call *k = call_of(h2, f->hd.stream_id);
	if (!k)
		return 0;
	const size_t limit = (size_t)c->G->cfg->grpc_max_header_bytes;
	k->hdr_bytes += namelen + valuelen + 32; /* RFC 9113's accounting */
	if (k->hdr_bytes > limit * HEADER_ABUSE_FACTOR)
		return NGHTTP2_ERR_CALLBACK_FAILURE; /* ends the session */
	if (k->hdr_bytes > limit)
		k->hdr_over = true;
	if (k->hdr_over || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* a refused head or the client's trailers: nothing to keep */
	if (header_is(name, namelen, ":method")) {
		k->post = valuelen == 4 && !memcmp(value, "POST", 4);
	} else if (header_is(name, namelen, ":path")) {
		size_t n = valuelen < sizeof k->path - 1 ? valuelen : sizeof k->path - 1;
		memcpy(k->path, value, n);
		k->path[n] = 0;
	} else if (header_is(name, namelen, "content-type")) {
		k->ctype_seen = true;
		/* application/grpc, application/grpc+proto, application/grpc;... */
		k->ctype_ok = valuelen >= 16 && !memcmp(value, "application/grpc", 16) &&
			      (valuelen == 16 || value[16] == '+' || value[16] == ';');
		size_t n = valuelen < sizeof k->ctype - 1 ? valuelen : sizeof k->ctype - 1;
		memcpy(k->ctype, value, n);
		k->ctype[n] = 0;
	} else if (header_is(name, namelen, "grpc-encoding")) {
		size_t n = valuelen < sizeof k->enc - 1 ? valuelen : sizeof k->enc - 1;
		memcpy(k->enc, value, n);
		k->enc[n] = 0;
		k->enc_identity = valuelen == 8 && !memcmp(value, "identity", 8);
	} else if (header_is(name, namelen, "grpc-timeout")) {
		long long ms = srv_grpc_timeout_ms((const char *)value, valuelen);
		k->timeout_ms = ms < 0 ? -2 : ms;
	} else if (header_is(name, namelen, "authorization")) {
		const struct srv *S = c->G->S;
		k->auth_ok = S->token && valuelen > 7 && !strncasecmp((const char *)value, "Bearer ", 7) &&
			     token_equal(S->token, S->token_len, value + 7, valuelen - 7);
	}
	return 0;
}

static bool needs_auth(int method)
{
	return method != SRV_GM_SERVER_LIVE && method != SRV_GM_SERVER_READY;
}

/* The request's head is complete: guard clauses, each ending the call with its status. */
static void call_head(struct srv_grpc_call *k)
{
	struct srv_grpc *G = k->G;
	char err[256];
	const long long hmax = G->cfg->grpc_max_header_bytes;
	if (k->hdr_over) {
		char m[160];
		snprintf(m, sizeof m, "the header list (%zu bytes) is larger than the limit of %lld "
				      "bytes (--grpc-max-header-bytes)", k->hdr_bytes, hmax);
		call_end(k, SRV_GRPC_RESOURCE_EXHAUSTED, m, 200);
		return;
	}
	k->method = srv_grpc_method_of_path(k->path, err, sizeof err);
	if (!k->post) {
		call_end(k, SRV_GRPC_UNIMPLEMENTED, "gRPC calls are POST requests", 405);
		return;
	}
	if (!k->ctype_ok) {
		char m[160];
		snprintf(m, sizeof m, "content-type '%s' is not application/grpc",
			 k->ctype_seen ? k->ctype : "(none)");
		call_end(k, SRV_GRPC_INVALID_ARGUMENT, m, 415);
		return;
	}
	if (k->method == SRV_GM_UNKNOWN) {
		call_end(k, SRV_GRPC_UNIMPLEMENTED, err, 200);
		return;
	}
	if (k->enc[0] && !k->enc_identity) {
		char m[160];
		snprintf(m, sizeof m, "grpc-encoding '%s' is not supported (identity only)", k->enc);
		call_end(k, SRV_GRPC_UNIMPLEMENTED, m, 200);
		return;
	}
	if (k->timeout_ms == -2) {
		call_end(k, SRV_GRPC_INVALID_ARGUMENT,
			 "grpc-timeout is not 1-8 digits and a unit (H, M, S, m, u, n)", 200);
		return;
	}
	if (G->draining) {
		/* A call that raced the GOAWAY: REFUSED_STREAM tells the client (or a proxy) it was
		 * not processed, so it retries elsewhere; counted as UNAVAILABLE. */
		k->finished = k->responded = k->trailers_sent = true;
		k->code = SRV_GRPC_UNAVAILABLE;
		nghttp2_submit_rst_stream(k->c->h2, NGHTTP2_FLAG_NONE, k->sid,
					  NGHTTP2_REFUSED_STREAM);
		return;
	}
	if (G->S->token && needs_auth(k->method) && !k->auth_ok) {
		call_end(k, SRV_GRPC_UNAUTHENTICATED,
			 "missing or wrong bearer token (authorization metadata)", 200);
		return;
	}
	k->accepted = true;
}

static void call_message(struct srv_grpc_call *k, const uint8_t *msg, size_t len)
{
	k->nmsg++;
	if (k->method != SRV_GM_MODEL_STREAM_INFER) {
		if (k->nmsg > 1) {
			call_end(k, SRV_GRPC_INTERNAL, "more than one request message on a unary "
						       "call", 200);
			return;
		}
		srv_buf_put(&k->msg1, msg, len);
		if (k->msg1.oom)
			call_end(k, SRV_GRPC_RESOURCE_EXHAUSTED, "out of memory", 200);
		return;
	}
	struct srv_grpc_call_info ci = {k->method, msg, len, k->timeout_ms, k->t_start,
					k->c->ip};
	ci.t_start = cigt_now_ns(); /* each message of a stream is a request of its own */
	k->G->hooks.call(k->G->S, k, &ci);
}

/* Reads the messages out of the bytes of the call's DATA frames. The buffer never holds more
 * than one message and a frame beyond the limit: the limit is checked on every prefix. */
static void call_data(struct srv_grpc_call *k, const uint8_t *data, size_t len)
{
	const long long max = k->G->cfg->grpc_max_message_bytes;
	if (!k->in.len)
		k->t_partial = cigt_now_ns();
	srv_buf_put(&k->in, data, len);
	if (k->in.oom) {
		call_end(k, SRV_GRPC_RESOURCE_EXHAUSTED, "out of memory", 200);
		return;
	}
	size_t off = 0;
	while (!k->finished) {
		uint32_t n;
		const uint8_t *p = (const uint8_t *)k->in.p + off;
		int st = srv_grpc_frame_scan(p, k->in.len - off, max, &n);
		if (st == SRV_GRPC_FRAME_MORE)
			break;
		if (st == SRV_GRPC_FRAME_BADFLAG) {
			call_end(k, SRV_GRPC_INTERNAL,
				 "the message's compressed-flag byte is neither 0 nor 1", 200);
		} else if (st == SRV_GRPC_FRAME_COMPRESSED) {
			call_end(k, SRV_GRPC_INTERNAL, "a compressed message on a call without "
						       "grpc-encoding (nothing to decompress it with)",
				 200);
		} else if (st == SRV_GRPC_FRAME_TOO_BIG) {
			char m[160];
			snprintf(m, sizeof m, "the message of %u bytes is larger than the limit of %lld "
					      "bytes (--grpc-max-message-bytes)", n, max);
			call_end(k, SRV_GRPC_RESOURCE_EXHAUSTED, m, 200);
		} else {
			call_message(k, p + 5, n);
			off += 5 + (size_t)n;
		}
	}
	if (k->finished) {
		srv_buf_free(&k->in);
		return;
	}
	memmove(k->in.p, k->in.p + off, k->in.len - off);
	k->in.len -= off;
	if (off && k->in.len)
		k->t_partial = cigt_now_ns(); /* the next message began in this frame */
}

/* END_STREAM from the client: a unary call now has its request. */
static void call_request_end(struct srv_grpc_call *k)
{
	k->remote_closed = true;
	if (k->finished || !k->accepted)
		return;
	if (k->in.len) {
		char m[160];
		snprintf(m, sizeof m, "the stream ended inside a message (%zu bytes of its %s)",
			 k->in.len, k->in.len < 5 ? "length prefix" : "prefix and body");
		call_end(k, SRV_GRPC_INTERNAL, m, 200);
		return;
	}
	if (k->method == SRV_GM_MODEL_STREAM_INFER) {
		call_pump(k); /* ends it once every answer is out */
		return;
	}
	if (k->nmsg == 0) {
		call_end(k, SRV_GRPC_INTERNAL, "the call ended without a request message", 200);
		return;
	}
	struct srv_grpc_call_info ci = {k->method, (const uint8_t *)k->msg1.p, k->msg1.len,
					k->timeout_ms, k->t_start, k->c->ip};
	k->G->hooks.call(k->G->S, k, &ci);
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
	struct grpc_conn *c = user;
	c->preface = true;
	c->t_active = cigt_now_ns();
	struct srv_grpc_call *k = f->hd.stream_id ? call_of(h2, f->hd.stream_id) : NULL;
	if (!k)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
		call_head(k);
	if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
	    (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && !k->remote_closed)
		call_request_end(k);
	return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t sid, const uint8_t *data,
			 size_t len, void *user)
{
	struct srv_grpc_call *k = call_of(h2, sid);
	if (!k || k->finished || !k->accepted) {
		nghttp2_session_consume(h2, sid, len); /* read and dropped */
		return 0;
	}
	call_data(k, data, len);
	bool throttle = k->method == SRV_GM_MODEL_STREAM_INFER && !k->finished &&
			(k->npending >= STREAM_PENDING_MAX ||
			 k->out.len - k->out_off >= STREAM_UNSENT_MAX);
	if (throttle)
		k->unconsumed += len;
	else
		nghttp2_session_consume(h2, sid, len);
	return 0;
}

/* After the frame that ends our side of a stream, a client still sending is told to stop
 * (RST_STREAM NO_ERROR, RFC 9113 section 8.1): the answer is complete. */
static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
	if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR) {
		struct grpc_conn *c = user;
		atomic_fetch_add_explicit(&gstats.stat_protocol_errors, 1, memory_order_relaxed);
		srv_log(SRV_LOG_DEBUG, "grpc: %s: GOAWAY %s", c->ip,
			nghttp2_http2_strerror(f->goaway.error_code));
		return 0;
	}
	if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
	    !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	struct srv_grpc_call *k = call_of(h2, f->hd.stream_id);
	if (k && !k->remote_closed)
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
	return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t sid, uint32_t error_code, void *user)
{
	struct srv_grpc_call *k = call_of(h2, sid);
	if (k) {
		nghttp2_session_set_stream_user_data(h2, sid, NULL);
		call_gone(k);
	}
	return 0;
}

static int on_error(nghttp2_session *h2, int code, const char *msg, size_t len, void *user)
{
	struct grpc_conn *c = user;
	srv_log(SRV_LOG_DEBUG, "grpc: %s: %.*s", c->ip, (int)len, msg);
	return 0;
}

/* ------------------------------------------------------------------------- connections */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct grpc_conn *c = h->data;
	*buf = uv_buf_init(c->G->rbuf, sizeof c->G->rbuf);
}

static void on_conn_closed(uv_handle_t *h)
{
	struct grpc_conn *c = h->data;
	struct srv_grpc *G = c->G;
	srv_buf_free(&c->wbuf);
	free(c);
	if (--G->handles == 0 && G->closing)
		free(G);
}

static void on_refused_closed(uv_handle_t *h)
{
	free(h->data);
}

static void conn_close(struct grpc_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	/* The calls go first: their stream callbacks are not called by nghttp2_session_del. */
	while (c->calls) {
		struct srv_grpc_call *k = c->calls;
		if (c->h2)
			nghttp2_session_set_stream_user_data(c->h2, k->sid, NULL);
		call_gone(k);
	}
	nghttp2_session_del(c->h2);
	c->h2 = NULL;
	c->prev->next = c->next;
	c->next->prev = c->prev;
	struct srv_grpc *G = c->G;
	G->nconns--;
	atomic_fetch_sub_explicit(&gstats.stat_connections, 1, memory_order_relaxed);
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
	/* Stopping and the last connection is gone: the forced close has nothing left to do. */
	if (G->closing && G->nconns == 0 && !uv_is_closing((uv_handle_t *)&G->close_timer))
		uv_close((uv_handle_t *)&G->close_timer, on_handle_closed);
}

static void on_write(uv_write_t *w, int status)
{
	struct grpc_conn *c = w->data;
	c->writing = false;
	c->wbuf.len = 0;
	if (c->closing)
		return;
	if (status < 0) {
		srv_log(SRV_LOG_DEBUG, "grpc: %s: write failed: %s", c->ip, uv_strerror(status));
		conn_close(c);
		return;
	}
	conn_flush(c);
}

/* Writes what the session has to say, one buffer at a time; closes the connection when the
 * session is over (both sides done, GOAWAY exchanged, or a fatal error) and all is written. */
static void conn_flush(struct grpc_conn *c)
{
	if (c->closing || c->writing || c->in_h2)
		return;
	c->in_h2 = true;
	while (c->wbuf.len < WRITE_CHUNK) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(c->h2, &data);
		if (n < 0) {
			srv_log(SRV_LOG_DEBUG, "grpc: %s: %s", c->ip, nghttp2_strerror((int)n));
			c->fatal = true;
			break;
		}
		if (n == 0)
			break;
		srv_buf_put(&c->wbuf, data, (size_t)n);
		if (c->wbuf.oom) {
			c->fatal = true;
			break;
		}
	}
	c->in_h2 = false;
	if (c->wbuf.len && !c->wbuf.oom) {
		uv_buf_t b = uv_buf_init(c->wbuf.p, (unsigned)c->wbuf.len);
		c->wreq.data = c;
		if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) == 0) {
			c->writing = true;
			c->t_write = cigt_now_ns();
			return;
		}
		c->fatal = true;
	}
	if (c->fatal || (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)))
		conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct grpc_conn *c = s->data;
	if (c->closing)
		return;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	c->in_h2 = true;
	ssize_t rv = nghttp2_session_mem_recv(c->h2, (const uint8_t *)buf->base, (size_t)nread);
	c->in_h2 = false;
	if (rv < 0) {
		srv_log(SRV_LOG_DEBUG, "grpc: %s: closing: %s", c->ip, nghttp2_strerror((int)rv));
		if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) /* no GOAWAY to count it by */
			atomic_fetch_add_explicit(&gstats.stat_protocol_errors, 1,
						  memory_order_relaxed);
		else
			nghttp2_session_terminate_session(c->h2, rv == NGHTTP2_ERR_FLOODED
								 ? NGHTTP2_ENHANCE_YOUR_CALM
								 : NGHTTP2_PROTOCOL_ERROR);
		c->fatal = true;
		uv_read_stop(s);
	}
	conn_flush(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct srv_grpc *G = server->data;
	if (status < 0)
		return;
	struct grpc_conn *c = calloc(1, sizeof *c);
	if (!c)
		return;
	c->G = G;
	uv_tcp_init(server->loop, &c->tcp);
	c->tcp.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
		uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
		return;
	}
	if (G->nconns >= G->cfg->max_connections || G->draining) {
		atomic_fetch_add_explicit(&gstats.stat_connections_rejected, 1, memory_order_relaxed);
		srv_log(SRV_LOG_DEBUG, "grpc: connection refused: %d connections open", G->nconns);
		uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
		return;
	}
	struct sockaddr_storage ss;
	int sl = sizeof ss;
	if (!uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl)) {
		const void *src = ss.ss_family == AF_INET6
					  ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
					  : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
		inet_ntop(ss.ss_family, src, c->ip, sizeof c->ip);
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (nghttp2_session_server_new2(&c->h2, G->cbs, c, G->opt)) {
		uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
		return;
	}
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)G->cfg->grpc_max_streams},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)G->cfg->grpc_max_header_bytes},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, RECV_WINDOW},
	};
	nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
	nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, RECV_WINDOW);
	c->t_open = c->t_active = cigt_now_ns();
	c->next = G->conns.next;
	c->prev = &G->conns;
	G->conns.next->prev = c;
	G->conns.next = c;
	G->nconns++;
	G->handles++;
	atomic_fetch_add_explicit(&gstats.stat_connections, 1, memory_order_relaxed);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	conn_flush(c);
}

static void conn_goaway(struct grpc_conn *c, uint32_t error, const char *why)
{
	if (c->goaway || c->closing)
		return;
	c->goaway = true;
	nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->h2),
			      error, (const uint8_t *)why, strlen(why));
	conn_flush(c);
}

/* A request that takes longer than --read-timeout-ms to arrive (a unary call's request up to
 * its END_STREAM, or any message once it has begun) ends, with its buffer: the HTTP side's
 * slowloris guard, per stream. */
static void call_sweep(struct srv_grpc_call *k, uint64_t now, uint64_t limit)
{
	if (k->finished || !k->accepted)
		return;
	bool slow_unary = k->method != SRV_GM_MODEL_STREAM_INFER && !k->remote_closed &&
			  now - k->t_start > limit;
	bool slow_msg = k->in.len && now - k->t_partial > limit;
	if (!slow_unary && !slow_msg)
		return;
	char m[160];
	snprintf(m, sizeof m, "the request did not arrive within %llu ms (--read-timeout-ms)",
		 (unsigned long long)(limit / 1000000u));
	call_end(k, SRV_GRPC_CANCELLED, m, 200);
	srv_buf_free(&k->in);
}

/* Once a second: connections that never spoke HTTP/2 within the read timeout, idle ones, and
 * ones whose client has not read a written buffer for the idle time, go; so do requests that
 * arrive too slowly (call_sweep). */
static void on_sweep(uv_timer_t *t)
{
	struct srv_grpc *G = t->data;
	const uint64_t now = cigt_now_ns();
	const uint64_t idle = (uint64_t)G->cfg->grpc_idle_timeout_s * 1000000000u;
	const uint64_t first = (uint64_t)G->cfg->read_timeout_ms * 1000000u;
	for (struct grpc_conn *c = G->conns.next, *next; c != &G->conns; c = next) {
		next = c->next;
		if (!c->preface && now - c->t_open > first) {
			srv_log(SRV_LOG_DEBUG, "grpc: %s: no HTTP/2 preface within %d ms", c->ip,
				G->cfg->read_timeout_ms);
			atomic_fetch_add_explicit(&gstats.stat_idle_closed, 1, memory_order_relaxed);
			conn_close(c);
		} else if (c->writing && now - c->t_write > idle) {
			srv_log(SRV_LOG_DEBUG, "grpc: %s: not reading its answers", c->ip);
			atomic_fetch_add_explicit(&gstats.stat_idle_closed, 1, memory_order_relaxed);
			conn_close(c);
		} else if (c->ncalls == 0 && now - c->t_active > idle && !c->goaway) {
			atomic_fetch_add_explicit(&gstats.stat_idle_closed, 1, memory_order_relaxed);
			conn_goaway(c, NGHTTP2_NO_ERROR, "idle");
		} else if (c->ncalls) {
			for (struct srv_grpc_call *k = c->calls; k; k = k->next)
				call_sweep(k, now, first);
			conn_flush(c); /* may end streams and free calls: after the walk */
		}
	}
}

/* ------------------------------------------------------------------------------- server */

static void on_handle_closed(uv_handle_t *h)
{
	struct srv_grpc *G = h->data;
	if (--G->handles == 0 && G->closing)
		free(G);
}

int srv_grpc_start(struct srv *S, const struct srv_grpc_hooks *hooks, struct srv_grpc **out,
		   int *port, char *err, size_t errlen)
{
	*out = NULL;
	struct srv_grpc *G = calloc(1, sizeof *G);
	if (!G)
		return cigt_fail(err, errlen, -1, "out of memory");
	G->S = S;
	G->hooks = *hooks;
	G->cfg = S->cfg;
	G->conns.next = G->conns.prev = &G->conns;
	static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
				      0.05,   0.1,   0.25,   0.5,   1,    2.5, 5, 10};
	for (int m = 0; m < SRV_GM_COUNT; m++)
		srv_hist_init(&gstats.stat_duration[m], secs, (int)(sizeof secs / sizeof secs[0]),
			      1e-9);
	char why[400];
	int fd = srv_open_listener(S->cfg->grpc_listen, port, why, sizeof why);
	if (fd < 0) {
		free(G);
		return cigt_fail(err, errlen, -1, "grpc-%s", why); /* "grpc-listen: ADDR: ..." */
	}
	if (nghttp2_session_callbacks_new(&G->cbs) || nghttp2_option_new(&G->opt)) {
		close(fd);
		nghttp2_session_callbacks_del(G->cbs);
		free(G);
		return cigt_fail(err, errlen, -1, "out of memory");
	}
	nghttp2_session_callbacks_set_on_begin_headers_callback(G->cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(G->cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(G->cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(G->cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_send_callback(G->cbs, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(G->cbs, on_stream_close);
	nghttp2_session_callbacks_set_error_callback2(G->cbs, on_error);
	nghttp2_option_set_no_auto_window_update(G->opt, 1);
	/* nghttp2's defaults, stated: RST_STREAM 1000 at once then 33/s (rapid reset), 8
	 * CONTINUATION frames per header block, 1000 queued ACKs, 32 SETTINGS entries. */
	nghttp2_option_set_stream_reset_rate_limit(G->opt, 1000, 33);
	nghttp2_option_set_max_continuations(G->opt, 8);
	nghttp2_option_set_max_outbound_ack(G->opt, 1000);
	nghttp2_option_set_max_settings(G->opt, 32);
	uv_loop_t *loop = &S->loop;
	uv_tcp_init(loop, &G->listener);
	G->listener.data = G;
	G->handles++;
	int rc = uv_tcp_open(&G->listener, fd);
	if (!rc)
		rc = uv_listen((uv_stream_t *)&G->listener, 1024, on_connection);
	if (rc) {
		snprintf(err, errlen, "grpc-listen: %s: %s", S->cfg->grpc_listen, uv_strerror(rc));
		G->closing = true;
		nghttp2_session_callbacks_del(G->cbs);
		nghttp2_option_del(G->opt);
		G->cbs = NULL;
		G->opt = NULL;
		uv_close((uv_handle_t *)&G->listener, on_handle_closed);
		return -1;
	}
	G->listening = true;
	uv_timer_init(loop, &G->sweep);
	uv_timer_init(loop, &G->close_timer);
	G->sweep.data = G->close_timer.data = G;
	G->handles += 2;
	uv_timer_start(&G->sweep, on_sweep, 1000, 1000);
	*out = G;
	return 0;
}

void srv_grpc_drain(struct srv_grpc *G)
{
	if (!G || G->draining)
		return;
	G->draining = true;
	if (G->listening) {
		G->listening = false;
		uv_close((uv_handle_t *)&G->listener, on_handle_closed);
	}
	for (struct grpc_conn *c = G->conns.next, *next; c != &G->conns; c = next) {
		next = c->next;
		/* Streams of ModelStreamInfer with nothing pending end now (UNAVAILABLE). */
		for (struct srv_grpc_call *k = c->calls; k; k = k->next)
			if (k->method == SRV_GM_MODEL_STREAM_INFER && k->accepted)
				call_settle(k); /* no flush here: that could free calls */
		if (!c->closing)
			conn_goaway(c, NGHTTP2_NO_ERROR, "draining");
	}
}

static void on_close_timer(uv_timer_t *t)
{
	struct srv_grpc *G = t->data;
	for (struct grpc_conn *c = G->conns.next, *next; c != &G->conns; c = next) {
		next = c->next;
		conn_close(c); /* the last one closes the timer */
	}
	if (!uv_is_closing((uv_handle_t *)&G->close_timer))
		uv_close((uv_handle_t *)&G->close_timer, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct grpc_conn *c = req->data;
	if (!c->closing)
		conn_close(c);
}

void srv_grpc_close(struct srv_grpc *G)
{
	if (!G || G->closing)
		return;
	G->closing = true;
	if (G->listening) {
		G->listening = false;
		uv_close((uv_handle_t *)&G->listener, on_handle_closed);
	}
	uv_close((uv_handle_t *)&G->sweep, on_handle_closed);
	/* What is written goes out (a GOAWAY, the last answers), then each connection closes;
	 * one that cannot be written to within a second is closed anyway. */
	for (struct grpc_conn *c = G->conns.next, *next; c != &G->conns; c = next) {
		next = c->next;
		conn_goaway(c, NGHTTP2_NO_ERROR, "stopping");
		if (c->closing)
			continue;
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->sreq.data = c;
		if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown))
			conn_close(c);
	}
	if (G->nconns)
		uv_timer_start(&G->close_timer, on_close_timer, 1000, 0);
	else if (!uv_is_closing((uv_handle_t *)&G->close_timer))
		uv_close((uv_handle_t *)&G->close_timer, on_handle_closed);
	nghttp2_session_callbacks_del(G->cbs);
	nghttp2_option_del(G->opt);
	G->cbs = NULL;
	G->opt = NULL;
}

/* -------------------------------------------------------------------------------- metrics */

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

void srv_grpc_metrics_render(struct srv_buf *b)
{
	srv_buf_puts(b, "# HELP cigt_grpc_requests_total gRPC calls answered, by method and status "
			"(CANCELLED: the client went away).\n# TYPE cigt_grpc_requests_total "
			"counter\n");
	for (int m = 0; m < SRV_GM_COUNT; m++)
		for (int c = 0; c < SRV_GRPC_NCODES; c++) {
			uint64_t v = LOAD(gstats.stat_calls[m][c]);
			if (v)
				srv_buf_printf(b, "cigt_grpc_requests_total{method=\"%s\",code=\"%s\"} "
						  "%llu\n", srv_grpc_method_name(m),
					       srv_grpc_code_name(c), (unsigned long long)v);
		}
	srv_buf_puts(b, "# HELP cigt_grpc_request_duration_seconds Time from a gRPC call's first "
			"frame to its stream's end, by method.\n# TYPE "
			"cigt_grpc_request_duration_seconds histogram\n");
	for (int m = 0; m < SRV_GM_COUNT; m++) {
		const struct srv_hist *h = &gstats.stat_duration[m];
		uint64_t cum = 0;
		for (int i = 0; i <= h->n; i++)
			cum += LOAD(h->counts[i]);
		if (!cum)
			continue;
		cum = 0;
		for (int i = 0; i <= h->n; i++) {
			cum += LOAD(h->counts[i]);
			if (i < h->n)
				srv_buf_printf(b, "cigt_grpc_request_duration_seconds_bucket{method="
						  "\"%s\",le=\"%g\"} %llu\n", srv_grpc_method_name(m),
					       h->bounds[i], (unsigned long long)cum);
			else
				srv_buf_printf(b, "cigt_grpc_request_duration_seconds_bucket{method="
						  "\"%s\",le=\"+Inf\"} %llu\n",
					       srv_grpc_method_name(m), (unsigned long long)cum);
		}
		srv_buf_printf(b, "cigt_grpc_request_duration_seconds_sum{method=\"%s\"} %.9g\n",
			       srv_grpc_method_name(m), (double)LOAD(h->sum) * h->scale);
		srv_buf_printf(b, "cigt_grpc_request_duration_seconds_count{method=\"%s\"} %llu\n",
			       srv_grpc_method_name(m), (unsigned long long)cum);
	}
	srv_buf_puts(b, "# HELP cigt_grpc_stream_messages_total Answers on ModelStreamInfer streams, "
			"by status.\n# TYPE cigt_grpc_stream_messages_total counter\n");
	for (int c = 0; c < SRV_GRPC_NCODES; c++) {
		uint64_t v = LOAD(gstats.stat_stream_messages[c]);
		if (v)
			srv_buf_printf(b, "cigt_grpc_stream_messages_total{code=\"%s\"} %llu\n",
				       srv_grpc_code_name(c), (unsigned long long)v);
	}
	srv_buf_printf(b, "# HELP cigt_grpc_connections Open gRPC connections.\n# TYPE "
			  "cigt_grpc_connections gauge\ncigt_grpc_connections %lld\n",
		       (long long)LOAD(gstats.stat_connections));
	srv_buf_printf(b, "# HELP cigt_grpc_connections_rejected_total gRPC connections closed at "
			  "accept (--max-connections, or draining).\n# TYPE "
			  "cigt_grpc_connections_rejected_total counter\n"
			  "cigt_grpc_connections_rejected_total %llu\n",
		       (unsigned long long)LOAD(gstats.stat_connections_rejected));
	srv_buf_printf(b, "# HELP cigt_grpc_protocol_errors_total gRPC connections ended for an "
			  "HTTP/2 protocol error or flood.\n# TYPE cigt_grpc_protocol_errors_total "
			  "counter\ncigt_grpc_protocol_errors_total %llu\n",
		       (unsigned long long)LOAD(gstats.stat_protocol_errors));
	srv_buf_printf(b, "# HELP cigt_grpc_connections_idle_total gRPC connections closed for "
			  "silence (no preface, idle, not reading).\n# TYPE "
			  "cigt_grpc_connections_idle_total counter\n"
			  "cigt_grpc_connections_idle_total %llu\n",
		       (unsigned long long)LOAD(gstats.stat_idle_closed));
}
