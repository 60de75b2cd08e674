/* Image-folder datasets (src/io/folder.c): folders of small PGM/PPM/PNG files written here.
 * Class order is byte order of the folder names; train/test/val split detection; the IDX
 * directory still recognised; every image present once with its class; empty class folder, one
 * class, no classes and the cache bound refused naming the folder; a corrupt image skipped and
 * reported with its path; non-image and hidden files ignored; class matching by name; the
 * per-channel input statistics against hand-computed values. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cigt/dataset.h"
#include "cigt/error.h"
#include "cigt/image.h"
#include "helpers.h"

static char dir[4096];

static void setup(void)
{
	th_tmpdir(dir, sizeof dir);
}

static void teardown(void)
{
	th_rmdir(dir);
}

TestSuite(folder, .init = setup, .fini = teardown);

static void mkdirs(const char *rel)
{
	char p[8300];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	for (char *s = p + strlen(dir) + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			mkdir(p, 0755);
			*s = '/';
		}
	cr_assert(mkdir(p, 0755) == 0 || errno == EEXIST, "mkdir %s", p);
}

static void put(const char *rel, const void *data, size_t len)
{
	char p[8300];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	FILE *f = fopen(p, "wb");
	cr_assert(f, "fopen %s", p);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* A 2x2 PGM whose every pixel is v (the value tells images apart). */
static void put_pgm(const char *rel, uint8_t v)
{
	uint8_t b[64];
	int n = snprintf((char *)b, sizeof b, "P5\n2 2\n255\n");
	memset(b + n, v, 4);
	put(rel, b, (size_t)n + 4);
}

static const struct cigt_folder_opts gray2 = {
	.channels = 1, .height = 2, .width = 2, .max_bytes = 1 << 20, .log = NULL};

static int open_split(const char *rel, const char *split, const struct cigt_folder_opts *o,
		      struct cigt_dataset *d, char *err, size_t errlen)
{
	char p[8300];
	snprintf(p, sizeof p, "%s%s%s", dir, rel[0] ? "/" : "", rel);
	return cigt_dataset_open(p, split, o, d, err, errlen);
}

Test(folder, classes_sorted_by_byte_order_and_every_image_once)
{
	/* Created out of order; 'B' < 'a' < 'b' < 'b2' in byte order (Python's sorted()). */
	const char *cls[] = {"b2", "a", "B", "b"};
	const int want_label[] = {3, 1, 0, 2}; /* index of cls[k] in sorted order */
	for (int k = 0; k < 4; k++)
		for (int i = 0; i < 3; i++) {
			char p[256];
			snprintf(p, sizeof p, "%s/img%d.pgm", cls[k], i);
			mkdirs(cls[k]);
			put_pgm(p, (uint8_t)(10 * k + i));
		}
	struct cigt_dataset d;
	char err[512];
	cr_assert_eq(open_split("", "train", &gray2, &d, err, sizeof err), 0, "%s", err);
	cr_assert_eq(d.nclasses, 4);
	cr_assert_str_eq(d.classes[0], "B");
	cr_assert_str_eq(d.classes[1], "a");
	cr_assert_str_eq(d.classes[2], "b");
	cr_assert_str_eq(d.classes[3], "b2");
	cr_assert(d.n == 12 && d.c == 1 && d.h == 2 && d.w == 2 && d.skipped == 0);
	int seen[4][3] = {{0}};
	for (int i = 0; i < d.n; i++) {
		int v = d.px[4 * i], k = v / 10, j = v % 10;
		cr_assert(k < 4 && j < 3 && d.px[4 * i + 3] == v);
		cr_assert_eq(d.labels[i], want_label[k], "image %d of folder %s has label %d", j,
			     cls[k], d.labels[i]);
		seen[k][j]++;
	}
	for (int k = 0; k < 4; k++)
		for (int j = 0; j < 3; j++)
			cr_assert_eq(seen[k][j], 1);
	cigt_dataset_destroy(&d);
}

