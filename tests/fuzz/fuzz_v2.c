/* Fuzz target: the Open Inference Protocol request parser (srv_parse_v2), including Triton's
 * binary tensor extension (a JSON header of Inference-Header-Content-Length bytes, then raw
 * tensor bytes).
 * Input: byte 0 picks the Content-Type (bits 0-1) and whether the header-length header is
 * present (bit 2); bytes 1-2 are that length (little-endian); the rest is the body.
 * Properties: an accepted request yields 1..max_images samples of finite values inside the
 * model's input range and a non-empty output selection, and its answer encodes to valid JSON
 * (followed, for binary outputs, by exactly the bytes its header announces), and the same tensor
 * sent the other way (JSON data <-> binary extension) parses to the very same job; a rejected
 * one has a 400/413/415 status, a message, and leaves nothing allocated. On every input,
 * accepted or not, the fast path for JSON data (srv_v2_data_scan) and the general parser
 * (srv_parse_v2_general) give the same status, the same message and the same job. */
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "srv.h"

static const char *const ctypes[] = {"application/json", "application/octet-stream", NULL,
				     "Application/JSON ; charset=utf-8"};

/* Appends the values of nested arrays to buf as UINT8 bytes or FP32 floats. */
static void flatten(const json_t *v, bool u8, uint8_t *buf, size_t cap, size_t *k)
{
	if (json_is_array(v)) {
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e)
			flatten(e, u8, buf, cap, k);
		return;
	}
	FUZZ_CHECK(json_is_number(v));
	if (u8) {
		FUZZ_CHECK(*k + 1 <= cap);
		buf[(*k)++] = (uint8_t)json_number_value(v);
	} else {
		float f = (float)json_number_value(v);
		FUZZ_CHECK(*k + 4 <= cap);
		memcpy(buf + *k, &f, 4);
		*k += 4;
	}
}

/* The same tensor sent the other way (JSON data <-> binary tensor extension) must parse to the
 * very same job. */
static void same_other_way(const struct cigt_arch *a, const struct srv_limits *lim,
			   const uint8_t *body, size_t len, long long hlen, const struct srv_job *job)
{
	size_t jlen = hlen >= 0 ? (size_t)hlen : len;
	json_t *root = json_loadb((const char *)body, jlen, 0, NULL);
	FUZZ_CHECK(root);
	json_t *alt = json_deep_copy(root);
	json_t *in = json_array_get(json_object_get(alt, "inputs"), 0);
	bool u8 = !strcmp(json_string_value(json_object_get(in, "datatype")), "UINT8");
	json_t *params = json_object_get(in, "parameters");
	const size_t isz = (size_t)cigt_arch_input_size(a), cap = (size_t)job->n * isz * 4;
	uint8_t *bin = malloc(cap);
	size_t k = 0;
	long long hlen2 = -1;
	char *text, *req;
	size_t reqlen;
	if (json_object_get(in, "data")) { /* JSON -> binary */
		flatten(json_object_get(in, "data"), u8, bin, cap, &k);
		json_object_del(in, "data");
		if (!params)
			json_object_set_new(in, "parameters", params = json_object());
		json_object_set_new(params, "binary_data_size", json_integer((json_int_t)k));
		text = json_dumps(alt, JSON_COMPACT);
		FUZZ_CHECK(text);
		hlen2 = (long long)strlen(text);
		reqlen = (size_t)hlen2 + k;
		req = malloc(reqlen);
		memcpy(req, text, (size_t)hlen2);
		memcpy(req + hlen2, bin, k);
	} else { /* binary -> JSON */
		const uint8_t *raw = body + jlen;
		json_t *arr = json_array();
		for (size_t i = 0; i < len - jlen; i += u8 ? 1 : 4) {
			if (u8) {
				json_array_append_new(arr, json_integer(raw[i]));
				continue;
			}
			float f;
			memcpy(&f, raw + i, 4);
			json_array_append_new(arr, json_real((double)f));
		}
		json_object_del(params, "binary_data_size");
		json_object_set_new(in, "data", arr);
		text = json_dumps(alt, JSON_COMPACT);
		FUZZ_CHECK(text);
		reqlen = strlen(text);
		req = malloc(reqlen);
		memcpy(req, text, reqlen);
	}
	struct srv_job j2 = {.timeout_ms = -1};
	char err[256] = "";
	int st = srv_parse_v2(a, lim, hlen2 >= 0 ? "application/octet-stream" : "application/json",
			      hlen2, req, reqlen, &j2, err, sizeof err);
	if (st != 200)
		fprintf(stderr, "the same tensor sent the other way was refused: %s\n%s\n", err, text);
	FUZZ_CHECK(st == 200);
	FUZZ_CHECK(j2.n == job->n && j2.outputs == job->outputs && j2.binary == job->binary &&
		   j2.timeout_ms == job->timeout_ms && j2.max_macs == job->max_macs &&
		   !strcmp(j2.compute, job->compute));
	FUZZ_CHECK((j2.id == NULL) == (job->id == NULL) && (!j2.id || !strcmp(j2.id, job->id)));
	FUZZ_CHECK(memcmp(j2.x, job->x, (size_t)job->n * isz * sizeof(float)) == 0);
	srv_job_destroy(&j2);
	free(req);
	free(text);
	free(bin);
	json_decref(alt);
	json_decref(root);
}

