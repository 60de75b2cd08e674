/* Image decoding and conversion (src/io/image.c): PGM P5/P2 at 8 and 16 bits, PNG gray/RGB
 * round trips through the encoder, RGBA and gray+alpha and 16-bit PNGs built here by hand (with
 * zlib), malformed inputs rejected with messages, what the PNG and Netpbm specifications forbid
 * and libspng lets through (issue 16), and resizing: exact area averages when
 * shrinking, bilinear enlarging that keeps constants constant and matches a hand-computed ramp. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cigt/image.h"
#include "helpers.h"

struct buf {
	uint8_t *p;
	size_t len;
};

/* ------------------------------------------------------------------ a minimal PNG writer */

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static size_t put_chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t len)
{
	be32(out, len);
	memcpy(out + 4, type, 4);
	if (len)
		memcpy(out + 8, data, len);
	uLong crc = crc32(0, out + 4, 4 + len);
	be32(out + 8 + len, (uint32_t)crc);
	return 12 + len;
}

/* A PNG of one IDAT: rows of rowbytes raw bytes each, filter 0. */
static struct buf make_png(uint32_t w, uint32_t h, int depth, int ctype, const uint8_t *raw,
			   size_t rowbytes)
{
	size_t rawlen = h * (rowbytes + 1);
	uint8_t *filt = th_calloc(rawlen, 1);
	for (uint32_t y = 0; y < h; y++)
		memcpy(filt + y * (rowbytes + 1) + 1, raw + y * rowbytes, rowbytes);
	uLongf zlen = compressBound(rawlen);
	uint8_t *z = th_calloc(zlen, 1);
	cr_assert_eq(compress2(z, &zlen, filt, rawlen, 9), Z_OK);
	struct buf o = {th_calloc(8 + 25 + 12 + zlen + 12, 1), 0};
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	memcpy(o.p, sig, 8);
	o.len = 8;
	uint8_t ihdr[13] = {0};
	be32(ihdr, w);
	be32(ihdr + 4, h);
	ihdr[8] = (uint8_t)depth;
	ihdr[9] = (uint8_t)ctype;
	o.len += put_chunk(o.p + o.len, "IHDR", ihdr, 13);
	o.len += put_chunk(o.p + o.len, "IDAT", z, (uint32_t)zlen);
	o.len += put_chunk(o.p + o.len, "IEND", NULL, 0);
	free(filt), free(z);
	return o;
}

/* ------------------------------------------------------------------ helpers */

static struct cigt_image decode_ok(const void *p, size_t len)
{
	struct cigt_image img;
	char err[256] = "";
	int rc = cigt_image_decode(p, len, &img, err, sizeof err);
	cr_assert_eq(rc, 0, "decode failed: %s", err);
	cr_assert_not_null(img.px);
	return img;
}

static void decode_fails(const void *p, size_t len, const char *w1, const char *w2)
{
	struct cigt_image img;
	char err[256] = "";
	int rc = cigt_image_decode(p, len, &img, err, sizeof err);
	cr_assert_neq(rc, 0, "malformed image decoded (expected a message with '%s')", w1);
	cr_assert_null(img.px);
	cr_assert(strstr(err, w1), "message '%s' does not mention '%s'", err, w1);
	if (w2)
		cr_assert(strstr(err, w2), "message '%s' does not mention '%s'", err, w2);
}

static void decode_text_fails(const char *s, const char *w1, const char *w2)
{
	decode_fails(s, strlen(s), w1, w2);
}

/* round(v * 255 / maxval), the exact rescaling a reader should do. */
static uint8_t scale8(unsigned v, unsigned maxval)
{
	return (uint8_t)lround(v * 255.0 / maxval);
}

/* ------------------------------------------------------------------ PGM */

