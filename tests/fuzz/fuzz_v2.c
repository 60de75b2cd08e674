/* Fuzz target: the Open Inference Protocol request parser (srv_parse_v2), including Triton's
 * binary tensor extension (a JSON header of Inference-Header-Content-Length bytes, then raw
 * tensor bytes).
 * Input: byte 0 picks the Content-Type (bits 0-1) and whether the header-length header is
 * present (bit 2); bytes 1-2 are that length (little-endian); the rest is the body.
 * Properties: an accepted request yields 1..max_images samples of finite values inside the
 * model's input range and a non-empty output selection, and its answer encodes to valid JSON
 * (followed, for binary outputs, by exactly the bytes its header announces); a rejected one has
 * a 400/413/415 status, a message, and leaves nothing allocated. */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "srv.h"

static const char *const ctypes[] = {"application/json", "application/octet-stream", NULL,
				     "Application/JSON ; charset=utf-8"};

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
	FUZZ_NOTE("%d %s", st, st == 200 ? "" : err);
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
	FUZZ_CHECK(fuzz_all_in_range(job.x, (size_t)job.n * isz, a->range_lo, a->range_hi));

	struct cigt_result res[8];
	float probs[8 * 10];
	FUZZ_CHECK(a->nclasses == 10);
	for (int i = 0; i < job.n; i++) {
		memset(&res[i], 0, sizeof res[i]);
		res[i].cls = (i * 7) % a->nclasses;
		res[i].macs = a->path_macs;
		for (int k = 0; k < 10; k++)
			probs[i * 10 + k] = 0.1f;
	}
	struct srv_buf out = {0};
	long long json_len = -2;
	srv_encode_v2(a, &job, res, probs, &out, &json_len);
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
