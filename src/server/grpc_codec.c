/* The gRPC codec: ModelInferRequest in (into the scheduler's srv_job, under the same rules as
 * the HTTP side's OIP codec), ModelInferResponse out, and the REST side's JSON renderings of
 * metadata, configuration, statistics and the repository index read back into their gRPC
 * messages. Messages are encoded and decoded by protobuf-c from proto/; this file only fills and
 * reads the structs. Pure functions of their arguments (the fuzz target grpc drives the
 * decoder). */
#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/model.h"
#include "codec.h"
#include "grpc.h"
#include "model_config.pb-c.h"

/* ------------------------------------------------------------------- names and statuses */

static const char *const code_names[SRV_GRPC_NCODES] = {
#define SRV_X_GCN(n, name) [n] = #name,
	SRV_GRPC_CODES(SRV_X_GCN)
#undef SRV_X_GCN
};

const char *srv_grpc_code_name(int code)
{
	return code >= 0 && code < SRV_GRPC_NCODES ? code_names[code] : "UNKNOWN";
}

int srv_grpc_code_of_http(int status)
{
	switch (status) {
	case 200:
		return SRV_GRPC_OK;
	case 400:
	case 415:
		return SRV_GRPC_INVALID_ARGUMENT;
	case 401:
		return SRV_GRPC_UNAUTHENTICATED;
	case 404:
		return SRV_GRPC_NOT_FOUND;
	case 413:
		return SRV_GRPC_RESOURCE_EXHAUSTED;
	case 499:
		return SRV_GRPC_CANCELLED;
	case 501:
		return SRV_GRPC_UNIMPLEMENTED;
	case 503:
		return SRV_GRPC_UNAVAILABLE;
	case 504:
		return SRV_GRPC_DEADLINE_EXCEEDED;
	default:
		return SRV_GRPC_INTERNAL;
	}
}

static const char *const method_names[SRV_GM_COUNT] = {
#define SRV_X_GMN(id, name) name,
	SRV_GRPC_METHODS(SRV_X_GMN)
#undef SRV_X_GMN
};

const char *srv_grpc_method_name(int m)
{
	return m >= 0 && m < SRV_GM_COUNT ? method_names[m] : method_names[SRV_GM_UNKNOWN];
}

int srv_grpc_method_of_path(const char *path, char *err, size_t errlen)
{
	static const char svc[] = "/" SRV_GRPC_SERVICE "/";
	if (strncmp(path, svc, sizeof svc - 1)) {
		const char *slash = path[0] == '/' ? strchr(path + 1, '/') : NULL;
		int n = slash ? (int)(slash - path - 1) : (int)strlen(path);
		snprintf(err, errlen, "unknown service '%.*s' (this server has %s)", n > 80 ? 80 : n,
			 path[0] == '/' ? path + 1 : path, SRV_GRPC_SERVICE);
		return SRV_GM_UNKNOWN;
	}
	const char *m = path + sizeof svc - 1;
	for (int i = 0; i < SRV_GM_UNKNOWN; i++)
		if (!strcmp(m, method_names[i]))
			return i;
	snprintf(err, errlen, "unknown method '%.80s' of service %s", m, SRV_GRPC_SERVICE);
	return SRV_GM_UNKNOWN;
}

/* ---------------------------------------------------------------------------- framing */

int srv_grpc_frame_scan(const uint8_t *buf, size_t n, long long max, uint32_t *len)
{
	if (n < 5)
		return SRV_GRPC_FRAME_MORE;
	*len = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 | buf[4];
	if (buf[0] > 1)
		return SRV_GRPC_FRAME_BADFLAG;
	if (buf[0] == 1)
		return SRV_GRPC_FRAME_COMPRESSED;
	if ((long long)*len > max)
		return SRV_GRPC_FRAME_TOO_BIG;
	return n - 5 < *len ? SRV_GRPC_FRAME_MORE : SRV_GRPC_FRAME_OK;
}

/* --------------------------------------------------------------------------- headers */

long long srv_grpc_timeout_ms(const char *v, size_t len)
{
	if (len < 2 || len > 9)
		return -1;
	long long n = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		n = n * 10 + (v[i] - '0');
	}
	/* n < 10^8, so n * 3600000 fits in 64 bits. */
	long long ms;
	switch (v[len - 1]) {
	case 'H':
		ms = n * 3600000;
		break;
	case 'M':
		ms = n * 60000;
		break;
	case 'S':
		ms = n * 1000;
		break;
	case 'm':
		ms = n;
		break;
	case 'u':
		ms = n / 1000;
		break;
	case 'n':
		ms = n / 1000000;
		break;
	default:
		return -1;
	}
	return ms > 3600000 ? 3600000 : ms;
}

void srv_grpc_percent_encode(const char *msg, char *buf, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t k = 0;
	if (!n)
		return;
	for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
		if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
			if (k + 1 >= n)
				break;
			buf[k++] = (char)*p;
		} else {
			if (k + 3 >= n)
				break;
			buf[k++] = '%';
			buf[k++] = hex[*p >> 4];
			buf[k++] = hex[*p & 15];
		}
	}
	buf[k] = 0;
}

/* ------------------------------------------------------------------------- allocation */

/* Every struct of one message under construction, freed together once it is packed. */
struct arena {
	void **p;
	size_t n, cap;
	bool oom;
};

