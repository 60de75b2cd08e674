/* The Open Inference Protocol request parser of cigtd (src/server/codec.c) on JSON data: the
 * fast path (srv_v2_data_scan reads inputs[0].data, jansson the rest) against the general
 * parser (srv_parse_v2_general) and against the pixels themselves. Every parse here runs both
 * paths and asserts the same status, message and job; the tests then assert the values (the
 * pixels scaled as cigt_model_preprocess_u8 scales them), the ids and the messages, and which
 * array the scan took or that it declined. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/arch.h"
#include "cigt/file.h"
#include "cigt/model.h"
#include "srv.h"

#define NPX 784

static struct cigt_arch *arch;
static const struct srv_limits lim = {.max_images = 8, .max_image_pixels = 1 << 16};
static uint8_t px[2 * NPX]; /* two images */

static void setup(void)
{
	void *buf;
	size_t len;
	char err[256];
	cr_assert(cigt_file_read(CIGT_REFERENCE_ARCH, 1 << 20, &buf, &len, err, sizeof err) == 0,
		  "%s", err);
	cr_assert(cigt_arch_parse(buf, len, &arch, err, sizeof err) == 0, "%s", err);
	free(buf);
	cr_assert(arch->input.c == 1 && arch->input.h == 28 && arch->input.w == 28);
	for (int i = 0; i < 2 * NPX; i++)
		px[i] = (uint8_t)((i * 37 + i / 28 * 11) % 256); /* 0 and 255 included */
}

static void teardown(void)
{
	cigt_arch_free(arch);
}

TestSuite(codec_v2, .init = setup, .fini = teardown);

/* ----------------------------------------------------------------------------- bodies */

struct text {
	char *p;
	size_t len, cap;
};

static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (t->len + (size_t)n + 1 > t->cap) {
		t->cap = 2 * (t->len + (size_t)n + 1);
		t->p = realloc(t->p, t->cap);
		cr_assert(t->p);
	}
	va_start(ap, fmt);
	vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
}

/* Pixels px[from..from+n) as JSON numbers, sep between them. */
static void put_px(struct text *t, int from, int n, const char *sep)
{
	for (int i = 0; i < n; i++)
		put(t, "%s%d", i ? sep : "", px[from + i]);
}

/* {"inputs": [{name, shape, datatype, data: <data>}]} around a data text. */
static char *v2_body(const char *shape, const char *dtype, const char *data)
{
	struct text t = {0};
	put(&t, "{\"inputs\": [{\"name\": \"image\", \"shape\": %s, \"datatype\": \"%s\", "
		"\"data\": %s}]}", shape, dtype, data);
	return t.p;
}

static char *flat_data(int n)
{
	struct text t = {0};
	put(&t, "[");
	put_px(&t, 0, n, ",");
	put(&t, "]");
	return t.p;
}

/* ------------------------------------------------------------------------------ parsing */

struct parsed {
	int status;
	char err[512];
	struct srv_job job;
};

/* Parses with srv_parse_v2 and with the general parser, asserts that both agree on status,
 * message and job, and returns the first. */
static struct parsed parse(const char *body, size_t len, long long hlen)
{
	struct parsed r = {.job = {.timeout_ms = -1}}, g = {.job = {.timeout_ms = -1}};
	const char *ct = hlen >= 0 ? "application/octet-stream" : "application/json";
	r.status = srv_parse_v2(arch, &lim, ct, hlen, body, len, &r.job, r.err, sizeof r.err);
	g.status = srv_parse_v2_general(arch, &lim, ct, hlen, body, len, &g.job, g.err,
					sizeof g.err);
	cr_assert(r.status == g.status && !strcmp(r.err, g.err),
		  "fast path %d '%s', general path %d '%s'", r.status, r.err, g.status, g.err);
	cr_assert(r.job.n == g.job.n && r.job.outputs == g.job.outputs &&
		  r.job.binary == g.job.binary && r.job.timeout_ms == g.job.timeout_ms);
	cr_assert((r.job.id == NULL) == (g.job.id == NULL) &&
		  (!r.job.id || !strcmp(r.job.id, g.job.id)));
	if (r.job.n)
		cr_assert(!memcmp(r.job.x, g.job.x, (size_t)r.job.n * NPX * sizeof(float)),
			  "the two paths parsed different values");
	srv_job_destroy(&g.job);
	return r;
}