/* The general parser, without the fast path, must give exactly the first parse's answer. */
static void same_as_general_path(const struct cigt_arch *a, const struct srv_limits *lim,
				 const char *ct, long long hlen, const uint8_t *body, size_t len,
				 int st, const char *err, const struct srv_job *job)
{
	struct srv_job j2 = {.timeout_ms = -1};
	char err2[256] = "";
	int st2 = srv_parse_v2_general(a, lim, ct, hlen, body, len, &j2, err2, sizeof err2);
	if (st2 != st || strcmp(err2, err))
		fprintf(stderr, "fast path: %d %s\ngeneral path: %d %s\n", st, err, st2, err2);
	FUZZ_CHECK(st2 == st && !strcmp(err2, err));
	FUZZ_CHECK(j2.n == job->n && j2.batch == job->batch && j2.top_k == job->top_k &&
		   j2.timeout_ms == job->timeout_ms && j2.outputs == job->outputs &&
		   j2.binary == job->binary && j2.max_macs == job->max_macs &&
		   !strcmp(j2.compute, job->compute));
	FUZZ_CHECK((j2.id == NULL) == (job->id == NULL) && (!j2.id || !strcmp(j2.id, job->id)));
	FUZZ_CHECK((j2.x == NULL) == (job->x == NULL));
	if (job->x)
		FUZZ_CHECK(memcmp(j2.x, job->x, (size_t)job->n * (size_t)cigt_arch_input_size(a) *
						      sizeof(float)) == 0);
	srv_job_destroy(&j2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	const struct cigt_arch *a = fuzz_reference_arch();
	const char *ct = ctypes[data[0] & 3];
	long long hlen = data[0] & 4 ? (long long)(data[1] | data[2] << 8) : -1;
	const struct srv_limits lim = {.max_images = 8, .max_image_pixels = 1 << 16};
	struct srv_job job = {.timeout_ms = -1};
	char err[256] = "";
	int st = srv_parse_v2(a, &lim, ct, hlen, data + 3, size - 3, &job, err, sizeof err);
	if (fuzz_verbose) {
		struct srv_v2_data d;
		size_t jlen = hlen >= 0 && (size_t)hlen <= size - 3 ? (size_t)hlen : size - 3;
		bool fast = srv_v2_data_scan((const char *)data + 3, jlen, &d);
		FUZZ_NOTE("%s %zu values; ", fast ? "scanned" : "not scanned", d.n);
		free(d.v);
	}
	FUZZ_NOTE("%d %s", st, st == 200 ? "" : err);
	same_as_general_path(a, &lim, ct, hlen, data + 3, size - 3, st, err, &job);
	if (st != 200) {
		FUZZ_CHECK(st == 400 || st == 413 || st == 415);
		FUZZ_CHECK(err[0] != 0);
		FUZZ_CHECK(job.x == NULL && job.n == 0 && job.id == NULL);
		return 0;
	}
	const size_t isz = (size_t)cigt_arch_input_size(a);
	const unsigned all = (1u << SRV_OUT_COUNT) - 1;
	FUZZ_CHECK(job.n >= 1 && job.n <= lim.max_images && job.x);
	FUZZ_CHECK(job.outputs != 0 && (job.outputs & ~all) == 0);
	FUZZ_CHECK((job.binary & ~all) == 0);
	FUZZ_CHECK(job.timeout_ms >= -1 && job.timeout_ms <= 3600000);
	fuzz_check_dial(&job);
	FUZZ_CHECK(fuzz_all_in_range(job.x, (size_t)job.n * isz, a->range_lo, a->range_hi));
	same_other_way(a, &lim, data + 3, size - 3, hlen, &job);

	struct cigt_result res[8];
	float probs[8 * 10];
	FUZZ_CHECK(a->nclasses == 10);
	for (int i = 0; i < job.n; i++) {
		memset(&res[i], 0, sizeof res[i]);
		res[i].cls = (i * 7) % a->nclasses;
		res[i].macs = a->path_macs;
		res[i].paths = 1u | 1u << (i % 8);
		res[i].npaths = 1 + (i % 8 != 0);
		res[i].escalated = i & 1;
		for (int k = 0; k < 10; k++)
			probs[i * 10 + k] = 0.1f;
	}
	memcpy(job.ran, job.compute, sizeof job.ran);
	struct srv_buf out = {0};
	long long json_len = -2;
	srv_encode_v2(a, a->name, 1, &job, res, probs, &out, &json_len);
	FUZZ_CHECK(!out.oom);
	if (!(job.binary & job.outputs)) {
		FUZZ_CHECK(json_len == -1 && fuzz_is_json(out.p, out.len));
	} else {
		FUZZ_CHECK(json_len > 0 && (size_t)json_len <= out.len);
		FUZZ_CHECK(fuzz_is_json(out.p, (size_t)json_len));
		/* The binary part is the sum of the announced binary_data_size values. */
		json_t *h = json_loadb(out.p, (size_t)json_len, 0, NULL);
		size_t sum = 0, i;
		json_t *o;
		json_array_foreach(json_object_get(h, "outputs"), i, o) {
			json_t *bds = json_object_get(json_object_get(o, "parameters"),
						      "binary_data_size");
			if (bds)
				sum += (size_t)json_integer_value(bds);
		}
		json_decref(h);
		FUZZ_CHECK(sum == out.len - (size_t)json_len);
	}
	srv_buf_free(&out);
	srv_job_destroy(&job);
	return 0;
}
