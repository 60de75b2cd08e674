/* Image decoding for classification inputs: PNG (libspng), JPEG (libjpeg-turbo), PGM (P2/P5) and
 * PPM (P3/P6), any bit depth,
 * grayscale or colour, converted to the model's channel count and resized to its input size.
 * Every limit is checked before allocation; decoders are pure functions of a byte buffer. */
#ifndef CIGT_IMAGE_H
#define CIGT_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define CIGT_IMAGE_MAX_SIDE 4096
#define CIGT_IMAGE_MAX_PIXELS (4096L * 4096L)

/* 8-bit image, interleaved channels (1 = gray, 3 = RGB). */
struct cigt_image {
	int w, h, c;
	uint8_t *px;
};

/* Decodes a PNG, JPEG, PGM or PPM by its magic bytes into gray (c = 1) or RGB (c = 3). Alpha is composited
 * over black. 16-bit samples are reduced to 8. Fails with a message on anything malformed,
 * truncated, or larger than CIGT_IMAGE_MAX_SIDE per side. */
int cigt_image_decode(const void *buf, size_t len, struct cigt_image *out, char *err,
		      size_t errlen);
int cigt_image_decode_png(const void *buf, size_t len, struct cigt_image *out, char *err,
			  size_t errlen);
/* The width and height in a JPEG's first frame header, found by walking the marker segments
 * from SOI by their lengths (ITU T.81 B.1.1). What this walk refuses (a segment length below 2,
 * bytes between segments, scan data or EOI before a frame header) the decoder refuses too, so
 * that a size read here is the decoded size. 0, or CIGT_EFORMAT with a message (err may be
 * NULL). */
int cigt_jpeg_frame_size(const void *buf, size_t len, int *w, int *h, char *err, size_t errlen);
/* JPEG (baseline or progressive, gray or YCbCr/RGB; CMYK refused). libjpeg's errors and its
 * corrupt-data warnings fail with "JPEG: <libjpeg's message>"; never exits or crashes. */
int cigt_image_decode_jpeg(const void *buf, size_t len, struct cigt_image *out, char *err,
			   size_t errlen);
/* PGM (P5/P2, c = 1) and PPM (P6/P3, c = 3). */
int cigt_image_decode_pgm(const void *buf, size_t len, struct cigt_image *out, char *err,
			  size_t errlen);
void cigt_image_destroy(struct cigt_image *img);

/* Converts to `channels` (1: ITU-R BT.601 luma; 3: gray replicated) and resizes to w x h (area
 * averaging when shrinking, bilinear when enlarging), writing h*w*channels bytes to dst (HWC). */
void cigt_image_to_input(const struct cigt_image *img, int channels, int w, int h, uint8_t *dst);

/* Encodes 8-bit gray or RGB pixels as PNG (malloc'd buffer). */
int cigt_image_encode_png(const uint8_t *px, int w, int h, int c, void **buf, size_t *len);

#endif