static void *arena_alloc(struct arena *A, size_t size)
{
	if (A->oom)
		return NULL;
	if (A->n == A->cap) {
		size_t cap = A->cap ? 2 * A->cap : 64;
		void **np = realloc(A->p, cap * sizeof *np);
		if (!np) {
			A->oom = true;
			return NULL;
		}
		A->p = np;
		A->cap = cap;
	}
	void *x = calloc(1, size ? size : 1);
	if (!x) {
		A->oom = true;
		return NULL;
	}
	return A->p[A->n++] = x;
}

static void arena_free(struct arena *A)
{
	for (size_t i = 0; i < A->n; i++)
		free(A->p[i]);
	free(A->p);
	*A = (struct arena){0};
}

/* A new protobuf-c struct of type T initialised with its INIT macro, or NULL. */
#define ARENA_NEW(A, T, INIT)                                         \
	({                                                            \
		T *x_ = arena_alloc((A), sizeof(T));                 \
		if (x_)                                              \
			*x_ = (T)INIT;                               \
		x_;                                                  \
	})

int srv_grpc_pack(const ProtobufCMessage *m, struct srv_buf *out)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	if (n > 0xffffffffu || !srv_buf_reserve(out, 5 + n))
		return CIGT_ENOMEM;
	uint8_t *p = (uint8_t *)out->p + out->len;
	p[0] = 0; /* not compressed */
	p[1] = (uint8_t)(n >> 24);
	p[2] = (uint8_t)(n >> 16);
	p[3] = (uint8_t)(n >> 8);
	p[4] = (uint8_t)n;
	protobuf_c_message_pack(m, p + 5);
	out->len += 5 + n;
	out->p[out->len] = 0;
	return 0;
}

/* ------------------------------------------------------------------ ModelInferRequest in */

static const char *const out_names[SRV_OUT_COUNT] = {"probabilities", "class", "route",
						     "macs", "paths", "escalated"};

static const char *param_kind(const Inference__InferParameter *p)
{
	switch (p ? p->parameter_choice_case : 0) {
	case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM:
		return "a bool_param";
	case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM:
		return "an int64_param";
	case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM:
		return "a string_param";
	case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_DOUBLE_PARAM:
		return "a double_param";
	case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM:
		return "a uint64_param";
	default:
		return "no value";
	}
}

/* An integer parameter (int64_param, or uint64_param that fits), else false. */
static bool param_int(const Inference__InferParameter *p, long long *v)
{
	if (!p)
		return false;
	if (p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM) {
		*v = p->int64_param;
		return true;
	}
	if (p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM &&
	    p->uint64_param <= INT64_MAX) {
		*v = (long long)p->uint64_param;
		return true;
	}
	return false;
}

/* The request's parameters: the dial, the deadline and raw or typed outputs; others ignored. */
static int infer_params(const Inference__ModelInferRequest *q, struct srv_job *job, bool *raw,
			char *err, size_t errlen)
{
	for (size_t i = 0; i < q->n_parameters; i++) {
		const char *key = q->parameters[i]->key;
		const Inference__InferParameter *p = q->parameters[i]->value;
		long long v;
		if (!strcmp(key, "binary_data_output")) {
			if (!p || p->parameter_choice_case !=
					  INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM)
				return FAIL(400, "parameters.binary_data_output: expected a "
						 "bool_param, not %s", param_kind(p));
			*raw = p->bool_param;
		} else if (!strcmp(key, "timeout_ms")) {
			if (!param_int(p, &v) || v < 0 || v > 3600000)
				return FAIL(400, "parameters.timeout_ms must be an integer in "
						 "0..3600000");
			if (job->timeout_ms < 0 || v < job->timeout_ms)
				job->timeout_ms = v;
		} else if (!strcmp(key, "compute") || !strcmp(key, "max_macs")) {
			/* The HTTP side's checks and messages, on the same values as JSON. */
			json_t *jv = NULL;
			if (p && p->parameter_choice_case ==
					 INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM)
				jv = json_string(p->string_param);
			else if (param_int(p, &v))
				jv = json_integer(v);
			else if (p && p->parameter_choice_case ==
					      INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM)
				jv = json_boolean(p->bool_param);
			else
				jv = json_null();
			if (!jv)
				jv = json_null(); /* a string that is not UTF-8 */
			int status = srv_parse_dial_key(key, jv, "parameters.", job, err, errlen);
			json_decref(jv);
			if (status != 200)
				return status;
		}
	}
	return srv_check_dial(job, err, errlen);
}

static int infer_outputs(const Inference__ModelInferRequest *q, struct srv_job *job, char *err,
			 size_t errlen)
{
	if (!q->n_outputs) {
		job->outputs = (1u << SRV_OUT_COUNT) - 1;
		return 200;
	}
	job->outputs = 0;
	for (size_t i = 0; i < q->n_outputs; i++) {
		const Inference__ModelInferRequest__InferRequestedOutputTensor *o = q->outputs[i];
		int which = -1;
		for (int k = 0; k < SRV_OUT_COUNT; k++)
			if (!strcmp(o->name, out_names[k]))
				which = k;
		if (which < 0)
			return FAIL(400, "outputs[%zu]: unknown output '%.64s' (probabilities, class, "
					 "route, macs, paths, escalated)", i, o->name);
		for (size_t j = 0; j < o->n_parameters; j++) {
			const Inference__InferParameter *p = o->parameters[j]->value;
			if (!strcmp(o->parameters[j]->key, "binary_data") &&
			    (!p || p->parameter_choice_case !=
					   INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM))
				return FAIL(400, "outputs[%zu].parameters.binary_data: expected a "
						 "bool_param, not %s", i, param_kind(p));
		}
		job->outputs |= 1u << which;
	}
	return 200;
}

