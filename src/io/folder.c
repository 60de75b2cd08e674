/* Image-folder datasets, the layout torchvision's ImageFolder reads: ROOT/<class>/.../<image>,
 * optionally split into ROOT/train and ROOT/test (or val). Class names are the folder names in
 * byte order (Python's sorted()); images are decoded once, converted to the model's input
 * geometry and held in memory, in a fixed pseudo-random order so that a validation split cut
 * from the end draws from every class. Unreadable images are reported with their path and
 * skipped; layout errors name the folder. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/util.h"
#include "cigt/dataset.h"
#include "cigt/error.h"
#include "cigt/file.h"
#include "cigt/image.h"

#define MAX_DEPTH 8              /* nested folders inside a class folder */
#define MAX_FILES 10000000       /* images in one split */
#define MAX_IMAGE_FILE (64u << 20)
#define ORDER_SEED 0xf01de12ull  /* the fixed shuffle: independent of the training seed */

struct names {
	char **v;
	size_t n, cap;
};

static void names_free(struct names *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof *s);
}

static int names_add(struct names *s, const char *a, const char *b)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		char **v = realloc(s->v, cap * sizeof *v);
		if (!v)
			return CIGT_ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	char *p;
	if (asprintf(&p, "%s/%s", a, b) < 0)
		return CIGT_ENOMEM;
	s->v[s->n++] = p;
	return 0;
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool cigt_dataset_is_image_name(const char *name)
{
	static const char *const ext[] = {".png", ".jpg", ".jpeg", ".pgm", ".ppm"};
	size_t n = strlen(name);
	for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
		size_t k = strlen(ext[i]);
		if (n > k && !strcasecmp(name + n - k, ext[i]))
			return true;
	}
	return false;
}

/* Lists a directory's visible entries (names not starting with '.'), sorted, into dirs and
 * files (full paths; either may be NULL to skip that kind). */
static int list_dir(const char *dir, struct names *dirs, struct names *files, char *err,
		    size_t errlen)
{
	DIR *d = opendir(dir);
	if (!d)
		return cigt_fail(err, errlen, CIGT_EIO, "%s: %s", dir, strerror(errno));
	struct dirent *e;
	int rc = 0;
	while (!rc && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char *p;
		if (asprintf(&p, "%s/%s", dir, e->d_name) < 0) {
			rc = CIGT_ENOMEM;
			break;
		}
		struct names *into = is_dir(p) ? dirs : files;
		free(p);
		if (into)
			rc = names_add(into, dir, e->d_name);
	}
	closedir(d);
	if (rc)
		return cigt_fail(err, errlen, rc, "%s: out of memory", dir);
	if (dirs && dirs->n > 1) /* qsort's array may not be NULL, even for 0 elements */
		qsort(dirs->v, dirs->n, sizeof *dirs->v, cmp_str);
	if (files && files->n > 1)
		qsort(files->v, files->n, sizeof *files->v, cmp_str);
	return 0;
}

/* Every image file under dir (recursively, as ImageFolder walks), appended with its label. */
struct walk {
	struct names files;
	int *labels;
	size_t cap;
	size_t ignored;
	char first_ignored[512];
};

static int walk_class(const char *dir, int label, int depth, struct walk *w, char *err,
		      size_t errlen)
{
	struct names dirs = {0}, files = {0};
	int rc = list_dir(dir, &dirs, &files, err, errlen);
	for (size_t i = 0; !rc && i < files.n; i++) {
		const char *base = strrchr(files.v[i], '/') + 1;
		if (!cigt_dataset_is_image_name(base)) {
			if (!w->ignored++)
				snprintf(w->first_ignored, sizeof w->first_ignored, "%s", files.v[i]);
			continue;
		}
		if (w->files.n >= MAX_FILES) {
			rc = cigt_fail(err, errlen, CIGT_ERANGE, "%s: more than %d images", dir,
				       MAX_FILES);
			break;
		}
		if (w->files.n == w->cap) {
			size_t cap = w->cap ? 2 * w->cap : 1024;
			int *l = realloc(w->labels, cap * sizeof *l);
			if (!l) {
				rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
				break;
			}
			w->labels = l;
			w->cap = cap;
		}
		w->labels[w->files.n] = label;
		char *slash = strrchr(files.v[i], '/');
		*slash = 0;
		rc = names_add(&w->files, files.v[i], slash + 1);
		*slash = '/';
		if (rc)
			rc = cigt_fail(err, errlen, rc, "out of memory");
	}
	for (size_t i = 0; !rc && i < dirs.n; i++) {
		if (depth >= MAX_DEPTH) {
			rc = cigt_fail(err, errlen, CIGT_ERANGE, "%s: folders nested deeper than %d",
				       dirs.v[i], MAX_DEPTH);
			break;
		}
		rc = walk_class(dirs.v[i], label, depth + 1, w, err, errlen);
	}
	names_free(&dirs);
	names_free(&files);
	return rc;
}

