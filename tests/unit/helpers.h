/* Shared helpers for the unit tests (tests/unit/ and tests/train/): a deterministic random
 * generator independent of the library's, tolerant float comparison with a useful failure
 * message, architecture, model and training-config construction from JSON text, and temporary
 * directories. */
#ifndef CIGT_TEST_HELPERS_H
#define CIGT_TEST_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cigt/arch.h"
#include "cigt/model.h"
#include "cigt/train.h"

/* splitmix64: deliberately not the library's generator. */
struct th_rng {
	uint64_t s;
};
uint64_t th_next(struct th_rng *r);
/* Uniform in [lo, hi). */
double th_uniform(struct th_rng *r, double lo, double hi);
void th_fill(float *x, int64_t n, double lo, double hi, uint64_t seed);

/* Asserts |got[i] - want[i]| <= atol + rtol * |want[i]| for every i, naming the first
 * offending index. */
void th_assert_close(const float *got, const double *want, int64_t n, double atol, double rtol,
		     const char *what);

/* Parses an architecture, failing the test (with the parser's message) if it is rejected. */
struct cigt_arch *th_arch(const char *json);
/* A model for the architecture, initialised with cigt_model_init_random(seed, random_bn). */
struct cigt_model *th_model(const char *json, uint64_t seed, bool random_bn);

/* Parse result for error tests: rc, and the message in err. */
int th_arch_error(const char *json, char *err, size_t errlen);

/* Parses a training config (cigt_train_config_parse): a small valid `train` object (1 epoch,
 * no warm-up, batch 8, seed 1) with train_extra (", \"key\": value", or "") added at its end.
 * Returns the parser's code, its message in err. */
int th_train(const char *train_extra, char *err, size_t errlen,
		    struct cigt_train_config *c);

/* mkdtemp under $TMPDIR (or /tmp); path written to buf. rm -r with th_rmdir. */
void th_tmpdir(char *buf, size_t len);
void th_rmdir(const char *path);

/* Heap calloc that fails the test on ENOMEM. */
void *th_calloc(size_t n, size_t size);

#endif
