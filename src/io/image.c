/* Decoding PNG (libspng) and PGM/PPM into 8-bit gray or RGB (JPEG is in jpeg.c), and converting
 * to a model's input: channel conversion (BT.601 luma) and resizing (area averaging down,
 * bilinear up). Sizes are checked before anything is allocated; what the formats'
 * specifications forbid is refused even where libspng would decode it. */
#include <math.h>
#include <spng.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/image.h"

#define ERR(...) cigt_fail(err, errlen, CIGT_EFORMAT, __VA_ARGS__)

void cigt_image_destroy(struct cigt_image *img)
{
	if (!img)
		return;
	free(img->px);
	memset(img, 0, sizeof *img);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t be16(const uint8_t *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

/* What libspng 0.7 lets through and the PNG specification (ISO/IEC 15948, 3rd ed.) forbids:
 * chunks out of order or repeated, PLTE in a gray image or with more entries than the bit depth
 * can index, tRNS/bKGD/hIST/sBIT sized or valued against the colour type, and bytes after IEND.
 * Walks the chunk list only (libspng checks CRCs and the rest); *nplte gets PLTE's entries. */
static int png_check_chunks(const uint8_t *p, size_t len, unsigned *nplte, char *err,
			    size_t errlen)
{
	size_t pos = 8;
	unsigned ct = 0, depth = 0, seen_idat = 0, idat_ended = 0, n_plte = 0;
	unsigned n_trns = 0, n_bkgd = 0, n_hist = 0, n_sbit = 0;
	*nplte = 0;
	for (int i = 0;; i++) {
		if (len - pos < 12)
			return 0; /* truncated: libspng says so */
		uint32_t n = be32(p + pos);
		const uint8_t *type = p + pos + 4, *d = p + pos + 8;
		char t[5] = {0};
		memcpy(t, type, 4);
		if (n > 0x7fffffffu || len - pos - 12 < n)
			return 0; /* libspng's "invalid chunk length" */
		pos += 12 + (size_t)n;
		if (i == 0 && (strcmp(t, "IHDR") || n != 13))
			return 0; /* libspng's "missing IHDR" */
		if (i == 0) {
			depth = d[8];
			ct = d[9];
			continue;
		}
		if (!strcmp(t, "IHDR"))
			return ERR("PNG: a second IHDR chunk");
		if (!strcmp(t, "IDAT")) {
			if (idat_ended)
				return ERR("PNG: IDAT chunks are not consecutive");
			seen_idat = 1;
			continue;
		}
		idat_ended = seen_idat;
		if (!strcmp(t, "IEND")) {
			if (pos != len)
				return ERR("PNG: %zu bytes after the IEND chunk", len - pos);
			return 0;
		}
		unsigned sample = ct == 3 ? 8 : depth, maxv = depth < 16 ? (1u << depth) - 1 : 65535;
		static const unsigned sbit_len[7] = {1, 0, 3, 3, 2, 0, 4};
		if (!strcmp(t, "PLTE")) {
			if (n_plte++)
				return ERR("PNG: a second PLTE chunk");
			if (seen_idat)
				return ERR("PNG: PLTE after the image data");
			if (ct == 0 || ct == 4)
				return ERR("PNG: PLTE in a grayscale image (colour type %u)", ct);
			if (n % 3 || n == 0 || n / 3 > 256)
				return ERR("PNG: PLTE of %u bytes is not 1..256 RGB entries", n);
			if (ct == 3 && n / 3 > (1u << depth))
				return ERR("PNG: PLTE has %u entries, more than %u-bit indices reach",
					   n / 3, depth);
			*nplte = n / 3;
		} else if (!strcmp(t, "tRNS")) {
			if (n_trns++)
				return ERR("PNG: a second tRNS chunk");
			if (seen_idat)
				return ERR("PNG: tRNS after the image data");
			if (ct == 4 || ct == 6)
				return ERR("PNG: tRNS in an image with an alpha channel (colour type "
					   "%u)", ct);
			if (ct == 3 && !n_plte)
				return ERR("PNG: tRNS before PLTE");
			if (ct == 3 && n > *nplte)
				return ERR("PNG: tRNS has %u entries, more than the %u of PLTE", n,
					   *nplte);
			if (ct != 3 && n != (ct == 0 ? 2u : 6u))
				return ERR("PNG: tRNS of %u bytes for colour type %u (needs %u)", n,
					   ct, ct == 0 ? 2u : 6u);
			for (unsigned k = 0; ct != 3 && k < n; k += 2)
				if (be16(d + k) > maxv)
					return ERR("PNG: tRNS value %u is beyond %u-bit samples",
						   be16(d + k), depth);
		} else if (!strcmp(t, "bKGD")) {
			unsigned need = ct == 3 ? 1 : ct == 0 || ct == 4 ? 2 : 6;
			if (n_bkgd++ || seen_idat || n != need)
				return ERR("PNG: bKGD repeated, after the image data or not %u bytes",
					   need);
			if (ct == 3 && d[0] >= *nplte)
				return ERR("PNG: bKGD palette index %u is beyond the %u entries of "
					   "PLTE", d[0], *nplte);
			for (unsigned k = 0; ct != 3 && k < n; k += 2)
				if (be16(d + k) > maxv)
					return ERR("PNG: bKGD value %u is beyond %u-bit samples",
						   be16(d + k), depth);
		} else if (!strcmp(t, "hIST")) {
			if (n_hist++ || seen_idat || !n_plte || n != 2 * *nplte)
				return ERR("PNG: hIST repeated, after the image data, without PLTE or "
					   "not 2 bytes per PLTE entry");
		} else if (!strcmp(t, "sBIT")) {
			if (n_sbit++ || seen_idat || n_plte || ct > 6 || n != sbit_len[ct])
				return ERR("PNG: sBIT repeated, after PLTE or the image data, or not "
					   "%u bytes", ct > 6 ? 0 : sbit_len[ct]);
			for (unsigned k = 0; k < n; k++)
				if (d[k] == 0 || d[k] > sample)
					return ERR("PNG: sBIT value %u is outside 1..%u", d[k], sample);
		}
	}
}

/* Every pixel of an indexed image must name an entry of PLTE (the specification makes an index
 * beyond it an error; libspng maps it silently). Decodes the raw indices once more. */
static int png_check_indices(const void *buf, size_t len, unsigned nplte, char *err,
			     size_t errlen)
{
	spng_ctx *ctx = spng_ctx_new(0);
	if (!ctx)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	uint8_t *idx = NULL;
	struct spng_ihdr ihdr;
	size_t size;
	int rc = 0, e;
	spng_set_image_limits(ctx, CIGT_IMAGE_MAX_SIDE, CIGT_IMAGE_MAX_SIDE);
	spng_set_chunk_limits(ctx, 1 << 20, 8 << 20);
	if ((e = spng_set_png_buffer(ctx, buf, len)) || (e = spng_get_ihdr(ctx, &ihdr)) ||
	    (e = spng_decoded_image_size(ctx, SPNG_FMT_PNG, &size))) {
		rc = ERR("PNG: %s", spng_strerror(e));
		goto out;
	}
	if (!(idx = malloc(size))) {
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "PNG: out of memory");
		goto out;
	}
	if ((e = spng_decode_image(ctx, idx, size, SPNG_FMT_PNG, 0))) {
		rc = ERR("PNG: %s", spng_strerror(e));
		goto out;
	}
	unsigned d = ihdr.bit_depth, mask = (1u << d) - 1;
	size_t stride = size / ihdr.height;
	for (uint32_t y = 0; y < ihdr.height; y++)
		for (uint32_t x = 0; x < ihdr.width; x++) {
			size_t bit = (size_t)x * d;
			unsigned v = idx[y * stride + bit / 8] >> (8 - d - bit % 8) & mask;
			if (v >= nplte) {
				rc = ERR("PNG: pixel (%u, %u) has palette index %u, beyond the %u "
					 "entries of PLTE", x, y, v, nplte);
				goto out;
			}
		}
out:
	free(idx);
	spng_ctx_free(ctx);
	return rc;
}

int cigt_image_decode_png(const void *buf, size_t len, struct cigt_image *out, char *err,
			  size_t errlen)
{
	memset(out, 0, sizeof *out);
	spng_ctx *ctx = spng_ctx_new(0);
	if (!ctx)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	uint8_t *rgba = NULL;
	int rc = 0, e;
	struct spng_ihdr ihdr;
	size_t size;
	spng_set_crc_action(ctx, SPNG_CRC_ERROR, SPNG_CRC_ERROR);
	spng_set_image_limits(ctx, CIGT_IMAGE_MAX_SIDE, CIGT_IMAGE_MAX_SIDE);
	spng_set_chunk_limits(ctx, 1 << 20, 8 << 20);
	if ((e = spng_set_png_buffer(ctx, buf, len)) || (e = spng_get_ihdr(ctx, &ihdr))) {
		rc = ERR("PNG: %s", spng_strerror(e));
		goto out;
	}
	if ((uint64_t)ihdr.width * ihdr.height > (uint64_t)CIGT_IMAGE_MAX_PIXELS) {
		rc = ERR("PNG: %ux%u is more than %lld pixels", ihdr.width, ihdr.height,
			 (long long)CIGT_IMAGE_MAX_PIXELS);
		goto out;
	}
	unsigned nplte;
	if ((rc = png_check_chunks(buf, len, &nplte, err, errlen)))
		goto out;
	if (ihdr.color_type == SPNG_COLOR_TYPE_INDEXED &&
	    (rc = png_check_indices(buf, len, nplte, err, errlen)))
		goto out;
	if ((e = spng_decoded_image_size(ctx, SPNG_FMT_RGBA8, &size))) {
		rc = ERR("PNG: %s", spng_strerror(e));
		goto out;
	}
	if (!(rgba = malloc(size))) {
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "PNG: out of memory");
		goto out;
	}
	/* decode_chunks reads on past the pixels to IEND, so a file cut after its image data
	 * (missing CRC or IEND) is rejected too. */
	if ((e = spng_decode_image(ctx, rgba, size, SPNG_FMT_RGBA8, SPNG_DECODE_TRNS)) ||
	    (e = spng_decode_chunks(ctx))) {
		rc = ERR("PNG: %s", spng_strerror(e));
		goto out;
	}
	bool gray = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE ||
		    ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
	int c = gray ? 1 : 3;
	size_t npx = (size_t)ihdr.width * ihdr.height;
	uint8_t *px = malloc(npx * (size_t)c);
	if (!px) {
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "PNG: out of memory");
		goto out;
	}
	for (size_t i = 0; i < npx; i++) {
		const uint8_t *s = rgba + 4 * i;
		unsigned a = s[3]; /* composite over black */
		for (int k = 0; k < c; k++)
			px[i * (size_t)c + (size_t)k] = (uint8_t)((s[k] * a + 127) / 255);
	}
	out->w = (int)ihdr.width;
	out->h = (int)ihdr.height;
	out->c = c;
	out->px = px;