/* Which typed field of contents holds values, for messages ("" when none does). */
static const char *contents_used(const Inference__InferTensorContents *c)
{
	if (!c)
		return "";
	return c->n_bool_contents	? "bool_contents"
	       : c->n_int_contents	? "int_contents"
	       : c->n_int64_contents	? "int64_contents"
	       : c->n_uint_contents	? "uint_contents"
	       : c->n_uint64_contents ? "uint64_contents"
	       : c->n_fp32_contents	? "fp32_contents"
	       : c->n_fp64_contents	? "fp64_contents"
	       : c->n_bytes_contents	? "bytes_contents"
				: "";
}

static int infer_data(const struct cigt_arch *a, const Inference__ModelInferRequest *q,
		      bool fp32, size_t want, struct srv_job *job, char *err, size_t errlen)
{
	const Inference__ModelInferRequest__InferInputTensor *in = q->inputs[0];
	const char *used = contents_used(in->contents);
	const size_t esz = fp32 ? 4 : 1;
	if (q->n_raw_input_contents) {
		if (q->n_raw_input_contents != 1)
			return FAIL(400, "raw_input_contents: %zu entries for the one input 'image'",
				    q->n_raw_input_contents);
		if (used[0])
			return FAIL(400, "inputs[0].contents.%s and raw_input_contents both given",
				    used);
		const ProtobufCBinaryData *raw = &q->raw_input_contents[0];
		if (raw->len != want * esz)
			return FAIL(400, "raw_input_contents[0]: %zu bytes, the shape and datatype "
					 "need %zu", raw->len, want * esz);
		for (size_t i = 0; i < want; i++) {
			if (!fp32) {
				job->x[i] = raw->data[i];
				continue;
			}
			float f;
			memcpy(&f, raw->data + 4 * i, 4); /* little-endian host (x86-64, arm64) */
			if (!(f >= a->range_lo && f <= a->range_hi))
				return FAIL(400, "raw_input_contents[0]: value %zu is %g, outside the "
						 "model's input range [%g, %g]", i, (double)f,
					    (double)a->range_lo, (double)a->range_hi);
			job->x[i] = f;
		}
		return 200;
	}
	const char *field = fp32 ? "fp32_contents" : "uint_contents";
	if (!used[0])
		return FAIL(400, "inputs[0]: no data (raw_input_contents, or contents.%s)", field);
	if (strcmp(used, field))
		return FAIL(400, "inputs[0].contents: %s data goes in %s, not %s",
			    fp32 ? "FP32" : "UINT8", field, used);
	const Inference__InferTensorContents *c = in->contents;
	size_t n = fp32 ? c->n_fp32_contents : c->n_uint_contents;
	/* Only the datatype's field may hold values. */
	size_t total = c->n_bool_contents + c->n_int_contents + c->n_int64_contents +
		       c->n_uint_contents + c->n_uint64_contents + c->n_fp32_contents +
		       c->n_fp64_contents + c->n_bytes_contents;
	if (total != n)
		return FAIL(400, "inputs[0].contents: values in more than one field (only %s)",
			    field);
	if (n != want)
		return FAIL(400, "inputs[0].contents.%s: %zu values, the shape needs %zu", field, n,
			    want);
	for (size_t i = 0; i < want; i++) {
		if (!fp32) {
			if (c->uint_contents[i] > 255)
				return FAIL(400, "inputs[0].contents.uint_contents[%zu] is %u, not a "
						 "UINT8 in 0..255", i, c->uint_contents[i]);
			job->x[i] = (float)c->uint_contents[i];
			continue;
		}
		float f = c->fp32_contents[i];
		if (!(f >= a->range_lo && f <= a->range_hi))
			return FAIL(400, "inputs[0].contents.fp32_contents[%zu] is %g, outside the "
					 "model's input range [%g, %g]", i, (double)f,
				    (double)a->range_lo, (double)a->range_hi);
		job->x[i] = f;
	}
	return 200;
}

static int infer_job(const struct cigt_arch *a, const struct srv_limits *lim,
		     const Inference__ModelInferRequest *q, struct srv_job *job, char *err,
		     size_t errlen)
{
	bool raw = true;
	int status = infer_params(q, job, &raw, err, errlen);
	if (status != 200)
		return status;
	if ((status = infer_outputs(q, job, err, errlen)) != 200)
		return status;
	job->binary = raw ? job->outputs : 0;
	if (q->id[0] && !(job->id = strdup(q->id)))
		return FAIL(500, "out of memory");
	if (q->n_inputs != 1)
		return FAIL(400, "inputs: %zu inputs, expected the one input 'image'", q->n_inputs);
	const Inference__ModelInferRequest__InferInputTensor *in = q->inputs[0];
	if (strcmp(in->name, "image"))
		return FAIL(400, "inputs[0].name: the model's input is named 'image'");
	if (in->n_shape < 1 || in->n_shape > 8)
		return FAIL(400, "inputs[0].shape: expected an array of dimensions");
	int64_t total = 1;
	int st = srv_oip_shape(a, lim, in->shape, in->n_shape, &total, err, errlen);
	if (st != 200)
		return st;
	const int64_t *dims = in->shape;
	bool fp32;
	if (!strcmp(in->datatype, "UINT8"))
		fp32 = false;
	else if (!strcmp(in->datatype, "FP32"))
		fp32 = true;
	else
		return FAIL(400, "inputs[0].datatype: '%.32s' is not supported (UINT8 or FP32)",
			    in->datatype);
	if ((status = srv_alloc_samples(a, job, (int)dims[0], err, errlen)) != 200)
		return status;
	if ((status = infer_data(a, q, fp32, (size_t)total, job, err, errlen)) != 200)
		return status;
	if (!fp32)
		cigt_model_preprocess_chw(a, job->x, (size_t)total);
	return 200;
}

