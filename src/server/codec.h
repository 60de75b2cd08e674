/* What the two request codecs (codec_v1.c: native /v1/classify, codec_v2.c: Open Inference
 * Protocol v2) share from codec.c: media types, images, JSON pixels, the plain-JSON scanner and
 * float printing. Internal to the codecs; every function is pure (fuzz targets). */
#ifndef CIGT_SRV_CODEC_H
#define CIGT_SRV_CODEC_H

#include <jansson.h>

#include "srv.h"

/* Writes a message into err and yields the HTTP status (err and errlen must be in scope). */
#define FAIL(status, ...) (snprintf(err, errlen, __VA_ARGS__), (status))

/* Compares the media type of a Content-Type header (before any ';', case-insensitive). */
bool srv_media_is(const char *ctype, const char *type);
/* Encoded image bytes (PNG, JPEG, PGM, PPM) -> one sample of model input; 200 or a status. */
int srv_image_sample(const struct cigt_arch *a, const struct srv_limits *lim, const void *buf,
		     size_t len, float *dst, const char *where, char *err, size_t errlen);
/* A JSON pixel: an integer 0..255. */
bool srv_json_pixel(const json_t *v, uint8_t *out);
/* A short description of a JSON value for messages. */
void srv_json_describe(const json_t *v, char *buf, size_t n);
/* One image given as a JSON pixel array (flat, [H][W] or [H][W][C]); 200 or 400. */
int srv_json_image(const struct cigt_arch *a, const json_t *arr, float *dst, const char *where,
		   char *err, size_t errlen);
/* One v1 image: a pixel array or {"png": "<base64>"}; 200 or a status. */
int srv_v1_image(const struct cigt_arch *a, const struct srv_limits *lim, const json_t *v,
		 float *dst, const char *where, char *err, size_t errlen);
/* An OIP input tensor's shape (JSON or gRPC): the product of rank dimensions (each >= 0, no
 * overflow) into *total, then [N, C, H, W] (or [N, H, W] for one channel) of the model's input
 * with 1 <= N <= lim->max_images; 200, 400 or 413, the messages naming inputs[0].shape. */
int srv_oip_shape(const struct cigt_arch *a, const struct srv_limits *lim, const int64_t *dims,
		  size_t rank, int64_t *total, char *err, size_t errlen);
/* job->x for n samples; 200 or 500. */
int srv_alloc_samples(const struct cigt_arch *a, struct srv_job *job, int n, char *err,
		      size_t errlen);
/* jansson with duplicate keys refused; 200 or 400 naming line and column. */
int srv_parse_json(const void *body, size_t len, json_t **root, char *err, size_t errlen);

/* The plain-JSON scanner of the fast paths: accepts only well-formed simple input. */
struct srv_scan {
	const char *p, *end;
};
void srv_scan_ws(struct srv_scan *s);
bool srv_scan_ch(struct srv_scan *s, char c);
/* A JSON integer without sign, fraction or exponent, at most max (< 10^8). */
bool srv_scan_uint(struct srv_scan *s, long max, long *out);
/* A flat array of exactly total integers 0..255. */
bool srv_scan_pixels(struct srv_scan *s, uint8_t *px, size_t total);

/* A float as %.9g (round-trips). */
void srv_put_float(struct srv_buf *b, float f);

/* Parses the dial keys of a request: compute (a point name: a string of 1..31 of
 * [A-Za-z0-9_.-]) or max_macs (an integer >= 1), where names where they came from ("" for v1's
 * body, "parameters." for v2's). 200 or 400 naming the problem. */
int srv_parse_dial_key(const char *key, const json_t *v, const char *where, struct srv_job *job,
		       char *err, size_t errlen);
/* After all keys: refuses compute and max_macs together (400). */
int srv_check_dial(const struct srv_job *job, char *err, size_t errlen);
/* Path r of the trellis as its route (mixed radix, route[0] most significant). */
void srv_path_route(const struct cigt_arch *a, int r, int *route);
/* Number of paths of the trellis (product of the layers' experts). */
int srv_arch_paths(const struct cigt_arch *a);

#endif
