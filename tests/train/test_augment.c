/* Training-data augmentation (train.augment): the mirror and shift of cigt_train_augment checked
 * pixel by pixel on a 2-channel 3x4 image whose values name their position, and the config
 * keys accepted and refused; the cosine learning-rate schedule (train.lr_cosine). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "cigt/train.h"
#include "helpers.h"

enum { C = 2, H = 3, W = 4 };

static void fill_named(float *img) /* value 100c + 10y + x */
{
	for (int c = 0; c < C; c++)
		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++)
				img[(c * H + y) * W + x] = (float)(100 * c + 10 * y + x);
}

static float at(const float *img, int c, int y, int x)
{
	return img[(c * H + y) * W + x];
}

Test(augment, identity_when_no_flip_no_shift)
{
	float img[C * H * W], ref[C * H * W], tmp[C * H * W];
	fill_named(img);
	memcpy(ref, img, sizeof img);
	cigt_train_augment(img, tmp, C, H, W, false, 0, 0, -1.0f);
	cr_assert(!memcmp(img, ref, sizeof img));
}

Test(augment, flip_mirrors_columns)
{
	float img[C * H * W], tmp[C * H * W];
	fill_named(img);
	cigt_train_augment(img, tmp, C, H, W, true, 0, 0, -1.0f);
	/* row 1 of channel 1 was 110 111 112 113 */
	cr_assert_eq(at(img, 1, 1, 0), 113.0f);
	cr_assert_eq(at(img, 1, 1, 1), 112.0f);
	cr_assert_eq(at(img, 1, 1, 2), 111.0f);
	cr_assert_eq(at(img, 1, 1, 3), 110.0f);
	cr_assert_eq(at(img, 0, 2, 0), 23.0f);
}

Test(augment, shift_moves_content_and_fills_border)
{
	float img[C * H * W], tmp[C * H * W];
	fill_named(img);
	/* content moves right by 1 and down by 1 */
	cigt_train_augment(img, tmp, C, H, W, false, 1, 1, -1.0f);
	for (int c = 0; c < C; c++) {
		for (int x = 0; x < W; x++)
			cr_assert_eq(at(img, c, 0, x), -1.0f, "top row is border");
		for (int y = 0; y < H; y++)
			cr_assert_eq(at(img, c, y, 0), -1.0f, "left column is border");
	}
	cr_assert_eq(at(img, 0, 1, 1), 0.0f);  /* old (0,0) */
	cr_assert_eq(at(img, 1, 2, 3), 112.0f); /* old (1,2) */
	/* up by 2 and left by 3: only old (2,3) stays, at (0,0) */
	fill_named(img);
	cigt_train_augment(img, tmp, C, H, W, false, -3, -2, 7.0f);
	cr_assert_eq(at(img, 0, 0, 0), 23.0f);
	cr_assert_eq(at(img, 1, 0, 0), 123.0f);
	cr_assert_eq(at(img, 0, 0, 1), 7.0f);
	cr_assert_eq(at(img, 0, 1, 0), 7.0f);
}

Test(augment, flip_then_shift)
{
	float img[C * H * W], tmp[C * H * W];
	fill_named(img);
	/* mirrored row 0 is 3 2 1 0; shifted right by 1: fill 3 2 1 */
	cigt_train_augment(img, tmp, C, H, W, true, 1, 0, -1.0f);
	cr_assert_eq(at(img, 0, 0, 0), -1.0f);
	cr_assert_eq(at(img, 0, 0, 1), 3.0f);
	cr_assert_eq(at(img, 0, 0, 2), 2.0f);
	cr_assert_eq(at(img, 0, 0, 3), 1.0f);
}

/* The train object with augment (NULL: without the key). */
static int parse(const char *augment, struct cigt_train_config *c, char *err, size_t n)
{
	char extra[512] = "";
	if (augment)
		snprintf(extra, sizeof extra, ", \"augment\": %s", augment);
	return th_train(extra, err, n, c);
}

Test(augment, config_keys)
{
	struct cigt_train_config c;
	char err[256];
	cr_assert_eq(parse(NULL, &c, err, sizeof err), 0, "%s", err);
	cr_assert(!c.aug_flip && c.aug_shift == 0, "absent: no augmentation");
	cr_assert_eq(parse("{\"flip\": true, \"shift\": 2}", &c, err, sizeof err), 0, "%s", err);
	cr_assert(c.aug_flip && c.aug_shift == 2);
	cr_assert_eq(parse("{}", &c, err, sizeof err), 0, "%s", err);
	cr_assert(!c.aug_flip && c.aug_shift == 0);

	struct {
		const char *aug, *msg;
	} bad[] = {
		{"{\"flip\": 1}", "train.augment.flip: expected true or false"},
		{"{\"shift\": 9}", "train.augment.shift: expected an integer in [0, 8]"},
		{"{\"shift\": -1}", "train.augment.shift: expected an integer in [0, 8]"},
		{"{\"shift\": 1.5}", "train.augment.shift: expected an integer in [0, 8]"},
		{"{\"rotate\": 10}", "train.augment: unknown key 'rotate'"},
		{"true", "train.augment: expected {"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = 0;
		cr_assert_neq(parse(bad[i].aug, &c, err, sizeof err), 0, "%s accepted", bad[i].aug);
		cr_assert(strstr(err, bad[i].msg), "%s: got '%s'", bad[i].aug, err);
	}
}

/* The recipe pieces a ResNet trains with: the step schedule alone, then cosine on top of it. */
Test(schedule, cosine_annealing_on_top_of_the_steps)
{
	struct cigt_train_config c;
	char err[256];
	cr_assert_eq(th_train(", \"epochs\": 100, \"lr_schedule\": [[0, 1], [50, 0.1]]", err,
			      sizeof err, &c),
		     0, "%s", err);
	cr_assert(!c.lr_cosine, "absent: steps only");
	cr_assert_float_eq(cigt_train_lr(&c, 0), 0.1, 1e-12);
	cr_assert_float_eq(cigt_train_lr(&c, 49), 0.1, 1e-12);
	cr_assert_float_eq(cigt_train_lr(&c, 50), 0.01, 1e-12);
	cr_assert_eq(th_train(", \"epochs\": 100, \"lr_cosine\": true", err, sizeof err, &c), 0,
		     "%s", err);
	cr_assert(c.lr_cosine);
	cr_assert_float_eq(cigt_train_lr(&c, 0), 0.1, 1e-12);
	cr_assert_float_eq(cigt_train_lr(&c, 50), 0.05, 1e-12);        /* cos(pi/2) = 0 */
	cr_assert_float_eq(cigt_train_lr(&c, 25), 0.1 * (1 + sqrt(0.5)) / 2, 1e-12);
	cr_assert_float_eq(cigt_train_lr(&c, 99), 0.1 * (1 + cos(M_PI * 0.99)) / 2, 1e-12);
	cr_assert_eq(th_train(", \"epochs\": 100, \"lr_schedule\": [[0, 1], [50, 0.1]], "
			      "\"lr_cosine\": true", err, sizeof err, &c),
		     0, "%s", err);
	cr_assert_float_eq(cigt_train_lr(&c, 75), 0.01 * (1 + cos(M_PI * 0.75)) / 2, 1e-12);
	cr_assert_neq(th_train(", \"lr_cosine\": 1", err, sizeof err, &c), 0);
	cr_assert(strstr(err, "train.lr_cosine: expected true or false"), "got '%s'", err);
}