int srv_grpc_infer_job(const struct cigt_arch *a, const struct srv_limits *lim,
		       const Inference__ModelInferRequest *q, struct srv_job *job, char *err,
		       size_t errlen)
{
	int status = infer_job(a, lim, q, job, err, errlen);
	if (status != 200)
		srv_job_destroy(job);
	return status;
}

/* Whether m and every message inside it are free of what protobuf-c lets through but protobuf
 * forbids: field number 0 (protobuf-c reads a 2-byte varint tag of 0 as an unknown field, then
 * writes it as one byte that it refuses to read back; found by the fuzz target grpc). */
static bool msg_sane(const ProtobufCMessage *m, int depth)
{
	if (depth > 16)
		return false;
	for (unsigned i = 0; i < m->n_unknown_fields; i++)
		if (m->unknown_fields[i].tag == 0)
			return false;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned f = 0; f < d->n_fields; f++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[f];
		if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		const char *at = (const char *)m + fd->offset;
		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)((const char *)m + fd->quantifier_offset);
			ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)at;
			for (size_t k = 0; k < n; k++)
				if (v[k] && !msg_sane(v[k], depth + 1))
					return false;
		} else {
			const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)at;
			/* A oneof member's pointer is only meaningful when it is the case set. */
			if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF &&
			    *(const uint32_t *)((const char *)m + fd->quantifier_offset) != fd->id)
				continue;
			if (sub && !msg_sane(sub, depth + 1))
				return false;
		}
	}
	return true;
}

Inference__ModelInferRequest *srv_grpc_infer_unpack(const uint8_t *msg, size_t len)
{
	Inference__ModelInferRequest *q = inference__model_infer_request__unpack(NULL, len, msg);
	if (q && !msg_sane(&q->base, 0)) {
		inference__model_infer_request__free_unpacked(q, NULL);
		q = NULL;
	}
	return q;
}

int srv_grpc_infer_parse(const struct cigt_arch *a, const struct srv_limits *lim,
			 const uint8_t *msg, size_t len, Inference__ModelInferRequest **out,
			 struct srv_job *job, char *err, size_t errlen)
{
	*out = srv_grpc_infer_unpack(msg, len);
	if (!*out)
		return FAIL(400, "the message is not a ModelInferRequest (it does not decode)");
	int status = srv_grpc_infer_job(a, lim, *out, job, err, errlen);
	if (status != 200) {
		inference__model_infer_request__free_unpacked(*out, NULL);
		*out = NULL;
	}
	return status;
}

/* ----------------------------------------------------------------- ModelInferResponse out */

static Inference__InferParameter *param_new(struct arena *A)
{
	return ARENA_NEW(A, Inference__InferParameter, INFERENCE__INFER_PARAMETER__INIT);
}

/* The per-sample columns every output points into, filled in one pass over the results. */
struct enc_cols {
	int64_t *cls, *macs;
	int32_t *route;
	uint8_t *paths, *esc;
	long long total; /* MACs of the whole request */
};

static int enc_columns(struct arena *A, const struct cigt_arch *a, const struct cigt_result *res,
		       int n, struct enc_cols *c)
{
	const int L = a->nlayers, P = srv_arch_paths(a);
	c->cls = arena_alloc(A, (size_t)n * sizeof *c->cls);
	c->macs = arena_alloc(A, (size_t)n * sizeof *c->macs);
	c->route = arena_alloc(A, (size_t)n * L * sizeof *c->route);
	c->paths = arena_alloc(A, (size_t)n * P);
	c->esc = arena_alloc(A, (size_t)n);
	if (A->oom)
		return CIGT_ENOMEM;
	c->total = 0;
	for (int i = 0; i < n; i++) {
		c->cls[i] = res[i].cls;
		c->macs[i] = res[i].macs;
		c->total += res[i].macs;
		c->esc[i] = res[i].escalated;
		for (int l = 0; l < L; l++)
			c->route[i * L + l] = res[i].route[l];
		int idx = 0;
		if (!res[i].paths)
			for (int l = 0; l < L; l++)
				idx = idx * a->layers[l].experts + res[i].route[l];
		for (int p = 0; p < P; p++)
			c->paths[(size_t)i * P + p] = res[i].paths ? p < 64 && (res[i].paths >> p & 1)
								   : p == idx;
	}
	return 0;
}

