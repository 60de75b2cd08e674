/* The native /v1/classify codec: request bodies in (JSON with a fast path for the common plain
 * bodies, or a raw image), answers out. Pure functions of their bytes (fuzz targets). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "codec.h"

static int v1_json(const struct cigt_arch *a, const struct srv_limits *lim, const json_t *root,
		   struct srv_job *job, char *err, size_t errlen)
{
	if (!json_is_object(root))
		return FAIL(400, "body must be a JSON object");
	const json_t *image = NULL, *images = NULL, *png = NULL;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)root, key, v) {
		if (!strcmp(key, "image"))
			image = v;
		else if (!strcmp(key, "images"))
			images = v;
		else if (!strcmp(key, "png"))
			png = v;
		else if (!strcmp(key, "top_k")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > a->nclasses)
				return FAIL(400, "top_k must be an integer in 1..%d", a->nclasses);
			job->top_k = (int)json_integer_value(v);
		} else if (!strcmp(key, "timeout_ms")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > 3600000)
				return FAIL(400, "timeout_ms must be an integer in 0..3600000");
			job->timeout_ms = json_integer_value(v);
		} else if (!strcmp(key, "compute") || !strcmp(key, "max_macs")) {
			int status = srv_parse_dial_key(key, v, "", job, err, errlen);
			if (status != 200)
				return status;
		} else {
			return FAIL(400, "unknown key '%.64s' (expected image, images, png, top_k, "
					 "timeout_ms, compute, max_macs)", key);
		}
	}
	if (srv_check_dial(job, err, errlen) != 200)
		return 400;
	if (!!image + !!images + !!png != 1)
		return FAIL(400, "body needs exactly one of \"image\", \"images\" or \"png\"");
	if (image || png) {
		if (image && !json_is_array(image))
			return FAIL(400, "image: expected an array of pixels");
		int status = srv_alloc_samples(a, job, 1, err, errlen);
		if (status != 200)
			return status;
		if (image)
			return srv_json_image(a, image, job->x, "image", err, errlen);
		json_t *wrap = json_pack("{sO}", "png", png);
		if (!wrap)
			return FAIL(500, "out of memory");
		status = srv_v1_image(a, lim, wrap, job->x, "png", err, errlen);
		json_decref(wrap);
		return status;
	}
	if (!json_is_array(images))
		return FAIL(400, "images: expected an array of images");
	size_t n = json_array_size(images);
	if (n == 0)
		return FAIL(400, "images: empty array");
	if (n > (size_t)lim->max_images)
		return FAIL(413, "images: %zu images, more than the %d allowed per request", n,
			    lim->max_images);
	int status = srv_alloc_samples(a, job, (int)n, err, errlen);
	if (status != 200)
		return status;
	job->batch = true;
	const int64_t isz = cigt_arch_input_size(a);
	for (size_t i = 0; i < n; i++) {
		char where[32];
		snprintf(where, sizeof where, "images[%zu]", i);
		status = srv_v1_image(a, lim, json_array_get(images, i), job->x + (int64_t)i * isz,
				  where, err, errlen);
		if (status != 200)
			return status;
	}
	return 200;
}

/* The v1 JSON fast path. The common bodies, {"image": [flat pixels]} and {"images": [[flat
 * pixels], ...]} with optional top_k / timeout_ms, are scanned directly: building a jansson
 * value per pixel costs more than the model's own compute. The scanner accepts only plain
 * well-formed input (flat arrays of integers 0..255 of exactly the right length, known keys once
 * each, no escapes); for anything else (compute and max_macs included) it declines and the
 * general jansson parser decides, with its messages.
 * 1: parsed into job; 0: declined (use the general parser); -1: out of memory. */
