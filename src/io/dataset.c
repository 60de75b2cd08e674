/* IDX dataset files (the MNIST family), plain or gzip'd; zlib's gzread handles both. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cigt/dataset.h"
#include "cigt/error.h"

#define MAX_ITEMS 10000000

static int read_exact(gzFile f, void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n > 0) {
		unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
		int r = gzread(f, p, chunk);
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads an IDX file of unsigned bytes with `ndim` dimensions; dims[] receives them. */
static int read_idx(const char *path, int ndim, uint32_t *dims, uint8_t **data, char *err,
		    size_t errlen)
{
	*data = NULL;
	gzFile f = gzopen(path, "rb");
	if (!f)
		return cigt_fail(err, errlen, CIGT_EIO, "%s: %s", path,
				 errno ? strerror(errno) : "cannot open");
	uint8_t hdr[4 + 4 * 3];
	int rc = 0;
	if (read_exact(f, hdr, 4 + 4 * (size_t)ndim)) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT, "%s: truncated IDX header", path);
		goto out;
	}
	if (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] != ndim) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT,
			       "%s: not an IDX file of %d-D unsigned bytes (magic %02x%02x%02x%02x)",
			       path, ndim, hdr[0], hdr[1], hdr[2], hdr[3]);
		goto out;
	}
	uint64_t total = 1;
	for (int i = 0; i < ndim; i++) {
		dims[i] = be32(hdr + 4 + 4 * i);
		if (dims[i] == 0 || dims[i] > (i == 0 ? MAX_ITEMS : 4096u)) {
			rc = cigt_fail(err, errlen, CIGT_EFORMAT, "%s: dimension %d is %u", path,
				       i, dims[i]);
			goto out;
		}
		total *= dims[i];
	}
	if (total > ((uint64_t)1 << 34)) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT, "%s: too large", path);
		goto out;
	}
	if (!(*data = malloc((size_t)total))) {
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	if (read_exact(f, *data, (size_t)total)) {
		free(*data);
		*data = NULL;
		rc = cigt_fail(err, errlen, CIGT_EFORMAT, "%s: truncated (expected %llu data bytes)",
			       path, (unsigned long long)total);
	}
out:
	gzclose(f);
	return rc;
}

int cigt_dataset_load_idx(const char *images, const char *labels, struct cigt_dataset *out,
			  char *err, size_t errlen)
{
	uint32_t di[3] = {0}, dl[1] = {0};
	uint8_t *px, *lb;
	memset(out, 0, sizeof *out);
	int rc = read_idx(images, 3, di, &px, err, errlen);
	if (rc)
		return rc;
	if ((rc = read_idx(labels, 1, dl, &lb, err, errlen))) {
		free(px);
		return rc;
	}
	if (dl[0] != di[0]) {
		free(px);
		free(lb);
		return cigt_fail(err, errlen, CIGT_EFORMAT, "%s has %u images but %s has %u labels",
				 images, di[0], labels, dl[0]);
	}
	out->n = (int)di[0];
	out->h = (int)di[1];
	out->w = (int)di[2];
	out->c = 1;
	out->px = px;
	out->labels = lb;
	return 0;
}

int cigt_dataset_load_dir(const char *dir, const char *prefix, struct cigt_dataset *out,
			  char *err, size_t errlen)
{
	char im[4096], lb[4096];
	snprintf(im, sizeof im, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
	snprintf(lb, sizeof lb, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
	return cigt_dataset_load_idx(im, lb, out, err, errlen);
}

void cigt_dataset_destroy(struct cigt_dataset *d)
{
	if (!d)
		return;
	free(d->px);
	free(d->labels);
	for (int k = 0; k < d->nclasses; k++)
		free(d->classes[k]);
	free(d->classes);
	memset(d, 0, sizeof *d);
}

int cigt_dataset_input_stats(const struct cigt_dataset *d, int n, double *mean, double *std)
{
	if (n < 1 || n > d->n)
		return CIGT_EINVAL;
	const int C = d->c;
	const size_t npx = (size_t)n * d->h * d->w;
	for (int c = 0; c < C; c++) {
		/* Exact integer sums: no rounding drift over millions of pixels. */
		uint64_t s1 = 0, s2 = 0;
		for (size_t i = 0; i < npx; i++) {
			uint64_t p = d->px[i * (size_t)C + (size_t)c];
			s1 += p;
			s2 += p * p;
		}
		double m = (double)s1 / (double)npx;
		double var = (double)s2 / (double)npx - m * m;
		mean[c] = m / 255.0;
		std[c] = sqrt(var > 0 ? var : 0) / 255.0;
	}
	return 0;
}