static struct parsed parse_str(const char *body)
{
	return parse(body, strlen(body), -1);
}

/* The job holds px[0..n*784) scaled exactly as the v1 path and the binary extension scale. */
static void assert_pixels(const struct srv_job *job, int n)
{
	float want[2 * NPX];
	cr_assert(job->n == n && n <= 2);
	for (int i = 0; i < n; i++)
		cigt_model_preprocess_u8(arch, px + i * NPX, want + i * NPX);
	for (int i = 0; i < n * NPX; i++)
		cr_assert(job->x[i] == want[i], "x[%d] = %.9g, expected %.9g (pixel %d)", i,
			  (double)job->x[i], (double)want[i], px[i]);
}

static void assert_refused(const char *body, int status, const char *msg)
{
	struct parsed r = parse_str(body);
	cr_assert(r.status == status && !strcmp(r.err, msg), "%d '%s', expected %d '%s'",
		  r.status, r.err, status, msg);
	cr_assert(r.job.x == NULL && r.job.n == 0 && r.job.id == NULL);
}

/* The scan of body: it must take the array that starts at the first occurrence of mark (a
 * string that ends just before that array) and read n values. */
static void assert_scanned(const char *body, const char *mark, size_t n)
{
	struct srv_v2_data d;
	cr_assert(srv_v2_data_scan(body, strlen(body), &d), "scan declined");
	const char *m = strstr(body, mark);
	cr_assert(m);
	cr_assert(d.at == (size_t)(m - body) + strlen(mark), "array at %zu, expected %zu", d.at,
		  (size_t)(m - body) + strlen(mark));
	cr_assert(body[d.at] == '[' && body[d.end - 1] == ']');
	cr_assert(d.n == n, "%zu values, expected %zu", d.n, n);
	free(d.v);
}

static void assert_declined(const char *body)
{
	struct srv_v2_data d = {.v = (uint8_t *)1};
	cr_assert(!srv_v2_data_scan(body, strlen(body), &d), "scan accepted %.80s", body);
	cr_assert(d.v == NULL && d.n == 0);
}

/* -------------------------------------------------------------------------------- tests */

Test(codec_v2, flat_uint8_parses_to_the_pixels)
{
	char *data = flat_data(NPX), *body = v2_body("[1, 1, 28, 28]", "UINT8", data);
	assert_scanned(body, "\"data\": ", NPX);
	struct srv_v2_data d;
	cr_assert(srv_v2_data_scan(body, strlen(body), &d));
	cr_assert(!memcmp(d.v, px, NPX), "the scan read other values than the pixels");
	free(d.v);
	struct parsed r = parse_str(body);
	cr_assert(r.status == 200, "%s", r.err);
	assert_pixels(&r.job, 1);
	cr_assert(r.job.id == NULL && r.job.outputs == (1u << SRV_OUT_COUNT) - 1 && r.job.binary == 0);
	srv_job_destroy(&r.job);
	free(body);
	free(data);
}

/* Rows [1][1][28][28], [1][28][28] (shape [1, 28, 28]) and [28][28]: the values in document
 * order, as for flat data. */