/* Parameters: the point that ran, and the request's MACs against the dense trellis. */
static int enc_parameters(struct arena *A, Inference__ModelInferResponse *r,
			  const struct cigt_arch *a, const struct srv_job *job, long long total)
{
	static const char *const keys[4] = {"compute", "macs", "dense_macs", "compute_saved"};
	Inference__ModelInferResponse__ParametersEntry **pe = arena_alloc(A, 4 * sizeof *pe);
	if (!pe)
		return CIGT_ENOMEM;
	const long long dense = (long long)a->dense_macs * job->n;
	for (int k = job->ran[0] ? 0 : 1; k < 4; k++) {
		Inference__ModelInferResponse__ParametersEntry *e =
			ARENA_NEW(A, Inference__ModelInferResponse__ParametersEntry,
				  INFERENCE__MODEL_INFER_RESPONSE__PARAMETERS_ENTRY__INIT);
		Inference__InferParameter *v = param_new(A);
		if (!e || !v)
			return CIGT_ENOMEM;
		e->key = (char *)keys[k];
		e->value = v;
		if (k == 0) {
			v->parameter_choice_case =
				INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM;
			v->string_param = (char *)job->ran;
		} else if (k < 3) {
			v->parameter_choice_case =
				INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
			v->int64_param = k == 1 ? total : dense;
		} else {
			v->parameter_choice_case =
				INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_DOUBLE_PARAM;
			v->double_param = dense > 0 ? 1.0 - (double)total / (double)dense : 0.0;
		}
		pe[r->n_parameters++] = e;
	}
	r->parameters = pe;
	return 0;
}

/* Output o's values as typed contents (the JSON-like form, when raw was not asked for). */
static Inference__InferTensorContents *enc_typed(struct arena *A, int o, size_t cnt,
						 const void *data)
{
	Inference__InferTensorContents *c =
		ARENA_NEW(A, Inference__InferTensorContents, INFERENCE__INFER_TENSOR_CONTENTS__INIT);
	if (!c)
		return NULL;
	switch (o) {
	case SRV_OUT_PROBS:
		c->n_fp32_contents = cnt;
		c->fp32_contents = (float *)data;
		break;
	case SRV_OUT_CLASS:
	case SRV_OUT_MACS:
		c->n_int64_contents = cnt;
		c->int64_contents = (int64_t *)data;
		break;
	case SRV_OUT_ROUTE:
		c->n_int_contents = cnt;
		c->int_contents = (int32_t *)data;
		break;
	default: {
		protobuf_c_boolean *b = arena_alloc(A, cnt * sizeof *b);
		if (!b)
			return NULL;
		for (size_t i = 0; i < cnt; i++)
			b[i] = ((const uint8_t *)data)[i];
		c->n_bool_contents = cnt;
		c->bool_contents = b;
		break;
	}
	}
	return c;
}

/* Output tensor o of n samples (inner values each, 0: a scalar per sample); with raw, its wire
 * bytes go to *rawc instead of typed contents. */
static Inference__ModelInferResponse__InferOutputTensor *
enc_output(struct arena *A, int o, int n, int inner, const void *data, bool raw,
	   ProtobufCBinaryData *rawc)
{
	static const char *const dtypes[SRV_OUT_COUNT] = {"FP32", "INT64", "INT32", "INT64",
							  "BOOL",  "BOOL"};
	Inference__ModelInferResponse__InferOutputTensor *t =
		ARENA_NEW(A, Inference__ModelInferResponse__InferOutputTensor,
			  INFERENCE__MODEL_INFER_RESPONSE__INFER_OUTPUT_TENSOR__INIT);
	int64_t *shape = arena_alloc(A, 2 * sizeof *shape);
	if (!t || !shape)
		return NULL;
	t->name = (char *)out_names[o];
	t->datatype = (char *)dtypes[o];
	shape[0] = n;
	shape[1] = inner;
	t->shape = shape;
	t->n_shape = inner > 0 ? 2 : 1;
	const size_t cnt = (size_t)n * (size_t)(inner > 0 ? inner : 1);
	const size_t esz = o == SRV_OUT_PROBS || o == SRV_OUT_ROUTE   ? 4
			   : o == SRV_OUT_CLASS || o == SRV_OUT_MACS ? 8
								     : 1;
	if (raw) /* Little-endian host: the arrays are the wire bytes. */
		*rawc = (ProtobufCBinaryData){cnt * esz, (uint8_t *)data};
	else if (!(t->contents = enc_typed(A, o, cnt, data)))
		return NULL;
	return t;
}

