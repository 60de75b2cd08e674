/* Reading and writing model files: safetensors (8-byte little-endian header length, JSON header,
 * raw little-endian float32 data) with the cigt architecture in __metadata__, and the loading of
 * the second model an operating point escalates to (beside the first, identified by sha256).
 * The reader trusts nothing: every length, offset, shape and value is checked before it is
 * used, and each defect gets a one-line message naming it. See proto/model-format.md. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cigt/error.h"
#include "cigt/file.h"
#include "cigt/model.h"
#include "model_internal.h"
#include "../common/sha256.h"
#include "../common/util.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cigt reads safetensors data in place and needs a little-endian host"
#endif

#define MAX_HEADER (16u << 20)
#define MAX_TENSORS 4096
#define MAX_FILE ((size_t)2 << 30)
#define ERR(...) cigt_fail(err, errlen, CIGT_EFORMAT, __VA_ARGS__)

struct entry {
	const char *name;
	int ndim;
	int64_t shape[4];
	uint64_t begin, end;
	int used;
};

static int cmp_begin(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
	size_t off = 0;
	off += (size_t)snprintf(buf + off, len - off, "[");
	for (int i = 0; i < ndim && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? ", " : "",
					(long long)shape[i]);
	if (off < len)
		snprintf(buf + off, len - off, "]");
}

static int parse_entry(const char *name, json_t *v, uint64_t datalen, struct entry *e, char *err,
		       size_t errlen)
{
	if (strlen(name) >= CIGT_TENSOR_NAME_MAX)
		return ERR("tensor name '%.40s...' is longer than %d bytes", name,
			   CIGT_TENSOR_NAME_MAX - 1);
	if (!json_is_object(v))
		return ERR("tensor '%s': expected an object", name);
	const char *key;
	json_t *val;
	json_object_foreach(v, key, val) {
		if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
			return ERR("tensor '%s': unknown key '%s'", name, key);
	}
	json_t *dt = json_object_get(v, "dtype");
	json_t *sh = json_object_get(v, "shape");
	json_t *off = json_object_get(v, "data_offsets");
	if (!dt || !json_is_string(dt))
		return ERR("tensor '%s': missing string 'dtype'", name);
	if (strcmp(json_string_value(dt), "F32") != 0)
		return ERR("tensor '%s': dtype %s is not supported (F32 only)", name,
			   json_string_value(dt));
	if (!sh || !json_is_array(sh) || json_array_size(sh) > 4)
		return ERR("tensor '%s': 'shape' must be an array of at most 4 dimensions", name);
	e->name = name;
	e->ndim = (int)json_array_size(sh);
	uint64_t numel = 1;
	for (int i = 0; i < e->ndim; i++) {
		json_t *d = json_array_get(sh, (size_t)i);
		if (!json_is_integer(d) || json_integer_value(d) < 0 ||
		    json_integer_value(d) > (1ll << 32))
			return ERR("tensor '%s': shape[%d] is not a valid dimension", name, i);
		e->shape[i] = json_integer_value(d);
		numel *= (uint64_t)e->shape[i];
		if (numel > ((uint64_t)1 << 40))
			return ERR("tensor '%s': shape product overflows", name);
	}
	if (!off || !json_is_array(off) || json_array_size(off) != 2 ||
	    !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)))
		return ERR("tensor '%s': 'data_offsets' must be [begin, end]", name);
	json_int_t b = json_integer_value(json_array_get(off, 0));
	json_int_t en = json_integer_value(json_array_get(off, 1));
	if (b < 0 || en < b)
		return ERR("tensor '%s': data_offsets [%lld, %lld] are not ordered", name,
			   (long long)b, (long long)en);
	if ((uint64_t)en > datalen)
		return ERR("tensor '%s': data_offsets end %lld is past the %llu data bytes "
			   "(file truncated?)",
			   name, (long long)en, (unsigned long long)datalen);
	if ((uint64_t)(en - b) != numel * 4)
		return ERR("tensor '%s': %lld data bytes for %llu float32 values", name,
			   (long long)(en - b), (unsigned long long)numel);
	e->begin = (uint64_t)b;
	e->end = (uint64_t)en;
	return 0;
}

int cigt_model_load_buffer(const void *buf, size_t len, struct cigt_model **out, char *err,
			   size_t errlen)
{
	return cigt__model_load_ex(buf, len, NULL, out, err, errlen);
}

/* The 8-byte header length and the JSON header: *root (the caller frees it) and the data
 * section that follows (*data, *datalen). */