/* The class folders of dir (sorted) and every image file under them with its label: between 2
 * and 256 classes, none empty, the images within o->max_bytes as float32. */
static int list_images(const char *dir, const struct cigt_folder_opts *o, struct names *classes,
		       struct walk *w, char *err, size_t errlen)
{
	int rc = list_dir(dir, classes, NULL, err, errlen);
	if (rc)
		return rc;
	if (classes->n == 0)
		return cigt_fail(err, errlen, CIGT_EFORMAT,
				 "%s: no class folders (expected %s/<class name>/<images>, or an "
				 "IDX directory)",
				 dir, dir);
	if (classes->n == 1)
		return cigt_fail(err, errlen, CIGT_EFORMAT,
				 "%s: only one class folder (%s); a classifier needs at least two",
				 dir, classes->v[0]);
	if (classes->n > 256)
		return cigt_fail(err, errlen, CIGT_ERANGE, "%s: %zu class folders, at most 256",
				 dir, classes->n);
	for (size_t k = 0; k < classes->n; k++) {
		size_t before = w->files.n;
		if ((rc = walk_class(classes->v[k], (int)k, 0, w, err, errlen)))
			return rc;
		if (w->files.n == before)
			return cigt_fail(err, errlen, CIGT_EFORMAT,
					 "%s: empty class folder (no .png, .jpg, .jpeg, .pgm or "
					 ".ppm files)",
					 classes->v[k]);
	}
	const size_t n = w->files.n, isz = (size_t)o->channels * o->height * o->width;
	const double need = (double)n * (double)isz * 4; /* the float32 copy users hold */
	if (need > (double)o->max_bytes)
		return cigt_fail(err, errlen, CIGT_ERANGE,
				 "%s: %zu images at %dx%dx%d need %.0f MiB as float32, more than "
				 "the %.0f MiB cache bound (raise it with --cache-mb, or use fewer "
				 "or smaller images)",
				 dir, n, o->channels, o->height, o->width, need / 1048576.0,
				 (double)o->max_bytes / 1048576.0);
	if (w->ignored && o->log)
		fprintf(o->log, "%s: ignored %zu file%s that %s not .png, .jpg, .jpeg, .pgm or .ppm "
				"(first: %s)\n",
			dir, w->ignored, w->ignored == 1 ? "" : "s", w->ignored == 1 ? "is" : "are",
			w->first_ignored);
	return 0;
}

/* The fixed order: a Fisher-Yates shuffle of 0..n-1 (the sorted file list's indices). */
static void fixed_order(int *order, size_t n)
{
	struct cigt_rng r;
	cigt_rng_seed(&r, ORDER_SEED);
	for (size_t i = 0; i < n; i++)
		order[i] = (int)i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = cigt_rng_below(&r, (uint32_t)(i + 1));
		int t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
}