Test(pgm, p5_8bit_with_comment)
{
	const char hdr[] = "P5\n# made by hand\n3 2\n255\n";
	uint8_t f[sizeof hdr - 1 + 6];
	memcpy(f, hdr, sizeof hdr - 1);
	const uint8_t px[6] = {0, 1, 127, 128, 254, 255};
	memcpy(f + sizeof hdr - 1, px, 6);
	struct cigt_image img = decode_ok(f, sizeof f);
	cr_assert_eq(img.w, 3);
	cr_assert_eq(img.h, 2);
	cr_assert_eq(img.c, 1);
	cr_assert_arr_eq(img.px, px, 6);
	cigt_image_destroy(&img);
}

Test(pgm, p5_8bit_small_maxval_rescaled)
{
	const char hdr[] = "P5 4 1 7\n";
	uint8_t f[sizeof hdr - 1 + 4];
	memcpy(f, hdr, sizeof hdr - 1);
	const uint8_t v[4] = {0, 3, 4, 7};
	memcpy(f + sizeof hdr - 1, v, 4);
	struct cigt_image img = decode_ok(f, sizeof f);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(img.px[i], scale8(v[i], 7), "pixel %d: %d", i, img.px[i]);
	cigt_image_destroy(&img);
}

Test(pgm, p5_16bit_big_endian)
{
	const char hdr[] = "P5\n2 3\n65535\n";
	const unsigned v[6] = {0, 65535, 32768, 257, 1000, 65000};
	uint8_t f[sizeof hdr - 1 + 12];
	memcpy(f, hdr, sizeof hdr - 1);
	for (int i = 0; i < 6; i++) {
		f[sizeof hdr - 1 + 2 * i] = (uint8_t)(v[i] >> 8);
		f[sizeof hdr - 1 + 2 * i + 1] = (uint8_t)v[i];
	}
	struct cigt_image img = decode_ok(f, sizeof f);
	cr_assert_eq(img.w, 2);
	cr_assert_eq(img.h, 3);
	const uint8_t want[6] = {0, 255, 128, 1, 4, 253};
	for (int i = 0; i < 6; i++) {
		cr_assert_eq(want[i], scale8(v[i], 65535));
		cr_assert_eq(img.px[i], want[i], "pixel %d: %d, expected %d", i, img.px[i],
			     want[i]);
	}
	cigt_image_destroy(&img);
}

Test(pgm, p5_16bit_maxval_1000)
{
	const char hdr[] = "P5 3 1 1000 ";
	const unsigned v[3] = {0, 500, 1000};
	uint8_t f[sizeof hdr - 1 + 6];
	memcpy(f, hdr, sizeof hdr - 1);
	for (int i = 0; i < 3; i++) {
		f[sizeof hdr - 1 + 2 * i] = (uint8_t)(v[i] >> 8);
		f[sizeof hdr - 1 + 2 * i + 1] = (uint8_t)v[i];
	}
	struct cigt_image img = decode_ok(f, sizeof f);
	cr_assert_eq(img.px[0], 0);
	cr_assert_eq(img.px[1], 128); /* 127.5 rounds up */
	cr_assert_eq(img.px[2], 255);
	cigt_image_destroy(&img);
}

Test(pgm, p2_ascii_8bit_maxval_15)
{
	const char *s = "P2\n# ascii\n4 4 # trailing comment\n15\n"
			"0 1 2 3\n4 5 6 7\n8 9 10 11\n# mid-raster comment\n12 13 14 15\n";
	struct cigt_image img = decode_ok(s, strlen(s));
	cr_assert_eq(img.w, 4);
	cr_assert_eq(img.h, 4);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(img.px[i], 17 * i, "pixel %d: %d", i, img.px[i]);
	cigt_image_destroy(&img);
}

Test(pgm, p2_ascii_16bit)
{
	const char *s = "P2 3 1 4095 0 4095 2048";
	struct cigt_image img = decode_ok(s, strlen(s));
	cr_assert_eq(img.px[0], 0);
	cr_assert_eq(img.px[1], 255);
	cr_assert_eq(img.px[2], scale8(2048, 4095));
	cigt_image_destroy(&img);
}

