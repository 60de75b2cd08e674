/* What both request codecs share (codec_v1.c, codec_v2.c): media types, base64, image headers
 * and decoding, JSON pixels, the plain-JSON scanner of the fast paths, the dial keys of a
 * request. Every parser is a pure function of its bytes (the fuzz targets of issue 7) that
 * either fills a job or returns the HTTP status of the problem (400, 413, 415) with a message
 * naming it. Nothing here touches the network or the model's weights. */
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
#include "codec.h"

void srv_job_destroy(struct srv_job *j)
{
	free(j->x);
	free(j->id);
	j->x = NULL;
	j->id = NULL;
	j->n = 0;
}

/* Compares the media type of a Content-Type header (before any ';', case-insensitive). */
bool srv_media_is(const char *ctype, const char *type)
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

int srv_oip_shape(const struct cigt_arch *a, const struct srv_limits *lim, const int64_t *dims,
		  size_t rank, int64_t *total, char *err, size_t errlen)
{
	int64_t prod = 1;
	for (size_t i = 0; i < rank; i++) {
		if (dims[i] < 0)
			return FAIL(400, "inputs[0].shape[%zu]: expected a non-negative integer", i);
		if (__builtin_mul_overflow(prod, dims[i], &prod))
			return FAIL(400, "inputs[0].shape: the product of the dimensions overflows");
	}
	*total = prod;
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
	return 200;
}

/* Encoded image bytes -> one sample of model input. */
int srv_image_sample(const struct cigt_arch *a, const struct srv_limits *lim, const void *buf,
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
bool srv_json_pixel(const json_t *v, uint8_t *out)
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

void srv_json_describe(const json_t *v, char *buf, size_t n)
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
int srv_json_image(const struct cigt_arch *a, const json_t *arr, float *dst, const char *where,
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
			if (!srv_json_pixel(v, &px[i])) {
				srv_json_describe(v, what, sizeof what);
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
					if (!srv_json_pixel(e, &px[((size_t)y * W + x) * C + c])) {
						srv_json_describe(e, what, sizeof what);
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
int srv_v1_image(const struct cigt_arch *a, const struct srv_limits *lim, const json_t *v,
		    float *dst, const char *where, char *err, size_t errlen)
{
	if (json_is_array(v))
		return srv_json_image(a, v, dst, where, err, errlen);
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
	int status = srv_image_sample(a, lim, bytes, n, dst, where, err, errlen);
	free(bytes);
	return status;
}

int srv_alloc_samples(const struct cigt_arch *a, struct srv_job *job, int n, char *err,
			 size_t errlen)
{
	job->x = malloc((size_t)n * (size_t)cigt_arch_input_size(a) * sizeof(float));
	if (!job->x)
		return FAIL(500, "out of memory");
	job->n = n;
	return 200;
}

int srv_parse_json(const void *body, size_t len, json_t **root, char *err, size_t errlen)
{
	json_error_t je;
	*root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!*root)
		return FAIL(400, "malformed JSON at line %d, column %d: %s", je.line, je.column,
			    je.text);
	return 200;
}

/* ------------------------------------------------------------- the fast paths' scanner */

void srv_scan_ws(struct srv_scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

bool srv_scan_ch(struct srv_scan *s, char c)
{
	srv_scan_ws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return true;
	}
	return false;
}

/* A JSON integer without sign, fraction or exponent, at most max. */
bool srv_scan_uint(struct srv_scan *s, long max, long *out)
{
	srv_scan_ws(s);
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

bool srv_scan_pixels(struct srv_scan *s, uint8_t *px, size_t total)
{
	if (!srv_scan_ch(s, '['))
		return false;
	for (size_t i = 0; i < total; i++) {
		long v;
		if ((i && !srv_scan_ch(s, ',')) || !srv_scan_uint(s, 255, &v))
			return false;
		px[i] = (uint8_t)v;
	}
	return srv_scan_ch(s, ']');
}

/* ---------------------------------------------------------------------------- the dial */

int srv_parse_dial_key(const char *key, const json_t *v, const char *where, struct srv_job *job,
		       char *err, size_t errlen)
{
	if (!strcmp(key, "compute")) {
		const char *s = json_is_string(v) ? json_string_value(v) : NULL;
		size_t n = s ? json_string_length(v) : 0;
		bool ok = s && n >= 1 && n < CIGT_POINT_NAME_MAX && strlen(s) == n;
		for (size_t i = 0; ok && i < n; i++)
			ok = isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-';
		if (!ok)
			return FAIL(400, "%scompute must be the name of an operating point (1..%d of "
					 "A-Z a-z 0-9 _ . -)", where, CIGT_POINT_NAME_MAX - 1);
		memcpy(job->compute, s, n + 1);
		return 200;
	}
	/* max_macs */
	if (!json_is_integer(v) || json_integer_value(v) < 1)
		return FAIL(400, "%smax_macs must be a positive integer (multiply-accumulates per "
				 "sample)", where);
	job->max_macs = json_integer_value(v);
	return 200;
}

int srv_check_dial(const struct srv_job *job, char *err, size_t errlen)
{
	if (job->compute[0] && job->max_macs)
		return FAIL(400, "give compute or max_macs, not both");
	return 200;
}

int srv_arch_paths(const struct cigt_arch *a)
{
	int p = 1;
	for (int l = 0; l < a->nlayers; l++)
		p *= a->layers[l].experts;
	return p;
}

void srv_path_route(const struct cigt_arch *a, int r, int *route)
{
	for (int l = a->nlayers - 1; l >= 0; l--) {
		route[l] = r % a->layers[l].experts;
		r /= a->layers[l].experts;
	}
}

/* -------------------------------------------------------------------------- encoding */

void srv_put_float(struct srv_buf *b, float f)
{
	char tmp[32];
	int k = snprintf(tmp, sizeof tmp, "%.9g", (double)f);
	srv_buf_put(b, tmp, (size_t)k);
}

void srv_encode_error(struct srv_buf *out, const char *msg)
{
	srv_buf_puts(out, "{\"error\": ");
	srv_buf_json_str(out, msg);
	srv_buf_puts(out, "}\n");
}
