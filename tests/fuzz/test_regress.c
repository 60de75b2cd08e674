/* The inputs in regress/ that once crashed a fuzz target or broke one of its properties, each
 * with the answer it must get now. The replay tests run them through the targets (which catch
 * crashes, sanitizer reports and property violations); these tests also hold in a build
 * without sanitizers, where an integer overflow or a needless huge allocation goes unseen. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/arch.h"
#include "cigt/file.h"
#include "cigt/image.h"
#include "cigt/model.h"
#include "grpc.h"
#include "srv.h"

static void *slurp(const char *rel, size_t *len)
{
	char path[1024], err[256];
	snprintf(path, sizeof path, "%s/tests/fuzz/regress/%s", CIGT_SOURCE_ROOT, rel);
	void *buf = NULL;
	cr_assert(cigt_file_read(path, 1 << 24, &buf, len, err, sizeof err) == 0, "%s", err);
	return buf;
}

/* Image target: the header peek refused a PGM whose header uses form feeds, which the decoder
 * reads; the peek now sees the decoder's size. The input has byte 0x06 right after maxval, which
 * the decoder skipped then and refuses now (issue 16: one whitespace byte must follow maxval);
 * with a newline there it decodes, and the peek agrees on the size either way. */
Test(regress, pgm_formfeed_whitespace)
{
	size_t len;
	uint8_t *buf = slurp("image/pgm-formfeed-whitespace", &len);
	struct cigt_image img;
	char err[256];
	int w = 0, h = 0;
	cr_assert(cigt_image_decode(buf, len, &img, err, sizeof err) != 0);
	cr_assert(strstr(err, "byte 0x06 after maxval 65"), "%s", err);
	cr_assert(srv_image_peek(buf, len, &w, &h) == 0);
	cr_assert(w == 3 && h == 1, "peek %dx%d", w, h);
	uint8_t *nl = memchr(buf, 0x06, len);
	cr_assert(nl);
	*nl = '\n';
	cr_assert(cigt_image_decode(buf, len, &img, err, sizeof err) == 0, "%s", err);
	cr_assert(w == img.w && h == img.h, "peek %dx%d, decoder %dx%d", w, h, img.w, img.h);
	cigt_image_destroy(&img);
	free(buf);
}

/* Architecture: a conv whose MAC count overflows int64 (signed overflow, undefined behaviour)
 * is refused before the multiplication. */
Test(regress, conv_mac_overflow)
{
	size_t len;
	char *buf = slurp("arch/conv-mac-overflow.json", &len);
	struct cigt_arch *a = NULL;
	char err[256];
	cr_assert(cigt_arch_parse(buf, len, &a, err, sizeof err) != 0);
	cr_assert(a == NULL);
	cr_assert(strstr(err, "layers[0].ops[1]") && strstr(err, "2^40"), "%s", err);
	free(buf);
}

/* Model file: a 300-byte file whose architecture has a billion parameters is refused before
 * the reader allocates 4 GB for them. */
Test(regress, tiny_file_huge_architecture)
{
	size_t len;
	void *buf = slurp("model/tiny-file-4gb-architecture", &len);
	cr_assert(len < 1000);
	struct cigt_model *m = NULL;
	char err[256];
	cr_assert(cigt_model_load_buffer(buf, len, &m, err, sizeof err) != 0);
	cr_assert(m == NULL);
	cr_assert(strstr(err, "1075841025 parameters") && strstr(err, "missing tensors"), "%s", err);
	free(buf);
}

/* Image target (issue 16): what libspng decoded and the PNG specification forbids is refused,
 * naming the problem: an indexed image with pixels beyond its 10-entry PLTE (it was classified),
 * and a tRNS with more entries than PLTE. */