Test(codec_v2, nested_data_parses_like_flat)
{
	static const char *const shapes[] = {"[1, 1, 28, 28]", "[1, 28, 28]", "[1, 28, 28]"};
	static const char *const open[] = {"[[[", "[[", "["}, *const close[] = {"]]]", "]]", "]"};
	for (int f = 0; f < 3; f++) {
		struct text t = {0};
		put(&t, "%s", open[f]);
		for (int y = 0; y < 28; y++) {
			put(&t, "%s[", y ? ", " : "");
			put_px(&t, y * 28, 28, ", ");
			put(&t, "]");
		}
		put(&t, "%s", close[f]);
		char *body = v2_body(shapes[f], "UINT8", t.p);
		assert_scanned(body, "\"data\": ", NPX);
		struct parsed r = parse_str(body);
		cr_assert(r.status == 200, "form %d: %s", f, r.err);
		assert_pixels(&r.job, 1);
		srv_job_destroy(&r.job);
		free(body);
		free(t.p);
	}
}

/* JSON whitespace (space, tab, CR, LF) everywhere the grammar allows it, inside data too. */
Test(codec_v2, whitespace_everywhere)
{
	struct text t = {0};
	put(&t, "\r\n{ \"inputs\"\t:\n[ {\"name\" : \"image\" ,\"shape\":[ 1 ,1,28 , 28 ] ,"
		"\n\t\"datatype\":\"UINT8\", \"data\" \r\n:\t[ \n");
	for (int i = 0; i < NPX; i++)
		put(&t, "%s%d", i == 0 ? "" : i % 3 == 0 ? " ,\n" : i % 3 == 1 ? ",\t" : "\r\n, ",
		    px[i]);
	put(&t, " \n] \t} ] }\n\r\t ");
	assert_scanned(t.p, "\"data\" \r\n:\t", NPX);
	struct parsed r = parse_str(t.p);
	cr_assert(r.status == 200, "%s", r.err);
	assert_pixels(&r.job, 1);
	srv_job_destroy(&r.job);
	free(t.p);
}

/* "data" written inside strings (the id, values of parameters) and as a key of nested objects
 * before the real one: the scan takes inputs[0].data, the id comes back unchanged. */
Test(codec_v2, data_inside_strings_and_parameters_is_not_the_data)
{
	char *data = flat_data(NPX);
	struct text t = {0};
	put(&t, "{\"id\": \"\\\"data\\\": [300], \\\\\", \"parameters\": {\"data\": [[1, \"]\"]], "
		"\"x\": {\"data\": [999]}, \"timeout_ms\": 7}, \"outputs\": [{\"name\": \"class\", "
		"\"parameters\": {\"data\": \"[\"}}], \"inputs\": [{\"parameters\": {\"data\": "
		"\"{[\\\"\", \"inputs\": [{\"data\": [1]}]}, \"name\": \"image\", \"shape\": "
		"[1, 1, 28, 28], \"datatype\": \"UINT8\", \"data\": %s}]}", data);
	assert_scanned(t.p, "\"UINT8\", \"data\": ", NPX);
	struct parsed r = parse_str(t.p);
	cr_assert(r.status == 200, "%s", r.err);
	assert_pixels(&r.job, 1);
	cr_assert_str_eq(r.job.id, "\"data\": [300], \\");
	cr_assert(r.job.timeout_ms == 7 && r.job.outputs == 1u << SRV_OUT_CLASS);
	srv_job_destroy(&r.job);
	free(t.p);
	free(data);
}

/* Two images, the data key first and the others in any order. */
Test(codec_v2, batch_with_data_first)
{
	struct text t = {0};
	put(&t, "{\"inputs\":[{\"data\":[");
	put_px(&t, 0, 2 * NPX, ",");
	put(&t, "],\"datatype\":\"UINT8\",\"shape\":[2,1,28,28],\"name\":\"image\"}],\"id\":\"b\"}");
	assert_scanned(t.p, "\"data\":", 2 * NPX);
	struct parsed r = parse_str(t.p);
	cr_assert(r.status == 200, "%s", r.err);
	assert_pixels(&r.job, 2);
	cr_assert_str_eq(r.job.id, "b");
	srv_job_destroy(&r.job);
	free(t.p);
}

