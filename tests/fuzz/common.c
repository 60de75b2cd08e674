/* Helpers shared by the fuzz targets: the embedded reference architecture and small checks. */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "srv.h"

int fuzz_verbose;

extern const char fuzz_reference_json[];
extern const size_t fuzz_reference_json_len;

const struct cigt_arch *fuzz_reference_arch(void)
{
	static struct cigt_arch *a;
	if (!a) {
		char err[256];
		if (cigt_arch_parse(fuzz_reference_json, fuzz_reference_json_len, &a, err,
				    sizeof err)) {
			fprintf(stderr, "fuzz: reference architecture rejected: %s\n", err);
			abort();
		}
	}
	return a;
}

int fuzz_all_in_range(const float *x, size_t n, float lo, float hi)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]) || x[i] < lo || x[i] > hi)
			return 0;
	return 1;
}

int fuzz_is_json(const char *s, size_t n)
{
	json_error_t je;
	json_t *v = json_loadb(s, n, JSON_DECODE_ANY, &je);
	if (!v) {
		fprintf(stderr, "fuzz: not JSON (%s): %.*s\n", je.text, (int)(n < 300 ? n : 300), s);
		return 0;
	}
	json_decref(v);
	return 1;
}

void fuzz_check_dial(const struct srv_job *job)
{
	size_t n = strnlen(job->compute, sizeof job->compute);
	FUZZ_CHECK(n < sizeof job->compute);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(isalnum((unsigned char)job->compute[i]) || job->compute[i] == '_' ||
			   job->compute[i] == '.' || job->compute[i] == '-');
	FUZZ_CHECK(job->max_macs >= 0);
	FUZZ_CHECK(!(n && job->max_macs));
}