Test(pgm, malformed_rejected_with_messages)
{
	decode_text_fails("P7\n1 1\n255\nxxx", "not a PNG, JPEG, PGM or PPM", NULL);
	decode_text_fails("GIF89a", "not a PNG, JPEG, PGM or PPM", NULL);
	decode_text_fails("", "not a PNG, JPEG, PGM or PPM", NULL);
	decode_text_fails("P5\n3 2\n", "PGM", "header");
	decode_text_fails("P5 3 x 255\n", "PGM", "header");
	decode_text_fails("P5\n3 2\n255\nabc", "PGM", "truncated");
	decode_text_fails("P5\n3 2\n255", "PGM", "truncated");
	decode_text_fails("P5\n2 1\n65535\n\x01\x02\x03", "PGM", "truncated");
	decode_text_fails("P5\n0 2\n255\n", "PGM", "outside");
	decode_text_fails("P5\n5000 1\n255\n", "PGM", "outside");
	decode_text_fails("P5\n1 1\n0\n\x00", "PGM", "maxval");
	decode_text_fails("P5\n1 1\n70000\n\x00\x00", "PGM", "maxval");
	decode_text_fails("P2 2 1 10 3 11", "PGM", "above maxval");
	decode_text_fails("P2 2 2 10 3 4 5", "PGM", "raster");
	decode_text_fails("P2 2 1 10 3 x", "PGM", "raster");
	decode_text_fails("P5\n99999999999 1\n255\n", "PGM", NULL);
	/* Through the PGM decoder directly. */
	struct cigt_image img;
	char err[256] = "";
	cr_assert_neq(cigt_image_decode_pgm("P4 1 1 255 0", 12, &img, err, sizeof err), 0);
	cr_assert(strstr(err, "P5"), "message '%s'", err);
}

/* ------------------------------------------------------------------ PNG */

static void png_round_trip(int w, int h, int c, uint64_t seed)
{
	size_t n = (size_t)w * h * c;
	uint8_t *px = th_calloc(n, 1);
	struct th_rng g = {seed};
	for (size_t i = 0; i < n; i++)
		px[i] = (uint8_t)th_next(&g);
	void *png;
	size_t len;
	cr_assert_eq(cigt_image_encode_png(px, w, h, c, &png, &len), 0);
	cr_assert_gt(len, 8);
	struct cigt_image img = decode_ok(png, len);
	cr_assert_eq(img.w, w);
	cr_assert_eq(img.h, h);
	cr_assert_eq(img.c, c);
	cr_assert_arr_eq(img.px, px, n);
	cigt_image_destroy(&img);
	cr_assert_null(img.px);
	free(png), free(px);
}

Test(png, gray_round_trip)
{
	png_round_trip(7, 5, 1, 1);
}

Test(png, rgb_round_trip)
{
	png_round_trip(6, 3, 3, 2);
}

Test(png, one_pixel_round_trip)
{
	png_round_trip(1, 1, 1, 3);
	png_round_trip(1, 1, 3, 4);
}

Test(png, encoder_rejects_bad_arguments)
{
	uint8_t px[8] = {0};
	void *p = (void *)px;
	size_t len = 5;
	cr_assert_neq(cigt_image_encode_png(px, 2, 2, 2, &p, &len), 0);
	cr_assert_null(p);
	cr_assert_neq(cigt_image_encode_png(px, 0, 2, 1, &p, &len), 0);
}

Test(png, rgba_composited_over_black)
{
	const uint8_t raw[3 * 4] = {200, 100, 50, 128, 255, 255, 255, 0, 10, 20, 30, 255};
	struct buf b = make_png(3, 1, 8, 6, raw, 12);
	struct cigt_image img = decode_ok(b.p, b.len);
	cr_assert_eq(img.c, 3);
	cr_assert_eq(img.w, 3);
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++) {
			int want = (int)lround(raw[4 * i + k] * raw[4 * i + 3] / 255.0);
			cr_assert_eq(img.px[3 * i + k], want, "pixel %d channel %d: %d, expected %d", i,
				     k, img.px[3 * i + k], want);
		}
	cigt_image_destroy(&img);
	free(b.p);
}

