/* Colour inputs: JPEG decoding (src/io/jpeg.c) of files encoded here with libjpeg's own
 * compressor (gray, RGB, progressive; pixels within the codec's error of the source), corrupt
 * and truncated JPEGs refused with a message at every cut (libjpeg's error_exit longjmps, never
 * exits), CMYK and oversized frames refused; PPM P6/P3; and the input normalisation in both
 * forms (range, per-channel mean/std): parsing, errors, exact values, serialisation. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "cigt/image.h"
#include "cigt/model.h"
#include "helpers.h"

struct jbuf {
	unsigned char *p;
	unsigned long len;
};

/* Encodes w x h pixels of `comps` channels (1 gray, 3 RGB, 4 CMYK) with libjpeg. */
static struct jbuf encode_jpeg(const uint8_t *px, int w, int h, int comps, int quality,
			       bool progressive)
{
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr jerr;
	struct jbuf b = {0};
	c.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&c);
	jpeg_mem_dest(&c, &b.p, &b.len);
	c.image_width = (JDIMENSION)w;
	c.image_height = (JDIMENSION)h;
	c.input_components = comps;
	c.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
	jpeg_set_defaults(&c);
	jpeg_set_quality(&c, quality, TRUE);
	if (comps == 3) { /* no chroma subsampling: the error bound below is per pixel */
		c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = 1;
	}
	if (progressive)
		jpeg_simple_progression(&c);
	jpeg_start_compress(&c, TRUE);
	while (c.next_scanline < c.image_height) {
		JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * comps);
		jpeg_write_scanlines(&c, &row, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	return b;
}

/* A smooth test image: gradients per channel (JPEG reproduces them closely). */
static uint8_t *smooth(int w, int h, int comps)
{
	uint8_t *px = th_calloc((size_t)w * h * comps, 1);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int k = 0; k < comps; k++)
				px[((size_t)y * w + x) * comps + k] =
					(uint8_t)(k == 0 ? 20 + 6 * x : k == 1 ? 200 - 5 * y : 128);
	return px;
}

static int max_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	int m = 0;
	for (size_t i = 0; i < n; i++) {
		int d = abs((int)a[i] - (int)b[i]);
		m = d > m ? d : m;
	}
	return m;
}

Test(jpeg, rgb_decodes_to_rgb_within_codec_error)
{
	uint8_t *src = smooth(24, 17, 3); /* odd sizes: partial MCUs */
	struct jbuf j = encode_jpeg(src, 24, 17, 3, 100, false);
	struct cigt_image img;
	char err[256];
	cr_assert_eq(cigt_image_decode(j.p, j.len, &img, err, sizeof err), 0, "%s", err);
	cr_assert(img.w == 24 && img.h == 17 && img.c == 3);
	int d = max_abs_diff(img.px, src, 24 * 17 * 3);
	cr_assert(d <= 3, "max |decoded - source| = %d", d);
	cigt_image_destroy(&img);
	free(j.p);
	free(src);
}

Test(jpeg, gray_decodes_to_one_channel)
{
	uint8_t *src = smooth(9, 30, 1);
	struct jbuf j = encode_jpeg(src, 9, 30, 1, 100, false);
	struct cigt_image img;
	char err[256];
	cr_assert_eq(cigt_image_decode_jpeg(j.p, j.len, &img, err, sizeof err), 0, "%s", err);
	cr_assert(img.w == 9 && img.h == 30 && img.c == 1);
	int d = max_abs_diff(img.px, src, 9 * 30);
	cr_assert(d <= 2, "max |decoded - source| = %d", d);
	/* A gray JPEG for a colour model: the three channels are the gray value. */
	uint8_t rgb[9 * 30 * 3];
	cigt_image_to_input(&img, 3, 9, 30, rgb);
	for (int i = 0; i < 9 * 30; i++)
		cr_assert(rgb[3 * i] == img.px[i] && rgb[3 * i + 1] == img.px[i] &&
			  rgb[3 * i + 2] == img.px[i]);
	cigt_image_destroy(&img);
	free(j.p);
	free(src);
}

