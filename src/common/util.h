/* Small internal helpers: always-on assertions, checked allocation sizes, a monotonic clock and
 * the deterministic random number generator shared by initialisation and training. */
#ifndef CIGT_UTIL_H
#define CIGT_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* An invariant that stays checked in release builds. */
#define CIGT_ASSERT(cond)                                                                  \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "cigt: internal error: %s:%d: %s\n", __FILE__,     \
				__LINE__, #cond);                                          \
			abort();                                                           \
		}                                                                          \
	} while (0)

#define CIGT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CIGT_MAX(a, b) ((a) > (b) ? (a) : (b))

static inline uint64_t cigt_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* 64-byte aligned allocation of n floats (NULL on overflow or ENOMEM); free with free(). */
float *cigt_alloc_floats(int64_t n);

/* xoshiro256** seeded through splitmix64: fast, deterministic across platforms. */
struct cigt_rng {
	uint64_t s[4];
};

void cigt_rng_seed(struct cigt_rng *r, uint64_t seed);
uint64_t cigt_rng_next(struct cigt_rng *r);
/* Uniform in [0, 1). */
double cigt_rng_uniform(struct cigt_rng *r);
/* Uniform integer in [0, n). */
uint32_t cigt_rng_below(struct cigt_rng *r, uint32_t n);

#endif
