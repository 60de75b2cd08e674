/* The model file reader and writer (src/model/safetensors.c): round trips are bit-identical,
 * valid variants (tensor order, header padding) load, and every kind of corrupt file is
 * answered with a non-zero code, a NULL model and a one-line message naming the problem. Corrupt
 * files are made by serialising a valid small model and editing its JSON header (re-encoding
 * the 8-byte length) or its data. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cigt/error.h"
#include "cigt/file.h"
#include "cigt/model.h"
#include "helpers.h"
#include "model/model_internal.h"

/* 1x6x5 input, K = [1, 2], 3 classes: conv + batchnorm + relu, a router, two linear experts. */
static const char *const ARCH =
	"{\"name\":\"small\",\"input\":{\"channels\":1,\"height\":6,\"width\":5},"
	"\"classes\":[\"x\",\"y\",\"z\"],\"layers\":["
	"{\"experts\":1,\"ops\":[{\"type\":\"conv\",\"out\":2,\"kernel\":3},{\"type\":\"batchnorm\"},"
	"{\"type\":\"relu\"}],\"router\":{\"pool\":2,\"hidden\":3}},"
	"{\"experts\":2,\"ops\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":3}]}]}";

#define CONV_W "layers.0.experts.0.ops.0.weight"
#define BN_VAR "layers.0.experts.0.ops.1.running_var"
#define FC1_W "routers.0.fc1.weight"
#define LAST "layers.1.experts.1.ops.1.bias"

struct buf {
	uint8_t *p;
	size_t len;
};

static struct cigt_model *small_model(void)
{
	struct cigt_model *m = th_model(ARCH, 42, true);
	m->provenance = strdup("{\"tool\":\"test\",\"seed\":42}");
	return m;
}

static struct buf serialized(void)
{
	struct cigt_model *m = small_model();
	struct buf b;
	void *p;
	cr_assert_eq(cigt_model_serialize(m, &p, &b.len), 0);
	b.p = p;
	cigt_model_free(m);
	return b;
}

/* The parsed header of a serialised file, and where its data starts. */
static json_t *header_of(struct buf b, size_t *data_off)
{
	uint64_t hl = 0;
	for (int i = 7; i >= 0; i--)
		hl = hl << 8 | b.p[i];
	json_error_t je;
	json_t *h = json_loadb((const char *)b.p + 8, (size_t)hl, 0, &je);
	cr_assert_not_null(h, "test header does not parse: %s", je.text);
	*data_off = 8 + (size_t)hl;
	return h;
}

/* A file from raw header text and data. */
static struct buf assemble_raw(const char *hdr, size_t hl, const uint8_t *data, size_t dlen)
{
	struct buf o = {th_calloc(8 + hl + dlen, 1), 8 + hl + dlen};
	for (int i = 0; i < 8; i++)
		o.p[i] = (uint8_t)((uint64_t)hl >> (8 * i));
	memcpy(o.p + 8, hdr, hl);
	if (dlen)
		memcpy(o.p + 8 + hl, data, dlen);
	return o;
}

static struct buf assemble(json_t *hdr, const uint8_t *data, size_t dlen)
{
	char *s = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
	cr_assert_not_null(s);
	struct buf o = assemble_raw(s, strlen(s), data, dlen);
	free(s);
	return o;
}

/* Loading must fail with a NULL model and a one-line message containing w1 (and w2). */
static void expect_reject(struct buf b, const char *w1, const char *w2)
{
	char err[512] = "";
	struct cigt_model *m = (struct cigt_model *)&err; /* must be overwritten with NULL */
	int rc = cigt_model_load_buffer(b.p, b.len, &m, err, sizeof err);
	cr_assert_neq(rc, 0, "a corrupt file loaded (expected a message with '%s')", w1);
	cr_assert_lt(rc, 0);
	cr_assert_null(m, "a failed load must leave *out NULL");
	cr_assert(strstr(err, w1), "message '%s' does not mention '%s'", err, w1);
	if (w2)
		cr_assert(strstr(err, w2), "message '%s' does not mention '%s'", err, w2);
	cr_assert_null(strchr(err, '\n'), "message '%s' is not one line", err);
}

static struct cigt_model *expect_load(struct buf b)
{
	char err[512] = "";
	struct cigt_model *m = NULL;
	int rc = cigt_model_load_buffer(b.p, b.len, &m, err, sizeof err);
	cr_assert_eq(rc, 0, "valid file rejected: %s", err);
	cr_assert_not_null(m);
	return m;
}

/* Edits a tensor entry of the header: the edit callback gets the entry object. */
static json_t *entry(json_t *hdr, const char *name)
{
	json_t *e = json_object_get(hdr, name);
	cr_assert_not_null(e, "no tensor %s in the test file", name);
	return e;
}

static void set_offsets(json_t *hdr, const char *name, long long b, long long e)
{
	json_object_set_new(entry(hdr, name), "data_offsets", json_pack("[II]", b, e));
}

