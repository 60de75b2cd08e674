/* cigtd's gRPC side (issue 28): the Open Inference Protocol's gRPC service
 * inference.GRPCInferenceService (proto/grpc_service.proto) on HTTP/2 (nghttp2, driven from the
 * libuv loop) with protobuf-c messages. Three files:
 *   grpc_codec.c   pure functions of bytes: a ModelInferRequest into a srv_job, an answer into a
 *                  framed ModelInferResponse, the REST side's JSON renderings into the metadata,
 *                  configuration, statistics and index messages, grpc-timeout, grpc-message;
 *   grpc_server.c  the transport: listener, connections, nghttp2 sessions, streams, gRPC framing
 *                  (length prefix, trailers, deadlines, cancellation), limits, drain, metrics;
 *   grpc_service.c what each method answers: guard clauses ending in one answer, or a hand-off
 *                  to the scheduler (ModelInfer, ModelStreamInfer) or the registry (loads).
 * The loop thread owns everything here; an inference request crosses to the workers and back
 * exactly as an HTTP one does (srv_sched_submit, the done list), with r->grpc set. */
#ifndef CIGT_SRV_GRPC_H
#define CIGT_SRV_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grpc_service.pb-c.h"
#include "srv.h"

/* ------------------------------------------------------------------------ status codes */

/* gRPC's status codes (their numbers are the protocol's), with the names /metrics uses. */
#define SRV_GRPC_CODES(X)                      \
	X(0, OK)                               \
	X(1, CANCELLED)                        \
	X(2, UNKNOWN)                          \
	X(3, INVALID_ARGUMENT)                 \
	X(4, DEADLINE_EXCEEDED)                \
	X(5, NOT_FOUND)                        \
	X(6, ALREADY_EXISTS)                   \
	X(7, PERMISSION_DENIED)                \
	X(8, RESOURCE_EXHAUSTED)               \
	X(9, FAILED_PRECONDITION)              \
	X(10, ABORTED)                         \
	X(11, OUT_OF_RANGE)                    \
	X(12, UNIMPLEMENTED)                   \
	X(13, INTERNAL)                        \
	X(14, UNAVAILABLE)                     \
	X(15, DATA_LOSS)                       \
	X(16, UNAUTHENTICATED)

enum srv_grpc_code {
#define SRV_X_GC(n, name) SRV_GRPC_##name = n,
	SRV_GRPC_CODES(SRV_X_GC)
#undef SRV_X_GC
	SRV_GRPC_NCODES
};

const char *srv_grpc_code_name(int code);
/* The gRPC status of one of the daemon's HTTP statuses (srv.h, SRV_STATUSES): 200 OK, 400 and
 * 415 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 404 NOT_FOUND, 413 RESOURCE_EXHAUSTED, 499
 * CANCELLED, 501 UNIMPLEMENTED, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, else INTERNAL. */
int srv_grpc_code_of_http(int status);

/* ----------------------------------------------------------------------------- methods */

/* The service's methods, in proto/grpc_service.proto's order; the name is the path's last part
 * and the metrics label. */
#define SRV_GRPC_METHODS(X)                                  \
	X(SERVER_LIVE, "ServerLive")                         \
	X(SERVER_READY, "ServerReady")                       \
	X(MODEL_READY, "ModelReady")                         \
	X(SERVER_METADATA, "ServerMetadata")                 \
	X(MODEL_METADATA, "ModelMetadata")                   \
	X(MODEL_INFER, "ModelInfer")                         \
	X(MODEL_STREAM_INFER, "ModelStreamInfer")            \
	X(MODEL_CONFIG, "ModelConfig")                       \
	X(MODEL_STATISTICS, "ModelStatistics")               \
	X(REPOSITORY_INDEX, "RepositoryIndex")               \
	X(REPOSITORY_MODEL_LOAD, "RepositoryModelLoad")      \
	X(REPOSITORY_MODEL_UNLOAD, "RepositoryModelUnload")  \
	X(UNKNOWN, "(unknown)")

enum srv_grpc_method {
#define SRV_X_GM(id, name) SRV_GM_##id,
	SRV_GRPC_METHODS(SRV_X_GM)
#undef SRV_X_GM
	SRV_GM_COUNT
};

#define SRV_GRPC_SERVICE "inference.GRPCInferenceService"

const char *srv_grpc_method_name(int m);
/* The method a request path names ("/inference.GRPCInferenceService/ModelInfer"), or
 * SRV_GM_UNKNOWN with a message saying whether the service or the method is unknown. */