Test(png, gray_alpha_is_gray)
{
	const uint8_t raw[2 * 2] = {200, 255, 200, 64};
	struct buf b = make_png(2, 1, 8, 4, raw, 4);
	struct cigt_image img = decode_ok(b.p, b.len);
	cr_assert_eq(img.c, 1);
	cr_assert_eq(img.px[0], 200);
	cr_assert_eq(img.px[1], (int)lround(200 * 64 / 255.0));
	cigt_image_destroy(&img);
	free(b.p);
}

Test(png, gray_16bit_reduced_to_8)
{
	/* Values where every sensible 16-to-8 reduction agrees: 0, 0xffff, 0x8080, 0x1010. */
	const uint8_t raw[4 * 2] = {0, 0, 0xff, 0xff, 0x80, 0x80, 0x10, 0x10};
	struct buf b = make_png(2, 2, 16, 0, raw, 4);
	struct cigt_image img = decode_ok(b.p, b.len);
	cr_assert_eq(img.c, 1);
	const uint8_t want[4] = {0, 255, 128, 16};
	cr_assert_arr_eq(img.px, want, 4);
	cigt_image_destroy(&img);
	free(b.p);
}

Test(png, malformed_rejected_with_messages)
{
	uint8_t px[64];
	for (int i = 0; i < 64; i++)
		px[i] = (uint8_t)(i * 3);
	void *png;
	size_t len;
	cr_assert_eq(cigt_image_encode_png(px, 8, 8, 1, &png, &len), 0);
	uint8_t *p = png;
	/* Truncated before the pixel data is complete: after the signature, inside IHDR, at the
	 * start of IDAT, inside the compressed stream. (Truncations after it: see below.) */
	const size_t cuts[] = {8, 12, 20, 33, 40, len / 2, len - 17};
	for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
		decode_fails(p, cuts[i], "PNG", NULL);
	/* Bad CRC on IHDR. */
	uint8_t *bad = th_calloc(len, 1);
	memcpy(bad, p, len);
	bad[8 + 8 + 5] ^= 0x01; /* a byte of the IHDR width field */
	decode_fails(bad, len, "PNG", NULL);
	/* Corrupt compressed data (and a recomputed CRC, so only zlib can notice). */
	const uint8_t raw[4] = {1, 2, 3, 4};
	struct buf b = make_png(2, 2, 8, 0, raw, 2);
	size_t idat = 8 + 25;
	uint32_t zl = (uint32_t)b.p[idat] << 24 | (uint32_t)b.p[idat + 1] << 16 |
		      (uint32_t)b.p[idat + 2] << 8 | b.p[idat + 3];
	memset(b.p + idat + 8, 0xff, zl);
	be32(b.p + idat + 8 + zl, (uint32_t)crc32(0, b.p + idat + 4, 4 + zl));
	decode_fails(b.p, b.len, "PNG", NULL);
	/* Zero width, and a width over the limit. */
	struct buf z = make_png(0, 1, 8, 0, raw, 1);
	decode_fails(z.p, z.len, "PNG", NULL);
	uint8_t *wide = th_calloc(5000, 1);
	struct buf big = make_png(5000, 1, 8, 0, wide, 5000);
	free(wide);
	decode_fails(big.p, big.len, "PNG", NULL);
	/* Bad bit depth for gray+alpha. */
	struct buf d = make_png(1, 1, 4, 4, raw, 1);
	decode_fails(d.p, d.len, "PNG", NULL);
	free(png), free(bad), free(b.p), free(z.p), free(big.p), free(d.p);
}

/* A PNG truncated after its pixel data (the last IDAT's CRC cut off, or IEND missing) must fail
 * like any truncated input: the decoder reads on to IEND after the pixels. */