static int read_header(const uint8_t *p, size_t len, json_t **root, const uint8_t **data,
		       uint64_t *datalen, char *err, size_t errlen)
{
	if (len < 8)
		return ERR("file is %zu bytes, too short for the 8-byte header length", len);
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = (hlen << 8) | p[i];
	if (hlen < 2 || hlen > MAX_HEADER)
		return ERR("header length %llu is not in [2, %u]", (unsigned long long)hlen,
			   MAX_HEADER);
	if (hlen > len - 8)
		return ERR("truncated: header length is %llu bytes but only %zu follow",
			   (unsigned long long)hlen, len - 8);
	*datalen = len - 8 - hlen;
	*data = p + 8 + hlen;
	json_error_t je;
	*root = json_loadb((const char *)p + 8, hlen, JSON_REJECT_DUPLICATES, &je);
	if (!*root)
		return ERR("header is not valid JSON: %s at byte %d", je.text, je.position);
	if (!json_is_object(*root))
		return ERR("header is not a JSON object");
	return 0;
}

/* What __metadata__ holds besides the tensors, checked in the format's order. */
struct meta {
	struct cigt_arch *arch;
	struct cigt_point points[CIGT_MAX_POINTS];
	int npoints;
	char *prov; /* malloc'd, or NULL */
	char *quant; /* the quantization table's text, malloc'd, or NULL */
};

/* __metadata__: the format, the architecture, ex's key, the operating points and the
 * provenance. */
static int read_metadata(json_t *root, struct cigt__extras *ex, struct meta *mt, char *err,
			 size_t errlen)
{
	int rc;
	json_t *meta = json_object_get(root, "__metadata__");
	if (!meta || !json_is_object(meta))
		return ERR("header has no __metadata__ object (not a cigt model)");
	const char *key;
	json_t *val;
	json_object_foreach(meta, key, val) {
		if (!json_is_string(val))
			return ERR("__metadata__.%s: values must be strings", key);
	}
	json_t *fmt = json_object_get(meta, "format");
	if (!fmt || strcmp(json_string_value(fmt), CIGT_MODEL_FORMAT) != 0)
		return ERR("__metadata__.format is %s%s%s, expected \"%s\"", fmt ? "\"" : "",
			   fmt ? json_string_value(fmt) : "missing", fmt ? "\"" : "",
			   CIGT_MODEL_FORMAT);
	json_t *aj = json_object_get(meta, "architecture");
	if (!aj)
		return ERR("__metadata__.architecture is missing");
	char aerr[200];
	if ((rc = cigt_arch_parse(json_string_value(aj), json_string_length(aj), &mt->arch, aerr,
				  sizeof aerr)))
		return cigt_fail(err, errlen, rc, "__metadata__.architecture: %s", aerr);
	if (ex && ex->meta_key) {
		json_t *xj = json_object_get(meta, ex->meta_key);
		if (!xj)
			return ERR("__metadata__.%s is missing", ex->meta_key);
		if (!(ex->meta_value = strdup(json_string_value(xj))))
			return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	}
	json_t *oj = json_object_get(meta, CIGT_METADATA_POINTS);
	if (oj && (rc = cigt_points_parse(json_string_value(oj), json_string_length(oj), mt->arch,
					  mt->points, &mt->npoints, aerr, sizeof aerr)))
		return cigt_fail(err, errlen, rc, "__metadata__.%s", aerr);
	json_t *pj = json_object_get(meta, "provenance");
	if (pj && !(mt->prov = strdup(json_string_value(pj))))
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	json_t *qj = json_object_get(meta, CIGT_METADATA_QUANT);
	if (qj && !(mt->quant = strdup(json_string_value(qj))))
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	return 0;
}

