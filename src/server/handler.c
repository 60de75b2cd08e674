/* What each request is answered: guard clauses (path, method, token, model) that end in one
 * answer, or hand inference to the scheduler and repository loads to the registry. Runs on the
 * loop thread inside libmicrohttpd's access handler (server.c). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cigt/error.h"
#include "grpc.h"
#include "loop.h"

/* Compares in time independent of where the strings differ. */
static bool token_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	unsigned char diff = alen != blen;
	for (size_t i = 0; i < blen; i++)
		diff |= (unsigned char)(a[i % (alen ? alen : 1)] ^ b[i]);
	return alen > 0 && diff == 0;
}

/* ---------------------------------------------------------------------------- answering */

enum MHD_Result srv_respond(struct srv *S, struct MHD_Connection *mc, struct srv_req *r,
			       int status, const char *ctype, const void *body, size_t len,
			       enum srv_body_kind kind)
{
	static const enum MHD_ResponseMemoryMode modes[] = {MHD_RESPMEM_MUST_COPY,
							    MHD_RESPMEM_MUST_FREE,
							    MHD_RESPMEM_PERSISTENT};
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, (void *)body, modes[kind]);
	if (!resp) {
		if (kind == BODY_TAKE)
			free((void *)body);
		return MHD_NO;
	}
	if (ctype)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (status == 503)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	if (status == 401)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"cigtd\"");
	if (status == 405) {
		bool post = r->ep == SRV_EP_CLASSIFY || r->ep == SRV_EP_V2_INFER ||
			    r->ep == SRV_EP_REPO_INDEX || r->ep == SRV_EP_REPO_LOAD ||
			    r->ep == SRV_EP_REPO_UNLOAD;
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, post ? "POST" : "GET, HEAD");
	}
	if (r->resp_json_len >= 0 && status == 200) {
		char n[32];
		snprintf(n, sizeof n, "%lld", r->resp_json_len);
		MHD_add_response_header(resp, "Inference-Header-Content-Length", n);
	}
	if (S->draining || r->close)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	r->status = status;
	r->resp_bytes = len;
	enum MHD_Result ok = MHD_queue_response(mc, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ok;
}


enum MHD_Result srv_respond_error(struct srv *S, struct MHD_Connection *mc, struct srv_req *r,
				     int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	struct srv_buf b = {0};
	srv_encode_error(&b, msg);
	if (b.oom) {
		srv_buf_free(&b);
		return MHD_NO;
	}
	return srv_respond(S, mc, r, status, "application/json", b.p, b.len, BODY_TAKE);
}

enum MHD_Result srv_respond_buf(struct srv *S, struct MHD_Connection *mc, struct srv_req *r,
				   int status, const char *ctype, struct srv_buf *b)
{
	if (b->oom) {
		srv_buf_free(b);
		return srv_respond_error(S, mc, r, 500, "out of memory");
	}
	char *p = b->p ? b->p : strdup("");
	size_t n = b->len;
	*b = (struct srv_buf){0};
	return srv_respond(S, mc, r, status, ctype, p, n, BODY_TAKE);
}

static bool needs_auth(enum srv_endpoint ep)
{
	return ep != SRV_EP_PAGE && ep != SRV_EP_V2_LIVE && ep != SRV_EP_V2_READY &&
	       ep != SRV_EP_METRICS;
}

/* ------------------------------------------------------------------------ the handler */

/* POST /v1/classify, /v1/models/{name}[/versions/{v}]/classify, /v2/models/.../infer: checks
 * what the loop can check and hands the request to the scheduler. Takes the reference m. */
