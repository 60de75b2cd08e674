/* Shared helpers for the unit tests (see helpers.h). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

uint64_t th_next(struct th_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double th_uniform(struct th_rng *r, double lo, double hi)
{
	return lo + (hi - lo) * (double)(th_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

void th_fill(float *x, int64_t n, double lo, double hi, uint64_t seed)
{
	struct th_rng r = {seed * 0x2545f4914f6cdd1dull + 1};
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)th_uniform(&r, lo, hi);
}

void th_assert_close(const float *got, const double *want, int64_t n, double atol, double rtol,
		     const char *what)
{
	for (int64_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - want[i]);
		if (!(d <= atol + rtol * fabs(want[i])))
			cr_assert_fail("%s: element %lld is %.9g, expected %.9g (|diff| %.3g)", what,
				       (long long)i, (double)got[i], want[i], d);
	}
}

struct cigt_arch *th_arch(const char *json)
{
	char err[256] = "";
	struct cigt_arch *a = NULL;
	int rc = cigt_arch_parse(json, strlen(json), &a, err, sizeof err);
	cr_assert_eq(rc, 0, "architecture rejected: %s", err);
	cr_assert_not_null(a);
	return a;
}

struct cigt_model *th_model(const char *json, uint64_t seed, bool random_bn)
{
	struct cigt_model *m = NULL;
	cr_assert_eq(cigt_model_new(th_arch(json), &m), 0);
	cigt_model_init_random(m, seed, random_bn);
	return m;
}

int th_arch_error(const char *json, char *err, size_t errlen)
{
	struct cigt_arch *a = (struct cigt_arch *)1;
	err[0] = 0;
	int rc = cigt_arch_parse(json, strlen(json), &a, err, errlen);
	if (rc == 0)
		cigt_arch_free(a);
	else
		cr_assert_null(a, "a failed parse must leave *out NULL");
	return rc;
}

void th_tmpdir(char *buf, size_t len)
{
	const char *t = getenv("TMPDIR");
	snprintf(buf, len, "%s/cigt-test-XXXXXX", t && *t ? t : "/tmp");
	cr_assert_not_null(mkdtemp(buf), "mkdtemp %s", buf);
}

void th_rmdir(const char *path)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", path);
}

void *th_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	cr_assert_not_null(p, "out of memory");
	return p;
}

int th_train(const char *train_extra, char *err, size_t errlen,
		    struct cigt_train_config *c)
{
	char text[1024];
	snprintf(text, sizeof text,
		 "{\"epochs\": 1, \"warmup_epochs\": 0, \"batch_size\": 8, \"lr\": 0.1, "
		 "\"lr_schedule\": [[0, 1]], \"momentum\": 0.9, \"weight_decay\": 0, "
		 "\"information_gain_weight\": 1, \"information_gain_beta\": 1, "
		 "\"temperature\": {\"initial\": 1, \"decay\": 1, \"min\": 1}, "
		 "\"routing_randomization\": 0, \"validation_samples\": 0, \"seed\": 1%s}",
		 train_extra);
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	cr_assert(j, "test JSON %s: %s", text, je.text);
	int rc = cigt_train_config_parse(j, c, err, errlen);
	json_decref(j);
	return rc;
}