out:
	free(rgba);
	spng_ctx_free(ctx);
	return rc;
}

/* PGM header token: skips whitespace and '#' comments, reads an unsigned decimal. */
static int pgm_number(const uint8_t *p, size_t len, size_t *pos, unsigned *val)
{
	size_t i = *pos;
	for (;;) {
		while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r' ||
				   p[i] == '\v' || p[i] == '\f'))
			i++;
		if (i < len && p[i] == '#') {
			while (i < len && p[i] != '\n')
				i++;
			continue;
		}
		break;
	}
	if (i >= len || p[i] < '0' || p[i] > '9')
		return -1;
	unsigned long v = 0;
	while (i < len && p[i] >= '0' && p[i] <= '9') {
		v = v * 10 + (unsigned long)(p[i++] - '0');
		if (v > 1000000)
			return -1;
	}
	*val = (unsigned)v;
	*pos = i;
	return 0;
}

int cigt_image_decode_pgm(const void *buf, size_t len, struct cigt_image *out, char *err,
			  size_t errlen)
{
	const uint8_t *p = buf;
	memset(out, 0, sizeof *out);
	if (len < 2 || p[0] != 'P' || (p[1] != '5' && p[1] != '2' && p[1] != '6' && p[1] != '3'))
		return ERR("PGM: missing P5 or P2 magic (or PPM's P6 or P3)");
	bool ascii = p[1] == '2' || p[1] == '3';
	const int c = p[1] == '6' || p[1] == '3' ? 3 : 1; /* PPM: RGB samples, else as PGM */
	size_t pos = 2;
	unsigned w, h, maxval;
	if (pgm_number(p, len, &pos, &w) || pgm_number(p, len, &pos, &h) ||
	    pgm_number(p, len, &pos, &maxval))
		return ERR("PGM: malformed header");
	if (w < 1 || h < 1 || w > CIGT_IMAGE_MAX_SIDE || h > CIGT_IMAGE_MAX_SIDE)
		return ERR("PGM: %ux%u is outside 1..%d pixels per side", w, h,
			   CIGT_IMAGE_MAX_SIDE);
	if (maxval < 1 || maxval > 65535)
		return ERR("PGM: maxval %u is outside 1..65535", maxval);
	size_t npx = (size_t)w * h * (size_t)c; /* samples */
	if (!ascii) {
		if (pos >= len)
			return ERR("PGM: truncated after the header");
		/* Exactly one whitespace byte ends the header; anything else (a comment, a second
		 * number) would shift the raster by one byte. */
		if (!strchr(" \t\n\r\v\f", p[pos]) || !p[pos])
			return ERR("PGM: byte 0x%02x after maxval %u where one whitespace byte must "
				   "come before the raster", p[pos], maxval);
		pos++;
		size_t bps = maxval < 256 ? 1 : 2;
		if (len - pos < npx * bps)
			return ERR("PGM: truncated raster (%zu of %zu bytes)", len - pos, npx * bps);
	}
	uint8_t *px = malloc(npx);
	if (!px)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "PGM: out of memory");
	for (size_t i = 0; i < npx; i++) {
		unsigned v;
		if (ascii) {
			if (pgm_number(p, len, &pos, &v)) {
				free(px);
				return ERR("PGM: truncated or malformed raster at pixel %zu", i);
			}
		} else if (maxval < 256) {
			v = p[pos + i];
		} else {
			v = (unsigned)p[pos + 2 * i] << 8 | p[pos + 2 * i + 1];
		}
		if (v > maxval) {
			free(px);
			return ERR("PGM: pixel %zu is %u, above maxval %u", i, v, maxval);
		}
		px[i] = (uint8_t)((v * 255u + maxval / 2) / maxval);
	}
	out->w = (int)w;
	out->h = (int)h;
	out->c = c;
	out->px = px;
	return 0;
}

