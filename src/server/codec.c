/* Request bodies in, answers out. Every parser is a pure function of its bytes (the fuzz targets
 * of issue 7) that either fills a job with model input for n samples or returns the HTTP status
 * of the problem (400, 413, 415) with a message naming it. Nothing here touches the network or
 * the model's weights; the architecture only supplies geometry, classes and the input range. */
#include <ctype.h>
#include <limits.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cigt/error.h"
#include "cigt/image.h"
#include "srv.h"

#define FAIL(status, ...) (snprintf(err, errlen, __VA_ARGS__), (status))

static const char *const output_names[SRV_OUT_COUNT] = {"probabilities", "class", "route",
							 "macs"};

const char *srv_output_name(int o)
{
	return o >= 0 && o < SRV_OUT_COUNT ? output_names[o] : "?";
}

void srv_job_destroy(struct srv_job *j)
{
	free(j->x);
	free(j->id);
	j->x = NULL;
	j->id = NULL;
	j->n = 0;
}

/* Compares the media type of a Content-Type header (before any ';', case-insensitive). */
static bool media_is(const char *ctype, const char *type)
{
	if (!ctype)
		return false;
	while (*ctype == ' ' || *ctype == '\t')
		ctype++;
	size_t n = strlen(type);
	if (strncasecmp(ctype, type, n))
		return false;
	const char *rest = ctype + n;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	return *rest == 0 || *rest == ';';
}

/* ------------------------------------------------------------------------------ base64 */

int srv_base64_decode(const char *s, size_t n, uint8_t **out, size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	uint8_t *dst = malloc(n / 4 * 3 + 3);
	if (!dst)
		return CIGT_ENOMEM;
	uint32_t acc = 0;
	int bits = 0, pad = 0;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int v;
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '+' || c == '-')
			v = 62;
		else if (c == '/' || c == '_')
			v = 63;
		else if (c == '=') {
			pad++;
			continue;
		} else if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
			continue;
		else
			goto bad;
		if (pad)
			goto bad; /* data after padding */
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			dst[k++] = (uint8_t)(acc >> bits);
		}
	}
	if (bits >= 6 || pad > 2)
		goto bad; /* a lone trailing character encodes no byte */
	*out = dst;
	*outlen = k;
	return 0;
bad:
	free(dst);
	return CIGT_EFORMAT;
}

/* ------------------------------------------------------------------------------ images */

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads a PGM header number, skipping whitespace and comments. Whitespace is the decoder's
 * (src/io/image.c): with fewer characters here, a PGM the decoder reads was refused as "not a
 * PNG or PGM" (found by the image fuzz target). */
static bool pgm_num(const uint8_t *b, size_t len, size_t *i, long *v)
{
	for (;;) {
		while (*i < len && (b[*i] == ' ' || b[*i] == '\t' || b[*i] == '\n' || b[*i] == '\r' ||
				    b[*i] == '\v' || b[*i] == '\f'))
			(*i)++;
		if (*i < len && b[*i] == '#') {
			while (*i < len && b[*i] != '\n')
				(*i)++;
			continue;
		}
		break;
	}
	/* Every digit is read (a number cut short would leave its tail as the next one); the
	 * value saturates at LONG_MAX. */
	long x = 0;
	size_t start = *i;
	while (*i < len && b[*i] >= '0' && b[*i] <= '9') {
		int dg = b[(*i)++] - '0';
		x = x > (LONG_MAX - dg) / 10 ? LONG_MAX : x * 10 + dg;
	}
	*v = x;
	return *i > start;
}


/* The header's width and height as written (PNG: 32 bits; PGM: any number of digits, saturating
 * at LONG_MAX), so that a message can quote them. */
static int image_peek_long(const uint8_t *b, size_t len, long *w, long *h)
{
	static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	if (len >= 24 && !memcmp(b, png_sig, 8) && !memcmp(b + 12, "IHDR", 4)) {
		*w = (long)be32(b + 16);
		*h = (long)be32(b + 20);
		return 0;
	}
	if (len >= 2 && b[0] == 'P' && (b[1] == '2' || b[1] == '5' || b[1] == '3' || b[1] == '6')) {
		size_t i = 2;
		if (!pgm_num(b, len, &i, w) || !pgm_num(b, len, &i, h))
			return CIGT_EFORMAT;
		return 0;
	}
	if (len >= 4 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) {
		int jw = 0, jh = 0;
		int rc = cigt_jpeg_frame_size(b, len, &jw, &jh, NULL, 0);
		*w = jw;
		*h = jh;
		return rc;
	}
	return CIGT_EFORMAT;
}

int srv_image_peek(const void *buf, size_t len, int *w, int *h)
{
	long pw, ph;
	int rc = image_peek_long(buf, len, &pw, &ph);
	if (rc)
		return rc;
	if (pw > 0x7fffffff || ph > 0x7fffffff)
		return CIGT_ERANGE;
	*w = (int)pw;
	*h = (int)ph;
	return 0;
}