/* Nine levels of arrays are read (v2_flatten takes them), empty arrays add nothing. */
Test(codec_v2, nine_levels_and_empty_arrays)
{
	struct text t = {0};
	put(&t, "[[[[[[[[[], [");
	put_px(&t, 0, 700, ",");
	put(&t, "], []]]]]]]], [[]], [");
	put_px(&t, 700, NPX - 700, ",");
	put(&t, "]]");
	char *body = v2_body("[1, 1, 28, 28]", "UINT8", t.p);
	assert_scanned(body, "\"data\": ", NPX);
	struct parsed r = parse_str(body);
	cr_assert(r.status == 200, "%s", r.err);
	assert_pixels(&r.job, 1);
	srv_job_destroy(&r.job);
	free(body);
	free(t.p);
}

/* Only inputs[0].data is scanned; a second input is refused before any data is looked at. */
Test(codec_v2, two_inputs_refused)
{
	char *data = flat_data(NPX);
	struct text t = {0};
	put(&t, "{\"inputs\": [{\"name\": \"image\", \"shape\": [1, 1, 28, 28], \"datatype\": "
		"\"UINT8\", \"data\": %s}, {\"name\": \"image\", \"shape\": [1, 1, 28, 28], "
		"\"datatype\": \"UINT8\", \"data\": [1, 2]}]}", data);
	assert_scanned(t.p, "\"data\": ", NPX);
	assert_refused(t.p, 400, "inputs: expected an array with the one input 'image'");
	free(t.p);
	free(data);
}

/* Count, range and shape errors keep the general parser's messages. */
Test(codec_v2, data_errors_keep_their_messages)
{
	char *data = flat_data(NPX), *body;
	body = v2_body("[2, 1, 28, 28]", "UINT8", data);
	assert_refused(body, 400, "inputs[0].data: 784 values, the shape needs 1568");
	free(body);
	free(data);
	data = flat_data(NPX + 1);
	body = v2_body("[1, 1, 28, 28]", "UINT8", data);
	assert_scanned(body, "\"data\": ", NPX + 1);
	assert_refused(body, 400, "inputs[0].data: more values than the shape's 784");
	free(body);
	/* FP32 given integers: 0 and 1 are in the input range, the first 2 is not. */
	struct text t = {0};
	put(&t, "[");
	for (int i = 0; i < NPX; i++)
		put(&t, "%s%d", i ? "," : "", i == 500 ? 2 : i % 2);
	put(&t, "]");
	body = v2_body("[1, 28, 28]", "FP32", t.p);
	assert_scanned(body, "\"data\": ", NPX);
	assert_refused(body, 400, "inputs[0].data[500] is 2, outside the model's input range "
				  "[0, 1]");
	free(body);
	free(t.p);
	body = v2_body("[9, 1, 28, 28]", "UINT8", data);
	assert_refused(body, 413, "inputs[0].shape: 9 images, more than the 8 allowed per request");
	free(body);
	body = v2_body("[4611686018427387904, 1, 4611686018427387904, 28]", "UINT8", data);
	assert_refused(body, 400, "inputs[0].shape: the product of the dimensions overflows");
	free(body);
	free(data);
}

/* The FP32 integers 0 and 1 parse to 0.0 and 1.0. */
Test(codec_v2, fp32_integers)
{
	struct text t = {0};
	put(&t, "[");
	for (int i = 0; i < NPX; i++)
		put(&t, "%s%d", i ? "," : "", i % 3 == 0);
	put(&t, "]");
	char *body = v2_body("[1, 1, 28, 28]", "FP32", t.p);
	struct parsed r = parse_str(body);
	cr_assert(r.status == 200, "%s", r.err);
	for (int i = 0; i < NPX; i++)
		cr_assert(r.job.x[i] == (i % 3 == 0 ? 1.0f : 0.0f));
	srv_job_destroy(&r.job);
	free(body);
	free(t.p);
}

