/* SHA-256 of a byte buffer (internal). */
#ifndef CIGT_SHA256_H
#define CIGT_SHA256_H

#include <stddef.h>

/* Writes the digest of len bytes at data as 64 lowercase hex digits plus NUL. */
void cigt__sha256(const void *data, size_t len, char hex[65]);

#endif
