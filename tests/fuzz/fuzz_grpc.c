/* Fuzz target: the gRPC side's decoding of what a client sends (issue 28). Byte 0 picks:
 *   0, 1, 2, 3  a ModelInferRequest (the rest of the input), through protobuf-c and
 *               srv_grpc_infer_parse (2 and 3 with a grpc-timeout of 250 ms set first);
 *   4           a stream of length-prefixed messages (srv_grpc_frame_scan, limit 4096);
 *   5           header values: grpc-timeout, a request path, grpc-message's encoding.
 * Properties of an accepted request: 1..max_images samples, all finite and inside the input
 * range; at least one output; raw outputs unless binary_data_output was false; a deadline no
 * later than the grpc-timeout; the dial well-formed; the same message packed again by protobuf-c
 * parses to the identical job; the answer encodes (fake results) to a ModelInferResponse that
 * unpacks with the request's id, one tensor per output and raw contents of the announced size
 * (or a ModelStreamInferResponse holding it). Rejected: 400 or 413 with a message and nothing
 * left allocated. Framing: every message found fits the input and the limit. Headers: a timeout
 * of -1 or 0..3600000 ms; a path names a method or says why not; the encoding is printable
 * ASCII with every '%' starting an escape. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "grpc.h"

static const struct srv_limits lim = {.max_images = 64, .max_image_pixels = 1 << 20};

static void check_job(const struct cigt_arch *a, const struct srv_job *job, long long timeout0)
{
	const size_t isz = (size_t)cigt_arch_input_size(a);
	FUZZ_CHECK(job->n >= 1 && job->n <= lim.max_images);
	FUZZ_CHECK(fuzz_all_in_range(job->x, (size_t)job->n * isz, a->range_lo, a->range_hi));
	FUZZ_CHECK(job->outputs != 0 && job->outputs < 1u << SRV_OUT_COUNT);
	FUZZ_CHECK(job->binary == 0 || job->binary == job->outputs);
	FUZZ_CHECK(job->timeout_ms >= -1 && job->timeout_ms <= 3600000);
	if (timeout0 >= 0)
		FUZZ_CHECK(job->timeout_ms >= 0 && job->timeout_ms <= timeout0);
	fuzz_check_dial(job);
}

static bool same_job(const struct cigt_arch *a, const struct srv_job *x, const struct srv_job *y)
{
	const size_t isz = (size_t)cigt_arch_input_size(a);
	return x->n == y->n && !memcmp(x->x, y->x, (size_t)x->n * isz * sizeof(float)) &&
	       x->outputs == y->outputs && x->binary == y->binary &&
	       x->timeout_ms == y->timeout_ms && !strcmp(x->compute, y->compute) &&
	       x->max_macs == y->max_macs && !x->id == !y->id && (!x->id || !strcmp(x->id, y->id));
}

/* Encodes fake results for job and checks the answer decodes to what was asked. */
static void check_answer(const struct cigt_arch *a, const struct srv_job *job, bool stream)
{
	const int n = job->n, K = a->nclasses;
	struct cigt_result *res = calloc((size_t)n, sizeof *res);
	float *probs = calloc((size_t)n * K, sizeof *probs);
	FUZZ_CHECK(res && probs);
	for (int i = 0; i < n; i++) {
		res[i].cls = i % K;
		res[i].macs = a->path_macs;
		res[i].npaths = 1;
		probs[(size_t)i * K + i % K] = 1;
	}
	struct srv_buf out = {0};
	FUZZ_CHECK(srv_grpc_infer_encode(a, "m", 1, job, res, probs, stream, &out) == 0);
	uint32_t len;
	FUZZ_CHECK(srv_grpc_frame_scan((const uint8_t *)out.p, out.len, 1LL << 32, &len) ==
		   SRV_GRPC_FRAME_OK && 5 + (size_t)len == out.len);
	Inference__ModelStreamInferResponse *s = NULL;
	Inference__ModelInferResponse *r;
	if (stream) {
		s = inference__model_stream_infer_response__unpack(NULL, len, (uint8_t *)out.p + 5);
		FUZZ_CHECK(s && s->infer_response && !s->error_message[0]);
		r = s->infer_response;
	} else {
		r = inference__model_infer_response__unpack(NULL, len, (uint8_t *)out.p + 5);
		FUZZ_CHECK(r);
	}
	size_t nout = 0;
	for (int o = 0; o < SRV_OUT_COUNT; o++)
		nout += (job->outputs >> o) & 1;
	FUZZ_CHECK(r->n_outputs == nout);
	FUZZ_CHECK(!strcmp(r->id, job->id ? job->id : ""));
	FUZZ_CHECK(r->n_raw_output_contents == (job->binary ? nout : 0));
	for (size_t i = 0; i < r->n_outputs; i++) {
		const Inference__ModelInferResponse__InferOutputTensor *t = r->outputs[i];
		FUZZ_CHECK(t->n_shape >= 1 && t->shape[0] == n);
		size_t cnt = (size_t)n * (t->n_shape > 1 ? (size_t)t->shape[1] : 1);
		size_t esz = !strcmp(t->datatype, "INT64") ? 8 : !strcmp(t->datatype, "BOOL") ? 1 : 4;
		if (job->binary)
			FUZZ_CHECK(r->raw_output_contents[i].len == cnt * esz);
		else
			FUZZ_CHECK(t->contents);
	}
	if (stream)
		inference__model_stream_infer_response__free_unpacked(s, NULL);
	else
		inference__model_infer_response__free_unpacked(r, NULL);
	srv_buf_free(&out);
	free(res);
	free(probs);
}

