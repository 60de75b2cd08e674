/* Helpers shared by the cigt subcommands. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cigt/image.h"
#include "cli.h"

size_t cli_cache_bytes;
int cli_backend, cli_precision, cli_inner_threads = 1;

struct cigt_engine_opts cli_engine_opts(void)
{
	struct cigt_engine_opts o = {.precision = (enum cigt_precision)cli_precision,
				     .threads = cli_inner_threads};
	o.backend = cli_backend == 0   ? cigt_backend_auto(o.precision)
		    : cli_backend == 2 ? CIGT_BACKEND_ONEDNN
				       : CIGT_BACKEND_OPENBLAS;
	return o;
}

static int engine_new(const struct cigt_model *m, struct cigt_engine **e, char *err,
		      size_t errlen)
{
	struct cigt_engine_opts o = cli_engine_opts();
	return cigt_engine_new_opts(m, &o, e, err, errlen);
}

int cli_load(const char *path, struct cigt_model **m, struct cigt_engine **e)
{
	char err[512];
	*e = NULL;
	if (cigt_model_load(path, m, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		return -1;
	}
	if (e && engine_new(*m, e, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		cigt_model_free(*m);
		*m = NULL;
		return -1;
	}
	return 0;
}

int cli_load_inputs(const char *dir, const char *prefix, const struct cigt_arch *a, int *limit,
		    float **x, uint8_t **labels)
{
	return cli_load_tail(dir, prefix, a, limit, false, x, labels, NULL);
}

int cli_load_tail(const char *dir, const char *prefix, const struct cigt_arch *a, int *limit,
		  bool tail, float **x, uint8_t **labels, int *total)
{
	struct cigt_dataset d;
	char err[600];
	/* Progress and skipped files go to stderr: stdout may be JSON. */
	struct cigt_folder_opts fo = {
		.channels = a->input.c, .height = a->input.h, .width = a->input.w,
		.max_bytes = cli_cache_bytes ? cli_cache_bytes : CIGT_DATASET_CACHE_DEFAULT,
		.log = stderr};
	if (cigt_dataset_open(dir, strcmp(prefix, "train") ? "test" : "train", &fo, &d, err,
			      sizeof err) ||
	    cigt_dataset_map_classes(&d, (const char *const *)a->classes, a->nclasses, false, dir,
				     err, sizeof err)) {
		cigt_dataset_destroy(&d);
		fprintf(stderr, "cigt: %s\n", err);
		return -1;
	}
	int n = *limit > 0 && *limit < d.n ? *limit : d.n, first = tail ? d.n - n : 0;
	int64_t isz = cigt_arch_input_size(a);
	size_t in_px = (size_t)a->input.h * a->input.w * a->input.c;
	*x = malloc((size_t)n * (size_t)isz * sizeof(float));
	*labels = malloc((size_t)n);
	uint8_t *tmp = malloc(in_px);
	if (!*x || !*labels || !tmp) {
		fprintf(stderr, "cigt: out of memory loading %d images\n", n);
		free(*x);
		free(*labels);
		free(tmp);
		cigt_dataset_destroy(&d);
		return -1;
	}
	bool same = d.h == a->input.h && d.w == a->input.w && d.c == a->input.c;
	for (int i = 0; i < n; i++) {
		const uint8_t *src = d.px + (size_t)(first + i) * d.h * d.w * d.c;
		if (!same) {
			struct cigt_image img = {.w = d.w, .h = d.h, .c = d.c, .px = (uint8_t *)src};
			cigt_image_to_input(&img, a->input.c, a->input.w, a->input.h, tmp);
			src = tmp;
		}
		cigt_model_preprocess_u8(a, src, *x + (int64_t)i * isz);
		(*labels)[i] = d.labels[first + i];
	}
	free(tmp);
	if (total)
		*total = d.n;
	cigt_dataset_destroy(&d);
	*limit = n;
	return 0;
}

void cli_trained_on(const struct cigt_model *m, struct cli_trained_on *t)
{
	memset(t, 0, sizeof *t);
	t->images = -1;
	json_t *p = m->provenance ? json_loads(m->provenance, 0, NULL) : NULL;
	json_t *d = json_object_get(p, "data");
	if (json_is_string(d)) /* train_folder.py's old provenance: the folder's path */
		snprintf(t->dir, sizeof t->dir, "%s", json_string_value(d));
	json_t *tr = json_object_get(d, "train"), *v = json_object_get(d, "validation");
	json_t *im = json_object_get(d, "images"), *dir = json_object_get(d, "dir");
	if (json_is_integer(tr) && json_is_integer(v) && json_integer_value(tr) > 0 &&
	    json_integer_value(tr) < INT_MAX && json_integer_value(v) > 0 &&
	    json_integer_value(v) < INT_MAX) {
		t->train = (int)json_integer_value(tr);
		t->validation = (int)json_integer_value(v);
		t->images = json_is_integer(im) ? json_integer_value(im)
						: (long long)t->train + t->validation;
	}
	if (json_is_string(dir))
		snprintf(t->dir, sizeof t->dir, "%s", json_string_value(dir));
	json_decref(p);
}

/* dir resolved (symbolic links, "..", relative paths), or as given when it does not exist. */
static void resolved(const char *dir, char out[PATH_MAX])
{
	if (!realpath(dir, out))
		snprintf(out, PATH_MAX, "%s", dir);
}