int cigt_dataset_load_folder(const char *dir, const struct cigt_folder_opts *o,
			     struct cigt_dataset *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	struct names classes = {0};
	struct walk w = {0};
	uint8_t *px = NULL, *labels = NULL;
	int *order = NULL;
	const int C = o->channels, H = o->height, W = o->width;
	int rc = list_images(dir, o, &classes, &w, err, errlen);
	if (rc)
		goto out;
	const size_t n = w.files.n, isz = (size_t)C * H * W;
	px = malloc(n * isz);
	labels = malloc(n);
	order = malloc(n * sizeof *order);
	if (!px || !labels || !order) {
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "%s: out of memory for %zu images", dir,
			       n);
		goto out;
	}
	fixed_order(order, n);
	const bool tty = o->log && isatty(fileno(o->log));
	const size_t every = n >= 10000 ? n / 20 : 1000;
	size_t kept = 0;
	for (size_t i = 0; i < n; i++) {
		const char *path = w.files.v[order[i]];
		void *buf = NULL;
		size_t len = 0;
		struct cigt_image img;
		char msg[300];
		int e = cigt_file_read(path, MAX_IMAGE_FILE, &buf, &len, msg, sizeof msg);
		if (!e)
			e = cigt_image_decode(buf, len, &img, msg, sizeof msg);
		free(buf);
		if (e == CIGT_ENOMEM) {
			rc = cigt_fail(err, errlen, e, "%s: %s", path, msg);
			goto out;
		}
		if (e) {
			out->skipped++;
			if (o->log)
				fprintf(o->log, "%sskipping %s: %s\n", tty ? "\r\033[K" : "", path,
					strncmp(msg, path, strlen(path)) ? msg
									 : msg + strlen(path) + 2);
		} else {
			cigt_image_to_input(&img, C, W, H, px + kept * isz);
			cigt_image_destroy(&img);
			labels[kept++] = (uint8_t)w.labels[order[i]];
		}
		if (o->log && n >= 1000 && ((i + 1) % every == 0 || i + 1 == n)) {
			fprintf(o->log, "%sdecoding %s: %zu/%zu images%s", tty ? "\r\033[K" : "",
				dir, i + 1, n, tty && i + 1 < n ? "" : "\n");
			fflush(o->log);
		}
	}
	if (kept == 0) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT, "%s: none of the %zu images could be read",
			       dir, n);
		goto out;
	}
	out->n = (int)kept;
	out->h = H;
	out->w = W;
	out->c = C;
	out->px = px;
	out->labels = labels;
	px = labels = NULL; /* owned by out from here */
	if (!(out->classes = calloc(classes.n, sizeof *out->classes))) {
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
		goto out;
	}
	out->nclasses = (int)classes.n;
	for (size_t k = 0; k < classes.n; k++) { /* "DIR/name" -> "name" */
		const char *base = strrchr(classes.v[k], '/') + 1;
		memmove(classes.v[k], base, strlen(base) + 1);
		out->classes[k] = classes.v[k];
		classes.v[k] = NULL;
	}
out:
	if (rc)
		cigt_dataset_destroy(out);
	free(px);
	free(labels);
	free(order);
	free(w.labels);
	names_free(&w.files);
	names_free(&classes);
	return rc;
}

int cigt_dataset_open(const char *root, const char *split, const struct cigt_folder_opts *o,
		      struct cigt_dataset *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	const bool train = !strcmp(split, "train");
	char idx[4096];
	snprintf(idx, sizeof idx, "%s/%s-images-idx3-ubyte.gz", root, train ? "train" : "t10k");
	if (access(idx, F_OK) == 0)
		return cigt_dataset_load_dir(root, train ? "train" : "t10k", out, err, errlen);
	if (!is_dir(root))
		return cigt_fail(err, errlen, CIGT_EIO,
				 "%s: %s (expected an image folder or an IDX directory with %s)",
				 root, access(root, F_OK) ? strerror(errno) : "not a directory", idx);
	char sub[4096];
	snprintf(sub, sizeof sub, "%s/train", root);
	if (!is_dir(sub)) /* one split: the whole folder */
		return cigt_dataset_load_folder(root, o, out, err, errlen);
	if (!train) {
		snprintf(sub, sizeof sub, "%s/test", root);
		if (!is_dir(sub))
			snprintf(sub, sizeof sub, "%s/val", root);
		if (!is_dir(sub))
			return cigt_fail(err, errlen, CIGT_EFORMAT,
					 "%s has train/ but neither test/ nor val/ to evaluate on",
					 root);
	}
	return cigt_dataset_load_folder(sub, o, out, err, errlen);
}

int cigt_dataset_map_classes(struct cigt_dataset *d, const char *const *classes, int nclasses,
			     bool require_all, const char *where, char *err, size_t errlen)
{
	if (!d->classes)
		return 0;
	int map[256];
	for (int k = 0; k < d->nclasses; k++) {
		map[k] = -1;
		for (int j = 0; j < nclasses; j++)
			if (!strcmp(d->classes[k], classes[j]))
				map[k] = j;
		if (map[k] < 0 || map[k] > 255)
			return cigt_fail(err, errlen, CIGT_EINVAL,
					 "%s: class folder '%s' is not one of the model's %d "
					 "classes",
					 where, d->classes[k], nclasses);
	}
	if (require_all && d->nclasses != nclasses)
		for (int j = 0; j < nclasses; j++) {
			bool found = false;
			for (int k = 0; k < d->nclasses; k++)
				found |= map[k] == j;
			if (!found)
				return cigt_fail(err, errlen, CIGT_EINVAL,
						 "%s: no class folder for the model's class '%s'",
						 where, classes[j]);
		}
	for (int i = 0; i < d->n; i++)
		d->labels[i] = (uint8_t)map[d->labels[i]];
	return 0;
}