Test(png, truncated_after_pixel_data_rejected)
{
	uint8_t px[64];
	for (int i = 0; i < 64; i++)
		px[i] = (uint8_t)(i * 3);
	void *png;
	size_t len;
	cr_assert_eq(cigt_image_encode_png(px, 8, 8, 1, &png, &len), 0);
	/* The file ends with IDAT's CRC (4 bytes) and IEND (12 bytes). */
	decode_fails(png, len - 12, "PNG", NULL); /* no IEND */
	decode_fails(png, len - 14, "PNG", NULL); /* last IDAT CRC cut in half */
	free(png);
}

/* ------------------------------------------------------------------ what the PNG spec forbids */

/* A PNG of one IDAT (filter 0 rows) with up to two extra chunks before it and `tail` raw bytes
 * after IEND. */
static struct buf make_png_with(uint32_t w, uint32_t h, int depth, int ctype, const uint8_t *raw,
				size_t rowbytes, const char *t1, const uint8_t *d1, uint32_t l1,
				const char *t2, const uint8_t *d2, uint32_t l2, const char *tail)
{
	struct buf plain = make_png(w, h, depth, ctype, raw, rowbytes);
	size_t extra = (t1 ? 12 + l1 : 0) + (t2 ? 12 + l2 : 0), tl = tail ? strlen(tail) : 0;
	struct buf o = {th_calloc(plain.len + extra + tl, 1), 0};
	memcpy(o.p, plain.p, 33); /* signature and IHDR */
	o.len = 33;
	if (t1)
		o.len += put_chunk(o.p + o.len, t1, d1, l1);
	if (t2)
		o.len += put_chunk(o.p + o.len, t2, d2, l2);
	memcpy(o.p + o.len, plain.p + 33, plain.len - 33);
	o.len += plain.len - 33;
	memcpy(o.p + o.len, tail ? tail : "", tl);
	o.len += tl;
	free(plain.p);
	return o;
}

static const uint8_t pal2[6] = {10, 20, 30, 200, 100, 50};

Test(png_spec, indexed_decodes_through_the_palette)
{
	const uint8_t raw[2] = {1, 0};
	struct buf b = make_png_with(2, 1, 8, 3, raw, 2, "PLTE", pal2, 6, NULL, NULL, 0, NULL);
	struct cigt_image img = decode_ok(b.p, b.len);
	cr_assert_eq(img.c, 3);
	const uint8_t want[6] = {200, 100, 50, 10, 20, 30};
	cr_assert_arr_eq(img.px, want, 6);
	cigt_image_destroy(&img);
	free(b.p);
	/* 1-bit indices, 9 pixels: 1 0 1 0 1 0 1 0 | 1. */
	const uint8_t raw1[2] = {0xaa, 0x80};
	b = make_png_with(9, 1, 1, 3, raw1, 2, "PLTE", pal2, 6, NULL, NULL, 0, NULL);
	img = decode_ok(b.p, b.len);
	cr_assert_eq(img.px[0], 200);
	cr_assert_eq(img.px[3], 10);
	cr_assert_eq(img.px[24], 200);
	cigt_image_destroy(&img);
	free(b.p);
}

Test(png_spec, palette_index_beyond_plte_rejected)
{
	const uint8_t raw[2] = {0, 2};
	struct buf b = make_png_with(2, 1, 8, 3, raw, 2, "PLTE", pal2, 6, NULL, NULL, 0, NULL);
	decode_fails(b.p, b.len, "pixel (1, 0) has palette index 2", "2 entries of PLTE");
	free(b.p);
	/* 2-bit indices 0 1 2 3 against 3 entries: the last pixel is out. */
	const uint8_t raw2[1] = {0x1b};
	const uint8_t pal3[9] = {0};
	b = make_png_with(4, 1, 2, 3, raw2, 1, "PLTE", pal3, 9, NULL, NULL, 0, NULL);
	decode_fails(b.p, b.len, "pixel (3, 0) has palette index 3", NULL);
	free(b.p);
	/* The same pixels against 4 entries decode. */
	const uint8_t pal4[12] = {0};
	b = make_png_with(4, 1, 2, 3, raw2, 1, "PLTE", pal4, 12, NULL, NULL, 0, NULL);
	struct cigt_image img = decode_ok(b.p, b.len);
	cigt_image_destroy(&img);
	free(b.p);
}