/* Encoded image bytes -> one sample of model input. */
static int image_sample(const struct cigt_arch *a, const struct srv_limits *lim, const void *buf,
			size_t len, float *dst, const char *where, char *err, size_t errlen)
{
	long w = 0, h = 0;
	if (image_peek_long(buf, len, &w, &h))
		return FAIL(400, "%s: not a PNG, JPEG, PGM or PPM image", where);
	if (w > lim->max_image_pixels || h > lim->max_image_pixels ||
	    (long long)w * h > lim->max_image_pixels)
		return FAIL(413, "%s: image is %s%ldx%ld, more than the %d pixels allowed", where,
			    w == LONG_MAX || h == LONG_MAX ? "at least " : "", w, h,
			    lim->max_image_pixels);
	struct cigt_image img;
	char msg[200];
	if (cigt_image_decode(buf, len, &img, msg, sizeof msg))
		return FAIL(400, "%s: cannot decode image: %s", where, msg);
	size_t px = (size_t)a->input.h * a->input.w * a->input.c;
	uint8_t *tmp = malloc(px);
	if (!tmp) {
		cigt_image_destroy(&img);
		return FAIL(500, "out of memory");
	}
	cigt_image_to_input(&img, a->input.c, a->input.w, a->input.h, tmp);
	cigt_model_preprocess_u8(a, tmp, dst);
	free(tmp);
	cigt_image_destroy(&img);
	return 200;
}

/* ------------------------------------------------------------------------ JSON pixels */

/* A pixel 0..255 given as a JSON integer or integral real. */
static bool json_pixel(const json_t *v, uint8_t *out)
{
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i < 0 || i > 255)
			return false;
		*out = (uint8_t)i;
		return true;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!(d >= 0 && d <= 255) || d != floor(d))
			return false;
		*out = (uint8_t)d;
		return true;
	}
	return false;
}

static void describe(const json_t *v, char *buf, size_t n)
{
	if (json_is_integer(v))
		snprintf(buf, n, "%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, n, "%g", json_real_value(v));
	else if (json_is_string(v))
		snprintf(buf, n, "a string");
	else if (json_is_array(v))
		snprintf(buf, n, "an array");
	else if (json_is_object(v))
		snprintf(buf, n, "an object");
	else
		snprintf(buf, n, "%s", json_is_null(v) ? "null" : "a boolean");
}

/* One v1 image given as pixels: flat [H*W*C], rows [H][W] (C = 1) or [H][W][C], HWC order. */
static int json_image(const struct cigt_arch *a, const json_t *arr, float *dst, const char *where,
		      char *err, size_t errlen)
{
	const int H = a->input.h, W = a->input.w, C = a->input.c;
	const size_t total = (size_t)H * W * C, nv = json_array_size(arr);
	uint8_t *px = malloc(total);
	if (!px)
		return FAIL(500, "out of memory");
	int status = 200;
	char what[64];
	if (nv == total && (total > 1 || !json_is_array(json_array_get(arr, 0)))) {
		for (size_t i = 0; i < total; i++) {
			const json_t *v = json_array_get(arr, i);
			if (!json_pixel(v, &px[i])) {
				describe(v, what, sizeof what);
				status = FAIL(400, "%s: pixel %zu is %s, not an integer in 0..255",
					      where, i, what);
				goto out;
			}
		}
	} else if (nv == (size_t)H) {
		for (int y = 0; y < H; y++) {
			const json_t *row = json_array_get(arr, (size_t)y);
			if (!json_is_array(row) || json_array_size(row) != (size_t)W) {
				status = FAIL(400, "%s: row %d is not an array of %d pixels", where,
					      y, W);
				goto out;
			}
			for (int x = 0; x < W; x++) {
				const json_t *v = json_array_get(row, (size_t)x);
				for (int c = 0; c < C; c++) {
					const json_t *e = v;
					if (C > 1) {
						if (!json_is_array(v) ||
						    json_array_size(v) != (size_t)C) {
							status = FAIL(400,
								      "%s: pixel [%d][%d] is not an "
								      "array of %d channels",
								      where, y, x, C);
							goto out;
						}
						e = json_array_get(v, (size_t)c);
					}
					if (!json_pixel(e, &px[((size_t)y * W + x) * C + c])) {
						describe(e, what, sizeof what);
						status = FAIL(400,
							      "%s: pixel [%d][%d] is %s, not an "
							      "integer in 0..255",
							      where, y, x, what);
						goto out;
					}
				}
			}
		}
	} else {
		status = FAIL(400,
			      "%s: has %zu values; expected %zu pixel values (H*W*C = %dx%dx%d) "
			      "or %d rows",
			      where, nv, total, H, W, C, H);
		goto out;
	}
	cigt_model_preprocess_u8(a, px, dst);
out:
	free(px);
	return status;
}

/* Says why srv_base64_decode refused s: the first byte outside the alphabet, data after the
 * padding, or a length that does not make whole bytes. */
static void base64_problem(const char *s, size_t n, char *why, size_t len)
{
	size_t pad = 0, chars = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '=') {
			pad++;
			continue;
		}
		if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
			continue;
		if (!isalnum(c) && !strchr("+/-_", c)) {
			snprintf(why, len, "byte 0x%02x at offset %zu is not a base64 character", c, i);
			return;
		}
		if (pad) {
			snprintf(why, len, "data after the '=' padding at offset %zu", i);
			return;
		}
		chars++;
	}
	if (pad > 2)
		snprintf(why, len, "%zu '=' padding characters (two at most)", pad);
	else
		snprintf(why, len, "%zu base64 characters leave a lone one that encodes no byte",
			 chars);
}