/* Malformed JSON around a scanned array: the message and position are the body's own. */
Test(codec_v2, malformed_json_positions_are_the_bodys)
{
	char *data = flat_data(NPX), *body = v2_body("[1, 1, 28, 28]", "UINT8", data);
	struct text t = {0};
	put(&t, "%s x", body);
	char want[200];
	snprintf(want, sizeof want, "malformed JSON at line 1, column %zu: end of file expected "
		 "near 'x'", strlen(body) + 2);
	assert_scanned(t.p, "\"data\": ", NPX);
	assert_refused(t.p, 400, want);
	/* A second "data" key: jansson refuses the duplicate where the body has it. */
	t.len = 0;
	put(&t, "%.*s, \"data\": [1]}]}", (int)strlen(body) - 3, body);
	snprintf(want, sizeof want, "malformed JSON at line 1, column %zu: duplicate object key "
		 "near '\"data\"'", strlen(body) + 5);
	assert_scanned(t.p, "\"data\": ", NPX);
	assert_refused(t.p, 400, want);
	free(t.p);
	free(body);
	free(data);
}

/* data and binary_data_size together, and binary bytes after JSON data, are refused as
 * before; the binary extension itself has no data to scan. */
Test(codec_v2, binary_extension_unaffected)
{
	char *data = flat_data(NPX);
	struct text t = {0};
	put(&t, "{\"inputs\": [{\"name\": \"image\", \"shape\": [1, 1, 28, 28], \"datatype\": "
		"\"UINT8\", \"parameters\": {\"binary_data_size\": 784}, \"data\": %s}]}", data);
	size_t hlen = t.len;
	put(&t, "%s", "x");
	struct parsed r = parse(t.p, t.len, (long long)hlen);
	cr_assert(r.status == 400 && !strcmp(r.err, "inputs[0]: both data and binary_data_size "
						    "given"), "%s", r.err);
	free(t.p);
	char *body = v2_body("[1, 1, 28, 28]", "UINT8", data);
	t = (struct text){0};
	put(&t, "%sxy", body);
	r = parse(t.p, t.len, (long long)strlen(body));
	cr_assert(r.status == 400 && !strcmp(r.err, "binary data present but no input has "
						    "binary_data_size"), "%s", r.err);
	free(t.p);
	free(body);
	/* The header of a binary request: nothing to scan, the pixels come from the tail. */
	t = (struct text){0};
	put(&t, "{\"inputs\": [{\"name\": \"image\", \"shape\": [1, 1, 28, 28], \"datatype\": "
		"\"UINT8\", \"parameters\": {\"binary_data_size\": 784}}]}");
	hlen = t.len;
	assert_declined(t.p);
	char *req = malloc(hlen + NPX);
	memcpy(req, t.p, hlen);
	memcpy(req + hlen, px, NPX);
	r = parse(req, hlen + NPX, (long long)hlen);
	cr_assert(r.status == 200, "%s", r.err);
	assert_pixels(&r.job, 1);
	srv_job_destroy(&r.job);
	free(req);
	free(t.p);
	free(data);
}

