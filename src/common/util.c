/* Aligned allocation and the deterministic RNG (xoshiro256**, Blackman & Vigna). */
#include <stdlib.h>

#include "util.h"

float *cigt_alloc_floats(int64_t n)
{
	if (n < 0 || (uint64_t)n > SIZE_MAX / sizeof(float) - 64)
		return NULL;
	size_t bytes = ((size_t)(n ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
	return aligned_alloc(64, bytes);
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void cigt_rng_seed(struct cigt_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t cigt_rng_next(struct cigt_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double cigt_rng_uniform(struct cigt_rng *r)
{
	return (double)(cigt_rng_next(r) >> 11) * 0x1.0p-53;
}

uint32_t cigt_rng_below(struct cigt_rng *r, uint32_t n)
{
	/* Lemire's multiply-shift with rejection: unbiased. */
	uint64_t m = (uint64_t)(uint32_t)(cigt_rng_next(r) >> 32) * n;
	uint32_t l = (uint32_t)m;
	if (l < n) {
		uint32_t t = -n % n;
		while (l < t) {
			m = (uint64_t)(uint32_t)(cigt_rng_next(r) >> 32) * n;
			l = (uint32_t)m;
		}
	}
	return (uint32_t)(m >> 32);
}
