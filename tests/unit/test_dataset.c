/* IDX dataset reader (src/io/dataset.c): small IDX3/IDX1 files written here, gzip'd (zlib
 * gzopen) and plain, read back exactly; bad magic numbers, count mismatches, truncation and
 * missing files rejected with messages. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cigt/dataset.h"
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

TestSuite(dataset, .init = setup, .fini = teardown);

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void write_file(const char *name, bool gz, const uint8_t *p, size_t len, char *path)
{
	snprintf(path, 4200, "%s/%s", dir, name);
	if (gz) {
		gzFile f = gzopen(path, "wb");
		cr_assert_not_null(f);
		cr_assert_eq(gzwrite(f, p, (unsigned)len), (int)len);
		cr_assert_eq(gzclose(f), Z_OK);
	} else {
		FILE *f = fopen(path, "wb");
		cr_assert_not_null(f);
		cr_assert_eq(fwrite(p, 1, len, f), len);
		cr_assert_eq(fclose(f), 0);
	}
}

/* An IDX3 file of n images h x w (pixel value (i * 31 + y * 7 + x) & 255) and an IDX1 file
 * of m labels (i % 10), with the given magic bytes' third and fourth values. */
static size_t idx3(uint8_t *buf, int n, int h, int w, uint8_t type, uint8_t nd)
{
	buf[0] = 0, buf[1] = 0, buf[2] = type, buf[3] = nd;
	be32(buf + 4, (uint32_t)n);
	be32(buf + 8, (uint32_t)h);
	be32(buf + 12, (uint32_t)w);
	size_t k = 16;
	for (int i = 0; i < n; i++)
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++)
				buf[k++] = (uint8_t)((i * 31 + y * 7 + x) & 255);
	return k;
}

static size_t idx1(uint8_t *buf, int m, uint8_t type, uint8_t nd)
{
	buf[0] = 0, buf[1] = 0, buf[2] = type, buf[3] = nd;
	be32(buf + 4, (uint32_t)m);
	for (int i = 0; i < m; i++)
		buf[8 + i] = (uint8_t)(i % 10);
	return 8 + (size_t)m;
}

static void check_contents(const struct cigt_dataset *d, int n, int h, int w)
{
	cr_assert_eq(d->n, n);
	cr_assert_eq(d->h, h);
	cr_assert_eq(d->w, w);
	cr_assert_eq(d->c, 1);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(d->labels[i], i % 10, "label %d", i);
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++)
				cr_assert_eq(d->px[((size_t)i * h + y) * w + x],
					     (uint8_t)((i * 31 + y * 7 + x) & 255),
					     "image %d (%d, %d)", i, y, x);
	}
}

static void expect_fail(const char *im, const char *lb, const char *w1, const char *w2)
{
	struct cigt_dataset d;
	char err[512] = "";
	int rc = cigt_dataset_load_idx(im, lb, &d, err, sizeof err);
	cr_assert_neq(rc, 0, "loaded a bad dataset (expected a message with '%s')", w1);
	cr_assert_null(d.px);
	cr_assert_null(d.labels);
	cr_assert(strstr(err, w1), "message '%s' does not mention '%s'", err, w1);
	if (w2)
		cr_assert(strstr(err, w2), "message '%s' does not mention '%s'", err, w2);
}

static uint8_t buf_im[16 + 13 * 5 * 3], buf_lb[8 + 13];

Test(dataset, gzip_files_read_exactly)
{
	char im[4200], lb[4200];
	write_file("a-images.gz", true, buf_im, idx3(buf_im, 13, 5, 3, 8, 3), im);
	write_file("a-labels.gz", true, buf_lb, idx1(buf_lb, 13, 8, 1), lb);
	struct cigt_dataset d;
	char err[512] = "";
	cr_assert_eq(cigt_dataset_load_idx(im, lb, &d, err, sizeof err), 0, "%s", err);
	check_contents(&d, 13, 5, 3);
	cigt_dataset_destroy(&d);
	cr_assert_null(d.px);
}