Test(jpeg, progressive_equals_baseline)
{
	uint8_t *src = smooth(32, 20, 3);
	struct jbuf a = encode_jpeg(src, 32, 20, 3, 95, false);
	struct jbuf b = encode_jpeg(src, 32, 20, 3, 95, true);
	struct cigt_image ia, ib;
	char err[256];
	cr_assert_eq(cigt_image_decode(a.p, a.len, &ia, err, sizeof err), 0, "%s", err);
	cr_assert_eq(cigt_image_decode(b.p, b.len, &ib, err, sizeof err), 0, "%s", err);
	cr_assert(ib.w == 32 && ib.h == 20 && ib.c == 3);
	/* Same quantised coefficients, so the same pixels (up to the IDCT's rounding). */
	int d = max_abs_diff(ia.px, ib.px, 32 * 20 * 3);
	cr_assert(d <= 1, "baseline and progressive differ by %d", d);
	cigt_image_destroy(&ia);
	cigt_image_destroy(&ib);
	free(a.p);
	free(b.p);
	free(src);
}

Test(jpeg, every_truncation_is_an_error_or_whole_image)
{
	uint8_t *src = smooth(16, 16, 3);
	struct jbuf j = encode_jpeg(src, 16, 16, 3, 90, true);
	for (unsigned long n = 0; n < j.len; n++) {
		struct cigt_image img;
		char err[256] = "";
		int rc = cigt_image_decode_jpeg(j.p, n, &img, err, sizeof err);
		/* Cutting only the final EOI marker may still decode every pixel. */
		if (rc == 0) {
			cr_assert(n >= j.len - 2, "a JPEG cut at %lu of %lu bytes decoded", n, j.len);
			cigt_image_destroy(&img);
			continue;
		}
		cr_assert(rc < 0 && img.px == NULL);
		cr_assert(strncmp(err, "JPEG: ", 6) == 0, "cut at %lu: '%s'", n, err);
	}
	free(j.p);
	free(src);
}

Test(jpeg, corrupt_bytes_never_crash)
{
	uint8_t *src = smooth(16, 16, 3);
	struct jbuf j = encode_jpeg(src, 16, 16, 3, 90, false);
	struct th_rng r = {42};
	unsigned char *bad = th_calloc(j.len, 1);
	int refused = 0;
	for (int t = 0; t < 400; t++) {
		memcpy(bad, j.p, j.len);
		for (int k = 0; k < 4; k++)
			bad[2 + th_next(&r) % (j.len - 2)] = (unsigned char)th_next(&r);
		struct cigt_image img;
		char err[256] = "";
		int rc = cigt_image_decode(bad, j.len, &img, err, sizeof err);
		if (rc) {
			cr_assert(img.px == NULL && err[0]);
			refused++;
		} else {
			cr_assert(img.w >= 1 && img.h >= 1 && (img.c == 1 || img.c == 3));
			cigt_image_destroy(&img);
		}
	}
	cr_assert(refused > 0, "no corruption was detected in 400 tries");
	free(bad);
	free(j.p);
	free(src);
}

Test(jpeg, garbage_after_magic_and_cmyk_refused)
{
	struct cigt_image img;
	char err[256];
	const unsigned char junk[] = {0xff, 0xd8, 0xff, 0x00, 1, 2, 3, 4, 5, 6};
	cr_assert_lt(cigt_image_decode(junk, sizeof junk, &img, err, sizeof err), 0);
	cr_assert(strstr(err, "JPEG"), "%s", err);
	uint8_t cmyk[4 * 4 * 4];
	memset(cmyk, 100, sizeof cmyk);
	struct jbuf j = encode_jpeg(cmyk, 4, 4, 4, 90, false);
	cr_assert_lt(cigt_image_decode(j.p, j.len, &img, err, sizeof err), 0);
	cr_assert(strstr(err, "CMYK"), "%s", err);
	free(j.p);
}