int srv_grpc_infer_encode(const struct cigt_arch *a, const char *model, long long version,
			  const struct srv_job *job, const struct cigt_result *res,
			  const float *probs, bool stream, struct srv_buf *out)
{
	const int n = job->n, K = a->nclasses, L = a->nlayers, P = srv_arch_paths(a);
	const int inner[SRV_OUT_COUNT] = {K, 0, L, 0, P, 0};
	const bool raw = job->binary != 0;
	struct arena A = {0};
	struct enc_cols c;
	Inference__ModelInferResponse *r = ARENA_NEW(&A, Inference__ModelInferResponse,
						     INFERENCE__MODEL_INFER_RESPONSE__INIT);
	char vbuf[24];
	snprintf(vbuf, sizeof vbuf, "%lld", version);
	int nout = 0;
	for (int o = 0; o < SRV_OUT_COUNT; o++)
		nout += (job->outputs >> o) & 1;
	Inference__ModelInferResponse__InferOutputTensor **outs =
		arena_alloc(&A, (size_t)nout * sizeof *outs);
	ProtobufCBinaryData *raws = raw ? arena_alloc(&A, (size_t)nout * sizeof *raws) : NULL;
	if (A.oom || enc_columns(&A, a, res, n, &c))
		goto oom;
	r->model_name = (char *)model;
	r->model_version = vbuf;
	if (job->id)
		r->id = job->id;
	if (enc_parameters(&A, r, a, job, c.total))
		goto oom;
	const void *data[SRV_OUT_COUNT] = {probs, c.cls, c.route, c.macs, c.paths, c.esc};
	int j = 0;
	for (int o = 0; o < SRV_OUT_COUNT; o++)
		if (job->outputs & 1u << o) {
			outs[j] = enc_output(&A, o, n, inner[o], data[o], raw, raw ? &raws[j] : NULL);
			if (!outs[j++])
				goto oom;
		}
	r->n_outputs = (size_t)nout;
	r->outputs = outs;
	if (raw) {
		r->n_raw_output_contents = (size_t)nout;
		r->raw_output_contents = raws;
	}
	int rc;
	if (stream) {
		Inference__ModelStreamInferResponse s = INFERENCE__MODEL_STREAM_INFER_RESPONSE__INIT;
		s.infer_response = r;
		rc = srv_grpc_pack(&s.base, out);
	} else {
		rc = srv_grpc_pack(&r->base, out);
	}
	arena_free(&A);
	return rc;
oom:
	arena_free(&A);
	return CIGT_ENOMEM;
}

int srv_grpc_stream_error(const char *msg, struct srv_buf *out)
{
	Inference__ModelStreamInferResponse s = INFERENCE__MODEL_STREAM_INFER_RESPONSE__INIT;
	s.error_message = (char *)msg;
	return srv_grpc_pack(&s.base, out);
}

/* ------------------------------------------------------------ the REST side's JSON, read back */

static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static long long jint(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* A JSON array of integers into a new int64 array; *n gets its length. */
static int64_t *jints(struct arena *A, const json_t *arr, size_t *n)
{
	*n = json_array_size(arr);
	int64_t *v = arena_alloc(A, *n * sizeof *v);
	for (size_t i = 0; v && i < *n; i++)
		v[i] = json_integer_value(json_array_get(arr, i));
	return v;
}

static json_t *parse(const char *json, size_t len)
{
	return json_loadb(json, len, 0, NULL);
}

static int finish(struct arena *A, json_t *root, const ProtobufCMessage *m, struct srv_buf *out)
{
	int rc = A->oom ? CIGT_ENOMEM : srv_grpc_pack(m, out);
	arena_free(A);
	json_decref(root);
	return rc;
}

static Inference__ModelMetadataResponse__TensorMetadata **tensors(struct arena *A, const json_t *arr,
								 size_t *n)
{
	*n = json_array_size(arr);
	Inference__ModelMetadataResponse__TensorMetadata **ts = arena_alloc(A, *n * sizeof *ts);
	for (size_t i = 0; ts && i < *n; i++) {
		const json_t *o = json_array_get(arr, i);
		Inference__ModelMetadataResponse__TensorMetadata *t =
			ARENA_NEW(A, Inference__ModelMetadataResponse__TensorMetadata,
				  INFERENCE__MODEL_METADATA_RESPONSE__TENSOR_METADATA__INIT);
		if (!t)
			return NULL;
		t->name = (char *)jstr(o, "name");
		t->datatype = (char *)jstr(o, "datatype");
		t->shape = jints(A, json_object_get(o, "shape"), &t->n_shape);
		ts[i] = t;
	}
	return ts;
}

int srv_grpc_meta_from_json(const char *json, size_t len, struct srv_buf *out)
{
	json_t *root = parse(json, len);
	if (!json_is_object(root)) {
		json_decref(root);
		return CIGT_EFORMAT;
	}
	struct arena A = {0};
	Inference__ModelMetadataResponse m = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
	m.name = (char *)jstr(root, "name");
	m.platform = (char *)jstr(root, "platform");
	const json_t *vs = json_object_get(root, "versions");
	m.n_versions = json_array_size(vs);
	m.versions = arena_alloc(&A, m.n_versions * sizeof *m.versions);
	for (size_t i = 0; m.versions && i < m.n_versions; i++)
		m.versions[i] = (char *)json_string_value(json_array_get(vs, i));
	m.inputs = tensors(&A, json_object_get(root, "inputs"), &m.n_inputs);
	m.outputs = tensors(&A, json_object_get(root, "outputs"), &m.n_outputs);
	return finish(&A, root, &m.base, out);
}

static int enum_value(const ProtobufCEnumDescriptor *d, const char *name)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(d, name);
	return v ? v->value : 0;
}

