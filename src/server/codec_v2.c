/* The Open Inference Protocol v2 codec: infer request bodies in (JSON, with a fast path for
 * plain UINT8 data, and the binary tensor extension), answers out. Pure functions of their
 * bytes (fuzz targets). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "codec.h"

static const char *const output_names[SRV_OUT_COUNT] = {"probabilities", "class", "route",
							 "macs", "paths", "escalated"};

const char *srv_output_name(int o)
{
	return o >= 0 && o < SRV_OUT_COUNT ? output_names[o] : "?";
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
		if (!srv_json_pixel(v, &p)) {
			srv_json_describe(v, what, sizeof what);
			return FAIL(400, "inputs[0].data[%zu] is %s, not a UINT8 in 0..255", *k,
				    what);
		}
		dst[(*k)++] = p; /* scaled by the caller */
		return 200;
	}
	if (!json_is_number(v)) {
		srv_json_describe(v, what, sizeof what);
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
					 "class, route, macs, paths, escalated)", i,
				    json_string_value(name));
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

/* The request's "parameters": binary_data_output (*bin_out), timeout_ms and the dial keys. */
static int v2_parameters(const json_t *v, struct srv_job *job, bool *bin_out, char *err,
			 size_t errlen)
{
	if (!json_is_object(v))
		return FAIL(400, "parameters: expected an object");
	const json_t *p = json_object_get(v, "binary_data_output");
	if (p && !json_is_boolean(p))
		return FAIL(400, "parameters.binary_data_output: expected a boolean");
	*bin_out = p && json_is_true(p);
	if ((p = json_object_get(v, "timeout_ms"))) {
		if (!json_is_integer(p) || json_integer_value(p) < 0 ||
		    json_integer_value(p) > 3600000)
			return FAIL(400, "parameters.timeout_ms must be an integer in 0..3600000");
		job->timeout_ms = json_integer_value(p);
	}
	static const char *const dial_keys[] = {"compute", "max_macs"};
	for (int k = 0; k < 2; k++) {
		if (!(p = json_object_get(v, dial_keys[k])))
			continue;
		int status = srv_parse_dial_key(dial_keys[k], p, "parameters.", job, err, errlen);
		if (status != 200)
			return status;
	}
	if (srv_check_dial(job, err, errlen) != 200)
		return 400;
	return 200;
}

/* The request's top-level keys: id and parameters into job, inputs and outputs found. */
static int v2_top(const json_t *root, struct srv_job *job, const json_t **inputs,
		  const json_t **outputs, bool *bin_out, char *err, size_t errlen)
{
	if (!json_is_object(root))
		return FAIL(400, "body must be a JSON object");
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)root, key, v) {
		if (!strcmp(key, "id")) {
			if (!json_is_string(v))
				return FAIL(400, "id: expected a string");
			if (!(job->id = strdup(json_string_value(v))))
				return FAIL(500, "out of memory");
		} else if (!strcmp(key, "parameters")) {
			int status = v2_parameters(v, job, bin_out, err, errlen);
			if (status != 200)
				return status;
		} else if (!strcmp(key, "inputs")) {
			*inputs = v;
		} else if (!strcmp(key, "outputs")) {
			*outputs = v;
		} else {
			return FAIL(400, "unknown key '%.64s' (expected id, parameters, inputs, "
					 "outputs)", key);
		}
	}
	return 200;
}

