/* Fuzz target: the PNG, JPEG, PGM and PPM decoders (cigt_image_decode, through libspng for PNG
 * and libjpeg-turbo for JPEG) and the header peek (srv_image_peek) the daemon uses to refuse
 * oversized images before decoding.
 * Input: the encoded image.
 * Properties: a decoded image has sane geometry (1..CIGT_IMAGE_MAX_SIDE per side, 1 or 3
 * channels) and converts and resizes to a model input without reading out of bounds; and the
 * peek saw the same size as the decoder, so the pixel limit checked on the peek is the limit
 * that holds for the decoded image. A rejected image has a message and owns no memory. */
#include <string.h>

#include "cigt/image.h"
#include "fuzz.h"
#include "srv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cigt_image img;
	char err[256] = "";
	int rc = cigt_image_decode(data, size, &img, err, sizeof err);
	FUZZ_NOTE("%d %s", rc, rc ? err : "decoded");
	if (rc) {
		FUZZ_CHECK(rc < 0 && err[0] != 0);
		FUZZ_CHECK(img.px == NULL);
		return 0;
	}
	FUZZ_CHECK(img.px != NULL);
	FUZZ_CHECK(img.w >= 1 && img.h >= 1 && img.w <= CIGT_IMAGE_MAX_SIDE &&
		   img.h <= CIGT_IMAGE_MAX_SIDE);
	FUZZ_CHECK(img.c == 1 || img.c == 3);
	int pw = -1, ph = -1;
	FUZZ_CHECK(srv_image_peek(data, size, &pw, &ph) == 0);
	if (pw != img.w || ph != img.h)
		fprintf(stderr, "peek says %dx%d, decoder %dx%d\n", pw, ph, img.w, img.h);
	FUZZ_CHECK(pw == img.w && ph == img.h);
	uint8_t gray[28 * 28], rgb[5 * 7 * 3], one[1];
	cigt_image_to_input(&img, 1, 28, 28, gray);
	cigt_image_to_input(&img, 3, 7, 5, rgb);
	cigt_image_to_input(&img, 1, 1, 1, one);
	cigt_image_destroy(&img);
	return 0;
}