/* The tensor entries (*ents, *n; the caller frees *ents), sorted by offset, which must tile
 * the data section exactly. */
static int read_entries(json_t *root, uint64_t datalen, struct entry **ents, size_t *n,
			char *err, size_t errlen)
{
	int rc;
	*n = json_object_size(root) - 1;
	if (*n > MAX_TENSORS)
		return ERR("header lists %zu tensors, more than %d", *n, MAX_TENSORS);
	struct entry *e = *ents = calloc(*n ? *n : 1, sizeof *e);
	if (!e)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	size_t k = 0;
	const char *key;
	json_t *val;
	json_object_foreach(root, key, val) {
		if (strcmp(key, "__metadata__") == 0)
			continue;
		if ((rc = parse_entry(key, val, datalen, &e[k++], err, errlen)))
			return rc;
	}
	qsort(e, *n, sizeof *e, cmp_begin);
	uint64_t pos = 0;
	for (size_t i = 0; i < *n; i++) {
		if (e[i].begin < pos)
			return ERR("tensors '%s' and '%s' overlap", e[i - 1].name, e[i].name);
		if (e[i].begin > pos)
			return ERR("data bytes %llu..%llu belong to no tensor",
				   (unsigned long long)pos, (unsigned long long)e[i].begin);
		pos = e[i].end;
	}
	if (pos != datalen)
		return ERR("%llu bytes after the last tensor", (unsigned long long)(datalen - pos));
	return 0;
}

/* Every tensor the architecture names, from its entry (marked used): shape checked, values
 * finite, variances not negative. */
static int copy_tensors(struct cigt_model *m, struct entry *ents, size_t n, const uint8_t *data,
			char *err, size_t errlen)
{
	for (int t = 0; t < m->ntensors; t++) {
		const struct cigt_tensor_info *ti = &m->tensors[t];
		struct entry *e = NULL;
		for (size_t i = 0; i < n && !e; i++)
			if (strcmp(ents[i].name, ti->name) == 0)
				e = &ents[i];
		if (!e)
			return ERR("missing tensor '%s'", ti->name);
		e->used = 1;
		int same = e->ndim == ti->ndim;
		for (int d = 0; same && d < e->ndim; d++)
			same = e->shape[d] == ti->shape[d];
		if (!same) {
			char have[64], want[64];
			shape_str(have, sizeof have, e->ndim, e->shape);
			shape_str(want, sizeof want, ti->ndim, ti->shape);
			return ERR("tensor '%s' has shape %s but the architecture needs %s", ti->name,
				   have, want);
		}
		float *dst = m->blob + ti->offset;
		memcpy(dst, data + e->begin, (size_t)ti->numel * sizeof(float));
		for (int64_t i = 0; i < ti->numel; i++) {
			if (!isfinite(dst[i]))
				return ERR("tensor '%s': value %lld is not finite", ti->name,
					   (long long)i);
			if (ti->role == CIGT_T_BN_VAR && dst[i] < 0)
				return ERR("tensor '%s': variance %lld is negative", ti->name,
					   (long long)i);
		}
	}
	return 0;
}

/* The entries the architecture does not name: ex's (its prefix; values finite, handed to
 * ex->fn) or an error. */