Test(png_spec, trns_rules)
{
	const uint8_t raw[2] = {0, 1}, t3[3] = {0, 0, 0}, t1[1] = {7}, g2[2] = {0, 16};
	struct buf b = make_png_with(2, 1, 8, 3, raw, 2, "PLTE", pal2, 6, "tRNS", t3, 3, NULL);
	decode_fails(b.p, b.len, "tRNS has 3 entries, more than the 2 of PLTE", NULL);
	free(b.p);
	b = make_png_with(2, 1, 8, 3, raw, 2, "tRNS", t1, 1, "PLTE", pal2, 6, NULL);
	decode_fails(b.p, b.len, "tRNS before PLTE", NULL);
	free(b.p);
	b = make_png_with(1, 1, 8, 4, raw, 2, "tRNS", g2, 2, NULL, NULL, 0, NULL);
	decode_fails(b.p, b.len, "tRNS in an image with an alpha channel", NULL);
	free(b.p);
	b = make_png_with(2, 1, 8, 0, raw, 2, "tRNS", t1, 1, NULL, NULL, 0, NULL);
	decode_fails(b.p, b.len, "tRNS of 1 bytes for colour type 0", NULL);
	free(b.p);
	const uint8_t raw4[1] = {0x01};
	b = make_png_with(2, 1, 4, 0, raw4, 1, "tRNS", g2, 2, NULL, NULL, 0, NULL);
	decode_fails(b.p, b.len, "tRNS value 16 is beyond 4-bit samples", NULL);
	free(b.p);
	/* Neighbours: one entry per palette entry; a 4-bit gray key of 15. Index 0 transparent
	 * composites over black. */
	const uint8_t t2[2] = {0, 255}, g15[2] = {0, 15};
	b = make_png_with(2, 1, 8, 3, raw, 2, "PLTE", pal2, 6, "tRNS", t2, 2, NULL);
	struct cigt_image img = decode_ok(b.p, b.len);
	const uint8_t want[6] = {0, 0, 0, 200, 100, 50};
	cr_assert_arr_eq(img.px, want, 6);
	cigt_image_destroy(&img);
	free(b.p);
	b = make_png_with(2, 1, 4, 0, raw4, 1, "tRNS", g15, 2, NULL, NULL, 0, NULL);
	img = decode_ok(b.p, b.len);
	cigt_image_destroy(&img);
	free(b.p);
}

Test(png_spec, plte_rules)
{
	const uint8_t raw[2] = {0, 1}, pal5[15] = {0};
	struct buf b = make_png_with(2, 1, 8, 0, raw, 2, "PLTE", pal2, 6, NULL, NULL, 0, NULL);
	decode_fails(b.p, b.len, "PLTE in a grayscale image", NULL);
	free(b.p);
	b = make_png_with(4, 1, 2, 3, raw, 1, "PLTE", pal5, 15, NULL, NULL, 0, NULL);
	decode_fails(b.p, b.len, "PLTE has 5 entries, more than 2-bit indices reach", NULL);
	free(b.p);
	b = make_png_with(2, 1, 8, 3, raw, 2, "PLTE", pal2, 6, "PLTE", pal2, 6, NULL);
	decode_fails(b.p, b.len, "a second PLTE", NULL);
	free(b.p);
}