Test(folder, train_test_and_val_split_detection)
{
	mkdirs("train/x");
	mkdirs("train/y");
	put_pgm("train/x/1.pgm", 1);
	put_pgm("train/y/1.pgm", 2);
	put_pgm("train/y/2.pgm", 3);
	struct cigt_dataset d;
	char err[512];
	cr_assert_eq(open_split("", "train", &gray2, &d, err, sizeof err), 0, "%s", err);
	cr_assert_eq(d.n, 3);
	cigt_dataset_destroy(&d);
	/* A train/ without test/ or val/ has nothing to evaluate on. */
	cr_assert_lt(open_split("", "test", &gray2, &d, err, sizeof err), 0);
	cr_assert(strstr(err, "neither test/ nor val/"), "%s", err);
	mkdirs("val/x");
	mkdirs("val/y");
	put_pgm("val/x/1.pgm", 7);
	put_pgm("val/y/1.pgm", 8);
	cr_assert_eq(open_split("", "test", &gray2, &d, err, sizeof err), 0, "%s", err);
	cr_assert_eq(d.n, 2);
	cigt_dataset_destroy(&d);
	/* test/ wins over val/. */
	mkdirs("test/x");
	mkdirs("test/y");
	put_pgm("test/x/1.pgm", 9);
	put_pgm("test/x/2.pgm", 9);
	put_pgm("test/y/1.pgm", 9);
	put_pgm("test/y/2.pgm", 9);
	cr_assert_eq(open_split("", "test", &gray2, &d, err, sizeof err), 0, "%s", err);
	cr_assert(d.n == 4 && d.px[0] == 9);
	cigt_dataset_destroy(&d);
}

Test(folder, idx_directory_still_read_as_idx)
{
	put("t10k-images-idx3-ubyte.gz", "x", 1); /* present, so IDX is chosen (and refused) */
	struct cigt_dataset d;
	char err[512];
	cr_assert_lt(open_split("", "test", &gray2, &d, err, sizeof err), 0);
	cr_assert(strstr(err, "t10k-images-idx3-ubyte.gz"), "%s", err);
}

Test(folder, empty_class_folder_is_an_error_naming_it)
{
	mkdirs("cat");
	mkdirs("dog");
	put_pgm("cat/1.pgm", 1);
	put("dog/notes.txt", "hi", 2);
	struct cigt_dataset d;
	char err[512], want[4200];
	cr_assert_lt(open_split("", "train", &gray2, &d, err, sizeof err), 0);
	snprintf(want, sizeof want, "%s/dog: empty class folder", dir);
	cr_assert(strstr(err, want), "%s", err);
	cr_assert(d.px == NULL && d.classes == NULL);
}

Test(folder, one_class_or_none_is_an_error_naming_the_folder)
{
	struct cigt_dataset d;
	char err[512];
	cr_assert_lt(open_split("", "train", &gray2, &d, err, sizeof err), 0);
	cr_assert(strstr(err, "no class folders"), "%s", err);
	mkdirs("only");
	put_pgm("only/1.pgm", 1);
	cr_assert_lt(open_split("", "train", &gray2, &d, err, sizeof err), 0);
	cr_assert(strstr(err, "only one class folder") && strstr(err, dir), "%s", err);
	cr_assert_lt(open_split("missing", "train", &gray2, &d, err, sizeof err), 0);
	cr_assert(strstr(err, "missing: No such file"), "%s", err);
}

Test(folder, corrupt_image_skipped_and_reported_with_its_path)
{
	mkdirs("a");
	mkdirs("b");
	put_pgm("a/good.pgm", 5);
	put_pgm("b/good.pgm", 6);
	put("b/broken.png", "\x89PNG\r\n\x1a\nnot really", 18);
	put("b/broken.jpg", "\xff\xd8\xff\xe0 garbage", 12);
	put("a/README.txt", "text", 4);
	put("a/.hidden.pgm", "junk", 4);
	char *logbuf = NULL;
	size_t loglen = 0;
	FILE *log = open_memstream(&logbuf, &loglen);
	struct cigt_folder_opts o = gray2;
	o.log = log;
	struct cigt_dataset d;
	char err[512], want[4200];
	cr_assert_eq(open_split("", "train", &o, &d, err, sizeof err), 0, "%s", err);
	fclose(log);
	cr_assert(d.n == 2 && d.skipped == 2);
	snprintf(want, sizeof want, "skipping %s/b/broken.png: PNG", dir);
	cr_assert(strstr(logbuf, want), "%s", logbuf);
	snprintf(want, sizeof want, "skipping %s/b/broken.jpg: JPEG", dir);
	cr_assert(strstr(logbuf, want), "%s", logbuf);
	snprintf(want, sizeof want, "ignored 1 file that is not");
	cr_assert(strstr(logbuf, want) && strstr(logbuf, "README.txt"), "%s", logbuf);
	cr_assert(!strstr(logbuf, "hidden"), "%s", logbuf);
	free(logbuf);
	cigt_dataset_destroy(&d);
}