static int read_extras(const struct cigt_model *m, const struct entry *ents, size_t n,
		       const uint8_t *data, struct cigt__extras *ex, char *err, size_t errlen)
{
	int rc;
	for (size_t i = 0; i < n; i++) {
		if (ents[i].used)
			continue;
		size_t pl = ex && ex->prefix ? strlen(ex->prefix) : 0;
		if (!pl || strncmp(ents[i].name, ex->prefix, pl) != 0)
			return ERR("unexpected tensor '%s' (not in the architecture)", ents[i].name);
		const float *d = (const float *)(data + ents[i].begin);
		int64_t numel = (int64_t)((ents[i].end - ents[i].begin) / 4);
		for (int64_t j = 0; j < numel; j++) {
			float v;
			memcpy(&v, d + j, sizeof v);
			if (!isfinite(v))
				return ERR("tensor '%s': value %lld is not finite", ents[i].name,
					   (long long)j);
		}
		if ((rc = ex->fn(ex->ctx, m, ents[i].name + pl, data + ents[i].begin, numel, err,
				 errlen)))
			return rc;
	}
	return 0;
}

int cigt__model_load_ex(const void *buf, size_t len, struct cigt__extras *ex,
			struct cigt_model **out, char *err, size_t errlen)
{
	struct cigt_model *m = NULL;
	struct entry *ents = NULL;
	json_t *root = NULL;
	struct meta mt = {0};
	const uint8_t *data = NULL;
	uint64_t datalen = 0;
	size_t n = 0;
	*out = NULL;
	int rc = cigt__model_sniff(buf, len, NULL, ex && ex->meta_key, err, errlen);
	if (rc)
		return rc;
	rc = read_header(buf, len, &root, &data, &datalen, err, errlen);
	if (rc || (rc = read_metadata(root, ex, &mt, err, errlen)) ||
	    (rc = read_entries(root, datalen, &ents, &n, err, errlen)))
		goto out;
	/* Every parameter is a float somewhere in the data section: a file with less data cannot
	 * hold them, so say so before allocating what the architecture asks for (a 300-byte file
	 * naming a 4 GB architecture made the reader allocate 4 GB first). */
	if ((uint64_t)mt.arch->params > datalen / 4) {
		rc = ERR("the architecture has %lld parameters but the file holds %llu bytes of "
			 "tensor data (missing tensors)",
			 (long long)mt.arch->params, (unsigned long long)datalen);
		goto out;
	}
	rc = cigt_model_new(mt.arch, &m);
	mt.arch = NULL; /* owned by m now, or freed */
	if (rc) {
		rc = cigt_fail(err, errlen, rc, "out of memory");
		goto out;
	}
	m->provenance = mt.prov;
	mt.prov = NULL;
	m->npoints = mt.npoints;
	memcpy(m->points, mt.points, (size_t)mt.npoints * sizeof *mt.points);
	if ((rc = copy_tensors(m, ents, n, data, err, errlen)) ||
	    (rc = read_extras(m, ents, n, data, ex, err, errlen)))
		goto out;
	if (mt.quant) {
		char qerr[300];
		if ((rc = cigt_quant_parse(mt.quant, strlen(mt.quant), m, qerr, sizeof qerr))) {
			rc = cigt_fail(err, errlen, rc, "__metadata__.%s", qerr);
			goto out;
		}
	}
	*out = m;
	m = NULL;
out:
	cigt_model_free(m);
	cigt_arch_free(mt.arch);
	free(mt.quant);
	free(ents);
	free(mt.prov);
	json_decref(root);
	return rc;
}

int cigt_model_load(const char *path, struct cigt_model **out, char *err, size_t errlen)
{
	return cigt__model_load_file_ex(path, NULL, out, err, errlen);
}

int cigt__model_load_file_ex(const char *path, struct cigt__extras *ex, struct cigt_model **out,
			     char *err, size_t errlen)
{
	void *buf;
	size_t len;
	char e2[256];
	struct stat st;
	*out = NULL;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return cigt__model_sniff_dir(path, err, errlen);
	int rc = cigt_file_read(path, MAX_FILE, &buf, &len, err, errlen);
	if (rc)
		return rc;
	/* Named by its path: "x.json: a JSON config ...: `cigt train --config x.json ...`". */
	if ((rc = cigt__model_sniff(buf, len, path, ex && ex->meta_key, err, errlen))) {
		free(buf);
		return rc;
	}
	rc = cigt__model_load_ex(buf, len, ex, out, e2, sizeof e2);
	free(buf);
	if (rc)
		return cigt_fail(err, errlen, rc, "%s: %s", path, e2);
	return 0;
}