Test(png_spec, bkgd_sbit_hist_rules)
{
	const uint8_t raw[2] = {0, 1}, i5[1] = {5}, s9[1] = {9}, h1[2] = {0, 1};
	struct buf b = make_png_with(2, 1, 8, 3, raw, 2, "PLTE", pal2, 6, "bKGD", i5, 1, NULL);
	decode_fails(b.p, b.len, "bKGD palette index 5 is beyond the 2 entries", NULL);
	free(b.p);
	b = make_png_with(2, 1, 8, 0, raw, 2, "sBIT", s9, 1, NULL, NULL, 0, NULL);
	decode_fails(b.p, b.len, "sBIT value 9 is outside 1..8", NULL);
	free(b.p);
	b = make_png_with(2, 1, 8, 3, raw, 2, "PLTE", pal2, 6, "hIST", h1, 2, NULL);
	decode_fails(b.p, b.len, "hIST", NULL);
	free(b.p);
}

Test(png_spec, bytes_after_iend_rejected)
{
	const uint8_t raw[2] = {0, 1};
	struct buf b = make_png_with(2, 1, 8, 0, raw, 2, NULL, NULL, 0, NULL, NULL, 0, "junk");
	decode_fails(b.p, b.len, "4 bytes after the IEND chunk", NULL);
	free(b.p);
}

Test(png_spec, bit_depth_not_allowed_for_colour_type_rejected)
{
	static const int bad[][2] = {{0, 3}, {0, 32}, {2, 1}, {2, 2}, {2, 4}, {3, 16},
				     {4, 1}, {4, 4}, {6, 2}, {6, 4}, {3, 3}};
	const uint8_t raw[16] = {0};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct buf b = make_png_with(1, 1, bad[i][1], bad[i][0], raw, 8,
					     bad[i][0] == 3 ? "PLTE" : NULL, pal2, 6, NULL, NULL,
					     0, NULL);
		decode_fails(b.p, b.len, "bit depth", NULL);
		free(b.p);
	}
}

Test(pgm, exactly_one_whitespace_after_maxval)
{
	decode_text_fails("P5 2 1 255#\n\x01\x02", "byte 0x23 after maxval 255", NULL);
	decode_text_fails("P5 2 1 255x\x01\x02", "byte 0x78", NULL);
	decode_fails("P5 2 1 255\0\x01\x02", 13, "byte 0x00", NULL);
	static const char ws[] = " \t\n\r\v\f";
	for (int i = 0; ws[i]; i++) {
		char buf[16];
		int n = snprintf(buf, sizeof buf, "P5 2 1 255%c", ws[i]);
		buf[n] = 0x01, buf[n + 1] = (char)0xff;
		struct cigt_image img = decode_ok(buf, (size_t)n + 2);
		cr_assert_eq(img.px[0], 1);
		cr_assert_eq(img.px[1], 255);
		cigt_image_destroy(&img);
	}
}

/* ------------------------------------------------------------------ conversion and resizing */

static struct cigt_image make_img(int w, int h, int c)
{
	struct cigt_image img = {w, h, c, th_calloc((size_t)w * h * c, 1)};
	return img;
}

Test(resize, area_average_2x2_blocks_exact)
{
	struct cigt_image img = make_img(56, 56, 1);
	for (int y = 0; y < 56; y++)
		for (int x = 0; x < 56; x++) {
			/* 2x2 blocks whose pixels average to v = (7bx + 13by) % 250: v-1, v+1, v+2, v-2 */
			int bx = x / 2, by = y / 2, v = (7 * bx + 13 * by) % 250 + 2;
			static const int d[2][2] = {{-1, 1}, {2, -2}};
			img.px[y * 56 + x] = (uint8_t)(v + d[y % 2][x % 2]);
		}
	uint8_t out[28 * 28];
	cigt_image_to_input(&img, 1, 28, 28, out);
	for (int by = 0; by < 28; by++)
		for (int bx = 0; bx < 28; bx++)
			cr_assert_eq(out[by * 28 + bx], (7 * bx + 13 * by) % 250 + 2,
				     "block (%d, %d): %d", bx, by, out[by * 28 + bx]);
	cigt_image_destroy(&img);
}