static int v1_fast(const struct cigt_arch *a, const struct srv_limits *lim, const char *body,
		   size_t len, struct srv_job *job)
{
	struct srv_scan s = {body, body + len};
	const size_t total = (size_t)a->input.h * a->input.w * a->input.c;
	const int64_t isz = cigt_arch_input_size(a);
	bool seen_img = false, seen_k = false, seen_t = false;
	long top_k = 0, timeout = -1;
	uint8_t *px = malloc(total);
	if (!px)
		return -1;
	int rc = 0;
	if (!srv_scan_ch(&s, '{'))
		goto out;
	do {
		srv_scan_ws(&s);
		static const char *const keys[] = {"\"image\"", "\"images\"", "\"top_k\"",
						   "\"timeout_ms\""};
		int key = -1;
		for (int k = 0; k < 4; k++) {
			size_t kl = strlen(keys[k]);
			if ((size_t)(s.end - s.p) >= kl && !memcmp(s.p, keys[k], kl)) {
				key = k;
				s.p += kl;
				break;
			}
		}
		if (key < 0 || !srv_scan_ch(&s, ':'))
			goto out;
		if (key == 2 || key == 3) {
			bool *seen = key == 2 ? &seen_k : &seen_t;
			long *v = key == 2 ? &top_k : &timeout;
			if (*seen || !srv_scan_uint(&s, key == 2 ? a->nclasses : 3600000, v) ||
			    (key == 2 && *v < 1))
				goto out;
			*seen = true;
			continue;
		}
		if (seen_img)
			goto out;
		seen_img = true;
		if (key == 0) {
			if (!srv_scan_pixels(&s, px, total))
				goto out;
			if (!(job->x = malloc((size_t)isz * sizeof(float)))) {
				rc = -1;
				goto out;
			}
			job->n = 1;
			cigt_model_preprocess_u8(a, px, job->x);
			continue;
		}
		/* "images": count the arrays first, then convert. */
		if (!srv_scan_ch(&s, '['))
			goto out;
		struct srv_scan start = s;
		int n = 0;
		do {
			if (n >= lim->max_images || !srv_scan_pixels(&s, px, total))
				goto out;
			n++;
		} while (srv_scan_ch(&s, ','));
		if (!srv_scan_ch(&s, ']'))
			goto out;
		if (!(job->x = malloc((size_t)n * (size_t)isz * sizeof(float)))) {
			rc = -1;
			goto out;
		}
		job->n = n;
		job->batch = true;
		s = start;
		for (int i = 0; i < n; i++) {
			if (i)
				srv_scan_ch(&s, ',');
			srv_scan_pixels(&s, px, total);
			cigt_model_preprocess_u8(a, px, job->x + (int64_t)i * isz);
		}
		srv_scan_ch(&s, ']');
	} while (srv_scan_ch(&s, ','));
	if (!srv_scan_ch(&s, '}') || !seen_img)
		goto out;
	srv_scan_ws(&s);
	if (s.p != s.end)
		goto out;
	if (seen_k)
		job->top_k = (int)top_k;
	if (seen_t)
		job->timeout_ms = timeout;
	rc = 1;
out:
	free(px);
	if (rc != 1) {
		free(job->x);
		job->x = NULL;
		job->n = 0;
		job->batch = false;
	}
	return rc;
}

int srv_parse_v1(const struct cigt_arch *a, const struct srv_limits *lim, const char *ctype,
		 const void *body, size_t len, struct srv_job *job, char *err, size_t errlen)
{
	int status;
	if (srv_media_is(ctype, "image/png") || srv_media_is(ctype, "image/jpeg") ||
	    srv_media_is(ctype, "image/x-portable-graymap") ||
	    srv_media_is(ctype, "image/x-portable-pixmap")) {
		status = srv_alloc_samples(a, job, 1, err, errlen);
		if (status == 200)
			status = srv_image_sample(a, lim, body, len, job->x, "body", err, errlen);
	} else if (srv_media_is(ctype, "application/json")) {
		int fast = v1_fast(a, lim, body, len, job);
		if (fast != 0)
			return fast > 0 ? 200 : FAIL(500, "out of memory");
		json_t *root;
		status = srv_parse_json(body, len, &root, err, errlen);
		if (status == 200) {
			status = v1_json(a, lim, root, job, err, errlen);
			json_decref(root);
		}
	} else {
		status = FAIL(415,
			      "Content-Type '%.64s' is not supported (use application/json, "
			      "image/png, image/jpeg, image/x-portable-graymap or "
			      "image/x-portable-pixmap)",
			      ctype ? ctype : "(none)");
	}
	if (status != 200)
		srv_job_destroy(job);
	return status;
}

