/* Error codes shared by the whole library.
 * Fallible calls return 0 or a negative CIGT_E* code; boundary code (files, configs, HTTP bodies)
 * also writes a one-line human message into a caller-supplied buffer. The list below is the only
 * place codes are defined: it generates both the enum and cigt_strerror(). */
#ifndef CIGT_ERROR_H
#define CIGT_ERROR_H

#include <stddef.h>

#define CIGT_ERRORS(X)                                                   \
	X(CIGT_OK, 0, "success")                                             \
	X(CIGT_EIO, -1, "input/output error")                                \
	X(CIGT_ENOMEM, -2, "out of memory")                                  \
	X(CIGT_EFORMAT, -3, "malformed input")                               \
	X(CIGT_EINVAL, -4, "invalid argument")                               \
	X(CIGT_ERANGE, -5, "value out of range")                             \
	X(CIGT_EUNSUPPORTED, -6, "unsupported feature")                      \
	X(CIGT_ESHAPE, -7, "shape mismatch")                                 \
	X(CIGT_EINTR, -8, "interrupted")

enum cigt_error {
#define CIGT_X_ENUM(name, value, text) name = value,
	CIGT_ERRORS(CIGT_X_ENUM)
#undef CIGT_X_ENUM
};

/* Static description of a CIGT_E* code; never NULL. */
const char *cigt_strerror(int code);

/* Writes a formatted one-line message into err (if err != NULL && len > 0) and returns code.
 * Used by boundary code as `return cigt_fail(err, len, CIGT_EFORMAT, "...", ...)`. */
int cigt_fail(char *err, size_t len, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