int srv_grpc_method_of_path(const char *path, char *err, size_t errlen);

/* ------------------------------------------------------------------ the codec (pure) */

/* A ModelInferRequest as it travels with its srv_req (r->grpc): unpacked on the loop, read by
 * the worker that prepares the request, freed with the request. */
struct srv_grpc_call;
struct srv_grpc_infer {
	Inference__ModelInferRequest *msg; /* protobuf-c's, freed with its unpack function */
	bool stream;                       /* answer a ModelStreamInferResponse */
	struct srv_grpc_call *call;        /* the call it answers (loop thread only) */
	struct srv_grpc_infer *next;       /* the call's answers in request order (loop only) */
	struct srv_req *r;
	bool done;                         /* back from the scheduler (loop only) */
	int err_code;                      /* >= 0: an error answer made on the loop (a stream's) */
};

/* Reads a ModelInferRequest into a job, checking it against the model as the HTTP side's
 * srv_parse_v2 does (same rules, same messages where they are the same checks). Pure. Returns
 * 200, or 400 / 413 / 500 with a message (srv_grpc_code_of_http maps them). job->timeout_ms
 * keeps the smaller of its value on entry (the call's grpc-timeout, -1 = none) and the
 * request's timeout_ms parameter. Nothing is left allocated in job on failure. */
int srv_grpc_infer_job(const struct cigt_arch *a, const struct srv_limits *lim,
		       const Inference__ModelInferRequest *q, struct srv_job *job, char *err,
		       size_t errlen);
/* protobuf-c's unpacking of a ModelInferRequest, refusing (NULL) what protobuf forbids and
 * protobuf-c lets through (field number 0). The caller frees it with
 * inference__model_infer_request__free_unpacked. */
Inference__ModelInferRequest *srv_grpc_infer_unpack(const uint8_t *msg, size_t len);
/* Unpacks and reads in one go (the fuzz target's entry): 200, 400 for bytes that are not a
 * ModelInferRequest, or srv_grpc_infer_job's answer. On 200 *out holds the message (the caller
 * frees it with inference__model_infer_request__free_unpacked). */
int srv_grpc_infer_parse(const struct cigt_arch *a, const struct srv_limits *lim,
			 const uint8_t *msg, size_t len, Inference__ModelInferRequest **out,
			 struct srv_job *job, char *err, size_t errlen);
/* Encodes the answer to a job (res, probs: job->n samples) as one gRPC message, its 5-byte
 * length prefix included, appended to out: a ModelInferResponse, or with stream a
 * ModelStreamInferResponse holding it. Raw outputs when job->binary, else typed contents.
 * 0, or CIGT_ENOMEM. */
int srv_grpc_infer_encode(const struct cigt_arch *a, const char *model, long long version,
			  const struct srv_job *job, const struct cigt_result *res,
			  const float *probs, bool stream, struct srv_buf *out);
/* A ModelStreamInferResponse with error_message msg, framed, appended to out. */
int srv_grpc_stream_error(const char *msg, struct srv_buf *out);
/* Any protobuf-c message, framed (5-byte prefix, uncompressed), appended to out. */
int srv_grpc_pack(const ProtobufCMessage *m, struct srv_buf *out);

/* The REST side's JSON renderings, read back into the gRPC messages and framed: the model
 * metadata (srv_api_v2_meta), configuration (srv_api_v2_config), statistics (srv_api_v2_stats)
 * and repository index (srv_registry_index). One rendering serves both protocols, so the two
 * cannot disagree. 0, or a negative code (CIGT_ENOMEM, CIGT_EFORMAT for JSON these functions
 * did not expect). */
int srv_grpc_meta_from_json(const char *json, size_t len, struct srv_buf *out);
int srv_grpc_config_from_json(const char *json, size_t len, struct srv_buf *out);
int srv_grpc_stats_from_json(const char *json, size_t len, struct srv_buf *out);
int srv_grpc_index_from_json(const char *json, size_t len, struct srv_buf *out);

/* The first gRPC message in buf[0, n): SRV_GRPC_FRAME_MORE when its 5-byte prefix or body is
 * not all there yet, SRV_GRPC_FRAME_OK with *len its length (the message is buf + 5), or why it
 * cannot be read: its compressed-flag byte is 1 (COMPRESSED) or neither 0 nor 1 (BADFLAG), or
 * its length, in *len, is larger than max (TOO_BIG, decided from the prefix alone). Pure. */