Test(dataset, plain_files_read_exactly)
{
	char im[4200], lb[4200];
	write_file("b-images", false, buf_im, idx3(buf_im, 13, 5, 3, 8, 3), im);
	write_file("b-labels", false, buf_lb, idx1(buf_lb, 13, 8, 1), lb);
	struct cigt_dataset d;
	char err[512] = "";
	cr_assert_eq(cigt_dataset_load_idx(im, lb, &d, err, sizeof err), 0, "%s", err);
	check_contents(&d, 13, 5, 3);
	cigt_dataset_destroy(&d);
}

Test(dataset, load_dir_uses_mnist_names)
{
	char im[4200], lb[4200];
	write_file("t10k-images-idx3-ubyte.gz", true, buf_im, idx3(buf_im, 4, 5, 3, 8, 3), im);
	write_file("t10k-labels-idx1-ubyte.gz", true, buf_lb, idx1(buf_lb, 4, 8, 1), lb);
	struct cigt_dataset d;
	char err[512] = "";
	cr_assert_eq(cigt_dataset_load_dir(dir, "t10k", &d, err, sizeof err), 0, "%s", err);
	check_contents(&d, 4, 5, 3);
	cigt_dataset_destroy(&d);
	cr_assert_neq(cigt_dataset_load_dir(dir, "train", &d, err, sizeof err), 0);
	cr_assert(strstr(err, "train-images-idx3-ubyte.gz"), "message '%s'", err);
}

Test(dataset, bad_magic_rejected)
{
	char im[4200], lb[4200], im2[4200];
	write_file("c-labels", false, buf_lb, idx1(buf_lb, 3, 8, 1), lb);
	/* float data (type 0x0d), not unsigned bytes */
	write_file("c-images-f", false, buf_im, idx3(buf_im, 3, 5, 3, 0x0d, 3), im);
	expect_fail(im, lb, "not an IDX", "00000d03");
	/* a label file where an image file is expected (wrong dimension count) */
	char lb13[4200];
	write_file("c-labels-13", false, buf_lb, idx1(buf_lb, 13, 8, 1), lb13);
	expect_fail(lb13, lb, "not an IDX", "3-D");
	/* images swapped for labels */
	write_file("c-images", false, buf_im, idx3(buf_im, 3, 5, 3, 8, 3), im2);
	expect_fail(im2, im2, "not an IDX", "1-D");
	/* non-zero leading bytes */
	idx3(buf_im, 3, 5, 3, 8, 3);
	buf_im[0] = 0x1f;
	write_file("c-images-x", false, buf_im, 16 + 45, im);
	expect_fail(im, lb, "not an IDX", NULL);
}

Test(dataset, count_mismatch_rejected)
{
	char im[4200], lb[4200];
	write_file("d-images.gz", true, buf_im, idx3(buf_im, 5, 5, 3, 8, 3), im);
	write_file("d-labels.gz", true, buf_lb, idx1(buf_lb, 4, 8, 1), lb);
	expect_fail(im, lb, "5 images", "4 labels");
}

Test(dataset, truncated_and_zero_sized_rejected)
{
	char im[4200], lb[4200];
	write_file("e-labels", false, buf_lb, idx1(buf_lb, 6, 8, 1), lb);
	size_t n = idx3(buf_im, 6, 5, 3, 8, 3);
	write_file("e-images", false, buf_im, n - 1, im);
	expect_fail(im, lb, "truncated", NULL);
	write_file("e-images-hdr", true, buf_im, 10, im);
	expect_fail(im, lb, "truncated", "header");
	idx3(buf_im, 6, 0, 3, 8, 3);
	write_file("e-images-zero", false, buf_im, 16, im);
	expect_fail(im, lb, "dimension 1", NULL);
}

Test(dataset, missing_file_named)
{
	char lb[4200], im[4200];
	write_file("f-labels", false, buf_lb, idx1(buf_lb, 6, 8, 1), lb);
	snprintf(im, sizeof im, "%s/nonexistent-images.gz", dir);
	expect_fail(im, lb, "nonexistent-images.gz", NULL);
}