/* One v1 image: a pixel array or {"png": "<base64>"}. */
static int v1_image(const struct cigt_arch *a, const struct srv_limits *lim, const json_t *v,
		    float *dst, const char *where, char *err, size_t errlen)
{
	if (json_is_array(v))
		return json_image(a, v, dst, where, err, errlen);
	const json_t *png = json_is_object(v) ? json_object_get(v, "png") : NULL;
	if (!png || json_object_size(v) != 1)
		return FAIL(400, "%s: expected an array of pixels or {\"png\": \"<base64>\"}",
			    where);
	/* The top-level {"png": ...} form is called "png", an element of "images" "images[i].png". */
	char field[48];
	snprintf(field, sizeof field, "%s%s", where, strcmp(where, "png") ? ".png" : "");
	if (!json_is_string(png))
		return FAIL(400, "%s: expected a base64 string", field);
	uint8_t *bytes;
	size_t n;
	int rc = srv_base64_decode(json_string_value(png), json_string_length(png), &bytes, &n);
	if (rc == CIGT_ENOMEM)
		return FAIL(500, "out of memory");
	if (rc) {
		char why[96];
		base64_problem(json_string_value(png), json_string_length(png), why, sizeof why);
		return FAIL(400, "%s: invalid base64: %s", field, why);
	}
	int status = image_sample(a, lim, bytes, n, dst, where, err, errlen);
	free(bytes);
	return status;
}

static int alloc_samples(const struct cigt_arch *a, struct srv_job *job, int n, char *err,
			 size_t errlen)
{
	job->x = malloc((size_t)n * (size_t)cigt_arch_input_size(a) * sizeof(float));
	if (!job->x)
		return FAIL(500, "out of memory");
	job->n = n;
	return 200;
}

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
		} else {
			return FAIL(400, "unknown key '%.64s' (expected image, images, png, top_k, "
					 "timeout_ms)", key);
		}
	}
	if (!!image + !!images + !!png != 1)
		return FAIL(400, "body needs exactly one of \"image\", \"images\" or \"png\"");
	if (image || png) {
		if (image && !json_is_array(image))
			return FAIL(400, "image: expected an array of pixels");
		int status = alloc_samples(a, job, 1, err, errlen);
		if (status != 200)
			return status;
		if (image)
			return json_image(a, image, job->x, "image", err, errlen);
		json_t *wrap = json_pack("{sO}", "png", png);
		if (!wrap)
			return FAIL(500, "out of memory");
		status = v1_image(a, lim, wrap, job->x, "png", err, errlen);
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
	int status = alloc_samples(a, job, (int)n, err, errlen);
	if (status != 200)
		return status;
	job->batch = true;
	const int64_t isz = cigt_arch_input_size(a);
	for (size_t i = 0; i < n; i++) {
		char where[32];
		snprintf(where, sizeof where, "images[%zu]", i);
		status = v1_image(a, lim, json_array_get(images, i), job->x + (int64_t)i * isz,
				  where, err, errlen);
		if (status != 200)
			return status;
	}
	return 200;
}

static int parse_json(const void *body, size_t len, json_t **root, char *err, size_t errlen)
{
	json_error_t je;
	*root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!*root)
		return FAIL(400, "malformed JSON at line %d, column %d: %s", je.line, je.column,
			    je.text);
	return 200;
}

/* ------------------------------------------------------------- v1 JSON fast path
 * The common bodies, {"image": [flat pixels]} and {"images": [[flat pixels], ...]} with
 * optional top_k / timeout_ms, are scanned directly: building a jansson value per pixel costs
 * more than the model's own compute. The scanner accepts only plain well-formed input (flat
 * arrays of integers 0..255 of exactly the right length, known keys once each, no escapes);
 * for anything else it declines and the general jansson parser decides, with its messages. */

struct scan {
	const char *p, *end;
};

static void scan_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

static bool scan_ch(struct scan *s, char c)
{
	scan_ws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return true;
	}
	return false;
}

/* A JSON integer without sign, fraction or exponent, at most max. */
static bool scan_uint(struct scan *s, long max, long *out)
{
	scan_ws(s);
	const char *q = s->p;
	long v = 0;
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9' && s->p - q < 8)
		v = v * 10 + (*s->p++ - '0');
	if (s->p == q || (*q == '0' && s->p - q > 1) || v > max)
		return false;
	if (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E' ||
			      (*s->p >= '0' && *s->p <= '9')))
		return false;
	*out = v;
	return true;
}

static bool scan_pixels(struct scan *s, uint8_t *px, size_t total)
{
	if (!scan_ch(s, '['))
		return false;
	for (size_t i = 0; i < total; i++) {
		long v;
		if ((i && !scan_ch(s, ',')) || !scan_uint(s, 255, &v))
			return false;
		px[i] = (uint8_t)v;
	}
	return scan_ch(s, ']');
}

