/* Shared by the fuzz targets (issue 7). Each target is a pure function of a byte buffer,
 * LLVMFuzzerTestOneInput, built twice: as a libFuzzer binary (-Dfuzz=true, clang) and with
 * replay.c as an ordinary test that runs the seed corpus and every committed crash input.
 * Beyond "no crash", targets check properties of what the parsers accept; a violated property
 * aborts, which both libFuzzer and the replay test report as a failure. */
#ifndef CIGT_FUZZ_H
#define CIGT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cigt/arch.h"

#define FUZZ_CHECK(cond)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "fuzz property violated: %s (%s:%d)\n", #cond,     \
				__FILE__, __LINE__);                                       \
			abort();                                                           \
		}                                                                          \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The reference Fashion-MNIST architecture (models/fashion_mnist.json, embedded at build time),
 * parsed once; the request parsers take their geometry, classes and input range from it. */
const struct cigt_arch *fuzz_reference_arch(void);

/* Set by the replay driver from $FUZZ_VERBOSE: targets then print what each input came to, so
 * a corpus can be checked to reach the paths it was written for. */
extern int fuzz_verbose;
#define FUZZ_NOTE(...)                                                                     \
	do {                                                                               \
		if (fuzz_verbose)                                                          \
			fprintf(stderr, __VA_ARGS__);                                      \
	} while (0)

/* True when every one of n floats is finite and within [lo, hi]. */
int fuzz_all_in_range(const float *x, size_t n, float lo, float hi);

/* True when the n bytes are one JSON value (jansson parses them). */
int fuzz_is_json(const char *s, size_t n);

/* The compute dial of an accepted job: at most one of compute and max_macs, a compute name of
 * 1..31 characters of [A-Za-z0-9_.-], max_macs >= 0 (0 = none). */
struct srv_job;
void fuzz_check_dial(const struct srv_job *job);

#endif