/* What the scan leaves to the general parser, which answers as it always did. */
Test(codec_v2, unusual_data_declined)
{
	static const struct {
		const char *data;  /* replaces the first pixel's text */
		int status;        /* of the parse */
		const char *msg;
	} cases[] = {
		{"0.0", 200, ""}, /* an integral real is a UINT8 value */
		{"1e0", 200, ""},
		{"-0", 200, ""},
		{"256", 400, "inputs[0].data[0] is 256, not a UINT8 in 0..255"},
		{"-1", 400, "inputs[0].data[0] is -1, not a UINT8 in 0..255"},
		{"0.5", 400, "inputs[0].data[0] is 0.5, not a UINT8 in 0..255"},
		{"1000", 400, "inputs[0].data[0] is 1000, not a UINT8 in 0..255"},
		{"\"1\"", 400, "inputs[0].data[0] is a string, not a UINT8 in 0..255"},
		{"null", 400, "inputs[0].data[0] is null, not a UINT8 in 0..255"},
		{"{}", 400, "inputs[0].data[0] is an object, not a UINT8 in 0..255"},
		{"[[[[[[[[[0]]]]]]]]]", 400, "inputs[0].data: nested more than 8 levels"},
		/* The data's '[' is at column 85. */
		{"01", 400, "malformed JSON at line 1, column 86: invalid token near '0'"},
		{"1e999", 400, "malformed JSON at line 1, column 90: real number overflow near "
			       "'1e999'"},
		{"0,", 400, "malformed JSON at line 1, column 88: unexpected token near ','"},
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		struct text t = {0};
		put(&t, "[%s", cases[c].data);
		for (int i = 1; i < NPX; i++)
			put(&t, ",0");
		put(&t, "]");
		char *body = v2_body("[1, 1, 28, 28]", "UINT8", t.p);
		assert_declined(body);
		struct parsed r = parse_str(body);
		cr_assert(r.status == cases[c].status && !strcmp(r.err, cases[c].msg),
			  "%s: %d '%s', expected %d '%s'", cases[c].data, r.status, r.err,
			  cases[c].status, cases[c].msg);
		srv_job_destroy(&r.job);
		free(body);
		free(t.p);
	}
}

/* Bodies whose shape the scan does not follow: it declines, jansson decides. */
Test(codec_v2, unusual_bodies_declined)
{
	static const char *const bodies[] = {
		"",
		"[]",
		"{}",
		"{\"inputs\": 5}",
		"{\"inputs\": []}",
		"{\"inputs\": [5]}",
		"{\"inputs\": [{}]}",
		"{\"inputs\": [{\"data\": 5}]}",
		"{\"inputs\": [{\"data\": \"[1]\"}]}",
		"{\"inputs\": [{\"data\": [1,]}]}",
		"{\"inputs\": [{\"data\": [1 2]}]}",
		"{\"inputs\": [{\"data\": [1",
		"{\"inputs\": [{\"d\\u0061ta\": [1]}]}",
		"{\"inp\\u0075ts\": [{\"data\": [1]}]}",
		"{\"id\": \"x\", \"inputs\": [{\"name\": \"image\"}], \"data\": [1]}",
		"{\"parameters\": {\"inputs\": [{\"data\": [1]}]}}",
		"{\"id\": \"unterminated, \"inputs\": [{\"data\": [1]}]}",
	};
	for (size_t c = 0; c < sizeof bodies / sizeof bodies[0]; c++) {
		struct parsed r = parse_str(bodies[c]);
		cr_assert(r.status == 400, "%s: %d", bodies[c], r.status);
		assert_declined(bodies[c]);
	}
}

/* The scan does not check what it skips: it may take the array of a body that is not JSON,
 * and jansson, refusing the copy, sends the body to the general parser for its message. */
Test(codec_v2, invalid_json_the_scan_skips)
{
	static const struct {
		const char *body, *msg;
	} cases[] = {
		{"{\"a\": x, \"inputs\": [{\"data\": [1]}]}",
		 "malformed JSON at line 1, column 7: invalid token near 'x'"},
		{"{\"a\": [}, \"inputs\": [{\"data\": [1]}]}",
		 "malformed JSON at line 1, column 8: unexpected token near '}'"},
		{"{\"a\": \"\\q\", \"inputs\": [{\"data\": [1]}]}",
		 "malformed JSON at line 1, column 9: invalid escape near '\"\\q'"},
		{"{\"inputs\": [{\"data\": [1]}]",
		 "malformed JSON at line 1, column 26: '}' expected near end of file"},
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		assert_scanned(cases[c].body, "\"data\": ", 1);
		assert_refused(cases[c].body, 400, cases[c].msg);
	}
}
