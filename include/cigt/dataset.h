/* Labelled image datasets in the IDX format (MNIST, Fashion-MNIST), gzip'd or plain, read with
 * zlib. Images are kept as 8-bit pixels (HWC, one channel for IDX3). */
#ifndef CIGT_DATASET_H
#define CIGT_DATASET_H

#include <stddef.h>
#include <stdint.h>

#define CIGT_DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"

struct cigt_dataset {
	int n;        /* samples */
	int h, w, c;  /* geometry of one image */
	uint8_t *px;  /* n * h * w * c */
	uint8_t *labels; /* n */
};

/* Reads an IDX3 image file and an IDX1 label file (".gz" or plain). Checks magic numbers,
 * dimensions and sizes; counts must agree. */
int cigt_dataset_load_idx(const char *images, const char *labels, struct cigt_dataset *out,
			  char *err, size_t errlen);
/* Reads "{prefix}-images-idx3-ubyte.gz" and "{prefix}-labels-idx1-ubyte.gz" from dir, where
 * prefix is "train" or "t10k". */
int cigt_dataset_load_dir(const char *dir, const char *prefix, struct cigt_dataset *out,
			  char *err, size_t errlen);
void cigt_dataset_destroy(struct cigt_dataset *d);

#endif
