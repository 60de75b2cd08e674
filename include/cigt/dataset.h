/* Labelled image datasets: the IDX format (MNIST, Fashion-MNIST), gzip'd or plain, read with
 * zlib, and image folders (ROOT/<class>/<image>.png or .jpg, torchvision's ImageFolder
 * layout). Images are kept as 8-bit pixels (HWC; one channel for IDX3, the model's geometry for
 * folders). */
#ifndef CIGT_DATASET_H
#define CIGT_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CIGT_DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"

struct cigt_dataset {
	int n;        /* samples */
	int h, w, c;  /* geometry of one image */
	uint8_t *px;  /* n * h * w * c */
	uint8_t *labels; /* n */
	char **classes;  /* image folders: nclasses folder names, labels index them; IDX: NULL */
	int nclasses;
	int skipped;     /* image folders: files that could not be read or decoded */
};

/* Default bound on a folder dataset held as float32 (cigt train/eval --cache-mb). */
#define CIGT_DATASET_CACHE_DEFAULT ((size_t)2048 << 20)

struct cigt_folder_opts {
	int channels, height, width; /* every image is converted and resized to this */
	size_t max_bytes;            /* refuse when n * C * H * W * 4 bytes would exceed it */
	FILE *log;                   /* progress lines and skipped files, or NULL */
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

/* Reads an image folder: dir/<class>/... (nested folders allowed, names starting with '.'
 * ignored), classes in byte order of their folder names. Files ending in .png, .jpg, .jpeg, .pgm
 * or .ppm (any case) are decoded, converted to o's channels (gray replicated, colour to BT.601
 * luma) and resized to o's width x height (cigt_image_to_input); other files are ignored and
 * counted on o->log. An unreadable image is reported on o->log with its path and skipped. The
 * samples come in a fixed pseudo-random order (the same on every run). Fails naming the folder
 * when there are no or only one class folder, more than 256, a class folder without images, or
 * when the images would not fit o->max_bytes. */
int cigt_dataset_load_folder(const char *dir, const struct cigt_folder_opts *o,
			     struct cigt_dataset *out, char *err, size_t errlen);
/* Opens split "train" or "test" of root, whichever kind it is: an IDX directory
 * ({train,t10k}-images-idx3-ubyte.gz ...; images at the file's own geometry), or an image
 * folder: root/train and root/test (or root/val) when root/train exists, else root itself
 * for either split. */
int cigt_dataset_open(const char *root, const char *split, const struct cigt_folder_opts *o,
		      struct cigt_dataset *out, char *err, size_t errlen);
/* Relabels a folder dataset to the model's class order by name (a no-op for IDX). Fails naming
 * `where` when a folder is not one of the classes or, with require_all, when a class has no
 * folder. */
int cigt_dataset_map_classes(struct cigt_dataset *d, const char *const *classes, int nclasses,
			     bool require_all, const char *where, char *err, size_t errlen);
/* The mean and (population) standard deviation of pixel / 255 per channel over the first n
 * images (torchvision's Normalize values). Returns CIGT_EINVAL when n < 1. */
int cigt_dataset_input_stats(const struct cigt_dataset *d, int n, double *mean, double *std);
/* Whether a file name has one of the image extensions a folder dataset reads. */
bool cigt_dataset_is_image_name(const char *name);

#endif