static enum MHD_Result infer(struct srv *S, struct MHD_Connection *mc, struct srv_req *r,
			     const struct srv_route *rt, struct srv_model *m)
{
	const struct cigt_arch *a = m->m->arch;
	r->model = m; /* from here on req_free drops it; the version's stats count the answer */
	if (r->after_drain)
		return srv_respond_error(S, mc, r, 503, "shutting down; not accepting new work");
	if (r->body_too_large)
		return srv_respond_error(S, mc, r, 413, "body is larger than %lld bytes",
				     S->cfg->max_body_bytes);
	const char *ct = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_TYPE);
	const char *hl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
						     "Inference-Header-Content-Length");
	const char *tk = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "top_k");
	const char *to = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "timeout_ms");
	/* The dial's query values with their lengths: a %00 inside one is refused, not cut. */
	const char *qc = NULL, *qm = NULL;
	size_t qcn = 0, qmn = 0;
	if (MHD_lookup_connection_value_n(mc, MHD_GET_ARGUMENT_KIND, "compute", 7, &qc, &qcn) !=
	    MHD_YES)
		qc = NULL;
	if (MHD_lookup_connection_value_n(mc, MHD_GET_ARGUMENT_KIND, "max_macs", 8, &qm, &qmn) !=
	    MHD_YES)
		qm = NULL;
	if (hl && (r->header_len = srv_parse_ll(hl, 0, 1LL << 40)) < 0)
		return srv_respond_error(S, mc, r, 400, "Inference-Header-Content-Length '%.32s' is "
						    "not a byte count", hl);
	if (hl && rt->ep != SRV_EP_V2_INFER)
		return srv_respond_error(S, mc, r, 400, "Inference-Header-Content-Length is only for "
						    "/v2/models/{name}/infer");
	if (tk && (r->query_top_k = srv_parse_ll(tk, 1, a->nclasses)) < 0)
		return srv_respond_error(S, mc, r, 400, "top_k must be an integer in 1..%d",
				     a->nclasses);
	if (to && (r->query_timeout_ms = srv_parse_ll(to, 0, 3600000)) < 0)
		return srv_respond_error(S, mc, r, 400, "timeout_ms must be an integer in 0..3600000");
	if (qc) {
		size_t n = qcn;
		bool ok = n >= 1 && n < sizeof r->query_compute;
		for (size_t i = 0; ok && i < n; i++)
			ok = isalnum((unsigned char)qc[i]) || qc[i] == '_' || qc[i] == '.' ||
			     qc[i] == '-';
		if (!ok)
			return srv_respond_error(S, mc, r, 400, "compute must be the name of an "
					     "operating point (1..%zu of A-Z a-z 0-9 _ . -)",
					     sizeof r->query_compute - 1);
		memcpy(r->query_compute, qc, n + 1);
	}
	bool qm_digits = qm && qmn > 0 && strlen(qm) == qmn;
	for (size_t i = 0; qm_digits && i < qmn; i++)
		qm_digits = qm[i] >= '0' && qm[i] <= '9';
	if (qm && (!qm_digits || (r->query_max_macs = srv_parse_ll(qm, 1, INT64_MAX)) < 0))
		return srv_respond_error(S, mc, r, 400, "max_macs must be a positive integer "
						    "(multiply-accumulates per sample)");
	if (qc && qm)
		return srv_respond_error(S, mc, r, 400, "give compute or max_macs, not both");
	if (r->body.len == 0)
		return srv_respond_error(S, mc, r, 400, "empty body");
	if (ct && !(r->ctype = strdup(ct)))
		return srv_respond_error(S, mc, r, 500, "out of memory");
	r->fd = r->conn ? r->conn->fd : -1;
	r->state = SRV_REQ_QUEUED;
	MHD_suspend_connection(mc);
	S->nsuspended++;
	srv_sched_submit(S->sched, r);
	return MHD_YES;
}

/* The repository API: index, load and unload (loop thread). */
static enum MHD_Result repository(struct srv *S, struct MHD_Connection *mc, struct srv_req *r,
				  const struct srv_route *rt)
{
	char err[512];
	bool ready_only;
	if (r->body_too_large)
		return srv_respond_error(S, mc, r, 413, "body is larger than %lld bytes",
				     S->cfg->max_body_bytes);
	if (srv_parse_repo_body(r->body.p, r->body.len, rt->ep == SRV_EP_REPO_INDEX, &ready_only,
				err, sizeof err))
		return srv_respond_error(S, mc, r, 400, "%s", err);
	struct srv_buf b = {0};
	if (rt->ep == SRV_EP_REPO_INDEX) {
		srv_registry_index(S->reg, ready_only, &b);
		return srv_respond_buf(S, mc, r, 200, "application/json", &b);
	}
	if (S->draining)
		return srv_respond_error(S, mc, r, 503, "shutting down; not loading or unloading");
	if (rt->ep == SRV_EP_REPO_UNLOAD) {
		int st = srv_registry_unload(S->reg, rt->model, err, sizeof err);
		if (st)
			return srv_respond_error(S, mc, r, st, "%s", err);
		return srv_respond(S, mc, r, 200, NULL, "", 0, BODY_STATIC);
	}
	/* A load answers when its rescan has been applied (on_load_done). */
	r->state = SRV_REQ_QUEUED;
	MHD_suspend_connection(mc);
	S->nsuspended++;
	int st = srv_registry_load(S->reg, rt->model, r, err, sizeof err);
	if (st) {
		/* Resumed inside libmicrohttpd's callback: it acts on that only in its next run,
		 * which nothing would trigger before the next timer (up to 250 ms later). */
		S->nsuspended--;
		MHD_resume_connection(mc);
		S->mhd_rerun = true;
		r->state = SRV_REQ_RECEIVING;
		return srv_respond_error(S, mc, r, st, "%s", err);
	}
	return MHD_YES;
}