/* 1: parsed into job; 0: declined (use the general parser); -1: out of memory. */
static int v1_fast(const struct cigt_arch *a, const struct srv_limits *lim, const char *body,
		   size_t len, struct srv_job *job)
{
	struct scan s = {body, body + len};
	const size_t total = (size_t)a->input.h * a->input.w * a->input.c;
	const int64_t isz = cigt_arch_input_size(a);
	bool seen_img = false, seen_k = false, seen_t = false;
	long top_k = 0, timeout = -1;
	uint8_t *px = malloc(total);
	if (!px)
		return -1;
	int rc = 0;
	if (!scan_ch(&s, '{'))
		goto out;
	do {
		scan_ws(&s);
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
		if (key < 0 || !scan_ch(&s, ':'))
			goto out;
		if (key == 2 || key == 3) {
			bool *seen = key == 2 ? &seen_k : &seen_t;
			long *v = key == 2 ? &top_k : &timeout;
			if (*seen || !scan_uint(&s, key == 2 ? a->nclasses : 3600000, v) ||
			    (key == 2 && *v < 1))
				goto out;
			*seen = true;
			continue;
		}
		if (seen_img)
			goto out;
		seen_img = true;
		if (key == 0) {
			if (!scan_pixels(&s, px, total))
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
		if (!scan_ch(&s, '['))
			goto out;
		struct scan start = s;
		int n = 0;
		do {
			if (n >= lim->max_images || !scan_pixels(&s, px, total))
				goto out;
			n++;
		} while (scan_ch(&s, ','));
		if (!scan_ch(&s, ']'))
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
				scan_ch(&s, ',');
			scan_pixels(&s, px, total);
			cigt_model_preprocess_u8(a, px, job->x + (int64_t)i * isz);
		}
		scan_ch(&s, ']');
	} while (scan_ch(&s, ','));
	if (!scan_ch(&s, '}') || !seen_img)
		goto out;
	scan_ws(&s);
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
	if (media_is(ctype, "image/png") || media_is(ctype, "image/jpeg") ||
	    media_is(ctype, "image/x-portable-graymap") ||
	    media_is(ctype, "image/x-portable-pixmap")) {
		status = alloc_samples(a, job, 1, err, errlen);
		if (status == 200)
			status = image_sample(a, lim, body, len, job->x, "body", err, errlen);
	} else if (media_is(ctype, "application/json")) {
		int fast = v1_fast(a, lim, body, len, job);
		if (fast != 0)
			return fast > 0 ? 200 : FAIL(500, "out of memory");
		json_t *root;
		status = parse_json(body, len, &root, err, errlen);
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

/* ------------------------------------------------------------------- Open Inference v2 */

enum dtype { DT_UINT8, DT_FP32 };

/* The checks on one value of inputs[0].data that both readers of it share: the general one
 * (v2_flatten, jansson values) and the fast scanner's (v2_fast_values, integers 0..255). */
static int v2_too_many(size_t want, char *err, size_t errlen)
{
	return FAIL(400, "inputs[0].data: more values than the shape's %zu", want);
}

static int v2_fp32(const struct cigt_arch *a, double d, float *dst, size_t *k, char *err,
		   size_t errlen)
{
	if (!(d >= a->range_lo && d <= a->range_hi))
		return FAIL(400, "inputs[0].data[%zu] is %g, outside the model's input range "
				 "[%g, %g]", *k, d, (double)a->range_lo, (double)a->range_hi);
	dst[(*k)++] = (float)d;
	return 200;
}

/* Flattens nested arrays of numbers into dst (count elements at most), checking each value. */
static int v2_flatten(const struct cigt_arch *a, enum dtype dt, const json_t *v, float *dst,
		      size_t want, size_t *k, int depth, char *err, size_t errlen)
{
	if (json_is_array(v)) {
		if (depth > 8)
			return FAIL(400, "inputs[0].data: nested more than 8 levels");
		for (size_t i = 0; i < json_array_size(v); i++) {
			int s = v2_flatten(a, dt, json_array_get(v, i), dst, want, k, depth + 1, err,
					   errlen);
			if (s != 200)
				return s;
		}
		return 200;
	}
	if (*k >= want)
		return v2_too_many(want, err, errlen);
	char what[64];
	if (dt == DT_UINT8) {
		uint8_t p;
		if (!json_pixel(v, &p)) {
			describe(v, what, sizeof what);
			return FAIL(400, "inputs[0].data[%zu] is %s, not a UINT8 in 0..255", *k,
				    what);
		}
		dst[(*k)++] = p; /* scaled by the caller */
		return 200;
	}
	if (!json_is_number(v)) {
		describe(v, what, sizeof what);
		return FAIL(400, "inputs[0].data[%zu] is %s, not a number", *k, what);
	}
	return v2_fp32(a, json_number_value(v), dst, k, err, errlen);
}

/* The values of inputs[0].data as the fast scanner read them, with v2_flatten's answers: they
 * are integers 0..255 in document order, nested at most 9 deep, so the only failures left are
 * too many values (at the first one past want) and, for FP32, one outside the input range. */
static int v2_fast_values(const struct cigt_arch *a, enum dtype dt, const struct srv_v2_data *d,
			  float *dst, size_t want, size_t *k, char *err, size_t errlen)
{
	for (size_t i = 0; i < d->n; i++) {
		if (*k >= want)
			return v2_too_many(want, err, errlen);
		if (dt == DT_UINT8) {
			dst[(*k)++] = d->v[i]; /* scaled by the caller */
			continue;
		}
		int status = v2_fp32(a, d->v[i], dst, k, err, errlen);
		if (status != 200)
			return status;
	}
	return 200;
}

/* Scales UINT8 values already stored as floats, channels-first, to the model's range exactly as
 * cigt_model_preprocess_u8 does. */
static void scale_u8(const struct cigt_arch *a, float *x, size_t n)
{
	cigt_model_preprocess_chw(a, x, n);
}

static int v2_outputs(const json_t *outs, bool bin_default, struct srv_job *job, char *err,
		      size_t errlen)
{
	if (!outs) {
		job->outputs = (1u << SRV_OUT_COUNT) - 1;
		job->binary = bin_default ? job->outputs : 0;
		return 200;
	}
	if (!json_is_array(outs))
		return FAIL(400, "outputs: expected an array");
	if (json_array_size(outs) == 0)
		return FAIL(400, "outputs: empty array");
	job->outputs = job->binary = 0;
	for (size_t i = 0; i < json_array_size(outs); i++) {
		const json_t *o = json_array_get(outs, i), *name, *params, *bd;
		if (!json_is_object(o) || !json_is_string(name = json_object_get(o, "name")))
			return FAIL(400, "outputs[%zu]: expected {\"name\": ...}", i);
		int which = -1;
		for (int k = 0; k < SRV_OUT_COUNT; k++)
			if (!strcmp(json_string_value(name), output_names[k]))
				which = k;
		if (which < 0)
			return FAIL(400, "outputs[%zu]: unknown output '%.64s' (probabilities, "
					 "class, route, macs)", i, json_string_value(name));
		bool bin = bin_default;
		if ((params = json_object_get(o, "parameters"))) {
			if (!json_is_object(params))
				return FAIL(400, "outputs[%zu].parameters: expected an object", i);
			if ((bd = json_object_get(params, "binary_data"))) {
				if (!json_is_boolean(bd))
					return FAIL(400, "outputs[%zu].parameters.binary_data: "
							 "expected a boolean", i);
				bin = json_is_true(bd);
			}
		}
		job->outputs |= 1u << which;
		if (bin)
			job->binary |= 1u << which;
	}
	return 200;
}

/* Checks a parsed request and fills job. fast, when not NULL, holds the values of inputs[0].data,
 * whose place in root is taken by a placeholder (srv_parse_v2's fast path). */
static int v2_request(const struct cigt_arch *a, const struct srv_limits *lim, const json_t *root,
		      const struct srv_v2_data *fast, const uint8_t *bin, size_t binlen,
		      bool has_bin, struct srv_job *job, char *err, size_t errlen)
{
	if (!json_is_object(root))
		return FAIL(400, "body must be a JSON object");
	const char *key;
	json_t *v, *inputs = NULL, *outputs = NULL;
	bool bin_out = false;
	json_object_foreach((json_t *)root, key, v) {
		if (!strcmp(key, "id")) {
			if (!json_is_string(v))
				return FAIL(400, "id: expected a string");
			if (!(job->id = strdup(json_string_value(v))))
				return FAIL(500, "out of memory");
		} else if (!strcmp(key, "parameters")) {
			if (!json_is_object(v))
				return FAIL(400, "parameters: expected an object");
			const json_t *p = json_object_get(v, "binary_data_output");
			if (p && !json_is_boolean(p))
				return FAIL(400, "parameters.binary_data_output: expected a boolean");
			bin_out = p && json_is_true(p);
			if ((p = json_object_get(v, "timeout_ms"))) {
				if (!json_is_integer(p) || json_integer_value(p) < 0 ||
				    json_integer_value(p) > 3600000)
					return FAIL(400, "parameters.timeout_ms must be an integer "
							 "in 0..3600000");
				job->timeout_ms = json_integer_value(p);
			}
		} else if (!strcmp(key, "inputs")) {
			inputs = v;
		} else if (!strcmp(key, "outputs")) {
			outputs = v;
		} else {
			return FAIL(400, "unknown key '%.64s' (expected id, parameters, inputs, "
					 "outputs)", key);
		}
	}
	if (!json_is_array(inputs) || json_array_size(inputs) != 1)
		return FAIL(400, "inputs: expected an array with the one input 'image'");
	int status = v2_outputs(outputs, bin_out, job, err, errlen);
	if (status != 200)
		return status;
	const json_t *in = json_array_get(inputs, 0), *name, *shape, *dtype, *data, *params;
	if (!json_is_object(in))
		return FAIL(400, "inputs[0]: expected an object");
	name = json_object_get(in, "name");
	if (!json_is_string(name) || strcmp(json_string_value(name), "image"))
		return FAIL(400, "inputs[0].name: the model's input is named 'image'");
	json_object_foreach((json_t *)in, key, v)
		if (strcmp(key, "name") && strcmp(key, "shape") && strcmp(key, "datatype") &&
		    strcmp(key, "data") && strcmp(key, "parameters"))
			return FAIL(400, "inputs[0]: unknown key '%.64s'", key);
	shape = json_object_get(in, "shape");
	if (!json_is_array(shape) || json_array_size(shape) < 1 || json_array_size(shape) > 8)
		return FAIL(400, "inputs[0].shape: expected an array of dimensions");
	const size_t rank = json_array_size(shape);
	int64_t dims[8], total = 1;
	for (size_t i = 0; i < rank; i++) {
		const json_t *d = json_array_get(shape, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return FAIL(400, "inputs[0].shape[%zu]: expected a non-negative integer", i);
		dims[i] = json_integer_value(d);
		if (__builtin_mul_overflow(total, dims[i], &total))
			return FAIL(400, "inputs[0].shape: the product of the dimensions overflows");
	}
	const int C = a->input.c, H = a->input.h, W = a->input.w;
	bool ok = (rank == 4 && dims[1] == C && dims[2] == H && dims[3] == W) ||
		  (rank == 3 && C == 1 && dims[1] == H && dims[2] == W);
	if (!ok)
		return FAIL(400, "inputs[0].shape: expected [N, %d, %d, %d]%s", C, H, W,
			    C == 1 ? " or [N, H, W]" : "");
	if (dims[0] < 1)
		return FAIL(400, "inputs[0].shape: N must be at least 1");
	if (dims[0] > lim->max_images)
		return FAIL(413, "inputs[0].shape: %lld images, more than the %d allowed per "
				 "request", (long long)dims[0], lim->max_images);
	dtype = json_object_get(in, "datatype");
	if (!json_is_string(dtype))
		return FAIL(400, "inputs[0].datatype: expected \"UINT8\" or \"FP32\"");
	enum dtype dt;
	if (!strcmp(json_string_value(dtype), "UINT8"))
		dt = DT_UINT8;
	else if (!strcmp(json_string_value(dtype), "FP32"))
		dt = DT_FP32;
	else
		return FAIL(400, "inputs[0].datatype: '%.32s' is not supported (UINT8 or FP32)",
			    json_string_value(dtype));
	status = alloc_samples(a, job, (int)dims[0], err, errlen);
	if (status != 200)
		return status;
	data = json_object_get(in, "data");
	params = json_object_get(in, "parameters");
	const json_t *bds = json_is_object(params) ? json_object_get(params, "binary_data_size")
						  : NULL;
	if (params && !json_is_object(params))
		return FAIL(400, "inputs[0].parameters: expected an object");
	const size_t want = (size_t)total, esz = dt == DT_UINT8 ? 1 : 4;
	if (bds) {
		if (data)
			return FAIL(400, "inputs[0]: both data and binary_data_size given");
		if (!has_bin)
			return FAIL(400, "inputs[0].parameters.binary_data_size needs the "
					 "Inference-Header-Content-Length header");
		if (!json_is_integer(bds) || json_integer_value(bds) < 0 ||
		    (size_t)json_integer_value(bds) != want * esz)
			return FAIL(400, "inputs[0].parameters.binary_data_size: expected %zu "
					 "bytes for the shape and datatype", want * esz);
		if (binlen != want * esz)
			return FAIL(400, "binary data: %zu bytes after the JSON header, expected %zu",
				    binlen, want * esz);
		for (size_t i = 0; i < want; i++) {
			if (dt == DT_UINT8) {
				job->x[i] = bin[i];
				continue;
			}
			float f;
			memcpy(&f, bin + 4 * i, 4); /* little-endian host (x86-64, arm64) */
			if (!(f >= a->range_lo && f <= a->range_hi))
				return FAIL(400, "binary data: value %zu is %g, outside the model's "
						 "input range [%g, %g]", i, (double)f,
					    (double)a->range_lo, (double)a->range_hi);
			job->x[i] = f;
		}
	} else {
		if (!data)
			return FAIL(400, "inputs[0]: missing data");
		if (has_bin && binlen)
			return FAIL(400, "binary data present but no input has binary_data_size");
		size_t k = 0;
		if (fast)
			status = v2_fast_values(a, dt, fast, job->x, want, &k, err, errlen);
		else
			status = v2_flatten(a, dt, data, job->x, want, &k, 0, err, errlen);
		if (status != 200)
			return status;
		if (k != want)
			return FAIL(400, "inputs[0].data: %zu values, the shape needs %zu", k, want);
	}
	if (dt == DT_UINT8)
		scale_u8(a, job->x, want);
	return 200;
}

/* ------------------------------------------------------------- v2 JSON fast path
 * An OIP request is mostly inputs[0].data, and building a jansson value per number of it took
 * 0.1-0.15 ms per image, 10-20 times what this path takes. srv_v2_data_scan walks the body just
 * far enough to find that array and reads it when it is plain (integers 0..255, nested at most
 * 9 deep); jansson then parses a copy of the body with the array replaced by [], and
 * v2_request checks everything as usual, taking the values from the scan. Why the answers
 * cannot differ:
 *  - the scan is exact on any prefix of valid JSON (it follows strings and escapes), and it
 *    only reads an array that is itself valid JSON in the place of a value; so the copy is valid
 *    JSON, with the same keys and duplicates, exactly when the body is, and then parses to the
 *    same tree but for that one array (a raw "inputs" or "data" key is that key; another
 *    spelling of it, with escapes, would be a duplicate, which both parses refuse);
 *  - when jansson refuses the copy, the body itself is parsed, so malformed JSON gets the
 *    general parser's message and position;
 *  - v2_fast_values gives v2_flatten's answer for such values (see there).
 * Anything else (reals, signs, leading zeros, strings, a "data" that is not an array, a
 * missing "inputs", running out of memory) declines, and the general path decides. The fuzz
 * target v2 compares both paths on every input (srv_parse_v2_general). */

/* A string, its raw bytes (escapes left as they are) in [*k, *k + *kl). */
static bool scan_str(struct scan *s, const char **k, size_t *kl)
{
	if (!scan_ch(s, '"'))
		return false;
	const char *q = s->p;
	while (s->p < s->end && *s->p != '"')
		if (*s->p++ == '\\' && s->p < s->end)
			s->p++;
	if (s->p >= s->end)
		return false;
	*k = q;
	*kl = (size_t)(s->p++ - q);
	return true;
}

/* An object key and its colon; true when it is written exactly as name. */
static bool scan_key(struct scan *s, const char *name, bool *match)
{
	const char *k;
	size_t kl;
	if (!scan_str(s, &k, &kl) || !scan_ch(s, ':'))
		return false;
	*match = kl == strlen(name) && !memcmp(k, name, kl);
	return true;
}

/* Skips one value without checking it (jansson checks it later): exact on valid JSON. */
static bool scan_skip(struct scan *s)
{
	scan_ws(s);
	if (s->p >= s->end)
		return false;
	if (*s->p == '"') {
		const char *k;
		size_t kl;
		return scan_str(s, &k, &kl);
	}
	if (*s->p != '[' && *s->p != '{') { /* a number, true, false or null */
		const char *q = s->p;
		while (s->p < s->end && *s->p != ',' && *s->p != ']' && *s->p != '}' &&
		       *s->p != ' ' && *s->p != '\t' && *s->p != '\n' && *s->p != '\r')
			s->p++;
		return s->p > q;
	}
	size_t depth = 0;
	while (s->p < s->end) {
		const char *k;
		size_t kl;
		switch (*s->p) {
		case '"':
			if (!scan_str(s, &k, &kl))
				return false;
			continue;
		case '[':
		case '{':
			depth++;
			break;
		case ']':
		case '}':
			if (--depth == 0) {
				s->p++;
				return true;
			}
			break;
		}
		s->p++;
	}
	return false;
}

/* The array of inputs[0].data: integers 0..255 without sign, fraction, exponent or leading
 * zero, in arrays nested at most 9 deep (v2_flatten refuses a 10th level), at any spacing. */
static bool scan_data(struct scan *s, struct srv_v2_data *d)
{
	if (!scan_ch(s, '['))
		return false;
	enum { OPENED, COMMA, VALUE } last = OPENED; /* what came last: '[', ',', a value */
	int open = 1;
	for (;;) {
		scan_ws(s);
		if (s->p >= s->end)
			return false;
		char c = *s->p;
		if (c >= '0' && c <= '9' && last != VALUE) {
			unsigned v = (unsigned)(c - '0');
			s->p++;
			if (v) {
				for (int i = 0; i < 2 && s->p < s->end && *s->p >= '0' && *s->p <= '9';
				     i++)
					v = v * 10 + (unsigned)(*s->p++ - '0');
				if (v > 255)
					return false;
			}
			/* A further digit, '.' or 'e' is refused as the next token. */
			if (d->n == d->cap) {
				size_t cap = d->cap ? 2 * d->cap : 1024;
				uint8_t *nv = realloc(d->v, cap);
				if (!nv)
					return false;
				d->v = nv;
				d->cap = cap;
			}
			d->v[d->n++] = (uint8_t)v;
			last = VALUE;
		} else if (c == '[' && last != VALUE) {
			if (++open > 9)
				return false;
			s->p++;
			last = OPENED;
		} else if (c == ']' && last != COMMA) {
			s->p++;
			if (--open == 0)
				return true;
			last = VALUE;
		} else if (c == ',' && last == VALUE) {
			s->p++;
			last = COMMA;
		} else {
			return false;
		}
	}
}

bool srv_v2_data_scan(const char *body, size_t len, struct srv_v2_data *d)
{
	*d = (struct srv_v2_data){0};
	struct scan s = {body, body + len};
	bool match;
	if (!scan_ch(&s, '{'))
		return false;
	do { /* the top-level keys up to "inputs" */
		if (!scan_key(&s, "inputs", &match))
			return false;
		if (!match && !scan_skip(&s))
			return false;
	} while (!match && scan_ch(&s, ','));
	if (!match || !scan_ch(&s, '[') || !scan_ch(&s, '{'))
		return false;
	do { /* the keys of inputs[0] up to "data" */
		if (!scan_key(&s, "data", &match))
			return false;
		if (!match && !scan_skip(&s))
			return false;
	} while (!match && scan_ch(&s, ','));
	scan_ws(&s);
	if (!match)
		return false;
	d->at = (size_t)(s.p - body);
	if (!scan_data(&s, d)) {
		free(d->v);
		*d = (struct srv_v2_data){0};
		return false;
	}
	d->end = (size_t)(s.p - body);
	return true;
}

/* Parses body with its inputs[0].data array (found by the scan) replaced by []; NULL when
 * jansson refuses that copy or memory runs out. */
static json_t *v2_fast_parse(const char *body, size_t len, const struct srv_v2_data *d)
{
	size_t clen = len - (d->end - d->at) + 2;
	char *copy = malloc(clen);
	if (!copy)
		return NULL;
	memcpy(copy, body, d->at);
	memcpy(copy + d->at, "[]", 2);
	memcpy(copy + d->at + 2, body + d->end, len - d->end);
	json_t *root = json_loadb(copy, clen, JSON_REJECT_DUPLICATES, NULL);
	free(copy);
	return root;
}

static int parse_v2(const struct cigt_arch *a, const struct srv_limits *lim, const char *ctype,
		    long long header_len, const void *body, size_t len, bool fast,
		    struct srv_job *job, char *err, size_t errlen)
{
	int status;
	json_t *root = NULL;
	struct srv_v2_data d = {0};
	const bool has_bin = header_len >= 0;
	if (ctype && !media_is(ctype, "application/json") &&
	    !(has_bin && media_is(ctype, "application/octet-stream"))) {
		status = FAIL(415, "Content-Type '%.64s' is not supported (application/json, or "
				   "application/octet-stream with Inference-Header-Content-Length)",
			      ctype);
		goto out;
	}
	if (has_bin && (header_len == 0 || (unsigned long long)header_len > len)) {
		status = FAIL(400, "Inference-Header-Content-Length %lld is outside the body's %zu "
				   "bytes", header_len, len);
		goto out;
	}
	const size_t jlen = has_bin ? (size_t)header_len : len;
	const uint8_t *bin = (const uint8_t *)body + jlen;
	if (fast && srv_v2_data_scan(body, jlen, &d) && (root = v2_fast_parse(body, jlen, &d))) {
		status = v2_request(a, lim, root, &d, bin, len - jlen, has_bin, job, err, errlen);
		goto out;
	}
	status = parse_json(body, jlen, &root, err, errlen);
	if (status == 200)
		status = v2_request(a, lim, root, NULL, bin, len - jlen, has_bin, job, err, errlen);
out:
	free(d.v);
	json_decref(root);
	if (status != 200)
		srv_job_destroy(job);
	return status;
}

int srv_parse_v2(const struct cigt_arch *a, const struct srv_limits *lim, const char *ctype,
		 long long header_len, const void *body, size_t len, struct srv_job *job, char *err,
		 size_t errlen)
{
	return parse_v2(a, lim, ctype, header_len, body, len, true, job, err, errlen);
}

int srv_parse_v2_general(const struct cigt_arch *a, const struct srv_limits *lim,
			 const char *ctype, long long header_len, const void *body, size_t len,
			 struct srv_job *job, char *err, size_t errlen)
{
	return parse_v2(a, lim, ctype, header_len, body, len, false, job, err, errlen);
}

/* -------------------------------------------------------------------------- encoding */

static void put_float(struct srv_buf *b, float f)
{
	char tmp[32];
	int k = snprintf(tmp, sizeof tmp, "%.9g", (double)f);
	srv_buf_put(b, tmp, (size_t)k);
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
		put_float(b, p[k]);
	}
	srv_buf_puts(b, "], \"route\": [");
	for (int l = 0; l < a->nlayers; l++)
		srv_buf_printf(b, "%s%d", l ? ", " : "", r->route[l]);
	srv_buf_printf(b, "], \"macs\": %lld, \"dense_macs\": %lld, \"compute_saved\": %.4f",
		       (long long)r->macs, (long long)a->dense_macs,
		       1.0 - (double)r->macs / (double)a->dense_macs);
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
			put_float(b, p[best]);
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

static void v2_shape(struct srv_buf *b, int n, int inner)
{
	if (inner > 0)
		srv_buf_printf(b, "[%d, %d]", n, inner);
	else
		srv_buf_printf(b, "[%d]", n);
}

void srv_encode_v2(const struct cigt_arch *a, const char *model, long long version,
		   const struct srv_job *job,
		   const struct cigt_result *res, const float *probs, struct srv_buf *out,
		   long long *json_len)
{
	static const char *const dtypes[SRV_OUT_COUNT] = {"FP32", "INT64", "INT32", "INT64"};
	const int n = job->n, K = a->nclasses, L = a->nlayers;
	const int inner[SRV_OUT_COUNT] = {K, 0, L, 0};
	const size_t bytes[SRV_OUT_COUNT] = {(size_t)n * K * 4, (size_t)n * 8, (size_t)n * L * 4,
					     (size_t)n * 8};
	srv_buf_puts(out, "{\"model_name\": ");
	srv_buf_json_str(out, model);
	srv_buf_printf(out, ", \"model_version\": \"%lld\"", version);
	if (job->id) {
		srv_buf_puts(out, ", \"id\": ");
		srv_buf_json_str(out, job->id);
	}
	srv_buf_puts(out, ", \"outputs\": [");
	bool first = true;
	for (int o = 0; o < SRV_OUT_COUNT; o++) {
		if (!(job->outputs & 1u << o))
			continue;
		srv_buf_printf(out, "%s{\"name\": \"%s\", \"datatype\": \"%s\", \"shape\": ",
			       first ? "" : ", ", output_names[o], dtypes[o]);
		first = false;
		v2_shape(out, n, inner[o]);
		if (job->binary & 1u << o) {
			srv_buf_printf(out, ", \"parameters\": {\"binary_data_size\": %zu}}",
				       bytes[o]);
			continue;
		}
		srv_buf_puts(out, ", \"data\": [");
		for (int i = 0; i < n; i++) {
			const char *sep = i ? ", " : "";
			switch (o) {
			case SRV_OUT_PROBS:
				for (int k = 0; k < K; k++) {
					srv_buf_puts(out, i || k ? ", " : "");
					put_float(out, probs[(int64_t)i * K + k]);
				}
				break;
			case SRV_OUT_CLASS:
				srv_buf_printf(out, "%s%d", sep, res[i].cls);
				break;
			case SRV_OUT_ROUTE:
				for (int l = 0; l < L; l++)
					srv_buf_printf(out, "%s%d", i || l ? ", " : "",
						       res[i].route[l]);
				break;
			case SRV_OUT_MACS:
				srv_buf_printf(out, "%s%lld", sep, (long long)res[i].macs);
				break;
			}
		}
		srv_buf_puts(out, "]}");
	}
	srv_buf_puts(out, "]}");
	*json_len = -1;
	if (!job->binary) {
		srv_buf_puts(out, "\n");
		return;
	}
	*json_len = (long long)out->len;
	/* Binary outputs follow the JSON in output order, little-endian. */
	for (int o = 0; o < SRV_OUT_COUNT; o++) {
		if (!(job->binary & job->outputs & 1u << o))
			continue;
		for (int i = 0; i < n; i++) {
			switch (o) {
			case SRV_OUT_PROBS:
				srv_buf_put(out, probs + (int64_t)i * K, (size_t)K * 4);
				break;
			case SRV_OUT_CLASS: {
				int64_t c = res[i].cls;
				srv_buf_put(out, &c, 8);
				break;
			}
			case SRV_OUT_ROUTE:
				for (int l = 0; l < L; l++) {
					int32_t r = res[i].route[l];
					srv_buf_put(out, &r, 4);
				}
				break;
			case SRV_OUT_MACS: {
				int64_t m = res[i].macs;
				srv_buf_put(out, &m, 8);
				break;
			}
			}
		}
	}
}

void srv_encode_error(struct srv_buf *out, const char *msg)
{
	srv_buf_puts(out, "{\"error\": ");
	srv_buf_json_str(out, msg);
	srv_buf_puts(out, "}\n");
}
