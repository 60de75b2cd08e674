/* Internals of cigtd, the HTTP daemon. One loop thread (libuv) owns every socket, timer, signal
 * and every libmicrohttpd call; worker threads parse request bodies, run the engine on batches
 * and encode answers. A request crosses threads exactly twice: the loop hands it to the scheduler
 * (srv_sched_submit) and a worker hands it back through the done list and a uv_async_t. In
 * between, only the thread holding it touches it. */
#ifndef CIGT_SRV_H
#define CIGT_SRV_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/options.h"
#include "cigt/engine.h"
#include "cigt/model.h"
#include <uv.h>

/* ------------------------------------------------------------------ status codes and endpoints */

/* Every status the daemon answers with; 499 marks a client that went away before its answer. */
#define SRV_STATUSES(X)                                  \
	X(200, "OK")                                     \
	X(400, "Bad Request")                            \
	X(401, "Unauthorized")                           \
	X(404, "Not Found")                              \
	X(405, "Method Not Allowed")                     \
	X(413, "Content Too Large")                      \
	X(415, "Unsupported Media Type")                 \
	X(499, "Client Closed Request")                  \
	X(500, "Internal Server Error")                  \
	X(501, "Not Implemented")                        \
	X(503, "Service Unavailable")                    \
	X(504, "Gateway Timeout")

enum srv_status_idx {
#define SRV_X_IDX(code, text) SRV_S_##code,
	SRV_STATUSES(SRV_X_IDX)
#undef SRV_X_IDX
	SRV_S_COUNT
};

int srv_status_index(int code);       /* index into the table; 500's index when unknown */
int srv_status_code(int idx);
const char *srv_status_text(int code);

/* Endpoints as they appear in cigt_requests_total{endpoint=...}. */
#define SRV_ENDPOINTS(X)                        \
	X(PAGE, "page")                         \
	X(CLASSIFY, "classify")                 \
	X(MODEL_INFO, "model_info")             \
	X(V2_SERVER, "v2_server")               \
	X(V2_LIVE, "v2_live")                   \
	X(V2_READY, "v2_ready")                 \
	X(V2_MODEL, "v2_model")                 \
	X(V2_MODEL_READY, "v2_model_ready")     \
	X(V2_INFER, "v2_infer")                 \
	X(V2_MODEL_CONFIG, "v2_model_config")   \
	X(V2_MODEL_STATS, "v2_model_stats")     \
	X(REPO_INDEX, "repository_index")       \
	X(REPO_LOAD, "repository_load")         \
	X(REPO_UNLOAD, "repository_unload")     \
	X(MODELS, "models")                     \
	X(METRICS, "metrics")                   \
	X(OTHER, "other")

enum srv_endpoint {
#define SRV_X_EP(name, text) SRV_EP_##name,
	SRV_ENDPOINTS(SRV_X_EP)
#undef SRV_X_EP
	SRV_EP_COUNT
};

const char *srv_endpoint_name(enum srv_endpoint ep);

/* ------------------------------------------------------------------------------------ logging */

enum srv_log_level { SRV_LOG_DEBUG, SRV_LOG_INFO, SRV_LOG_WARN, SRV_LOG_ERROR, SRV_LOG_OFF };