static long long offset(json_t *hdr, const char *name, int which)
{
	return json_integer_value(
		json_array_get(json_object_get(entry(hdr, name), "data_offsets"), (size_t)which));
}

/* Applies f to a copy of the valid file's header and data (data may be resized: the callback
 * gets a buffer with room for 64 more bytes), then expects the result to be rejected. */
struct edit {
	json_t *hdr;
	uint8_t *data;
	size_t dlen;
};

static struct edit edit_begin(void)
{
	struct buf b = serialized();
	size_t off;
	struct edit e = {.hdr = header_of(b, &off)};
	e.dlen = b.len - off;
	e.data = th_calloc(e.dlen + 64, 1);
	memcpy(e.data, b.p + off, e.dlen);
	free(b.p);
	return e;
}

static void edit_expect(struct edit e, const char *w1, const char *w2)
{
	struct buf o = assemble(e.hdr, e.data, e.dlen);
	expect_reject(o, w1, w2);
	free(o.p);
	json_decref(e.hdr);
	free(e.data);
}

static void set_float(struct edit *e, const char *name, int index, float v)
{
	size_t at = (size_t)offset(e->hdr, name, 0) + 4 * (size_t)index;
	cr_assert_leq(at + 4, e->dlen);
	memcpy(e->data + at, &v, 4);
}

static void set_meta(json_t *hdr, const char *key, const char *val)
{
	json_object_set_new(json_object_get(hdr, "__metadata__"), key, json_string(val));
}

/* ------------------------------------------------------------------ valid files */

Test(model_file, round_trip_is_bit_identical)
{
	struct cigt_model *m = small_model();
	void *p1, *p2;
	size_t l1, l2;
	cr_assert_eq(cigt_model_serialize(m, &p1, &l1), 0);
	struct buf b = {p1, l1};
	struct cigt_model *m2 = expect_load(b);
	cr_assert_eq(m2->blob_floats, m->blob_floats);
	cr_assert_arr_eq(m2->blob, m->blob, (size_t)m->blob_floats * sizeof(float));
	cr_assert_str_eq(m2->provenance, m->provenance);
	cr_assert_eq(m2->arch->path_macs, m->arch->path_macs);
	cr_assert_eq(cigt_model_serialize(m2, &p2, &l2), 0);
	cr_assert_eq(l2, l1);
	cr_assert_arr_eq(p2, p1, l1);
	/* The data section is 8-byte aligned (the header is padded with spaces). */
	size_t off;
	json_t *h = header_of(b, &off);
	cr_assert_eq(off % 8, 0);
	json_decref(h);
	free(p1), free(p2);
	cigt_model_free(m), cigt_model_free(m2);
}

Test(model_file, save_and_load_file_round_trip)
{
	char dir[4096], path[4200], err[512] = "";
	th_tmpdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/m.safetensors", dir);
	struct cigt_model *m = small_model(), *m2 = NULL;
	cr_assert_eq(cigt_model_save(m, path, err, sizeof err), 0, "%s", err);
	cr_assert_eq(cigt_model_load(path, &m2, err, sizeof err), 0, "%s", err);
	cr_assert_arr_eq(m2->blob, m->blob, (size_t)m->blob_floats * sizeof(float));
	cr_assert_str_eq(m2->arch->name, "small");
	/* The file holds exactly the serialised bytes. */
	void *p, *f;
	size_t l, fl;
	cr_assert_eq(cigt_model_serialize(m, &p, &l), 0);
	cr_assert_eq(cigt_file_read(path, 1 << 20, &f, &fl, err, sizeof err), 0, "%s", err);
	cr_assert_eq(fl, l);
	cr_assert_arr_eq(f, p, l);
	free(p), free(f);
	cigt_model_free(m), cigt_model_free(m2);
	th_rmdir(dir);
}

Test(model_file, load_missing_file_names_path)
{
	char err[512] = "";
	struct cigt_model *m = (struct cigt_model *)err;
	cr_assert_neq(cigt_model_load("/nonexistent/dir/m.safetensors", &m, err, sizeof err), 0);
	cr_assert_null(m);
	cr_assert(strstr(err, "/nonexistent/dir/m.safetensors"), "message '%s'", err);
}