int srv_grpc_config_from_json(const char *json, size_t len, struct srv_buf *out)
{
	json_t *root = parse(json, len);
	if (!json_is_object(root)) {
		json_decref(root);
		return CIGT_EFORMAT;
	}
	struct arena A = {0};
	Inference__ModelConfigResponse resp = INFERENCE__MODEL_CONFIG_RESPONSE__INIT;
	Inference__ModelConfig *c = ARENA_NEW(&A, Inference__ModelConfig,
					      INFERENCE__MODEL_CONFIG__INIT);
	resp.config = c;
	if (!c)
		return finish(&A, root, &resp.base, out);
	c->name = (char *)jstr(root, "name");
	c->platform = (char *)jstr(root, "platform");
	c->backend = (char *)jstr(root, "backend");
	c->max_batch_size = (int32_t)jint(root, "max_batch_size");
	const json_t *vp = json_object_get(root, "version_policy");
	Inference__ModelVersionPolicy *pol = ARENA_NEW(&A, Inference__ModelVersionPolicy,
						       INFERENCE__MODEL_VERSION_POLICY__INIT);
	c->version_policy = pol;
	if (pol && json_object_get(vp, "all")) {
		pol->policy_choice_case = INFERENCE__MODEL_VERSION_POLICY__POLICY_CHOICE_ALL;
		pol->all = ARENA_NEW(&A, Inference__ModelVersionPolicy__All,
				     INFERENCE__MODEL_VERSION_POLICY__ALL__INIT);
	} else if (pol && json_object_get(vp, "specific")) {
		pol->policy_choice_case = INFERENCE__MODEL_VERSION_POLICY__POLICY_CHOICE_SPECIFIC;
		pol->specific = ARENA_NEW(&A, Inference__ModelVersionPolicy__Specific,
					  INFERENCE__MODEL_VERSION_POLICY__SPECIFIC__INIT);
		if (pol->specific)
			pol->specific->versions =
				jints(&A, json_object_get(json_object_get(vp, "specific"), "versions"),
				      &pol->specific->n_versions);
	} else if (pol) {
		pol->policy_choice_case = INFERENCE__MODEL_VERSION_POLICY__POLICY_CHOICE_LATEST;
		pol->latest = ARENA_NEW(&A, Inference__ModelVersionPolicy__Latest,
					INFERENCE__MODEL_VERSION_POLICY__LATEST__INIT);
		if (pol->latest)
			pol->latest->num_versions = (uint32_t)jint(json_object_get(vp, "latest"),
								  "num_versions");
	}
	const json_t *ins = json_object_get(root, "input"), *outs = json_object_get(root, "output");
	c->n_input = json_array_size(ins);
	c->input = arena_alloc(&A, c->n_input * sizeof *c->input);
	for (size_t i = 0; c->input && i < c->n_input; i++) {
		const json_t *o = json_array_get(ins, i);
		Inference__ModelInput *t = ARENA_NEW(&A, Inference__ModelInput,
						     INFERENCE__MODEL_INPUT__INIT);
		if (!t)
			break;
		t->name = (char *)jstr(o, "name");
		t->data_type = enum_value(&inference__data_type__descriptor, jstr(o, "data_type"));
		t->format = enum_value(&inference__model_input__format__descriptor,
				       jstr(o, "format"));
		t->dims = jints(&A, json_object_get(o, "dims"), &t->n_dims);
		c->input[i] = t;
	}
	c->n_output = json_array_size(outs);
	c->output = arena_alloc(&A, c->n_output * sizeof *c->output);
	for (size_t i = 0; c->output && i < c->n_output; i++) {
		const json_t *o = json_array_get(outs, i);
		Inference__ModelOutput *t = ARENA_NEW(&A, Inference__ModelOutput,
						      INFERENCE__MODEL_OUTPUT__INIT);
		if (!t)
			break;
		t->name = (char *)jstr(o, "name");
		t->data_type = enum_value(&inference__data_type__descriptor, jstr(o, "data_type"));
		t->dims = jints(&A, json_object_get(o, "dims"), &t->n_dims);
		t->label_filename = (char *)jstr(o, "label_filename");
		c->output[i] = t;
	}
	const json_t *db = json_object_get(root, "dynamic_batching");
	if (db) {
		Inference__ModelDynamicBatching *d = ARENA_NEW(&A, Inference__ModelDynamicBatching,
							       INFERENCE__MODEL_DYNAMIC_BATCHING__INIT);
		Inference__ModelQueuePolicy *qp = ARENA_NEW(&A, Inference__ModelQueuePolicy,
							    INFERENCE__MODEL_QUEUE_POLICY__INIT);
		if (d && qp) {
			const json_t *q = json_object_get(db, "default_queue_policy");
			d->max_queue_delay_microseconds =
				(uint64_t)jint(db, "max_queue_delay_microseconds");
			qp->max_queue_size = (uint32_t)jint(q, "max_queue_size");
			qp->default_timeout_microseconds =
				(uint64_t)jint(q, "default_timeout_microseconds");
			d->default_queue_policy = qp;
			c->scheduling_choice_case =
				INFERENCE__MODEL_CONFIG__SCHEDULING_CHOICE_DYNAMIC_BATCHING;
			c->dynamic_batching = d;
		}
	}
	const json_t *ig = json_object_get(root, "instance_group");
	c->n_instance_group = json_array_size(ig);
	c->instance_group = arena_alloc(&A, c->n_instance_group * sizeof *c->instance_group);
	for (size_t i = 0; c->instance_group && i < c->n_instance_group; i++) {
		const json_t *o = json_array_get(ig, i);
		Inference__ModelInstanceGroup *g = ARENA_NEW(&A, Inference__ModelInstanceGroup,
							     INFERENCE__MODEL_INSTANCE_GROUP__INIT);
		if (!g)
			break;
		g->kind = enum_value(&inference__model_instance_group__kind__descriptor,
				     jstr(o, "kind"));
		g->count = (int32_t)jint(o, "count");
		c->instance_group[i] = g;
	}
	return finish(&A, root, &resp.base, out);
}