static void v1_sample(const struct cigt_arch *a, const struct srv_job *job,
		      const struct cigt_result *r, const float *p, struct srv_buf *b)
{
	const int K = a->nclasses;
	srv_buf_printf(b, "{\"class\": %d, \"label\": ", r->cls);
	srv_buf_json_str(b, a->classes[r->cls]);
	srv_buf_puts(b, ", \"probabilities\": [");
	for (int k = 0; k < K; k++) {
		if (k)
			srv_buf_put(b, ", ", 2);
		srv_put_float(b, p[k]);
	}
	srv_buf_puts(b, "], \"route\": [");
	for (int l = 0; l < a->nlayers; l++)
		srv_buf_printf(b, "%s%d", l ? ", " : "", r->route[l]);
	srv_buf_printf(b, "], \"macs\": %lld, \"dense_macs\": %lld, \"compute_saved\": %.4f",
		       (long long)r->macs, (long long)a->dense_macs,
		       1.0 - (double)r->macs / (double)a->dense_macs);
	/* The dial: every path whose leaf ran (the argmax route alone when the trellis has more
	 * paths than cigt_result.paths can say), escalation, the operating point. */
	int route[CIGT_MAX_LAYERS];
	srv_buf_puts(b, ", \"paths\": [");
	if (!r->paths) {
		srv_buf_puts(b, "[");
		for (int l = 0; l < a->nlayers; l++)
			srv_buf_printf(b, "%s%d", l ? ", " : "", r->route[l]);
		srv_buf_puts(b, "]");
	}
	for (int q = 0, k = 0; q < 64 && r->paths >> q; q++) {
		if (!(r->paths >> q & 1))
			continue;
		srv_path_route(a, q, route);
		srv_buf_puts(b, k++ ? ", [" : "[");
		for (int l = 0; l < a->nlayers; l++)
			srv_buf_printf(b, "%s%d", l ? ", " : "", route[l]);
		srv_buf_puts(b, "]");
	}
	srv_buf_printf(b, "], \"escalated\": %s, \"compute\": ",
		       r->escalated ? "true" : "false");
	if (job->ran[0])
		srv_buf_json_str(b, job->ran);
	else
		srv_buf_puts(b, "null");
	if (job->top_k > 0) {
		/* Top k by probability, ties to the lower class index. */
		bool used[CIGT_MAX_CLASSES] = {false};
		srv_buf_puts(b, ", \"top_k\": [");
		for (int t = 0; t < job->top_k && t < K; t++) {
			int best = -1;
			for (int k = 0; k < K; k++)
				if (!used[k] && (best < 0 || p[k] > p[best]))
					best = k;
			used[best] = true;
			srv_buf_printf(b, "%s{\"class\": %d, \"label\": ", t ? ", " : "", best);
			srv_buf_json_str(b, a->classes[best]);
			srv_buf_puts(b, ", \"probability\": ");
			srv_put_float(b, p[best]);
			srv_buf_puts(b, "}");
		}
		srv_buf_puts(b, "]");
	}
	srv_buf_puts(b, "}");
}

/* The model and version that computed an answer, as the last keys of its object. */
static void v1_model(const char *model, long long version, struct srv_buf *b)
{
	srv_buf_puts(b, ", \"model\": ");
	srv_buf_json_str(b, model);
	srv_buf_printf(b, ", \"model_version\": \"%lld\"}", version);
}

void srv_encode_v1(const struct cigt_arch *a, const char *model, long long version,
		   const struct srv_job *job, const struct cigt_result *res, const float *probs,
		   struct srv_buf *out)
{
	const int K = a->nclasses;
	if (!job->batch) {
		v1_sample(a, job, &res[0], probs, out);
		if (!out->oom && out->len)
			out->len--; /* the closing brace: the model follows */
		v1_model(model, version, out);
		srv_buf_puts(out, "\n");
		return;
	}
	long long macs = 0, dense = (long long)a->dense_macs * job->n;
	srv_buf_puts(out, "{\"results\": [");
	for (int i = 0; i < job->n; i++) {
		if (i)
			srv_buf_puts(out, ",\n");
		v1_sample(a, job, &res[i], probs + (int64_t)i * K, out);
		macs += res[i].macs;
	}
	srv_buf_printf(out, "], \"count\": %d, \"macs\": %lld, \"dense_macs\": %lld, "
			    "\"compute_saved\": %.4f",
		       job->n, macs, dense, 1.0 - (double)macs / (double)dense);
	v1_model(model, version, out);
	srv_buf_puts(out, "\n");
}