Test(folder, images_converted_to_the_geometry_and_nested_folders_read)
{
	mkdirs("r/deep/er");
	mkdirs("g");
	/* A 4x2 PPM of pure red, area-averaged to 2x1 and made gray with BT.601. */
	const char red[] = "P6\n4 2\n255\n"
			   "\xff\0\0\xff\0\0\xff\0\0\xff\0\0\xff\0\0\xff\0\0\xff\0\0\xff\0\0";
	put("r/deep/er/red.ppm", red, sizeof red - 1);
	put_pgm("g/gray.pgm", 200);
	struct cigt_folder_opts o = {.channels = 1, .height = 1, .width = 2, .max_bytes = 1 << 20};
	struct cigt_dataset d;
	char err[512];
	cr_assert_eq(open_split("", "train", &o, &d, err, sizeof err), 0, "%s", err);
	cr_assert_eq(d.n, 2);
	for (int i = 0; i < 2; i++) {
		uint8_t want = d.labels[i] == 1 ? 76 : 200; /* 0.299 * 255 = 76.2 */
		cr_assert(d.px[2 * i] == want && d.px[2 * i + 1] == want, "label %d: %d %d",
			  d.labels[i], d.px[2 * i], d.px[2 * i + 1]);
	}
	cigt_dataset_destroy(&d);
	/* The same folder for a colour model: gray replicated, red stays red. */
	o.channels = 3;
	cr_assert_eq(open_split("", "train", &o, &d, err, sizeof err), 0, "%s", err);
	for (int i = 0; i < 2; i++) {
		const uint8_t *p = d.px + 6 * i;
		if (d.labels[i] == 1)
			cr_assert(p[0] == 255 && p[1] == 0 && p[2] == 0);
		else
			cr_assert(p[0] == 200 && p[1] == 200 && p[2] == 200);
	}
	cigt_dataset_destroy(&d);
}

Test(folder, cache_bound_refused_with_the_sizes)
{
	mkdirs("a");
	mkdirs("b");
	put_pgm("a/1.pgm", 1);
	put_pgm("b/1.pgm", 1);
	struct cigt_folder_opts o = {.channels = 3, .height = 512, .width = 512,
				     .max_bytes = 2 << 20};
	struct cigt_dataset d;
	char err[512];
	cr_assert_lt(open_split("", "train", &o, &d, err, sizeof err), 0);
	cr_assert(strstr(err, "2 images at 3x512x512 need 6 MiB as float32, more than the 2 MiB"),
		  "%s", err);
}

Test(folder, classes_matched_to_the_model_by_name)
{
	mkdirs("cat");
	mkdirs("dog");
	put_pgm("cat/1.pgm", 1);
	put_pgm("dog/1.pgm", 2);
	struct cigt_dataset d;
	char err[512];
	cr_assert_eq(open_split("", "train", &gray2, &d, err, sizeof err), 0, "%s", err);
	const char *model[] = {"dog", "bird", "cat"};
	cr_assert_lt(cigt_dataset_map_classes(&d, model, 3, true, "DATA", err, sizeof err), 0);
	cr_assert(strstr(err, "DATA: no class folder for the model's class 'bird'"), "%s", err);
	cr_assert_eq(cigt_dataset_map_classes(&d, model, 3, false, "DATA", err, sizeof err), 0);
	for (int i = 0; i < d.n; i++)
		cr_assert_eq(d.labels[i], d.px[4 * i] == 1 ? 2 : 0);
	const char *other[] = {"dog", "fish"};
	cigt_dataset_destroy(&d);
	cr_assert_eq(open_split("", "train", &gray2, &d, err, sizeof err), 0, "%s", err);
	cr_assert_lt(cigt_dataset_map_classes(&d, other, 2, false, "DATA", err, sizeof err), 0);
	cr_assert(strstr(err, "class folder 'cat' is not one of the model's 2 classes"), "%s",
		  err);
	cigt_dataset_destroy(&d);
}

Test(folder, input_stats_per_channel)
{
	/* Two 1x2 RGB images: channel 0 values {0, 255, 255, 255}, channel 1 all 51,
	 * channel 2 {0, 0, 102, 102}. */
	uint8_t px[] = {0, 51, 0, 255, 51, 0, 255, 51, 102, 255, 51, 102};
	uint8_t labels[2] = {0, 1};
	struct cigt_dataset d = {.n = 2, .h = 1, .w = 2, .c = 3, .px = px, .labels = labels};
	double mean[3], std[3];
	cr_assert_eq(cigt_dataset_input_stats(&d, 2, mean, std), 0);
	cr_assert_float_eq(mean[0], 0.75, 1e-12);
	cr_assert_float_eq(std[0], 0.4330127018922193, 1e-12); /* sqrt(3)/4 */
	cr_assert_float_eq(mean[1], 0.2, 1e-12);
	cr_assert_float_eq(std[1], 0.0, 1e-12);
	cr_assert_float_eq(mean[2], 0.2, 1e-12);
	cr_assert_float_eq(std[2], 0.2, 1e-12);
	cr_assert_eq(cigt_dataset_input_stats(&d, 1, mean, std), 0); /* the first image only */
	cr_assert_float_eq(mean[0], 0.5, 1e-12);
	cr_assert_eq(cigt_dataset_input_stats(&d, 0, mean, std), CIGT_EINVAL);
}