Test(model_file, tensor_order_and_padding_do_not_matter)
{
	/* Header entries in reverse order, tensor data in reverse order, no padding. */
	struct edit e = edit_begin();
	struct cigt_model *m = small_model();
	json_t *h = json_object();
	json_object_set(h, "__metadata__", json_object_get(e.hdr, "__metadata__"));
	uint8_t *data = th_calloc(e.dlen, 1);
	size_t pos = 0;
	for (int i = m->ntensors - 1; i >= 0; i--) {
		const struct cigt_tensor_info *t = &m->tensors[i];
		size_t nb = (size_t)t->numel * 4;
		memcpy(data + pos, m->blob + t->offset, nb);
		json_t *shape = json_array();
		for (int d = 0; d < t->ndim; d++)
			json_array_append_new(shape, json_integer(t->shape[d]));
		json_object_set_new(h, t->name,
				    json_pack("{so ss s[II]}", "shape", shape, "dtype", "F32",
					      "data_offsets", (json_int_t)pos,
					      (json_int_t)(pos + nb)));
		pos += nb;
	}
	cr_assert_eq(pos, e.dlen);
	struct buf b = assemble(h, data, pos);
	cr_assert_neq((b.len - pos - 8) % 8, 0, "want an unpadded header length for this test");
	struct cigt_model *m2 = expect_load(b);
	cr_assert_arr_eq(m2->blob, m->blob, (size_t)m->blob_floats * sizeof(float));
	free(b.p), free(data);
	json_decref(h), json_decref(e.hdr);
	free(e.data);
	cigt_model_free(m), cigt_model_free(m2);
}

Test(model_file, every_truncation_fails_cleanly)
{
	struct buf b = serialized();
	for (size_t len = 0; len < b.len; len++) {
		uint8_t *cut = malloc(len ? len : 1); /* exact size, so overreads hit the heap end */
		cr_assert_not_null(cut);
		memcpy(cut, b.p, len);
		char err[512] = "";
		struct cigt_model *m = (struct cigt_model *)err;
		int rc = cigt_model_load_buffer(cut, len, &m, err, sizeof err);
		cr_assert_neq(rc, 0, "truncated to %zu of %zu bytes, it loaded", len, b.len);
		cr_assert_null(m, "truncated to %zu bytes", len);
		cr_assert_neq(err[0], 0, "truncated to %zu bytes: no message", len);
		free(cut);
	}
	free(b.p);
}

/* cigt_model_average: every float of the result (weights, biases, batch-norm parameters and
 * running statistics) is the mean of the sources' floats, worked out here in double; a source
 * of another architecture is refused, naming it. */
Test(model_file, average_is_the_elementwise_mean)
{
	struct cigt_model *src[3] = {th_model(ARCH, 1, true), th_model(ARCH, 2, true),
				     th_model(ARCH, 3, true)};
	const char *const names[] = {"a.safetensors", "b.safetensors", "c.safetensors"};
	char err[300] = "";
	struct cigt_model *m = NULL;
	cr_assert_eq(cigt_model_average((const struct cigt_model *const *)src, names, 3, &m, err,
					sizeof err),
		     0, "%s", err);
	cr_assert_eq(m->blob_floats, src[0]->blob_floats);
	cr_assert_null(m->provenance);
	cr_assert_eq(m->npoints, 0);
	for (int64_t k = 0; k < m->blob_floats; k++) {
		double want = ((double)src[0]->blob[k] + src[1]->blob[k] + src[2]->blob[k]) / 3;
		cr_assert_float_eq(m->blob[k], want, 1e-6, "float %lld: %g, want %g", (long long)k,
				   (double)m->blob[k], want);
	}
	/* Not one of the sources: the random batch-norm statistics differ between seeds. */
	const struct cigt_tensor_info *v = cigt_model_tensor(m, BN_VAR);
	cr_assert_neq(m->blob[v->offset], src[0]->blob[v->offset]);
	/* One model averages to itself, bit for bit. */
	struct cigt_model *one = NULL;
	cr_assert_eq(cigt_model_average((const struct cigt_model *const *)src, NULL, 1, &one, err,
					sizeof err),
		     0);
	cr_assert_arr_eq(one->blob, src[0]->blob, (size_t)one->blob_floats * sizeof(float));
	cigt_model_free(one);
	cigt_model_free(m);
	for (int i = 0; i < 3; i++)
		cigt_model_free(src[i]);
}

Test(model_file, average_refuses_another_architecture)
{
	/* The same architecture but for three experts in the last layer instead of two. */
	char other[1024];
	snprintf(other, sizeof other, "%s", ARCH);
	char *e = strstr(other, "{\"experts\":2");
	cr_assert_not_null(e);
	e[11] = '3';
	struct cigt_model *src[2] = {th_model(ARCH, 1, false), th_model(other, 1, false)};
	const char *const names[] = {"a.safetensors", "b.safetensors"};
	char err[300] = "";
	struct cigt_model *m = (struct cigt_model *)&err; /* must become NULL */
	cr_assert_eq(cigt_model_average((const struct cigt_model *const *)src, names, 2, &m, err,
					sizeof err),
		     CIGT_EINVAL);
	cr_assert_null(m);
	cr_assert_str_eq(err, "b.safetensors (small) has another architecture than a.safetensors "
			      "(small): only models of one architecture average");
	cr_assert_eq(cigt_model_average((const struct cigt_model *const *)src, NULL, 2, &m, err,
					sizeof err),
		     CIGT_EINVAL);
	cr_assert_not_null(strstr(err, "model 1 (small) has another architecture than model 0"),
			   "%s", err);
	cigt_model_free(src[0]);
	cigt_model_free(src[1]);
}