Test(resize, area_average_fractional_coverage)
{
	/* 3 -> 2 pixels wide: output 0 covers source [0, 1.5), output 1 covers [1.5, 3). */
	struct cigt_image img = make_img(3, 1, 1);
	img.px[0] = 0, img.px[1] = 90, img.px[2] = 180;
	uint8_t out[2];
	cigt_image_to_input(&img, 1, 2, 1, out);
	cr_assert_eq(out[0], 30);  /* (0 * 1 + 90 * 0.5) / 1.5 */
	cr_assert_eq(out[1], 150); /* (90 * 0.5 + 180 * 1) / 1.5 */
	cigt_image_destroy(&img);
}

Test(resize, same_size_is_identity)
{
	struct cigt_image img = make_img(5, 4, 3);
	for (int i = 0; i < 60; i++)
		img.px[i] = (uint8_t)(i * 4);
	uint8_t out[60];
	cigt_image_to_input(&img, 3, 5, 4, out);
	cr_assert_arr_eq(out, img.px, 60);
	cigt_image_destroy(&img);
}

Test(resize, bilinear_upscale_of_constant_stays_constant)
{
	struct cigt_image img = make_img(5, 3, 3);
	for (int i = 0; i < 15; i++)
		img.px[3 * i] = 77, img.px[3 * i + 1] = 0, img.px[3 * i + 2] = 255;
	uint8_t out[28 * 28 * 3];
	cigt_image_to_input(&img, 3, 28, 28, out);
	for (int i = 0; i < 28 * 28; i++) {
		cr_assert_eq(out[3 * i], 77, "pixel %d", i);
		cr_assert_eq(out[3 * i + 1], 0, "pixel %d", i);
		cr_assert_eq(out[3 * i + 2], 255, "pixel %d", i);
	}
	cigt_image_destroy(&img);
}

Test(resize, bilinear_ramp_half_pixel_centres)
{
	/* 2 -> 4 wide, as torch interpolate(bilinear, align_corners=False): 0, 25, 75, 100. */
	struct cigt_image img = make_img(2, 1, 1);
	img.px[0] = 0, img.px[1] = 100;
	uint8_t out[4];
	cigt_image_to_input(&img, 1, 4, 1, out);
	const uint8_t want[4] = {0, 25, 75, 100};
	cr_assert_arr_eq(out, want, 4);
	cigt_image_destroy(&img);
}

Test(convert, rgb_to_gray_uses_bt601_luma)
{
	struct cigt_image img = make_img(4, 1, 3);
	const uint8_t px[12] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 100, 150, 200};
	memcpy(img.px, px, 12);
	uint8_t out[4];
	cigt_image_to_input(&img, 1, 4, 1, out);
	for (int i = 0; i < 4; i++) {
		long want = lround(0.299 * px[3 * i] + 0.587 * px[3 * i + 1] + 0.114 * px[3 * i + 2]);
		cr_assert_eq(out[i], want, "pixel %d: %d, expected %ld", i, out[i], want);
	}
	cr_assert_eq(out[0], 76);
	cr_assert_eq(out[1], 150);
	cr_assert_eq(out[2], 29);
	cigt_image_destroy(&img);
}

Test(convert, gray_to_rgb_replicates)
{
	struct cigt_image img = make_img(3, 1, 1);
	img.px[0] = 5, img.px[1] = 128, img.px[2] = 250;
	uint8_t out[9];
	cigt_image_to_input(&img, 3, 3, 1, out);
	const uint8_t want[9] = {5, 5, 5, 128, 128, 128, 250, 250, 250};
	cr_assert_arr_eq(out, want, 9);
	cigt_image_destroy(&img);
}

Test(convert, destroy_null_is_noop)
{
	cigt_image_destroy(NULL);
	struct cigt_image img = {0};
	cigt_image_destroy(&img);
}