/* ------------------------------------------------------- the second model of a point */

int cigt_file_sha256(const char *path, char hex[65], char *err, size_t errlen)
{
	void *buf;
	size_t len;
	int rc = cigt_file_read(path, MAX_FILE, &buf, &len, err, errlen);
	if (rc)
		return rc;
	cigt__sha256(buf, len, hex);
	free(buf);
	return 0;
}

int cigt_model_load_second(const char *model_path, const struct cigt_model *m, int point,
			   struct cigt_model **out, char *err, size_t errlen)
{
	*out = NULL;
	if (point < 0 || point >= m->npoints || !m->points[point].second[0])
		return cigt_fail(err, errlen, CIGT_EINVAL, "operating point %d has no second model",
				 point);
	const struct cigt_point *p = &m->points[point];
	const char *slash = strrchr(model_path, '/');
	int dirlen = slash ? (int)(slash - model_path + 1) : 0;
	char path[4096];
	if (snprintf(path, sizeof path, "%.*s%s.safetensors", dirlen, model_path, p->second) >=
	    (int)sizeof path)
		return cigt_fail(err, errlen, CIGT_EINVAL, "path of the second model is too long");
	void *buf;
	size_t len;
	char e2[512];
	int rc = cigt_file_read(path, MAX_FILE, &buf, &len, e2, sizeof e2);
	if (rc)
		return cigt_fail(err, errlen, rc,
				 "operating point '%s' escalates to '%s', which cannot be read: %s",
				 p->name, p->second, e2);
	char hex[65];
	cigt__sha256(buf, len, hex);
	if (strcmp(hex, p->second_sha256) != 0) {
		free(buf);
		return cigt_fail(err, errlen, CIGT_EFORMAT,
				 "operating point '%s': %s has sha256 %.12s..., the point expects "
				 "%.12s... (a different model)",
				 p->name, path, hex, p->second_sha256);
	}
	struct cigt_model *s;
	rc = cigt_model_load_buffer(buf, len, &s, e2, sizeof e2);
	free(buf);
	if (rc)
		return cigt_fail(err, errlen, rc, "%s: %s", path, e2);
	const struct cigt_arch *a = m->arch, *b = s->arch;
	if (!cigt_arch_same_io(a, b)) {
		cigt_model_free(s);
		return cigt_fail(err, errlen, CIGT_EFORMAT,
				 "operating point '%s': %s does not take the same input (geometry, "
				 "scaling) and classes as the first model",
				 p->name, path);
	}
	*out = s;
	return 0;
}

/* ---------------------------------------------------------------- writing */

int cigt_model_serialize(const struct cigt_model *m, void **buf, size_t *len)
{
	return cigt__model_serialize_ex(m, NULL, buf, len);
}