/* Decides a fully received request: guard clauses, one answer or one hand-off. */
enum MHD_Result srv_dispatch(struct srv *S, struct MHD_Connection *mc, struct srv_req *r,
				const char *url, const char *method)
{
	struct srv_route rt;
	srv_route_path(url, &rt);
	r->ep = rt.ep;
	bool is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
	if (rt.ep == SRV_EP_OTHER)
		return srv_respond_error(S, mc, r, 404, "no such path '%.100s'", url);
	if (rt.post ? strcmp(method, "POST") : !is_get)
		return srv_respond_error(S, mc, r, 405, "method %s not allowed on %.100s (use %s)",
				     method, url, rt.post ? "POST" : "GET");
	if (S->token && needs_auth(rt.ep)) {
		const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
							    MHD_HTTP_HEADER_AUTHORIZATION);
		if (!h || strncasecmp(h, "Bearer ", 7) ||
		    !token_equal(S->token, S->token_len, h + 7, strlen(h + 7)))
			return srv_respond_error(S, mc, r, 401, "missing or wrong bearer token");
	}
	if (rt.version < 0) {
		const char *v = strstr(url, "/versions/") + 10;
		int vlen = (int)strcspn(v, "/");
		return srv_respond_error(S, mc, r, 404, "'%.*s' in %.100s is not a version (a positive "
						    "integer)", vlen > 40 ? 40 : vlen, v, url);
	}
	if (rt.ep == SRV_EP_REPO_INDEX || rt.ep == SRV_EP_REPO_LOAD || rt.ep == SRV_EP_REPO_UNLOAD)
		return repository(S, mc, r, &rt);
	struct srv_buf b = {0};
	bool ready = S->ready && !S->draining && srv_registry_ready(S->reg);
	switch (rt.ep) {
	case SRV_EP_PAGE:
		return srv_respond(S, mc, r, 200, "text/html; charset=utf-8", srv_page_html,
			       srv_page_html_len, BODY_STATIC);
	case SRV_EP_METRICS: {
		int st;
		char err[256];
		struct srv_model *d = srv_registry_get(S->reg, NULL, 0, &st, err, sizeof err);
		srv_metrics_render(&b, d ? d->m->arch : NULL, d ? d->name : "", ready);
		srv_api_metrics(S->reg, &b);
		if (S->cfg->grpc_listen)
			srv_grpc_metrics_render(&b);
		srv_model_unref(d);
		return srv_respond_buf(S, mc, r, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
	}
	case SRV_EP_MODELS:
		srv_registry_list(S->reg, &b);
		return srv_respond_buf(S, mc, r, 200, "application/json", &b);
	case SRV_EP_V2_SERVER:
		srv_buf_puts(&b, "{\"name\": \"cigtd\", \"version\": \"" CIGT_VERSION
				 "\", \"extensions\": [\"binary_tensor_data\", \"model_repository\", "
				 "\"statistics\", \"model_configuration\"]}\n");
		return srv_respond_buf(S, mc, r, 200, "application/json", &b);
	case SRV_EP_V2_LIVE:
		return srv_respond(S, mc, r, 200, NULL, "", 0, BODY_STATIC);
	case SRV_EP_V2_READY:
		/* The protocol: 200 means ready, a 4xx means not ready; the body is empty. */
		return srv_respond(S, mc, r, ready ? 200 : 400, NULL, "", 0, BODY_STATIC);
	case SRV_EP_V2_MODEL_STATS:
		if (!rt.model_path) { /* GET /v2/models/stats: every loaded version */
			srv_api_v2_stats(S->reg, NULL, 0, &b);
			return srv_respond_buf(S, mc, r, 200, "application/json", &b);
		}
		break;
	default:
		break;
	}
	/* Everything else concerns one model version: the one named, or the default. */
	char err[512];
	int st;
	struct srv_model *m = srv_registry_get(S->reg, rt.model_path ? rt.model : NULL,
					       rt.version, &st, err, sizeof err);
	if (!m)
		return srv_respond_error(S, mc, r, st, "%s", err);
	enum MHD_Result res = MHD_YES;
	switch (rt.ep) {
	case SRV_EP_MODEL_INFO:
		srv_api_model_info(m, &b);
		res = srv_respond_buf(S, mc, r, 200, "application/json", &b);
		break;
	case SRV_EP_V2_MODEL_READY:
		res = srv_respond(S, mc, r, S->draining ? 400 : 200, NULL, "", 0, BODY_STATIC);
		break;
	case SRV_EP_V2_MODEL:
		srv_api_v2_meta(S->reg, m, &b);
		res = srv_respond_buf(S, mc, r, 200, "application/json", &b);
		break;
	case SRV_EP_V2_MODEL_CONFIG:
		srv_api_v2_config(S->reg, m, &b);
		res = srv_respond_buf(S, mc, r, 200, "application/json", &b);
		break;
	case SRV_EP_V2_MODEL_STATS:
		srv_api_v2_stats(S->reg, m->name, rt.version, &b);
		res = srv_respond_buf(S, mc, r, 200, "application/json", &b);
		break;
	default:
		res = infer(S, mc, r, &rt, m);
		m = NULL; /* the request holds it now, or infer dropped it */
		break;
	}
	srv_model_unref(m);
	return res;
}