enum srv_grpc_frame {
	SRV_GRPC_FRAME_MORE,
	SRV_GRPC_FRAME_OK,
	SRV_GRPC_FRAME_COMPRESSED,
	SRV_GRPC_FRAME_BADFLAG,
	SRV_GRPC_FRAME_TOO_BIG,
};
int srv_grpc_frame_scan(const uint8_t *buf, size_t n, long long max, uint32_t *len);

/* The grpc-timeout header ("1-8 digits" and a unit of H, M, S, m, u, n) in whole milliseconds
 * (rounded down, capped at 3600000), or -1 when malformed. */
long long srv_grpc_timeout_ms(const char *v, size_t len);
/* grpc-message's percent-encoding of msg (bytes outside 0x20..0x7e, and '%') into buf (cut to
 * fit, never in the middle of an escape). */
void srv_grpc_percent_encode(const char *msg, char *buf, size_t n);

/* ----------------------------------------------------------------- the server (loop) */

struct srv;
struct srv_grpc;

struct srv_grpc_call_info;
struct srv_grpc_call;
/* What the transport calls above itself, given by the server at start so that the transport
 * calls nothing of the files above it: call answers a method (srv_grpc_service_call, once per
 * request message of a stream); drained is called when a call ends during a drain (the server
 * exits once nothing is in flight). */
struct srv_grpc_hooks {
	void (*call)(struct srv *S, struct srv_grpc_call *k, const struct srv_grpc_call_info *ci);
	void (*drained)(struct srv *S);
};

/* Opens --grpc-listen and starts accepting (loop thread, before uv_run). 0, or -1 with a
 * message. *port gets the port bound. */
int srv_grpc_start(struct srv *S, const struct srv_grpc_hooks *hooks, struct srv_grpc **out,
		   int *port, char *err, size_t errlen);
/* The drain: stop accepting, GOAWAY to every connection, new calls UNAVAILABLE; calls in flight
 * are answered, then each connection closes. */
void srv_grpc_drain(struct srv_grpc *G);
/* Closes every connection (flushing what is written) and the listener; G is freed once libuv
 * has closed its handles. Safe with G NULL. */
void srv_grpc_close(struct srv_grpc *G);
/* A request of a gRPC call is back from the workers (loop thread, from on_done_async). */
void srv_grpc_done(struct srv_grpc *G, struct srv_req *r);
/* A repository load of a gRPC call has finished (loop thread, from on_load_done). */
void srv_grpc_load_done(struct srv_grpc *G, struct srv_req *r, int status, const char *msg);
/* gRPC's series for /metrics: calls by method and status, durations by method, connections. */
void srv_grpc_metrics_render(struct srv_buf *b);

/* ------------------------------------------------------------ between server and service */

/* One call (one HTTP/2 stream), as the service sees it. */
struct srv_grpc_call_info {
	int method;
	const uint8_t *msg; /* the request message (unary methods), without its prefix */
	size_t len;
	long long timeout_ms; /* grpc-timeout, -1 = none */
	uint64_t t_start;
	const char *peer;
};

/* Answers of the service to the server: a framed message and OK, or a status. The service
 * calls exactly one of these for a unary call, now or later (ModelInfer, loads). */
void srv_grpc_reply(struct srv_grpc_call *k, struct srv_buf *framed);
void srv_grpc_fail(struct srv_grpc_call *k, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Hands an inference request of the call to the scheduler (the server keeps it in the call's
 * order of answers); srv_grpc_hold only keeps it in that order (a repository load, answered
 * through srv_grpc_load_done). */
void srv_grpc_submit(struct srv_grpc_call *k, struct srv_req *r);
void srv_grpc_hold(struct srv_grpc_call *k, struct srv_req *r);
/* A fresh request for a call (ep V2_INFER, no model yet), or NULL when memory is short; and its
 * release (what the server's req_free does, plus the message). */
struct srv_req *srv_grpc_req_new(struct srv_grpc_call *k, uint64_t t_arrive);
void srv_grpc_req_free(struct srv_req *r);

/* What a method answers (grpc_service.c), loop thread. The service owns nothing of the call;
 * for ModelStreamInfer it is called once per request message. */
void srv_grpc_service_call(struct srv *S, struct srv_grpc_call *k,
			   const struct srv_grpc_call_info *ci);

#endif