int cigt__model_serialize_ex(const struct cigt_model *m, const struct cigt__extras *ex,
			     void **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	char *arch = cigt_arch_to_json(m->arch);
	if (!arch)
		return CIGT_ENOMEM;
	json_t *meta = json_pack("{ss ss}", "format", CIGT_MODEL_FORMAT, "architecture", arch);
	free(arch);
	if (!meta)
		return CIGT_ENOMEM;
	if (m->provenance)
		json_object_set_new(meta, "provenance", json_string(m->provenance));
	if (m->npoints > 0) {
		char *pts = cigt_points_to_json(m->arch, m->points, m->npoints);
		if (!pts) {
			json_decref(meta);
			return CIGT_ENOMEM;
		}
		json_object_set_new(meta, CIGT_METADATA_POINTS, json_string(pts));
		free(pts);
	}
	if (m->quant_samples > 0) {
		char *q = cigt_quant_to_json(m);
		if (!q) {
			json_decref(meta);
			return CIGT_ENOMEM;
		}
		json_object_set_new(meta, CIGT_METADATA_QUANT, json_string(q));
		free(q);
	}
	if (ex && ex->meta_key)
		json_object_set_new(meta, ex->meta_key, json_string(ex->meta_value));
	int64_t extra_floats = 0;
	json_t *root = json_object();
	json_object_set_new(root, "__metadata__", meta);
	for (int i = 0; i < m->ntensors; i++) {
		const struct cigt_tensor_info *t = &m->tensors[i];
		json_t *shape = json_array();
		for (int d = 0; d < t->ndim; d++)
			json_array_append_new(shape, json_integer(t->shape[d]));
		json_object_set_new(root, t->name,
				    json_pack("{ss so s[II]}", "dtype", "F32", "shape", shape,
					      "data_offsets", (json_int_t)(t->offset * 4),
					      (json_int_t)((t->offset + t->numel) * 4)));
	}
	for (int i = 0; ex && i < ex->count; i++) {
		char name[2 * CIGT_TENSOR_NAME_MAX];
		snprintf(name, sizeof name, "%s%s", ex->prefix, ex->names[i]);
		int64_t b = m->blob_floats + extra_floats;
		json_object_set_new(root, name,
				    json_pack("{ss s[I] s[II]}", "dtype", "F32", "shape",
					      (json_int_t)ex->numel[i], "data_offsets",
					      (json_int_t)(b * 4),
					      (json_int_t)((b + ex->numel[i]) * 4)));
		extra_floats += ex->numel[i];
	}
	char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (!hdr)
		return CIGT_ENOMEM;
	size_t hl = strlen(hdr);
	size_t padded = (hl + 7) & ~(size_t)7; /* keep the data 8-byte aligned */
	size_t total = 8 + padded + (size_t)(m->blob_floats + extra_floats) * sizeof(float);
	uint8_t *p = malloc(total);
	if (!p) {
		free(hdr);
		return CIGT_ENOMEM;
	}
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)((uint64_t)padded >> (8 * i));
	memcpy(p + 8, hdr, hl);
	memset(p + 8 + hl, ' ', padded - hl);
	memcpy(p + 8 + padded, m->blob, (size_t)m->blob_floats * sizeof(float));
	uint8_t *q = p + 8 + padded + (size_t)m->blob_floats * sizeof(float);
	for (int i = 0; ex && i < ex->count; i++) {
		memcpy(q, ex->data[i], (size_t)ex->numel[i] * sizeof(float));
		q += (size_t)ex->numel[i] * sizeof(float);
	}
	free(hdr);
	*buf = p;
	*len = total;
	return 0;
}

int cigt_model_save(const struct cigt_model *m, const char *path, char *err, size_t errlen)
{
	return cigt__model_save_ex(m, NULL, path, err, errlen);
}

int cigt__model_save_ex(const struct cigt_model *m, const struct cigt__extras *ex,
			const char *path, char *err, size_t errlen)
{
	void *buf;
	size_t len;
	if (cigt__model_serialize_ex(m, ex, &buf, &len))
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp) {
		free(buf);
		return cigt_fail(err, errlen, CIGT_EINVAL, "%s: path too long", path);
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		free(buf);
		return cigt_fail(err, errlen, CIGT_EIO, "%s: %s", tmp, strerror(e));
	}
	size_t done = 0;
	while (done < len) {
		ssize_t w = write(fd, (uint8_t *)buf + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = errno;
			close(fd);
			unlink(tmp);
			free(buf);
			return cigt_fail(err, errlen, CIGT_EIO, "%s: %s", tmp, strerror(e));
		}
		done += (size_t)w;
	}
	free(buf);
	int bad = fsync(fd) != 0;
	bad |= close(fd) != 0;
	if (bad || rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		return cigt_fail(err, errlen, CIGT_EIO, "%s: %s", path, strerror(e));
	}
	return 0;
}