int cigt_image_decode(const void *buf, size_t len, struct cigt_image *out, char *err,
		      size_t errlen)
{
	static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	const uint8_t *p = buf;
	if (len >= 8 && memcmp(p, png_sig, 8) == 0)
		return cigt_image_decode_png(buf, len, out, err, errlen);
	if (len >= 2 && p[0] == 'P' && (p[1] == '5' || p[1] == '2' || p[1] == '6' || p[1] == '3'))
		return cigt_image_decode_pgm(buf, len, out, err, errlen);
	if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return cigt_image_decode_jpeg(buf, len, out, err, errlen);
	memset(out, 0, sizeof *out);
	return ERR("not a PNG, JPEG, PGM or PPM image");
}

/* One channel of the converted source at (x, y). */
static float sample(const struct cigt_image *img, int x, int y, int ch, int channels)
{
	const uint8_t *p = img->px + ((size_t)y * img->w + x) * img->c;
	if (img->c == channels)
		return p[ch];
	if (channels == 1) /* RGB to luma */
		return 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
	return p[0]; /* gray to RGB */
}

void cigt_image_to_input(const struct cigt_image *img, int channels, int w, int h, uint8_t *dst)
{
	const double sx = (double)img->w / w, sy = (double)img->h / h;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int ch = 0; ch < channels; ch++) {
				double v = 0;
				if (sx >= 1.0 && sy >= 1.0) {
					/* Area average over the source rectangle this pixel covers. */
					double x0 = x * sx, x1 = x0 + sx, y0 = y * sy, y1 = y0 + sy;
					double area = 0;
					for (int yy = (int)y0; yy < (int)ceil(y1) && yy < img->h; yy++) {
						double wy = fmin(yy + 1, y1) - fmax(yy, y0);
						for (int xx = (int)x0; xx < (int)ceil(x1) && xx < img->w;
						     xx++) {
							double wx = fmin(xx + 1, x1) - fmax(xx, x0);
							v += wx * wy * sample(img, xx, yy, ch, channels);
							area += wx * wy;
						}
					}
					v /= area;
				} else {
					/* Bilinear, pixel centres aligned (align_corners = false). */
					double fx = fmin(fmax((x + 0.5) * sx - 0.5, 0), img->w - 1);
					double fy = fmin(fmax((y + 0.5) * sy - 0.5, 0), img->h - 1);
					int x0 = (int)fx, y0 = (int)fy;
					int x1 = x0 + 1 < img->w ? x0 + 1 : x0;
					int y1 = y0 + 1 < img->h ? y0 + 1 : y0;
					double ax = fx - x0, ay = fy - y0;
					v = (1 - ay) * ((1 - ax) * sample(img, x0, y0, ch, channels) +
							ax * sample(img, x1, y0, ch, channels)) +
					    ay * ((1 - ax) * sample(img, x0, y1, ch, channels) +
						  ax * sample(img, x1, y1, ch, channels));
				}
				long r = lround(v);
				dst[((size_t)y * w + x) * channels + ch] =
					(uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
			}
}

int cigt_image_encode_png(const uint8_t *px, int w, int h, int c, void **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	if ((c != 1 && c != 3) || w < 1 || h < 1)
		return CIGT_EINVAL;
	spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
	if (!ctx)
		return CIGT_ENOMEM;
	spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
	struct spng_ihdr ihdr = {
		.width = (uint32_t)w, .height = (uint32_t)h, .bit_depth = 8,
		.color_type = c == 1 ? SPNG_COLOR_TYPE_GRAYSCALE : SPNG_COLOR_TYPE_TRUECOLOR,
	};
	spng_set_ihdr(ctx, &ihdr);
	int e = spng_encode_image(ctx, px, (size_t)w * h * c, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
	int rc = 0;
	if (e) {
		rc = CIGT_EFORMAT;
	} else {
		*buf = spng_get_png_buffer(ctx, len, &e);
		if (!*buf)
			rc = CIGT_ENOMEM;
	}
	spng_ctx_free(ctx);
	return rc;
}