static void infer(const uint8_t *data, size_t size, long long timeout0, bool stream)
{
	const struct cigt_arch *a = fuzz_reference_arch();
	struct srv_job job = {.timeout_ms = timeout0};
	Inference__ModelInferRequest *q = NULL;
	char err[512] = "";
	int st = srv_grpc_infer_parse(a, &lim, data, size, &q, &job, err, sizeof err);
	FUZZ_NOTE("infer %d %s", st, st == 200 ? "accepted" : err);
	if (st != 200) {
		FUZZ_CHECK((st == 400 || st == 413 || st == 500) && err[0]);
		FUZZ_CHECK(!q && !job.x && !job.id);
		return;
	}
	check_job(a, &job, timeout0);
	/* protobuf-c's own encoding of what it decoded reads back to the same job. */
	size_t n = protobuf_c_message_get_packed_size(&q->base);
	uint8_t *again = malloc(n ? n : 1);
	FUZZ_CHECK(again);
	protobuf_c_message_pack(&q->base, again);
	struct srv_job job2 = {.timeout_ms = timeout0};
	Inference__ModelInferRequest *q2 = NULL;
	FUZZ_CHECK(srv_grpc_infer_parse(a, &lim, again, n, &q2, &job2, err, sizeof err) == 200);
	FUZZ_CHECK(same_job(a, &job, &job2));
	check_answer(a, &job, stream);
	inference__model_infer_request__free_unpacked(q2, NULL);
	inference__model_infer_request__free_unpacked(q, NULL);
	srv_job_destroy(&job2);
	srv_job_destroy(&job);
	free(again);
}

static void frames(const uint8_t *data, size_t size)
{
	const long long max = 4096;
	size_t off = 0;
	int msgs = 0;
	for (;;) {
		uint32_t len = 0;
		int st = srv_grpc_frame_scan(data + off, size - off, max, &len);
		if (st != SRV_GRPC_FRAME_OK) {
			FUZZ_CHECK(st != SRV_GRPC_FRAME_MORE || size - off < 5 ||
				   size - off - 5 < len);
			FUZZ_CHECK(st != SRV_GRPC_FRAME_TOO_BIG || (long long)len > max);
			break;
		}
		FUZZ_CHECK((long long)len <= max && off + 5 + len <= size);
		off += 5 + (size_t)len;
		msgs++;
	}
	FUZZ_NOTE("frames: %d messages, %zu of %zu bytes", msgs, off, size);
}

static void headers(const uint8_t *data, size_t size)
{
	long long ms = srv_grpc_timeout_ms((const char *)data, size);
	FUZZ_CHECK(ms == -1 || (ms >= 0 && ms <= 3600000));
	char *s = malloc(size + 1), err[256] = "", enc[256];
	FUZZ_CHECK(s);
	memcpy(s, data, size);
	s[size] = 0;
	int m = srv_grpc_method_of_path(s, err, sizeof err);
	FUZZ_CHECK(m >= 0 && m < SRV_GM_COUNT && (m != SRV_GM_UNKNOWN || err[0]));
	srv_grpc_percent_encode(s, enc, sizeof enc);
	for (const char *p = enc; *p; p++) {
		FUZZ_CHECK(*p >= 0x20 && *p <= 0x7e);
		if (*p == '%')
			FUZZ_CHECK(p[1] && p[2] && strchr("0123456789ABCDEF", p[1]) &&
				   strchr("0123456789ABCDEF", p[2]));
	}
	FUZZ_NOTE("headers: timeout %lld, method %d", ms, m);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 6) {
	case 0:
	case 1:
		infer(data + 1, size - 1, -1, data[0] % 6 == 1);
		break;
	case 2:
	case 3:
		infer(data + 1, size - 1, 250, data[0] % 6 == 3);
		break;
	case 4:
		frames(data + 1, size - 1);
		break;
	default:
		headers(data + 1, size - 1);
		break;
	}
	return 0;
}