Test(regress, png_spec_violations_refused)
{
	static const struct {
		const char *file, *words;
	} cases[] = {
		{"image/png-palette-index-beyond-plte", "pixel (1, 0) has palette index 37, beyond the 10 entries"},
		{"image/png-trns-longer-than-plte", "tRNS has 5 entries, more than the 2 of PLTE"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len;
		void *buf = slurp(cases[i].file, &len);
		struct cigt_image img;
		char err[256] = "";
		cr_assert(cigt_image_decode(buf, len, &img, err, sizeof err) != 0, "%s decoded",
			  cases[i].file);
		cr_assert(img.px == NULL);
		cr_assert(strstr(err, cases[i].words), "%s: %s", cases[i].file, err);
		free(buf);
	}
}

/* Image target (issue 16): a PGM with a comment glued to maxval ("255#c\n") was read one byte
 * late (200 with shifted pixels); exactly one whitespace byte must follow maxval. */
Test(regress, pgm_comment_glued_to_maxval)
{
	size_t len;
	void *buf = slurp("image/pgm-comment-glued-to-maxval", &len);
	struct cigt_image img;
	char err[256] = "";
	cr_assert(cigt_image_decode(buf, len, &img, err, sizeof err) != 0);
	cr_assert(strstr(err, "byte 0x23 after maxval 255"), "%s", err);
	free(buf);
}

/* Image target (first CI run with JPEG): a JPEG with a TEM marker (0xff01) after its DQT
 * decodes, but the header peek read a length after TEM, which has none (nor have RST0..7), lost
 * its way and refused the image: a valid JPEG would have got 400. The peek now steps over
 * standalone markers and agrees with the decoder. */
Test(regress, jpeg_tem_marker_without_length)
{
	size_t len;
	uint8_t *buf = slurp("image/jpeg-tem-marker-without-length", &len);
	struct cigt_image img;
	char err[256];
	int w = 0, h = 0;
	cr_assert(cigt_image_decode(buf, len, &img, err, sizeof err) == 0, "%s", err);
	cr_assert(srv_image_peek(buf, len, &w, &h) == 0);
	cr_assert(w == img.w && h == img.h, "peek %dx%d, decoder %dx%d", w, h, img.w, img.h);
	cigt_image_destroy(&img);
	free(buf);
}

/* Image target (a 240 s run after the TEM fix): a COM segment of length 0 (below the 2 bytes
 * of the length itself). libjpeg skips it and decodes; the header peek refused it. The decoder
 * now walks the segments the way the peek does (cigt_jpeg_frame_size) and refuses the file, as
 * the JPEG specification does: both say no. */
Test(regress, jpeg_com_length_zero)
{
	size_t len;
	uint8_t *buf = slurp("image/jpeg-com-length-zero", &len);
	struct cigt_image img;
	char err[256];
	int w = 0, h = 0;
	cr_assert(cigt_image_decode(buf, len, &img, err, sizeof err) != 0);
	cr_assert(strstr(err, "has length 0, less than the 2 bytes"), "%s", err);
	cr_assert(srv_image_peek(buf, len, &w, &h) != 0);
	free(buf);
}

/* gRPC target (issue 28): a ModelInferRequest starting with a field numbered 0 (a 2-byte varint
 * tag, 80 00). protobuf-c read it as an unknown field and accepted the message, then wrote the
 * tag back as one byte it refuses to read: the repacked message did not decode (the target's
 * round-trip property). Field 0 is not protobuf: the message is refused, as protoc refuses it. */
Test(regress, grpc_field_number_zero)
{
	size_t len;
	uint8_t *buf = slurp("grpc/field-number-zero", &len);
	cr_assert(srv_grpc_infer_unpack(buf + 1, len - 1) == NULL);
	buf[2] = 0x08; /* the tag read as field 128 instead (80 08): an unknown field, fine */
	Inference__ModelInferRequest *q = srv_grpc_infer_unpack(buf + 1, len - 1);
	cr_assert(q != NULL);
	inference__model_infer_request__free_unpacked(q, NULL);
	free(buf);
}