extern int srv_log_level;
void srv_log(enum srv_log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int srv_log_level_parse(const char *s); /* -1 when unknown */

/* ------------------------------------------------------------------------------------- config */

/* How the model repository changes while serving (Triton's --model-control-mode). */
enum srv_control { SRV_CONTROL_NONE, SRV_CONTROL_POLL, SRV_CONTROL_EXPLICIT };

struct srv_config {
	char *model;
	char *model_repository;
	int control_mode;         /* enum srv_control */
	int repository_poll_secs;
	char **load_models;       /* --load-model, repeatable; NULL-terminated, owned */
	int nload_models;
	char *default_model;
	char *compute;            /* --compute: the default operating point, or NULL (single path) */
	int backend;              /* --backend: 0 auto, 1 openblas, 2 onednn */
	int precision;            /* --precision: enum cigt_precision */
	char *listen;
	int workers;
	int max_batch;
	int max_delay_us;
	int queue_limit;
	int timeout_ms;
	int max_images;
	long long max_body_bytes;
	int max_image_pixels;
	int max_connections;
	int max_connections_per_ip;
	int read_timeout_ms;
	int idle_timeout_s;
	int drain_timeout_ms;
	char *auth_token_file;
	char *tls_cert;
	char *tls_key;
	int log_level;
	bool access_log;
	bool eager_dispatch; /* a lone request does not wait for its batch to fill */
	/* gRPC (src/server/grpc.h): --grpc-listen ADDR (NULL = off) and its limits. */
	char *grpc_listen;
	long long grpc_max_message_bytes;
	int grpc_max_streams;
	int grpc_max_header_bytes;
	int grpc_idle_timeout_s;
};

enum srv_action { SRV_RUN, SRV_CHECK_CONFIG, SRV_HEALTHCHECK, SRV_HELP, SRV_VERSION, SRV_DESCRIBE };

/* Parses the command line (and the --config file it names; flags win over the file) into cfg,
 * which starts from the defaults. Returns 0, or -1 with a message in err. *action says what
 * main should do; *hc_url is set for --healthcheck. */
int srv_config_parse(int argc, char **argv, struct srv_config *cfg, enum srv_action *action,
		     const char **hc_url, char *err, size_t errlen);
/* Loads config keys from a JSON object text into cfg (the file format). Pure function of the
 * bytes apart from cfg; used by the fuzz target. */
int srv_config_load_json(const char *text, size_t len, struct srv_config *cfg, char *err,
			 size_t errlen);
void srv_config_defaults(struct srv_config *cfg);
void srv_config_destroy(struct srv_config *cfg);
void srv_config_help(FILE *f);
/* The settings of cfg as a config-file object (unset ones left out): what --check-config
 * prints, and loadable again with --config. New reference; NULL when out of memory. */
struct json_t;
struct json_t *srv_config_json(const struct srv_config *cfg);
/* Prints the option tables as JSON ({"cigtd": [...], "repository": [...]}, rows as
 * cigt__opts_describe gives them) for the docs' tests (cigtd --options-json). 0 or -1. */
int srv_config_describe(FILE *f);
/* Where the default model is looked for. */
const char *srv_default_model(void);

/* ------------------------------------------------------------------------------ string buffer */

struct srv_buf {
	char *p;
	size_t len, cap;
	bool oom;
};

/* (common.c) A decimal integer in [lo, hi], or -2. */
long long srv_parse_ll(const char *s, long long lo, long long hi);

void srv_buf_put(struct srv_buf *b, const void *s, size_t n);
/* Room for extra more bytes (and the NUL kept after them) without moving len; false, with oom
 * set, when memory is short. */
bool srv_buf_reserve(struct srv_buf *b, size_t extra);
void srv_buf_puts(struct srv_buf *b, const char *s);
void srv_buf_printf(struct srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void srv_buf_json_str(struct srv_buf *b, const char *s); /* quoted, escaped */
void srv_buf_free(struct srv_buf *b);

/* ------------------------------------------------------------------------------------- codecs */

/* Outputs of the Open Inference Protocol (bit i = output i). */
enum srv_output {
	SRV_OUT_PROBS,
	SRV_OUT_CLASS,
	SRV_OUT_ROUTE,
	SRV_OUT_MACS,
	SRV_OUT_PATHS,     /* BOOL [n, paths of the trellis]: path r ran (r = mixed-radix route) */
	SRV_OUT_ESCALATED, /* BOOL [n]: the second model ran too */
	SRV_OUT_COUNT
};
const char *srv_output_name(int o);

struct srv_limits {
	int max_images;       /* samples per request */
	int max_image_pixels; /* width * height of an encoded image */
};

/* A parsed request: the samples as model input plus the options that shape the answer. */
struct srv_job {
	int n;
	float *x;             /* n * input size floats, owned */
	bool batch;           /* v1: "images" form; the answer is {"results": [...]} */
	int top_k;            /* v1: 0 = none */
	long long timeout_ms; /* -1 = the server default */
	char *id;             /* v2: echoed id or NULL, owned */
	unsigned outputs;     /* v2: requested outputs */
	unsigned binary;      /* v2: outputs sent in binary */
	/* The compute dial asked for (v1 body keys, v2 request parameters): at most one of them. */
	char compute[CIGT_POINT_NAME_MAX]; /* operating point name, "" = none */
	long long max_macs;                /* per-sample MAC budget, 0 = none */
	char ran[CIGT_POINT_NAME_MAX];     /* set by the scheduler: the point that ran, "" = none */
};

void srv_job_destroy(struct srv_job *j);

/* Parse bodies into jobs. Return 200 on success or the HTTP status of the failure (400, 413,
 * 415) with a message in err. Pure functions of their arguments (fuzz targets). ctype may be
 * NULL; header_len is Inference-Header-Content-Length or -1 when absent. */
int srv_parse_v1(const struct cigt_arch *a, const struct srv_limits *lim, const char *ctype,
		 const void *body, size_t len, struct srv_job *job, char *err, size_t errlen);
int srv_parse_v2(const struct cigt_arch *a, const struct srv_limits *lim, const char *ctype,
		 long long header_len, const void *body, size_t len, struct srv_job *job, char *err,
		 size_t errlen);
/* srv_parse_v2 without its fast path for JSON data: the reference the tests and the v2 fuzz
 * target compare srv_parse_v2 with (same status, message and job on every input). */
int srv_parse_v2_general(const struct cigt_arch *a, const struct srv_limits *lim,
			 const char *ctype, long long header_len, const void *body, size_t len,
			 struct srv_job *job, char *err, size_t errlen);

/* The fast path's scan of an OIP JSON body (codec.c): the array of inputs[0].data, when it holds
 * only plain integers 0..255 (no sign, fraction, exponent or leading zero) in arrays nested at
 * most 9 deep. */
struct srv_v2_data {
	size_t at, end; /* the array is body[at..end) */
	uint8_t *v;     /* its values in document order (malloc'd, the caller frees it) */
	size_t n, cap;
};
/* True when found and read; false when the body has no such array or anything on the way is
 * unusual (the general parser then decides), with nothing left allocated. Does not check the
 * rest of the body: jansson does. */
bool srv_v2_data_scan(const char *body, size_t len, struct srv_v2_data *d);

/* Encodes an answer. res/probs hold job->n samples. For v2, *json_len receives the length of
 * the JSON part (the Inference-Header-Content-Length) when binary outputs follow it, else -1. */
void srv_encode_v1(const struct cigt_arch *a, const char *model, long long version,
		   const struct srv_job *job, const struct cigt_result *res, const float *probs,
		   struct srv_buf *out);
void srv_encode_v2(const struct cigt_arch *a, const char *model, long long version,
		   const struct srv_job *job,
		   const struct cigt_result *res, const float *probs, struct srv_buf *out,
		   long long *json_len);
/* Checks a parsed dial request against a model (its operating points and engine) and fills
 * *d: compute names a point, max_macs picks one (cigt_engine_dial_for_budget), neither takes
 * the model's default. 200, or 400 with a message naming the problem. */
struct srv_model;
int srv_dial_resolve(const struct srv_model *m, const struct srv_job *job, struct cigt_dial *d,
		     char *err, size_t errlen);
void srv_encode_error(struct srv_buf *out, const char *msg);

/* Reads width and height of a PNG, JPEG, PGM or PPM from its header without decoding (0 on
 * success). */
/* True when the peer of a connected socket has closed it (EOF or reset), without consuming
 * anything. */
bool srv_peer_gone(int fd);

int srv_image_peek(const void *buf, size_t len, int *w, int *h);
/* Decodes standard base64 (padding optional, whitespace skipped) into a malloc'd buffer. */
int srv_base64_decode(const char *s, size_t n, uint8_t **out, size_t *outlen);

/* ------------------------------------------------------------------------------------ metrics */

#define SRV_HIST_MAX 24

struct srv_hist {
	int n;                        /* finite buckets */
	double bounds[SRV_HIST_MAX];  /* upper bounds, in output units */
	double scale;                 /* observed raw value * scale = output units */
	_Atomic uint64_t counts[SRV_HIST_MAX + 1];
	_Atomic uint64_t sum;         /* raw units */
};

void srv_hist_init(struct srv_hist *h, const double *bounds, int n, double scale);
void srv_hist_observe(struct srv_hist *h, uint64_t raw);

/* The one stats struct behind /metrics. Written by the loop and the workers with relaxed
 * atomics; read only to render /metrics. */
struct srv_stats {
	_Atomic uint64_t stat_requests[SRV_EP_COUNT][SRV_S_COUNT];
	struct srv_hist stat_request_duration;         /* ns */
	struct srv_hist stat_queue_duration;           /* ns */
	struct srv_hist stat_batch_size;               /* samples */
	struct srv_hist stat_group_size[CIGT_MAX_LAYERS]; /* rows per expert run, per layer */
	_Atomic uint64_t stat_route_samples[CIGT_MAX_LAYERS][CIGT_MAX_EXPERTS];
	_Atomic uint64_t stat_samples;
	_Atomic uint64_t stat_samples_expired;
	_Atomic uint64_t stat_macs;
	_Atomic uint64_t stat_dense_macs;
	_Atomic int64_t stat_queue_depth;
	_Atomic int64_t stat_queue_limit; /* the configured queue_limit, for saturation alerts */
	_Atomic int64_t stat_inflight;
	_Atomic uint64_t stat_reloads_ok;
	_Atomic uint64_t stat_reloads_failed;
	_Atomic int64_t stat_connections;
	_Atomic uint64_t stat_connections_rejected;
	_Atomic uint64_t stat_connections_slow;
	_Atomic uint64_t stat_queue_full;
};

extern struct srv_stats srv_stats;
void srv_stats_init(void);
/* Renders the Prometheus text format 0.0.4 (layers/experts from the serving model). */
void srv_metrics_render(struct srv_buf *b, const struct cigt_arch *a, const char *model_name,
			bool ready);

/* ------------------------------------------------------------------------------ model holder */

/* Batching settings of one model (server defaults, or its config.json). */
struct srv_batching {
	int max_batch;
	int max_delay_us;
	int queue_limit;
	int timeout_ms;
};

/* Samples by number of paths are counted exactly up to this many paths. */
#define SRV_NPATHS_MAX 16

/* Statistics of one loaded version, in the shape of Triton's statistics extension. Durations in
 * ns. Bumped by workers and the loop with relaxed atomics. */
struct srv_vstats {
	_Atomic uint64_t success_count, success_ns; /* requests answered 200, arrival to answer */
	_Atomic uint64_t fail_count, fail_ns;       /* requests answered otherwise */
	/* The stages of a request (Triton's compute_input, queue, compute_infer, compute_output;
	 * cigt_model_stage_seconds_total's decode, queue, engine, encode). input: requests parsed
	 * (whatever their answer), the time taking the body (or gRPC message) apart, decoding its
	 * images and converting them to model input, dial resolved; queue: samples computed, the
	 * time from queueing to their batch; compute: engine calls, their time; output: answers
	 * encoded (200s), the time encoding them. Before decoding, for the same requests as input
	 * (only in /metrics: Triton has no such fields): receive_ns, arrival to submission to the
	 * scheduler (the loop receiving the body; gRPC's unpacking is in input instead), and
	 * wait_ns, submission to a worker starting to decode it. */
	_Atomic uint64_t receive_ns, wait_ns;
	_Atomic uint64_t input_count, input_ns;
	_Atomic uint64_t queue_count, queue_ns;
	_Atomic uint64_t compute_count, compute_ns;
	_Atomic uint64_t output_count, output_ns;
	_Atomic uint64_t inference_count;           /* samples computed */
	_Atomic uint64_t last_inference_ms;         /* wall clock of the last batch */
	_Atomic uint64_t macs, dense_macs;
	_Atomic uint64_t route[CIGT_MAX_LAYERS][CIGT_MAX_EXPERTS]; /* expert runs (copies) */
	_Atomic uint64_t point[CIGT_MAX_POINTS + 1]; /* samples by point; [MAX]: single path */
	_Atomic uint64_t npaths[SRV_NPATHS_MAX + 1]; /* samples by paths run; [0]: more */
	_Atomic uint64_t escalated;                  /* samples the second model also ran */
	struct srv_hist duration;                   /* request duration, ns */
	/* Executions by batch size (Triton's batch_stats): batch[n] for engine calls on n
	 * samples, n = 1..nbatch-1, nbatch = max_batch + 1 (srv_model_set_batching). */
	struct srv_bstat {
		_Atomic uint64_t count, ns;
	} *batch;
	int nbatch;
};

/* Identity of a model file: a reload happens only when it changes. */
struct srv_ident {
	unsigned long long dev, ino, size;
	long long mtime_ns, ctime_ns; /* ctime: a chmod also counts */
};

/* One loaded version of a model and its engine, shared by reference between the loop and the
 * workers. An unload marks it retired and drops the registry's reference: requests already
 * holding it are answered by it, and the memory goes with the last reference. */
struct srv_model {
	_Atomic int refs;
	struct cigt_model *m;
	struct cigt_engine *e;
	uint64_t generation;
	char name[CIGT_NAME_MAX + 1];
	long long version;
	struct srv_batching bat;
	struct srv_ident ident;
	atomic_bool retired;
	int queued;               /* samples in the scheduler's queue (scheduler lock) */
	struct srv_vstats st;
	/* The compute dial. Every second model an operating point escalates to, loaded with the
	 * version from beside its file (cigt_model_load_second: name and sha256 checked), one
	 * engine each; per point its dial, ready to run; the default point (--compute) or -1. */
	int nsecond;
	struct cigt_model *second_m[CIGT_MAX_POINTS];
	struct cigt_engine *second_e[CIGT_MAX_POINTS];
	int point_second[CIGT_MAX_POINTS];                 /* index into second_*, or -1 */
	const struct cigt_engine *point_engine[CIGT_MAX_POINTS]; /* second engine or NULL */
	struct cigt_dial dials[CIGT_MAX_POINTS];
	int default_point;
};

/* Loads a model file into a holder named after the model's metadata, version 1, its engine
 * (and its second models') built with eo, with the
 * second models its operating points escalate to (a missing or mismatched one fails the load)
 * and compute (NULL = single path) as its default point (a point it lacks fails the load).
 * 0 or a negative code with a message in err. */
int srv_model_load(const char *path, const char *compute, const struct cigt_engine_opts *eo,
		   struct srv_model **out, char *err, size_t errlen);
/* The engine options of a backend (0 auto: onednn for bf16, else openblas; 1 openblas; 2
 * onednn) and a precision (enum cigt_precision). */
struct cigt_engine_opts srv_engine_opts(int backend, int precision);
/* Their names, in the order of those values (NULL-terminated). */
extern const char *const srv_backends[], *const srv_precisions[];
/* Gives a loaded holder its batching settings and the per-batch-size statistics they bound
 * (max_batch + 1 entries). Called once, before the holder is published to the workers. 0 or
 * CIGT_ENOMEM (the holder is unchanged). */
int srv_model_set_batching(struct srv_model *sm, const struct srv_batching *bat);
struct srv_model *srv_model_ref(struct srv_model *sm);
void srv_model_unref(struct srv_model *sm);
/* A reload must keep the name, input geometry, classes and trellis shape: 0 if it does. */
int srv_model_compatible(const struct cigt_arch *old, const struct cigt_arch *neu, char *err,
			 size_t errlen);

/* --------------------------------------------------------------------------- model repository */

/* Per-model settings from DIR/<name>/config.json (Triton's names, JSON):
 *   {"version_policy": {"latest": {"num_versions": 2}} | {"specific": {"versions": [1, 3]}}
 *                      | {"all": {}},
 *    "max_batch_size": 16,
 *    "dynamic_batching": {"max_queue_delay_microseconds": 200,
 *                         "default_queue_policy": {"max_queue_size": 1024,
 *                                                  "default_timeout_microseconds": 5000000}}}
 * Every key is optional; unknown keys are errors. */
enum srv_policy { SRV_POLICY_LATEST, SRV_POLICY_SPECIFIC, SRV_POLICY_ALL };
#define SRV_SPECIFIC_MAX 64

struct srv_model_cfg {
	enum srv_policy policy;
	int latest;                             /* num_versions */
	long long specific[SRV_SPECIFIC_MAX];
	int nspecific;
	struct srv_batching bat;                /* 0 = the server's setting */
	int backend, precision;                 /* 0 = the server's, else its value + 1 */
};

/* The option table of config.json (repo_config.c). */
extern const struct cigt_opt srv_model_cfg_rows[];
/* Parses a config.json text. Pure function of the bytes (fuzz target). 0 or -1 with a message. */
int srv_model_cfg_parse(const char *text, size_t len, struct srv_model_cfg *out, char *err,
			size_t errlen);
/* Parses a repository request body: the index's {"ready": bool} (index = true) or load/unload's
 * {"parameters": {...}} (empty body allowed). Pure (fuzz target). 0 or -1 with a message. */
int srv_parse_repo_body(const void *body, size_t len, bool index, bool *ready_only, char *err,
			size_t errlen);
/* The version a folder name denotes (decimal, no sign or leading zero, 1..10^15), or -1. */
long long srv_version_parse(const char *s);

struct srv_registry;
struct srv_req;

/* Called on the loop for each waiting load request when its rescan has finished: status 200 or
 * an error status with msg. */
typedef void (*srv_load_done_fn)(void *ctx, struct srv_req *r, int status, const char *msg);
/* Called on the loop after versions were retired, so workers can drop their workspaces. */
typedef void (*srv_retired_fn)(void *ctx);

/* The repository: --model PATH (one model, version 1) or --model-repository DIR. Loop thread
 * only, apart from the holders it hands out. Returns 0 or -1 with a message. */
int srv_registry_new(const struct srv_config *cfg, struct srv_registry **out, char *err,
		     size_t errlen);
/* First scan and loads, run on the calling thread before the loop serves. -1 with a message
 * when the daemon must not start (--model failed to load, repository unreadable). */
int srv_registry_load_initial(struct srv_registry *reg, char *err, size_t errlen);
/* Starts polling (poll mode) and sets the callbacks. */
void srv_registry_start(struct srv_registry *reg, uv_loop_t *loop, srv_load_done_fn load_done,
			srv_retired_fn retired, void *ctx);
/* Rescans on a worker thread (SIGHUP, poll); changes are applied on the loop. */
void srv_registry_rescan(struct srv_registry *reg, const char *why);
/* Repository API: load (answered later through load_done) or unload one model. Return 0 when
 * accepted (load) or done (unload), else an HTTP status with a message. */
int srv_registry_load(struct srv_registry *reg, const char *name, struct srv_req *r, char *err,
		      size_t errlen);
int srv_registry_unload(struct srv_registry *reg, const char *name, char *err, size_t errlen);
/* The holder serving name at version (0 = the highest ready one), with a reference the caller
 * drops; NULL with 404 and a message naming what is missing. name NULL = the default model
 * (400 when several are loaded and none is the default). */
struct srv_model *srv_registry_get(struct srv_registry *reg, const char *name, long long version,
				   int *status, char *err, size_t errlen);
/* Every model that should be loaded has a ready version and no initial load is pending. */
bool srv_registry_ready(const struct srv_registry *reg);
enum srv_control srv_registry_mode(const struct srv_registry *reg);
/* Renders the repository index: [{"name", "version", "state", "reason"}]. */
void srv_registry_index(const struct srv_registry *reg, bool ready_only, struct srv_buf *b);
/* Calls fn for every loaded version, models by name, versions descending. */
void srv_registry_foreach(const struct srv_registry *reg,
			  void (*fn)(void *ctx, const struct srv_model *m), void *ctx);
/* Loads and failures per model for /metrics. */
void srv_registry_render_loads(const struct srv_registry *reg, struct srv_buf *b);
/* The ready versions of name as a JSON list of strings, descending. */
void srv_registry_versions(const struct srv_registry *reg, const char *name, struct srv_buf *b);
/* The version policy of name's config.json (defaults when it has none). */
const struct srv_model_cfg *srv_registry_model_cfg(const struct srv_registry *reg,
						   const char *name);
/* Renders {"default": .., "models": [{"name", "versions": [...]}]} for GET /v1/models. */
void srv_registry_list(const struct srv_registry *reg, struct srv_buf *b);
/* Cancels polling and drops every model (waiters are answered 503). */
void srv_registry_stop(struct srv_registry *reg);
void srv_registry_free(struct srv_registry *reg);

/* ---------------------------------------------------------------------------------- requests */

enum srv_req_state { SRV_REQ_RECEIVING, SRV_REQ_QUEUED, SRV_REQ_DONE };

struct srv_req {
	struct srv_conn *conn;
	void *mc;              /* struct MHD_Connection */
	enum srv_endpoint ep;
	enum srv_req_state state;
	bool head;             /* HEAD request */
	char method[8];
	char path[128];        /* for the access log, truncated */
	char *ctype;           /* Content-Type, owned */
	long long header_len;  /* Inference-Header-Content-Length, -1 if absent */
	long long query_top_k, query_timeout_ms; /* -1 if absent */
	long long query_max_macs;                /* -1 if absent */
	char query_compute[CIGT_POINT_NAME_MAX];  /* "" if absent */
	struct srv_buf body;
	bool body_too_large;
	bool started;          /* the handler has seen it (libmicrohttpd parsed the whole head) */
	bool after_drain;      /* its head arrived after the drain began: refused with 503 */
	bool close;            /* refused for its framing: close the connection after the answer */
	bool bad_target;       /* the raw request target has a space or a control byte */
	uint64_t t_arrive, t_submit, t_enqueue, deadline;
	uint64_t decode_ns;    /* decoding done on the loop before the workers' (gRPC: unpacking) */
	/* Set by the worker that prepares it. */
	struct srv_model *model;
	struct srv_job job;
	struct cigt_result *res;
	float *probs;
	struct cigt_dial dial; /* resolved from the job (srv_dial_resolve) */
	atomic_int pending;
	atomic_bool expired;
	bool gone;             /* the client closed its connection before the answer */
	int fd;                /* the connection's socket, stable while the request is queued */
	/* The answer. */
	int status;
	struct srv_buf resp;
	const char *resp_ctype;
	long long resp_json_len; /* binary v2 answers: JSON part length, else -1 */
	size_t resp_bytes;
	struct srv_req *next; /* scheduler lists */
	/* A gRPC call's request (src/server/grpc.h), NULL for HTTP: the scheduler then reads
	 * grpc->msg (a ModelInferRequest) instead of body and answers a framed protobuf message
	 * (an error: its plain message) in resp. cancelled: the client reset the call; a worker
	 * treats it as a client gone. */
	struct srv_grpc_infer *grpc;
	atomic_bool cancelled;
};

/* Decides, from the parsed head alone and before any body byte is read, whether the request's
 * framing is sound (src/server/framing.c): exactly one Host on HTTP/1.1, header names that are
 * tokens, values without control bytes (NUL included), at most one Content-Length of plain
 * digits, never with Transfer-Encoding, which may only be a single "chunked" on HTTP/1.1.
 * Returns 0, or 400 / 501 with a one-line message; the caller answers once and closes. Loop
 * thread, inside the first call of the access handler (method points at the parsed head). */
struct MHD_Connection;
int srv_framing_check(struct MHD_Connection *mc, const char *method, const char *version,
		      char *msg, size_t msglen);

/* ------------------------------------------------------------------------------------ signals */

/* What cigtd does on each signal an operator can send (src/server/signals.c). */
enum srv_sig_action {
	SRV_SIG_DRAIN,  /* stop accepting, answer what is in flight, exit 0 */
	SRV_SIG_RELOAD, /* reload the model file; the old one serves until the new one is ready */
	SRV_SIG_STATUS, /* log one line with the server's state */
	SRV_SIG_IGNORE, /* log one line saying it was ignored */
};

struct srv_signal {
	int signum;
	const char *name;
	enum srv_sig_action action;
};

/* Every signal cigtd catches, in number order, and how many. SIGPIPE is ignored outright (a
 * closed socket raises it); SIGKILL and SIGSTOP cannot be caught; the fault signals (SEGV, BUS,
 * FPE, ILL, ABRT, TRAP, SYS) keep their default so a bug still leaves a core. */
extern const struct srv_signal srv_signals[];
extern const int srv_nsignals;
/* The signal section of --help and the README. */
void srv_signals_help(FILE *f);

/* Whether a raw request target, as libmicrohttpd's URI log callback gets it (the request line
 * cut in place before the version, not yet unescaped), is free of spaces and control bytes, a NUL
 * included; libmicrohttpd takes the last space on the line as the end of the target. */
bool srv_framing_target_ok(const char *target);

void srv_req_fail(struct srv_req *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The scheduler's gRPC halves (src/server/grpc_codec.c) for a request with r->grpc, on a
 * worker: the job from its ModelInferRequest (200, or a status with a message), and its
 * answer, a framed ModelInferResponse (or ModelStreamInferResponse), into r->resp (0 or
 * CIGT_ENOMEM). */
int srv_grpc_prep(const struct cigt_arch *a, const struct srv_limits *lim, struct srv_req *r,
		  char *err, size_t errlen);
int srv_grpc_finish(const struct cigt_arch *a, struct srv_req *r);

/* --------------------------------------------------------------------------------- scheduler */

struct srv_sched;

/* done_cb runs on a worker thread whenever a request is finished (answer or error set); it must
 * only hand the request to the loop (the server pushes it on a list and calls uv_async_send). */
typedef void (*srv_done_fn)(void *ctx, struct srv_req *r);

int srv_sched_new(const struct srv_config *cfg, srv_done_fn done, void *ctx,
		  struct srv_sched **out);
/* Hands a received request to the workers (parse, queue, batch, encode). */
void srv_sched_submit(struct srv_sched *s, struct srv_req *r);
/* Tells the workers that versions were retired (they drop those workspaces). Loop thread. */
void srv_sched_wake(struct srv_sched *s);
/* Stops the workers after the queues are empty and joins them. */
void srv_sched_free(struct srv_sched *s);

/* ---------------------------------------------------------------------------------- routing */

struct srv_route {
	enum srv_endpoint ep;
	bool post;                     /* the endpoint takes POST (else GET and HEAD) */
	bool model_path;               /* the path names a model */
	char model[CIGT_NAME_MAX + 1]; /* "" = none named */
	long long version;             /* 0 = unversioned, -1 = not a version number */
};

/* Routes a request path (pure): the first row of srv_routes that matches. Unknown paths get
 * SRV_EP_OTHER. */
void srv_route_path(const char *url, struct srv_route *rt);

/* The route table (route.c): every path cigtd serves, as a template in proto/http-api.yaml's
 * spelling ("/v2/models/{name}/versions/{version}/infer"), in matching order. A POST row takes
 * only POST; the others take GET and HEAD; any other method is 405. */
struct srv_route_def {
	const char *path;
	enum srv_endpoint ep;
	bool post;
};
extern const struct srv_route_def srv_routes[];
extern const size_t srv_nroutes;

/* ------------------------------------------------------------------------ model endpoints */

/* GET /v1/model and /v1/models/{name}[/versions/{v}]. */
void srv_api_model_info(const struct srv_model *m, struct srv_buf *b);
/* GET /v2/models/{name}[/versions/{v}] (OIP model metadata); versions: the ready ones. */
void srv_api_v2_meta(const struct srv_registry *reg, const struct srv_model *m,
		     struct srv_buf *b);
/* GET /v2/models/{name}[/versions/{v}]/config (Triton's model configuration, JSON). */
void srv_api_v2_config(const struct srv_registry *reg, const struct srv_model *m,
		       struct srv_buf *b);
/* GET /v2/models[/{name}[/versions/{v}]]/stats (Triton's statistics extension). name NULL =
 * every loaded version; version 0 = every version of name. */
void srv_api_v2_stats(const struct srv_registry *reg, const char *name, long long version,
		      struct srv_buf *b);
/* Per-version series for /metrics: requests, durations, samples, MACs, routes. */
void srv_api_metrics(const struct srv_registry *reg, struct srv_buf *b);
/* Records an answered inference request in its version's statistics (loop thread). */
void srv_api_observe(struct srv_model *m, int status, uint64_t ns);

/* ----------------------------------------------------------------------------------- server */

int srv_run(const struct srv_config *cfg);
int srv_check_config(const struct srv_config *cfg);
int srv_healthcheck(const char *url);

extern const char srv_page_html[];
extern const size_t srv_page_html_len;

#endif