Test(model_file, preprocess_applies_input_range_and_layout)
{
	const char *arch = "{\"name\":\"rgb\",\"input\":{\"channels\":3,\"height\":1,\"width\":2,"
			   "\"range\":[-1,1]},\"classes\":[\"a\"],\"layers\":[{\"experts\":1,"
			   "\"ops\":[{\"type\":\"linear\",\"out\":1}]}]}";
	struct cigt_arch *a = th_arch(arch);
	const uint8_t hwc[6] = {0, 255, 51, 102, 204, 153};
	float chw[6];
	cigt_model_preprocess_u8(a, hwc, chw);
	/* channel c of pixel p is hwc[p*3 + c] -> chw[c*2 + p], value -1 + 2 v / 255 */
	const double want[6] = {-1.0, -1 + 2 * 102 / 255.0, 1.0, -1 + 2 * 204 / 255.0,
				-1 + 2 * 51 / 255.0, -1 + 2 * 153 / 255.0};
	th_assert_close(chw, want, 6, 1e-6, 0, "preprocess");
	cigt_arch_free(a);
}

/* ------------------------------------------------------------------ corrupt files */

Test(corrupt, empty_file)
{
	uint8_t z = 0;
	expect_reject((struct buf){&z, 0}, "empty", "cigt train");
}

Test(corrupt, shorter_than_length_field)
{
	struct buf b = serialized();
	expect_reject((struct buf){b.p, 5}, "5 bytes", "too short");
	free(b.p);
}

Test(corrupt, header_length_larger_than_file)
{
	struct buf b = serialized();
	uint64_t hl = b.len - 8 + 1;
	for (int i = 0; i < 8; i++)
		b.p[i] = (uint8_t)(hl >> (8 * i));
	expect_reject(b, "truncated", "header length");
	free(b.p);
}

Test(corrupt, header_length_huge)
{
	struct buf b = serialized();
	for (int i = 0; i < 8; i++)
		b.p[i] = 0;
	b.p[5] = 1; /* 2^40 */
	expect_reject(b, "header length", "1099511627776");
	memset(b.p, 0xff, 8); /* 2^64 - 1: must not wrap */
	expect_reject(b, "header length", NULL);
	free(b.p);
}

Test(corrupt, header_length_too_small)
{
	struct buf b = serialized();
	memset(b.p, 0, 8);
	b.p[0] = 1;
	expect_reject(b, "header length", NULL);
	free(b.p);
}

Test(corrupt, header_not_json)
{
	const char *h = "{\"__metadata__\": {\"format\": \"cigt-1\"";
	struct buf o = assemble_raw(h, strlen(h), NULL, 0);
	expect_reject(o, "not valid JSON", NULL);
	free(o.p);
	const uint8_t bin[4] = {0xff, 0xfe, 0x00, 0x7b};
	o = assemble_raw((const char *)bin, 4, NULL, 0);
	expect_reject(o, "not valid JSON", NULL);
	free(o.p);
}

