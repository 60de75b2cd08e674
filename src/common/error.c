/* cigt_strerror and the message helper used by boundary code. */
#include <stdarg.h>
#include <stdio.h>

#include "cigt/error.h"

const char *cigt_strerror(int code)
{
	switch (code) {
#define CIGT_X_CASE(name, value, text) \
	case value:                    \
		return text;
		CIGT_ERRORS(CIGT_X_CASE)
#undef CIGT_X_CASE
	}
	return "unknown error";
}

int cigt_fail(char *err, size_t len, int code, const char *fmt, ...)
{
	if (err && len > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, len, fmt, ap);
		va_end(ap);
	}
	return code;
}