Test(jpeg, larger_than_the_side_limit_refused_before_decoding)
{
	const int w = CIGT_IMAGE_MAX_SIDE + 8;
	uint8_t *row = th_calloc((size_t)w, 1);
	struct jbuf j = encode_jpeg(row, w, 1, 1, 50, false);
	struct cigt_image img;
	char err[256];
	cr_assert_lt(cigt_image_decode(j.p, j.len, &img, err, sizeof err), 0);
	cr_assert(strstr(err, "larger than"), "%s", err);
	free(j.p);
	free(row);
}

Test(ppm, binary_and_ascii_rgb)
{
	const char p6[] = "P6\n2 1\n255\n\x0a\x14\x1e\x28\x32\x3c";
	const char p3[] = "P3\n2 1\n100\n 10 20 30  40 50 100\n";
	struct cigt_image img;
	char err[256];
	cr_assert_eq(cigt_image_decode(p6, sizeof p6 - 1, &img, err, sizeof err), 0, "%s", err);
	cr_assert(img.w == 2 && img.h == 1 && img.c == 3);
	const uint8_t want6[] = {10, 20, 30, 40, 50, 60};
	cr_assert_arr_eq(img.px, want6, 6);
	cigt_image_destroy(&img);
	cr_assert_eq(cigt_image_decode(p3, sizeof p3 - 1, &img, err, sizeof err), 0, "%s", err);
	/* maxval 100: v * 255 / 100, rounded. */
	const uint8_t want3[] = {26, 51, 77, 102, 128, 255};
	cr_assert_arr_eq(img.px, want3, 6);
	cigt_image_destroy(&img);
	cr_assert_lt(cigt_image_decode(p6, sizeof p6 - 2, &img, err, sizeof err), 0);
	cr_assert(strstr(err, "truncated"), "%s", err);
}

/* ------------------------------------------------------------------ normalisation */

#define ARCH_WITH_INPUT(in)                                                                  \
	"{\"name\": \"t\", \"input\": " in ", \"classes\": [\"a\", \"b\"], \"layers\": ["      \
	"{\"experts\": 1, \"ops\": [{\"type\": \"linear\", \"out\": 2}]}]}"

Test(normalize, mean_std_per_channel_torchvision_convention)
{
	struct cigt_arch *a = th_arch(ARCH_WITH_INPUT(
		"{\"channels\": 3, \"height\": 1, \"width\": 2, \"mean\": [0.485, 0.456, 0.406], "
		"\"std\": [0.229, 0.224, 0.225]}"));
	cr_assert(a->normalized);
	const uint8_t hwc[6] = {0, 128, 255, 10, 20, 30}; /* two pixels, RGB */
	float chw[6];
	cigt_model_preprocess_u8(a, hwc, chw);
	const double m[3] = {0.485, 0.456, 0.406}, s[3] = {0.229, 0.224, 0.225};
	double want[6];
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < 2; i++)
			want[c * 2 + i] = (hwc[i * 3 + c] / 255.0 - m[c]) / s[c];
	th_assert_close(chw, want, 6, 1e-6, 1e-6, "mean/std");
	/* The channels-first form (OIP UINT8 tensors) computes the same. */
	float x[6];
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < 2; i++)
			x[c * 2 + i] = hwc[i * 3 + c];
	cigt_model_preprocess_chw(a, x, 6);
	cr_assert_arr_eq(x, chw, sizeof chw);
	/* range holds the extreme values any channel can take. */
	cr_assert_float_eq(a->range_lo, (float)((0 - 0.485) / 0.229), 1e-6);
	cr_assert_float_eq(a->range_hi, (float)((1 - 0.406) / 0.225), 1e-6);
	cigt_arch_free(a);
}

