/* What each gRPC method answers: guard clauses ending in one srv_grpc_reply or srv_grpc_fail,
 * or a hand-off of the request to the scheduler (ModelInfer, each message of ModelStreamInfer)
 * or to the registry (RepositoryModelLoad). The gRPC counterpart of handler.c, with the same
 * decisions: readiness, the model a request names, the registry's control mode, draining. The
 * metadata, configuration, statistics and index answers are the REST side's renderings read
 * back (grpc_codec.c). Loop thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "../common/util.h"
#include "grpc.h"
#include "loop.h"

/* Unpacks a request message of type T into a local, or fails the call. */
#define UNPACK(T, fn, var, ci, k)                                                         \
	T *var = fn##__unpack(NULL, (ci)->len, (ci)->msg);                                \
	if (!var) {                                                                       \
		srv_grpc_fail((k), SRV_GRPC_INTERNAL, "the message is not a %s (it does not " \
							"decode)", #T + 11);                   \
		return;                                                                   \
	}

/* A request's model version: "" = the highest loaded (0), else a positive integer. */
static bool version_of(const char *s, long long *v)
{
	*v = s[0] ? srv_version_parse(s) : 0;
	return *v >= 0;
}

/* The model a request names ("" = the default one), with a reference; NULL after failing the
 * call with the registry's message. */
static struct srv_model *model_of(struct srv *S, struct srv_grpc_call *k, const char *name,
				  const char *version)
{
	long long v;
	if (!version_of(version, &v)) {
		srv_grpc_fail(k, SRV_GRPC_INVALID_ARGUMENT, "version '%.40s' is not a version (a "
							   "positive integer)", version);
		return NULL;
	}
	char err[512];
	int st;
	struct srv_model *m = srv_registry_get(S->reg, name[0] ? name : NULL, v, &st, err,
					       sizeof err);
	if (!m)
		srv_grpc_fail(k, srv_grpc_code_of_http(st), "%s", err);
	return m;
}

static void reply_json(struct srv_grpc_call *k, int (*conv)(const char *, size_t, struct srv_buf *),
		       struct srv_buf *json)
{
	struct srv_buf out = {0};
	int rc = json->oom ? CIGT_ENOMEM : conv(json->p, json->len, &out);
	srv_buf_free(json);
	if (rc) {
		srv_buf_free(&out);
		srv_grpc_fail(k, SRV_GRPC_INTERNAL, "%s", cigt_strerror(rc));
		return;
	}
	srv_grpc_reply(k, &out);
}

static void reply_msg(struct srv_grpc_call *k, const ProtobufCMessage *m)
{
	struct srv_buf out = {0};
	if (srv_grpc_pack(m, &out)) {
		srv_buf_free(&out);
		srv_grpc_fail(k, SRV_GRPC_INTERNAL, "out of memory");
		return;
	}
	srv_grpc_reply(k, &out);
}

/* ModelInfer, and one message of ModelStreamInfer: the loop checks what it can (draining, the
 * message decodes, the model is loaded) and the workers do the rest (srv_grpc_infer_job), as
 * for POST /v2/models/{name}/infer. */
static void infer(struct srv *S, struct srv_grpc_call *k, const struct srv_grpc_call_info *ci)
{
	if (S->draining) {
		srv_grpc_fail(k, SRV_GRPC_UNAVAILABLE, "shutting down; not accepting new work");
		return;
	}
	const uint64_t t0 = cigt_now_ns();
	Inference__ModelInferRequest *q = srv_grpc_infer_unpack(ci->msg, ci->len);
	const uint64_t unpack_ns = cigt_now_ns() - t0; /* counted in its version's decode stage */
	if (!q) {
		srv_grpc_fail(k, SRV_GRPC_INTERNAL, "the message is not a ModelInferRequest (it does "
						    "not decode)");
		return;
	}
	struct srv_model *m = model_of(S, k, q->model_name, q->model_version);
	struct srv_req *r = m ? srv_grpc_req_new(k, ci->t_start) : NULL;
	if (!r) {
		if (m)
			srv_grpc_fail(k, SRV_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		srv_model_unref(m);
		inference__model_infer_request__free_unpacked(q, NULL);
		return;
	}
	r->model = m;
	r->decode_ns = unpack_ns;
	r->grpc->msg = q;
	r->grpc->stream = ci->method == SRV_GM_MODEL_STREAM_INFER;
	r->query_timeout_ms = ci->timeout_ms; /* grpc-timeout; the message's timeout_ms too */
	srv_grpc_submit(k, r);
}

static void model_ready(struct srv *S, struct srv_grpc_call *k, const struct srv_grpc_call_info *ci)
{
	UNPACK(Inference__ModelReadyRequest, inference__model_ready_request, q, ci, k);
	Inference__ModelReadyResponse resp = INFERENCE__MODEL_READY_RESPONSE__INIT;
	long long v;
	if (!version_of(q->version, &v)) {
		srv_grpc_fail(k, SRV_GRPC_INVALID_ARGUMENT, "version '%.40s' is not a version (a "
							   "positive integer)", q->version);
		inference__model_ready_request__free_unpacked(q, NULL);
		return;
	}
	char err[512];
	int st;
	struct srv_model *m = srv_registry_get(S->reg, q->name[0] ? q->name : NULL, v, &st, err,
					       sizeof err);
	resp.ready = m && !S->draining;
	srv_model_unref(m);
	inference__model_ready_request__free_unpacked(q, NULL);
	reply_msg(k, &resp.base);
}

/* ModelMetadata and ModelConfig: one model version's rendering. */
static void model_doc(struct srv *S, struct srv_grpc_call *k, const struct srv_grpc_call_info *ci)
{
	/* ModelMetadataRequest and ModelConfigRequest have the same fields (name 1, version 2). */
	UNPACK(Inference__ModelMetadataRequest, inference__model_metadata_request, q, ci, k);
	struct srv_model *m = model_of(S, k, q->name, q->version);
	inference__model_metadata_request__free_unpacked(q, NULL);
	if (!m)
		return;
	struct srv_buf json = {0};
	if (ci->method == SRV_GM_MODEL_METADATA) {
		srv_api_v2_meta(S->reg, m, &json);
		reply_json(k, srv_grpc_meta_from_json, &json);
	} else {
		srv_api_v2_config(S->reg, m, &json);
		reply_json(k, srv_grpc_config_from_json, &json);
	}
	srv_model_unref(m);
}

static void statistics(struct srv *S, struct srv_grpc_call *k, const struct srv_grpc_call_info *ci)
{
	UNPACK(Inference__ModelStatisticsRequest, inference__model_statistics_request, q, ci, k);
	struct srv_buf json = {0};
	long long v;
	if (!q->name[0]) { /* every loaded version; a version alone names nothing */
		srv_api_v2_stats(S->reg, NULL, 0, &json);
	} else if (!version_of(q->version, &v)) {
		srv_grpc_fail(k, SRV_GRPC_INVALID_ARGUMENT, "version '%.40s' is not a version (a "
							   "positive integer)", q->version);
		inference__model_statistics_request__free_unpacked(q, NULL);
		return;
	} else {
		struct srv_model *m = model_of(S, k, q->name, q->version);
		if (!m) {
			inference__model_statistics_request__free_unpacked(q, NULL);
			return;
		}
		srv_api_v2_stats(S->reg, m->name, v, &json);
		srv_model_unref(m);
	}
	inference__model_statistics_request__free_unpacked(q, NULL);
	reply_json(k, srv_grpc_stats_from_json, &json);
}

static void repository(struct srv *S, struct srv_grpc_call *k, const struct srv_grpc_call_info *ci)
{
	char err[512];
	if (ci->method == SRV_GM_REPOSITORY_INDEX) {
		UNPACK(Inference__RepositoryIndexRequest, inference__repository_index_request, q, ci,
		       k);
		struct srv_buf json = {0};
		srv_registry_index(S->reg, q->ready, &json);
		inference__repository_index_request__free_unpacked(q, NULL);
		reply_json(k, srv_grpc_index_from_json, &json);
		return;
	}
	/* Load and unload requests have the same first fields (repository_name 1, model_name
	 * 2, parameters 3). */
	UNPACK(Inference__RepositoryModelLoadRequest, inference__repository_model_load_request, q,
	       ci, k);
	char name[CIGT_NAME_MAX + 1];
	bool fits = strlen(q->model_name) <= CIGT_NAME_MAX;
	snprintf(name, sizeof name, "%s", q->model_name);
	inference__repository_model_load_request__free_unpacked(q, NULL);
	const enum srv_control mode = srv_registry_mode(S->reg);
	if (mode != SRV_CONTROL_EXPLICIT) {
		srv_grpc_fail(k, SRV_GRPC_FAILED_PRECONDITION,
			      "model control mode is %s: the repository API cannot load or unload "
			      "models (start cigtd with --model-control-mode explicit)",
			      mode == SRV_CONTROL_NONE ? "none" : "poll");
		return;
	}
	if (S->draining) {
		srv_grpc_fail(k, SRV_GRPC_UNAVAILABLE, "shutting down; not loading or unloading");
		return;
	}
	if (!fits || !name[0]) {
		srv_grpc_fail(k, SRV_GRPC_INVALID_ARGUMENT, "'%.80s' is not a model name", name);
		return;
	}
	if (ci->method == SRV_GM_REPOSITORY_MODEL_UNLOAD) {
		int st = srv_registry_unload(S->reg, name, err, sizeof err);
		if (st) {
			srv_grpc_fail(k, srv_grpc_code_of_http(st), "%s", err);
			return;
		}
		Inference__RepositoryModelUnloadResponse resp =
			INFERENCE__REPOSITORY_MODEL_UNLOAD_RESPONSE__INIT;
		reply_msg(k, &resp.base);
		return;
	}
	/* A load answers when its rescan has been applied (srv_grpc_load_done). */
	struct srv_req *r = srv_grpc_req_new(k, ci->t_start);
	if (!r) {
		srv_grpc_fail(k, SRV_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	r->ep = SRV_EP_REPO_LOAD;
	srv_grpc_hold(k, r);
	int st = srv_registry_load(S->reg, name, r, err, sizeof err);
	if (st)
		srv_grpc_load_done(NULL, r, st, err);
}

void srv_grpc_service_call(struct srv *S, struct srv_grpc_call *k,
			   const struct srv_grpc_call_info *ci)
{
	switch (ci->method) {
	case SRV_GM_SERVER_LIVE: {
		UNPACK(Inference__ServerLiveRequest, inference__server_live_request, q, ci, k);
		inference__server_live_request__free_unpacked(q, NULL);
		Inference__ServerLiveResponse resp = INFERENCE__SERVER_LIVE_RESPONSE__INIT;
		resp.live = true;
		reply_msg(k, &resp.base);
		return;
	}
	case SRV_GM_SERVER_READY: {
		UNPACK(Inference__ServerReadyRequest, inference__server_ready_request, q, ci, k);
		inference__server_ready_request__free_unpacked(q, NULL);
		Inference__ServerReadyResponse resp = INFERENCE__SERVER_READY_RESPONSE__INIT;
		resp.ready = S->ready && !S->draining && srv_registry_ready(S->reg);
		reply_msg(k, &resp.base);
		return;
	}
	case SRV_GM_MODEL_READY:
		model_ready(S, k, ci);
		return;
	case SRV_GM_SERVER_METADATA: {
		static char *ext[] = {"binary_tensor_data", "model_repository", "statistics",
				      "model_configuration"};
		UNPACK(Inference__ServerMetadataRequest, inference__server_metadata_request, q, ci,
		       k);
		inference__server_metadata_request__free_unpacked(q, NULL);
		Inference__ServerMetadataResponse resp = INFERENCE__SERVER_METADATA_RESPONSE__INIT;
		resp.name = "cigtd";
		resp.version = CIGT_VERSION;
		resp.n_extensions = sizeof ext / sizeof ext[0];
		resp.extensions = ext;
		reply_msg(k, &resp.base);
		return;
	}
	case SRV_GM_MODEL_METADATA:
	case SRV_GM_MODEL_CONFIG:
		model_doc(S, k, ci);
		return;
	case SRV_GM_MODEL_INFER:
	case SRV_GM_MODEL_STREAM_INFER:
		infer(S, k, ci);
		return;
	case SRV_GM_MODEL_STATISTICS:
		statistics(S, k, ci);
		return;
	case SRV_GM_REPOSITORY_INDEX:
	case SRV_GM_REPOSITORY_MODEL_LOAD:
	case SRV_GM_REPOSITORY_MODEL_UNLOAD:
		repository(S, k, ci);
		return;
	default:
		srv_grpc_fail(k, SRV_GRPC_UNIMPLEMENTED, "unknown method");
		return;
	}
}