bool cli_trained_on_dir(const struct cli_trained_on *t, const char *dir)
{
	if (!t->dir[0])
		return false;
	char a[PATH_MAX], b[PATH_MAX], sub[PATH_MAX];
	resolved(dir, a);
	resolved(t->dir, b);
	if (!strcmp(a, b))
		return true;
	if (snprintf(sub, sizeof sub, "%s/train", t->dir) >= (int)sizeof sub)
		return false;
	resolved(sub, b);
	return !strcmp(a, b);
}

bool cli_has_subdir(const char *dir, const char *sub)
{
	char p[PATH_MAX + 64];
	struct stat st;
	snprintf(p, sizeof p, "%s/%s", dir, sub);
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

bool cli_single_split_folder(const char *dir)
{
	char idx[PATH_MAX + 64];
	struct stat st;
	snprintf(idx, sizeof idx, "%s/t10k-images-idx3-ubyte.gz", dir);
	return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && access(idx, F_OK) != 0 &&
	       !cli_has_subdir(dir, "train");
}

int cli_default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

int cli_thresholds(const char *s, int n, float *tau)
{
	const char *p = s;
	for (int l = 0; l < n; l++) {
		char *end;
		errno = 0;
		double v = strtod(p, &end);
		if (errno || end == p || !(v >= 0.0 && v <= 1.0) ||
		    (l + 1 < n ? *end != ',' : *end != '\0')) {
			fprintf(stderr,
				"cigt: --thresholds: '%s' is not %d comma-separated numbers in [0, 1] "
				"(one per router)\n",
				s, n);
			return -1;
		}
		tau[l] = (float)v;
		p = end + 1;
	}
	return 0;
}

/* The dial for a MAC budget: loads each point's second model (once per name), lets the engine
 * pick, keeps the chosen point's second model. */
static int budget_dial(const char *path, const struct cigt_engine *e, long long max_macs,
		       struct cigt_dial *d, struct cigt_model **m2, struct cigt_engine **e2)
{
	const struct cigt_model *m = cigt_engine_model(e);
	struct cigt_model *sm[CIGT_MAX_POINTS] = {0};
	struct cigt_engine *se[CIGT_MAX_POINTS] = {0};
	const struct cigt_engine *seconds[CIGT_MAX_POINTS] = {0};
	char err[512];
	int rc = -1;
	for (int i = 0; i < m->npoints; i++) {
		const struct cigt_point *p = &m->points[i];
		if (!p->second[0])
			continue;
		for (int j = 0; j < i && !seconds[i]; j++)
			if (seconds[j] && !strcmp(m->points[j].second, p->second) &&
			    !strcmp(m->points[j].second_sha256, p->second_sha256))
				seconds[i] = seconds[j];
		if (seconds[i])
			continue;
		if (cigt_model_load_second(path, m, i, &sm[i], err, sizeof err) ||
		    engine_new(sm[i], &se[i], err, sizeof err)) {
			fprintf(stderr, "cigt: %s\n", err);
			goto out;
		}
		seconds[i] = se[i];
	}
	if (cigt_engine_dial_for_budget(e, seconds, max_macs, d, err, sizeof err)) {
		fprintf(stderr, "cigt: --max-macs: %s\n", err);
		goto out;
	}
	for (int i = 0; i < m->npoints; i++)
		if (se[i] && se[i] == d->second) {
			*m2 = sm[i];
			*e2 = se[i];
			sm[i] = NULL;
			se[i] = NULL;
		}
	rc = 0;
out:
	for (int i = 0; i < m->npoints; i++) {
		cigt_engine_free(se[i]);
		cigt_model_free(sm[i]);
	}
	return rc;
}

int cli_dial(const char *path, const struct cigt_engine *e, const char *compute,
	     const char *thresholds, long long max_macs, struct cigt_dial *d,
	     struct cigt_model **m2, struct cigt_engine **e2)
{
	const struct cigt_model *m = cigt_engine_model(e);
	char err[512];
	*m2 = NULL;
	*e2 = NULL;
	cigt_dial_single(d);
	if (!!compute + !!thresholds + (max_macs != 0) > 1) {
		fprintf(stderr, "cigt: give one of --compute, --thresholds and --max-macs\n");
		return -1;
	}
	if (max_macs)
		return budget_dial(path, e, max_macs, d, m2, e2);
	if (thresholds)
		return cli_thresholds(thresholds, m->arch->nlayers - 1, d->tau);
	if (!compute)
		return 0;
	int pt = cigt_model_point(m, compute);
	if (pt < 0) {
		fprintf(stderr, "cigt: %s has no operating point '%s' (%d point%s; cigt info lists "
			"them)\n", path, compute, m->npoints, m->npoints == 1 ? "" : "s");
		return -1;
	}
	if (m->points[pt].second[0]) {
		if (cigt_model_load_second(path, m, pt, m2, err, sizeof err) ||
		    engine_new(*m2, e2, err, sizeof err)) {
			fprintf(stderr, "cigt: %s\n", err);
			cigt_model_free(*m2);
			*m2 = NULL;
			return -1;
		}
	}
	if (cigt_engine_dial_from_point(e, pt, *e2, d, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		return -1;
	}
	return 0;
}

int cli_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}