/* inputs[0]'s name, keys, shape (dims[0..*rank), *total values) and datatype. */
static int v2_input_header(const struct cigt_arch *a, const struct srv_limits *lim,
			   const json_t *in, int64_t *dims, size_t *total, enum dtype *dt,
			   char *err, size_t errlen)
{
	const char *key;
	json_t *v;
	if (!json_is_object(in))
		return FAIL(400, "inputs[0]: expected an object");
	const json_t *name = json_object_get(in, "name");
	if (!json_is_string(name) || strcmp(json_string_value(name), "image"))
		return FAIL(400, "inputs[0].name: the model's input is named 'image'");
	json_object_foreach((json_t *)in, key, v)
		if (strcmp(key, "name") && strcmp(key, "shape") && strcmp(key, "datatype") &&
		    strcmp(key, "data") && strcmp(key, "parameters"))
			return FAIL(400, "inputs[0]: unknown key '%.64s'", key);
	const json_t *shape = json_object_get(in, "shape");
	if (!json_is_array(shape) || json_array_size(shape) < 1 || json_array_size(shape) > 8)
		return FAIL(400, "inputs[0].shape: expected an array of dimensions");
	const size_t rank = json_array_size(shape);
	for (size_t i = 0; i < rank; i++) {
		const json_t *d = json_array_get(shape, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return FAIL(400, "inputs[0].shape[%zu]: expected a non-negative integer", i);
		dims[i] = json_integer_value(d);
	}
	int64_t prod = 1;
	int st = srv_oip_shape(a, lim, dims, rank, &prod, err, errlen);
	if (st != 200)
		return st;
	*total = (size_t)prod;
	const json_t *dtype = json_object_get(in, "datatype");
	if (!json_is_string(dtype))
		return FAIL(400, "inputs[0].datatype: expected \"UINT8\" or \"FP32\"");
	if (!strcmp(json_string_value(dtype), "UINT8"))
		*dt = DT_UINT8;
	else if (!strcmp(json_string_value(dtype), "FP32"))
		*dt = DT_FP32;
	else
		return FAIL(400, "inputs[0].datatype: '%.32s' is not supported (UINT8 or FP32)",
			    json_string_value(dtype));
	return 200;
}

/* inputs[0]'s want values from the binary part after the JSON header (binary_data_size bds). */
static int v2_binary_values(const struct cigt_arch *a, enum dtype dt, const json_t *bds,
			    const uint8_t *bin, size_t binlen, size_t want, float *x, char *err,
			    size_t errlen)
{
	const size_t esz = dt == DT_UINT8 ? 1 : 4;
	if (!json_is_integer(bds) || json_integer_value(bds) < 0 ||
	    (size_t)json_integer_value(bds) != want * esz)
		return FAIL(400, "inputs[0].parameters.binary_data_size: expected %zu "
				 "bytes for the shape and datatype", want * esz);
	if (binlen != want * esz)
		return FAIL(400, "binary data: %zu bytes after the JSON header, expected %zu",
			    binlen, want * esz);
	for (size_t i = 0; i < want; i++) {
		if (dt == DT_UINT8) {
			x[i] = bin[i];
			continue;
		}
		float f;
		memcpy(&f, bin + 4 * i, 4); /* little-endian host (x86-64, arm64) */
		if (!(f >= a->range_lo && f <= a->range_hi))
			return FAIL(400, "binary data: value %zu is %g, outside the model's "
					 "input range [%g, %g]", i, (double)f,
				    (double)a->range_lo, (double)a->range_hi);
		x[i] = f;
	}
	return 200;
}

/* Checks a parsed request and fills job. fast, when not NULL, holds the values of inputs[0].data,
 * whose place in root is taken by a placeholder (srv_parse_v2's fast path). */
static int v2_request(const struct cigt_arch *a, const struct srv_limits *lim, const json_t *root,
		      const struct srv_v2_data *fast, const uint8_t *bin, size_t binlen,
		      bool has_bin, struct srv_job *job, char *err, size_t errlen)
{
	const json_t *inputs = NULL, *outputs = NULL;
	bool bin_out = false;
	int status = v2_top(root, job, &inputs, &outputs, &bin_out, err, errlen);
	if (status != 200)
		return status;
	if (!json_is_array(inputs) || json_array_size(inputs) != 1)
		return FAIL(400, "inputs: expected an array with the one input 'image'");
	if ((status = v2_outputs(outputs, bin_out, job, err, errlen)) != 200)
		return status;
	const json_t *in = json_array_get(inputs, 0);
	int64_t dims[8];
	size_t want;
	enum dtype dt;
	if ((status = v2_input_header(a, lim, in, dims, &want, &dt, err, errlen)) != 200 ||
	    (status = srv_alloc_samples(a, job, (int)dims[0], err, errlen)) != 200)
		return status;
	const json_t *data = json_object_get(in, "data");
	const json_t *params = json_object_get(in, "parameters");
	const json_t *bds = json_is_object(params) ? json_object_get(params, "binary_data_size")
						  : NULL;
	if (params && !json_is_object(params))
		return FAIL(400, "inputs[0].parameters: expected an object");
	if (bds) {
		if (data)
			return FAIL(400, "inputs[0]: both data and binary_data_size given");
		if (!has_bin)
			return FAIL(400, "inputs[0].parameters.binary_data_size needs the "
					 "Inference-Header-Content-Length header");
		status = v2_binary_values(a, dt, bds, bin, binlen, want, job->x, err, errlen);
		if (status != 200)
			return status;
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
static bool scan_str(struct srv_scan *s, const char **k, size_t *kl)
{
	if (!srv_scan_ch(s, '"'))
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
static bool scan_key(struct srv_scan *s, const char *name, bool *match)
{
	const char *k;
	size_t kl;
	if (!scan_str(s, &k, &kl) || !srv_scan_ch(s, ':'))
		return false;
	*match = kl == strlen(name) && !memcmp(k, name, kl);
	return true;
}

/* Skips one value without checking it (jansson checks it later): exact on valid JSON. */
static bool scan_skip(struct srv_scan *s)
{
	srv_scan_ws(s);
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
static bool scan_data(struct srv_scan *s, struct srv_v2_data *d)
{
	if (!srv_scan_ch(s, '['))
		return false;
	enum { OPENED, COMMA, VALUE } last = OPENED; /* what came last: '[', ',', a value */
	int open = 1;
	for (;;) {
		srv_scan_ws(s);
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
	struct srv_scan s = {body, body + len};
	bool match;
	if (!srv_scan_ch(&s, '{'))
		return false;
	do { /* the top-level keys up to "inputs" */
		if (!scan_key(&s, "inputs", &match))
			return false;
		if (!match && !scan_skip(&s))
			return false;
	} while (!match && srv_scan_ch(&s, ','));
	if (!match || !srv_scan_ch(&s, '[') || !srv_scan_ch(&s, '{'))
		return false;
	do { /* the keys of inputs[0] up to "data" */
		if (!scan_key(&s, "data", &match))
			return false;
		if (!match && !scan_skip(&s))
			return false;
	} while (!match && srv_scan_ch(&s, ','));
	srv_scan_ws(&s);
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
	if (ctype && !srv_media_is(ctype, "application/json") &&
	    !(has_bin && srv_media_is(ctype, "application/octet-stream"))) {
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
	status = srv_parse_json(body, jlen, &root, err, errlen);
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

/* Whether path p ran for a sample (cigt_result.paths; beyond 64 paths only the argmax route is
 * known, and it is reported alone). */
static bool path_ran(const struct cigt_arch *a, const struct cigt_result *r, int p)
{
	if (r->paths)
		return p < 64 && (r->paths >> p & 1);
	int idx = 0;
	for (int l = 0; l < a->nlayers; l++)
		idx = idx * a->layers[l].experts + r->route[l];
	return p == idx;
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
	static const char *const dtypes[SRV_OUT_COUNT] = {"FP32", "INT64", "INT32", "INT64",
							  "BOOL",  "BOOL"};
	const int n = job->n, K = a->nclasses, L = a->nlayers, P = srv_arch_paths(a);
	const int inner[SRV_OUT_COUNT] = {K, 0, L, 0, P, 0};
	const size_t bytes[SRV_OUT_COUNT] = {(size_t)n * K * 4, (size_t)n * 8, (size_t)n * L * 4,
					     (size_t)n * 8,     (size_t)n * P, (size_t)n};
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
					srv_put_float(out, probs[(int64_t)i * K + k]);
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
			case SRV_OUT_PATHS:
				for (int p = 0; p < P; p++)
					srv_buf_printf(out, "%s%s", i || p ? ", " : "",
						       path_ran(a, &res[i], p) ? "true" : "false");
				break;
			case SRV_OUT_ESCALATED:
				srv_buf_printf(out, "%s%s", sep, res[i].escalated ? "true" : "false");
				break;
			}
		}
		srv_buf_puts(out, "]}");
	}
	srv_buf_puts(out, "]");
	if (job->ran[0]) {
		srv_buf_puts(out, ", \"parameters\": {\"compute\": ");
		srv_buf_json_str(out, job->ran);
		srv_buf_puts(out, "}");
	}
	srv_buf_puts(out, "}");
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
			case SRV_OUT_PATHS:
				for (int p = 0; p < P; p++) {
					uint8_t on = path_ran(a, &res[i], p);
					srv_buf_put(out, &on, 1);
				}
				break;
			case SRV_OUT_ESCALATED: {
				uint8_t e = res[i].escalated;
				srv_buf_put(out, &e, 1);
				break;
			}
			}
		}
	}
}