static Inference__StatisticDuration *duration(struct arena *A, const json_t *o)
{
	Inference__StatisticDuration *d = ARENA_NEW(A, Inference__StatisticDuration,
						    INFERENCE__STATISTIC_DURATION__INIT);
	if (d) {
		d->count = (uint64_t)jint(o, "count");
		d->ns = (uint64_t)jint(o, "ns");
	}
	return d;
}

int srv_grpc_stats_from_json(const char *json, size_t len, struct srv_buf *out)
{
	json_t *root = parse(json, len);
	const json_t *ms = json_object_get(root, "model_stats");
	if (!json_is_array(ms)) {
		json_decref(root);
		return CIGT_EFORMAT;
	}
	struct arena A = {0};
	Inference__ModelStatisticsResponse resp = INFERENCE__MODEL_STATISTICS_RESPONSE__INIT;
	resp.n_model_stats = json_array_size(ms);
	resp.model_stats = arena_alloc(&A, resp.n_model_stats * sizeof *resp.model_stats);
	for (size_t i = 0; resp.model_stats && i < resp.n_model_stats; i++) {
		const json_t *o = json_array_get(ms, i);
		Inference__ModelStatistics *s = ARENA_NEW(&A, Inference__ModelStatistics,
							  INFERENCE__MODEL_STATISTICS__INIT);
		Inference__InferStatistics *is = ARENA_NEW(&A, Inference__InferStatistics,
							   INFERENCE__INFER_STATISTICS__INIT);
		if (!s || !is)
			break;
		s->name = (char *)jstr(o, "name");
		s->version = (char *)jstr(o, "version");
		s->last_inference = (uint64_t)jint(o, "last_inference");
		s->inference_count = (uint64_t)jint(o, "inference_count");
		s->execution_count = (uint64_t)jint(o, "execution_count");
		const json_t *st = json_object_get(o, "inference_stats");
		is->success = duration(&A, json_object_get(st, "success"));
		is->fail = duration(&A, json_object_get(st, "fail"));
		is->queue = duration(&A, json_object_get(st, "queue"));
		is->compute_input = duration(&A, json_object_get(st, "compute_input"));
		is->compute_infer = duration(&A, json_object_get(st, "compute_infer"));
		is->compute_output = duration(&A, json_object_get(st, "compute_output"));
		is->cache_hit = duration(&A, json_object_get(st, "cache_hit"));
		is->cache_miss = duration(&A, json_object_get(st, "cache_miss"));
		s->inference_stats = is;
		const json_t *bs = json_object_get(o, "batch_stats");
		s->n_batch_stats = json_array_size(bs);
		s->batch_stats = arena_alloc(&A, s->n_batch_stats * sizeof *s->batch_stats);
		for (size_t k = 0; s->batch_stats && k < s->n_batch_stats; k++) {
			const json_t *b = json_array_get(bs, k);
			Inference__InferBatchStatistics *x =
				ARENA_NEW(&A, Inference__InferBatchStatistics,
					  INFERENCE__INFER_BATCH_STATISTICS__INIT);
			if (!x)
				break;
			x->batch_size = (uint64_t)jint(b, "batch_size");
			x->compute_input = duration(&A, json_object_get(b, "compute_input"));
			x->compute_infer = duration(&A, json_object_get(b, "compute_infer"));
			x->compute_output = duration(&A, json_object_get(b, "compute_output"));
			s->batch_stats[k] = x;
		}
		resp.model_stats[i] = s;
	}
	return finish(&A, root, &resp.base, out);
}

int srv_grpc_index_from_json(const char *json, size_t len, struct srv_buf *out)
{
	json_t *root = parse(json, len);
	if (!json_is_array(root)) {
		json_decref(root);
		return CIGT_EFORMAT;
	}
	struct arena A = {0};
	Inference__RepositoryIndexResponse resp = INFERENCE__REPOSITORY_INDEX_RESPONSE__INIT;
	resp.n_models = json_array_size(root);
	resp.models = arena_alloc(&A, resp.n_models * sizeof *resp.models);
	for (size_t i = 0; resp.models && i < resp.n_models; i++) {
		const json_t *o = json_array_get(root, i);
		Inference__RepositoryIndexResponse__ModelIndex *x =
			ARENA_NEW(&A, Inference__RepositoryIndexResponse__ModelIndex,
				  INFERENCE__REPOSITORY_INDEX_RESPONSE__MODEL_INDEX__INIT);
		if (!x)
			break;
		x->name = (char *)jstr(o, "name");
		x->version = (char *)jstr(o, "version");
		x->state = (char *)jstr(o, "state");
		x->reason = (char *)jstr(o, "reason");
		resp.models[i] = x;
	}
	return finish(&A, root, &resp.base, out);
}

/* ------------------------------------------------------------------- the scheduler's hooks */

int srv_grpc_prep(const struct cigt_arch *a, const struct srv_limits *lim, struct srv_req *r,
		  char *err, size_t errlen)
{
	return srv_grpc_infer_job(a, lim, r->grpc->msg, &r->job, err, errlen);
}

int srv_grpc_finish(const struct cigt_arch *a, struct srv_req *r)
{
	return srv_grpc_infer_encode(a, r->model->name, r->model->version, &r->job, r->res,
				     r->probs, r->grpc->stream, &r->resp);
}