Test(corrupt, header_duplicate_key)
{
	struct edit e = edit_begin();
	char *s = json_dumps(e.hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
	/* Append a second copy of the first tensor's entry. */
	const char *t = strstr(s, "\"" CONV_W "\"");
	cr_assert_not_null(t);
	const char *end = strchr(strstr(t, "data_offsets"), '}');
	size_t n = (size_t)(end + 1 - t), sl = strlen(s);
	char *dup = th_calloc(sl + n + 2, 1);
	memcpy(dup, s, sl - 1);
	dup[sl - 1] = ',';
	memcpy(dup + sl, t, n);
	dup[sl + n] = '}';
	struct buf o = assemble_raw(dup, strlen(dup), e.data, e.dlen);
	expect_reject(o, "not valid JSON", "duplicate");
	free(o.p), free(dup), free(s), free(e.data);
	json_decref(e.hdr);
}

Test(corrupt, header_not_an_object)
{
	const char *h = "[1, 2, 3]";
	struct buf o = assemble_raw(h, strlen(h), NULL, 0);
	expect_reject(o, "not a JSON object", NULL);
	free(o.p);
}

Test(corrupt, missing_metadata)
{
	struct edit e = edit_begin();
	json_object_del(e.hdr, "__metadata__");
	edit_expect(e, "__metadata__", NULL);
}

Test(corrupt, metadata_value_not_a_string)
{
	struct edit e = edit_begin();
	json_object_set_new(json_object_get(e.hdr, "__metadata__"), "format", json_integer(1));
	edit_expect(e, "__metadata__.format", "string");
}

Test(corrupt, wrong_format_string)
{
	struct edit e = edit_begin();
	set_meta(e.hdr, "format", "cigt-2");
	edit_expect(e, "format", "cigt-2");
}

Test(corrupt, missing_format)
{
	struct edit e = edit_begin();
	json_object_del(json_object_get(e.hdr, "__metadata__"), "format");
	edit_expect(e, "format", "missing");
}

Test(corrupt, missing_architecture)
{
	struct edit e = edit_begin();
	json_object_del(json_object_get(e.hdr, "__metadata__"), "architecture");
	edit_expect(e, "architecture", "missing");
}

Test(corrupt, architecture_invalid)
{
	struct edit e = edit_begin();
	const char *s = json_string_value(
		json_object_get(json_object_get(e.hdr, "__metadata__"), "architecture"));
	json_t *a = json_loads(s, 0, NULL);
	cr_assert_not_null(a);
	json_t *op0 = json_array_get(
		json_object_get(json_array_get(json_object_get(a, "layers"), 0), "ops"), 0);
	json_object_set_new(op0, "kernal", json_integer(3));
	char *t = json_dumps(a, JSON_COMPACT);
	set_meta(e.hdr, "architecture", t);
	free(t);
	json_decref(a);
	edit_expect(e, "architecture", "'kernal'");
}

Test(corrupt, architecture_not_json)
{
	struct edit e = edit_begin();
	set_meta(e.hdr, "architecture", "{\"name\": ");
	edit_expect(e, "architecture", "JSON");
}

Test(corrupt, dtype_f16)
{
	struct edit e = edit_begin();
	json_object_set_new(entry(e.hdr, FC1_W), "dtype", json_string("F16"));
	edit_expect(e, "F16", FC1_W);
}

Test(corrupt, shape_mismatch_same_size)
{
	/* [2, 1, 3, 3] stored as [2, 9, 1, 1]: same byte count, wrong shape. */
	struct edit e = edit_begin();
	json_object_set_new(entry(e.hdr, CONV_W), "shape", json_pack("[iiii]", 2, 9, 1, 1));
	edit_expect(e, "[2, 9, 1, 1]", "[2, 1, 3, 3]");
}

Test(corrupt, too_many_dimensions)
{
	struct edit e = edit_begin();
	json_object_set_new(entry(e.hdr, CONV_W), "shape", json_pack("[iiiii]", 2, 1, 3, 3, 1));
	edit_expect(e, CONV_W, "shape");
}

Test(corrupt, data_offsets_size_mismatch)
{
	struct edit e = edit_begin();
	set_offsets(e.hdr, CONV_W, offset(e.hdr, CONV_W, 0), offset(e.hdr, CONV_W, 1) - 4);
	edit_expect(e, CONV_W, "68 data bytes for 18 float32");
}

Test(corrupt, data_offsets_not_ordered)
{
	struct edit e = edit_begin();
	set_offsets(e.hdr, CONV_W, 8, 4);
	edit_expect(e, CONV_W, "not ordered");
}

Test(corrupt, offsets_past_end_truncated_data)
{
	struct buf b = serialized();
	b.len -= 4; /* cut the last value off */
	expect_reject(b, "past the", "truncated");
	free(b.p);
}

Test(corrupt, overlapping_tensors)
{
	struct edit e = edit_begin();
	set_offsets(e.hdr, FC1_W, offset(e.hdr, FC1_W, 0) - 4, offset(e.hdr, FC1_W, 1) - 4);
	edit_expect(e, "overlap", FC1_W);
}

Test(corrupt, hole_between_tensors)
{
	struct edit e = edit_begin();
	long long b = offset(e.hdr, LAST, 0), end = offset(e.hdr, LAST, 1);
	cr_assert_eq((size_t)end, e.dlen, "LAST should be the last tensor in the data");
	memmove(e.data + b + 4, e.data + b, (size_t)(end - b));
	e.dlen += 4;
	set_offsets(e.hdr, LAST, b + 4, end + 4);
	edit_expect(e, "belong to no tensor", NULL);
}

Test(corrupt, trailing_bytes)
{
	struct edit e = edit_begin();
	e.dlen += 8;
	edit_expect(e, "8 bytes after the last tensor", NULL);
}

Test(corrupt, nan_value)
{
	struct edit e = edit_begin();
	set_float(&e, CONV_W, 3, NAN);
	edit_expect(e, "not finite", CONV_W);
}

Test(corrupt, inf_value)
{
	struct edit e = edit_begin();
	set_float(&e, FC1_W, 0, -INFINITY);
	edit_expect(e, "not finite", FC1_W);
}

Test(corrupt, negative_running_var)
{
	struct edit e = edit_begin();
	set_float(&e, BN_VAR, 1, -0.25f);
	edit_expect(e, "negative", BN_VAR);
}

Test(corrupt, missing_tensor)
{
	struct edit e = edit_begin();
	long long b = offset(e.hdr, LAST, 0);
	cr_assert_eq((size_t)offset(e.hdr, LAST, 1), e.dlen);
	json_object_del(e.hdr, LAST);
	e.dlen = (size_t)b; /* drop its bytes too, so only the name is missing */
	edit_expect(e, "missing tensor", LAST);
}

Test(corrupt, unexpected_extra_tensor)
{
	struct edit e = edit_begin();
	json_object_set_new(e.hdr, "layers.9.extra",
			    json_pack("{ss s[i] s[II]}", "dtype", "F32", "shape", 1,
				      "data_offsets", (json_int_t)e.dlen,
				      (json_int_t)(e.dlen + 4)));
	e.dlen += 4;
	edit_expect(e, "unexpected tensor", "layers.9.extra");
}

Test(corrupt, unknown_key_in_tensor_entry)
{
	struct edit e = edit_begin();
	json_object_set_new(entry(e.hdr, CONV_W), "strides", json_integer(1));
	edit_expect(e, "unknown key", "strides");
}

Test(corrupt, tensor_name_too_long)
{
	struct edit e = edit_begin();
	char name[128];
	memset(name, 'n', 120);
	name[120] = 0;
	json_object_set_new(e.hdr, name,
			    json_pack("{ss s[i] s[II]}", "dtype", "F32", "shape", 1,
				      "data_offsets", (json_int_t)e.dlen,
				      (json_int_t)(e.dlen + 4)));
	e.dlen += 4;
	edit_expect(e, "longer than", NULL);
}

/* ------------------------------------------------ files that are not models (issue 29) */

/* Writes n bytes to dir/name; the path goes to path. */
static void put_file(const char *dir, const char *name, const void *p, size_t n, char *path,
		     size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	cr_assert(f && fwrite(p, 1, n, f) == n && fclose(f) == 0, "cannot write %s", path);
}

/* Loading path fails with a one-line message holding w1, w2 and w3 (NULL: not checked). */
static void expect_file_reject(const char *path, const char *w1, const char *w2, const char *w3)
{
	char err[1024] = "";
	struct cigt_model *m = (struct cigt_model *)&err;
	cr_assert_lt(cigt_model_load(path, &m, err, sizeof err), 0, "%s loaded", path);
	cr_assert_null(m);
	const char *w[] = {w1, w2, w3};
	for (int i = 0; i < 3; i++)
		cr_assert(!w[i] || strstr(err, w[i]), "message '%s' does not mention '%s'", err, w[i]);
	cr_assert_null(strchr(err, '\n'), "message '%s' is not one line", err);
}

Test(not_a_model, json_config_names_cigt_train)
{
	char dir[256], path[512], cmd[600];
	th_tmpdir(dir, sizeof dir);
	FILE *f = fopen(CIGT_REFERENCE_ARCH, "rb");
	cr_assert(f);
	static char text[1 << 16];
	size_t n = fread(text, 1, sizeof text, f);
	fclose(f);
	put_file(dir, "fashion_mnist.json", text, n, path, sizeof path);
	snprintf(cmd, sizeof cmd, "cigt train --config %s --out MODEL", path);
	expect_file_reject(path, "a JSON config (architecture and training settings)", cmd, NULL);
	/* Only an architecture (no training settings), and from a buffer: "the file". */
	expect_reject((struct buf){(uint8_t *)ARCH, strlen(ARCH)}, "a JSON config (an architecture)",
		      "cigt train --config the file");
	th_rmdir(dir);
}

Test(not_a_model, other_json_files)
{
	const char *cigtd = "{\"listen\": \"127.0.0.1:8080\", \"workers\": 2}";
	expect_reject((struct buf){(uint8_t *)cigtd, strlen(cigtd)}, "cigtd config",
		      "cigtd --config");
	const char *repo = "\xef\xbb\xbf  {\"version_policy\": {\"all\": {}}}";
	expect_reject((struct buf){(uint8_t *)repo, strlen(repo)}, "config.json",
		      "cigtd --model-repository");
	const char *tiny = "{}";
	expect_reject((struct buf){(uint8_t *)tiny, 2}, "a JSON object", "not a model");
	const char *broken = "{\"layers\": [";
	expect_reject((struct buf){(uint8_t *)broken, strlen(broken)}, "not even valid JSON", NULL);
}

Test(not_a_model, png_names_cigt_classify)
{
	char dir[256], path[512], cmd[600];
	th_tmpdir(dir, sizeof dir);
	const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H',
			       'D', 'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0};
	put_file(dir, "boot.png", png, sizeof png, path, sizeof path);
	snprintf(cmd, sizeof cmd, "cigt classify MODEL %s", path);
	expect_file_reject(path, "a PNG image", cmd, NULL);
	th_rmdir(dir);
}

Test(not_a_model, jpeg_names_cigt_classify)
{
	const uint8_t jpeg[] = {0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0};
	expect_reject((struct buf){(uint8_t *)jpeg, sizeof jpeg}, "a JPEG image",
		      "cigt classify MODEL");
}

Test(not_a_model, pgm_and_ppm_name_cigt_classify)
{
	const char *pgm = "P5 28 28 255\n\x01\x02\x03\x04\x05\x06";
	expect_reject((struct buf){(uint8_t *)pgm, strlen(pgm)}, "a PGM image", "cigt classify");
	const char *ascii = "P2\n2 1\n255\n0 255\n";
	expect_reject((struct buf){(uint8_t *)ascii, strlen(ascii)}, "a PGM image", NULL);
	const char *ppm = "P6\t1 1 255\n\x01\x02\x03";
	expect_reject((struct buf){(uint8_t *)ppm, strlen(ppm)}, "a PPM image", "cigt classify");
}

Test(not_a_model, empty_file_on_disk)
{
	char dir[256], path[512];
	th_tmpdir(dir, sizeof dir);
	put_file(dir, "model.safetensors", "", 0, path, sizeof path);
	expect_file_reject(path, path, "the file is empty (0 bytes)", "cigt train");
	th_rmdir(dir);
}

Test(not_a_model, gzip_names_the_data_option)
{
	const uint8_t gz[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3};
	expect_reject((struct buf){(uint8_t *)gz, sizeof gz}, "gzip-compressed", "--data DIR");
}

/* A checkpoint: the model file format with __metadata__.checkpoint (cigt train's MODEL.ckpt). */
Test(not_a_model, checkpoint_names_resume)
{
	struct cigt_model *m = small_model();
	struct cigt__extras ex = {.prefix = "momentum/", .meta_key = "checkpoint",
				  .meta_value = "{\"epoch\": 3}"};
	void *p;
	size_t n;
	cr_assert_eq(cigt__model_serialize_ex(m, &ex, &p, &n), 0);
	cigt_model_free(m);
	char dir[256], path[512], cmd[600];
	th_tmpdir(dir, sizeof dir);
	put_file(dir, "fashion_mnist.ckpt", p, n, path, sizeof path);
	snprintf(cmd, sizeof cmd, "--resume %s", path);
	expect_file_reject(path, "a training checkpoint", "cigt train --config CONFIG", cmd);
	/* The trainer's own reading of it (meta_key given) is not refused. */
	struct cigt__extras rd = {.prefix = "momentum/", .meta_key = "checkpoint"};
	char err[512] = "";
	cr_assert_eq(cigt__model_load_ex(p, n, &rd, &m, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(rd.meta_value, "{\"epoch\": 3}");
	free(rd.meta_value);
	cigt_model_free(m);
	free(p);
	th_rmdir(dir);
}

/* Directories: a repository (cigtd --model-repository), a model's folder in one, a version
 * folder (the file inside), and a plain directory. */
Test(not_a_model, directories_name_what_they_hold)
{
	char dir[256], sub[600], path[700], want[800];
	th_tmpdir(dir, sizeof dir);
	expect_file_reject(dir, "a directory, not a model file", "cigt train", NULL);
	struct buf b = serialized();
	snprintf(sub, sizeof sub, "%s/small", dir);
	cr_assert_eq(mkdir(sub, 0755), 0);
	snprintf(sub, sizeof sub, "%s/small/3", dir);
	cr_assert_eq(mkdir(sub, 0755), 0);
	put_file(sub, "model.safetensors", b.p, b.len, path, sizeof path);
	free(b.p);
	snprintf(want, sizeof want, "`cigtd --model-repository %s` serves it", dir);
	expect_file_reject(dir, "laid out as a model repository", want, path);
	snprintf(sub, sizeof sub, "%s/small", dir);
	expect_file_reject(sub, "a model's folder in a model repository", path, NULL);
	snprintf(sub, sizeof sub, "%s/small/3", dir);
	snprintf(want, sizeof want, "the model in it is %s", path);
	expect_file_reject(sub, "version folder", want, NULL);
	th_rmdir(dir);
}

/* ------------------------------------------------------------------ the quantization table */

/* The small model's experts have three convs and linears: layer 0's conv and each layer-1
 * expert's linear (op 1: op 0 is the flatten). */
static const char *const QUANT_OK =
	"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":12,\"split\":\"validation\","
	"\"accuracy\":{\"fp32\":0.75,\"int8\":0.5},\"inputs\":{\"layers.0.experts.0.ops.0\":[0,1],\"layers.1.experts.0.ops.1\":[-0.5,2.25],"
	"\"layers.1.experts.1.ops.1\":[0,3]}}";

/* The small model's file with __metadata__.quantization = text. */
static void expect_quant(const char *text, const char *w1, const char *w2)
{
	struct edit e = edit_begin();
	set_meta(e.hdr, CIGT_METADATA_QUANT, text);
	if (w1) {
		edit_expect(e, w1, w2);
		return;
	}
	struct buf b = assemble(e.hdr, e.data, e.dlen);
	json_decref(e.hdr);
	free(e.data);
	struct cigt_model *m = expect_load(b);
	cr_assert_eq(m->quant_samples, 12);
	cr_assert_str_eq(m->quant_split, "validation");
	cr_assert_float_eq(m->ops[1][0 * 2 + 1].in_min, -0.5f, 0);
	cr_assert_float_eq(m->ops[1][0 * 2 + 1].in_max, 2.25f, 0);
	cr_assert_float_eq(m->ops[1][1 * 2 + 1].in_max, 3.0f, 0);
	cr_assert(m->quant_acc[0] == 0.75 && m->quant_acc[1] == -1 && m->quant_acc[2] == 0.5);
	/* Written again, read again: the same table. */
	void *p;
	size_t len;
	cr_assert_eq(cigt_model_serialize(m, &p, &len), 0);
	struct cigt_model *m2 = expect_load((struct buf){p, len});
	cr_assert_eq(m2->quant_samples, 12);
	cr_assert_float_eq(m2->ops[0][0].in_max, 1.0f, 0);
	cr_assert_float_eq(m2->ops[1][1].in_min, -0.5f, 0);
	cr_assert(m2->quant_acc[0] == 0.75 && m2->quant_acc[1] == -1 && m2->quant_acc[2] == 0.5);
	cigt_model_free(m2);
	cigt_model_free(m);
	free(p);
	free(b.p);
}

Test(quant, table_round_trip)
{
	expect_quant(QUANT_OK, NULL, NULL);
	/* A file without the table has none; serialising writes none. */
	struct cigt_model *m = small_model();
	cr_assert_eq(m->quant_samples, 0);
	cr_assert_null(cigt_quant_to_json(m));
	cigt_model_free(m);
}

Test(quant, every_defect_named)
{
	static const struct {
		const char *text, *w1, *w2;
	} bad[] = {
		{"[1]", "quantization is not a JSON object", NULL},
		{"{", "quantization is not valid JSON", NULL},
		{"{\"format\":\"cigt-int8-2\",\"method\":\"max\",\"samples\":1,\"split\":\"v\","
		 "\"inputs\":{}}", "quantization.format", "cigt-int8-1"},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"mse\",\"samples\":1,\"split\":\"v\","
		 "\"inputs\":{}}", "quantization.method", NULL},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":0,\"split\":\"v\","
		 "\"inputs\":{}}", "quantization.samples", NULL},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":1.5,\"split\":\"v\","
		 "\"inputs\":{}}", "quantization.samples", NULL},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":1,\"split\":\"\","
		 "\"inputs\":{}}", "quantization.split", NULL},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":1,\"split\":\"v\","
		 "\"inputs\":{},\"bits\":8}", "unknown key 'bits'", NULL},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":1,\"split\":\"v\","
		 "\"inputs\":{},\"accuracy\":{\"fp16\":0.5}}", "quantization.accuracy.fp16", NULL},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":1,\"split\":\"v\","
		 "\"inputs\":{},\"accuracy\":{\"int8\":1.5}}", "quantization.accuracy.int8", NULL},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":1,\"split\":\"v\","
		 "\"inputs\":{},\"accuracy\":[1]}", "accuracy must be an object", NULL},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":1,\"split\":\"v\","
		 "\"inputs\":{\"layers.0.experts.0.ops.0\":[0,1]}}",
		 "no range for layers.1.experts.0.ops.1", NULL},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":1,\"split\":\"v\","
		 "\"inputs\":{\"layers.0.experts.0.ops.0\":[2,1],\"layers.1.experts.0.ops.1\":[0,1],"
		 "\"layers.1.experts.1.ops.1\":[0,1]}}", "layers.0.experts.0.ops.0 is [2, 1]", NULL},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":1,\"split\":\"v\","
		 "\"inputs\":{\"layers.0.experts.0.ops.0\":[0],\"layers.1.experts.0.ops.1\":[0,1],"
		 "\"layers.1.experts.1.ops.1\":[0,1]}}", "ops.0 is not [min, max]", NULL},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":1,\"split\":\"v\","
		 "\"inputs\":{\"layers.0.experts.0.ops.0\":[0,1e39],\"layers.1.experts.0.ops.1\":[0,1],"
		 "\"layers.1.experts.1.ops.1\":[0,1]}}", "expected finite", NULL},
		{"{\"format\":\"cigt-int8-1\",\"method\":\"max\",\"samples\":1,\"split\":\"v\","
		 "\"inputs\":{\"layers.0.experts.0.ops.0\":[0,1],\"layers.1.experts.0.ops.1\":[0,1],"
		 "\"layers.1.experts.1.ops.1\":[0,1],\"layers.0.experts.0.ops.1\":[0,1]}}",
		 "layers.0.experts.0.ops.1 is not an expert's conv or linear", NULL},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_quant(bad[i].text, bad[i].w1, bad[i].w2);
}