Test(normalize, range_form_unchanged)
{
	struct cigt_arch *a = th_arch(ARCH_WITH_INPUT(
		"{\"channels\": 1, \"height\": 1, \"width\": 3, \"range\": [-1, 1]}"));
	cr_assert(!a->normalized);
	const uint8_t hwc[3] = {0, 51, 255};
	float chw[3];
	cigt_model_preprocess_u8(a, hwc, chw);
	cr_assert(chw[0] == -1.0f && chw[2] == 1.0f);
	cr_assert(chw[1] == -1.0f + 2.0f * 51.0f / 255.0f); /* exactly today's expression */
	float x[3] = {0, 51, 255};
	cigt_model_preprocess_chw(a, x, 3);
	cr_assert_arr_eq(x, chw, sizeof chw);
	char *j = cigt_arch_to_json(a);
	cr_assert(strstr(j, "\"input\":{\"channels\":1,\"height\":1,\"width\":3,\"range\":[-1.0,1.0]}"),
		  "%s", j);
	free(j);
	cigt_arch_free(a);
}

Test(normalize, one_value_applies_to_every_channel_and_round_trips)
{
	struct cigt_arch *a = th_arch(ARCH_WITH_INPUT(
		"{\"channels\": 3, \"height\": 1, \"width\": 1, \"mean\": [0.5], \"std\": [0.25]}"));
	for (int c = 0; c < 3; c++)
		cr_assert(a->mean[c] == 0.5f && a->std[c] == 0.25f);
	cr_assert_float_eq(cigt_arch_pixel_value(a, 2, 255), 2.0f, 1e-6);
	cr_assert_float_eq(cigt_arch_pixel_value(a, 1, 0), -2.0f, 1e-6);
	char *j = cigt_arch_to_json(a);
	cr_assert(strstr(j, "\"mean\":[0.5,0.5,0.5],\"std\":[0.25,0.25,0.25]"), "%s", j);
	cr_assert(!strstr(j, "range"), "%s", j);
	struct cigt_arch *b = th_arch(j);
	cr_assert(b->normalized && !memcmp(a->mean, b->mean, sizeof a->mean) &&
		  !memcmp(a->std, b->std, sizeof a->std));
	free(j);
	cigt_arch_free(a);
	cigt_arch_free(b);
}

Test(normalize, bad_forms_rejected_with_messages)
{
	static const struct {
		const char *input, *msg;
	} cases[] = {
		{"{\"channels\": 3, \"height\": 1, \"width\": 1, \"mean\": [0.5, 0.5, 0.5]}",
		 "'mean' and 'std' go together"},
		{"{\"channels\": 1, \"height\": 1, \"width\": 1, \"mean\": [0], \"std\": [1], "
		 "\"range\": [0, 1]}",
		 "not both"},
		{"{\"channels\": 3, \"height\": 1, \"width\": 1, \"mean\": [0, 0], \"std\": [1]}",
		 "input.mean: expected an array of 3 numbers"},
		{"{\"channels\": 1, \"height\": 1, \"width\": 1, \"mean\": [0], \"std\": [0]}",
		 "input.std[0]: 0 is outside"},
		{"{\"channels\": 1, \"height\": 1, \"width\": 1, \"mean\": [\"x\"], \"std\": [1]}",
		 "input.mean[0]: expected a number"},
		{"{\"channels\": 20, \"height\": 1, \"width\": 1, \"mean\": [0], \"std\": [1]}",
		 "at most 16 channels"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char json[1024], err[512];
		snprintf(json, sizeof json, ARCH_WITH_INPUT("%s"), cases[i].input);
		cr_assert_lt(th_arch_error(json, err, sizeof err), 0, "case %zu accepted", i);
		cr_assert(strstr(err, cases[i].msg), "case %zu: '%s' lacks '%s'", i, err,
			  cases[i].msg);
	}
}
