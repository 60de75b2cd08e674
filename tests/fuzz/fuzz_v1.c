/* Fuzz target: the /v1/classify body decoder (srv_parse_v1): JSON pixels (the fast scanner and
 * the jansson path), {"png": "<base64>"}, and raw PNG/PGM bodies.
 * Input: byte 0 picks the Content-Type, the rest is the body.
 * Properties: an accepted body yields 1..max_images samples of finite values inside the model's
 * input range, is valid JSON when sent as JSON (the fast scanner accepts nothing jansson would
 * refuse, and written with real-valued pixels, which only the general parser takes, it parses to
 * the very same samples), and its answer encodes to valid JSON; a rejected one has a 400/413/415 status, a
 * message, and leaves no samples behind. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "srv.h"

static const char *const ctypes[] = {
	"application/json", "image/png", "image/x-portable-graymap",
	"application/json; charset=utf-8", NULL, "text/plain",
};

/* Pixels written as reals (3.0 instead of 3) bypass the fast scanner: the general parser must
 * then produce exactly the samples, top_k and deadline the first parse did. */
static json_t *ints_to_reals(json_t *v)
{
	if (json_is_integer(v))
		return json_real((double)json_integer_value(v));
	if (json_is_array(v)) {
		json_t *out = json_array();
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e)
			json_array_append_new(out, ints_to_reals(e));
		return out;
	}
	return json_incref(v);
}

static void same_as_general_path(const struct cigt_arch *a, const struct srv_limits *lim,
				 json_t *root, const struct srv_job *job)
{
	json_t *alt = json_copy(root);
	const char *keys[] = {"image", "images"};
	for (int k = 0; k < 2; k++) {
		json_t *v = json_object_get(root, keys[k]);
		if (v)
			json_object_set_new(alt, keys[k], ints_to_reals(v));
	}
	char *text = json_dumps(alt, JSON_COMPACT);
	json_decref(alt);
	FUZZ_CHECK(text != NULL);
	struct srv_job j2 = {.timeout_ms = -1};
	char err[256] = "";
	int st = srv_parse_v1(a, lim, "application/json", text, strlen(text), &j2, err, sizeof err);
	if (st != 200)
		fprintf(stderr, "general path refused what the first parse accepted: %s\n%s\n", err,
			text);
	FUZZ_CHECK(st == 200);
	FUZZ_CHECK(j2.n == job->n && j2.batch == job->batch && j2.top_k == job->top_k &&
		   j2.timeout_ms == job->timeout_ms && j2.max_macs == job->max_macs &&
		   !strcmp(j2.compute, job->compute));
	FUZZ_CHECK(memcmp(j2.x, job->x, (size_t)job->n * (size_t)cigt_arch_input_size(a) *
					      sizeof(float)) == 0);
	srv_job_destroy(&j2);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const struct cigt_arch *a = fuzz_reference_arch();
	const char *ct = ctypes[data[0] % (sizeof ctypes / sizeof ctypes[0])];
	const struct srv_limits lim = {.max_images = 8, .max_image_pixels = 1 << 16};
	struct srv_job job = {.timeout_ms = -1};
	char err[256] = "";
	int st = srv_parse_v1(a, &lim, ct, data + 1, size - 1, &job, err, sizeof err);
	FUZZ_NOTE("%d %s", st, st == 200 ? "" : err);
	if (st != 200) {
		FUZZ_CHECK(st == 400 || st == 413 || st == 415);
		FUZZ_CHECK(err[0] != 0);
		FUZZ_CHECK(job.x == NULL && job.n == 0);
		return 0;
	}
	const size_t isz = (size_t)cigt_arch_input_size(a);
	FUZZ_CHECK(job.n >= 1 && job.n <= lim.max_images && job.x);
	FUZZ_CHECK(job.batch || job.n == 1);
	FUZZ_CHECK(job.top_k >= 0 && job.top_k <= a->nclasses);
	FUZZ_CHECK(job.timeout_ms >= -1 && job.timeout_ms <= 3600000);
	fuzz_check_dial(&job);
	FUZZ_CHECK(fuzz_all_in_range(job.x, (size_t)job.n * isz, a->range_lo, a->range_hi));
	/* A JSON body accepted (by the fast scanner or by jansson) is a JSON object without
	 * duplicate keys: the fast scanner must not accept what the general parser would refuse. */
	if (ct && !strncmp(ct, "application/json", 16)) {
		json_t *v = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
		FUZZ_CHECK(json_is_object(v));
		same_as_general_path(a, &lim, v, &job);
		json_decref(v);
	}
	/* Encode a made-up answer for the parsed job: the encoder must produce valid JSON. */
	struct cigt_result res[8];
	float probs[8 * 10];
	FUZZ_CHECK(a->nclasses == 10);
	for (int i = 0; i < job.n; i++) {
		memset(&res[i], 0, sizeof res[i]);
		res[i].cls = i % a->nclasses;
		res[i].macs = a->path_macs;
		res[i].paths = 1u | 1u << (i % 8); /* the trellis's 8 paths; some several */
		res[i].npaths = 1 + (i % 8 != 0);
		res[i].escalated = i & 1;
		for (int k = 0; k < 10; k++)
			probs[i * 10 + k] = (float)(k + i) / 100.0f;
	}
	memcpy(job.ran, job.compute, sizeof job.ran);
	struct srv_buf out = {0};
	srv_encode_v1(a, a->name, 1, &job, res, probs, &out);
	FUZZ_CHECK(!out.oom && fuzz_is_json(out.p, out.len));
	srv_buf_free(&out);
	srv_job_destroy(&job);
	return 0;
}
