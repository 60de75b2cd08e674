/* Reading a whole file: the one reader that every part of cigt uses (model files, images,
 * configs, repository files), so each gets the same checks (a regular file, a size limit,
 * interrupted and short reads handled) and the same one-line messages.
 *
 *     void *buf;
 *     size_t len;
 *     char err[256];
 *     if (cigt_file_read("model.json", 1 << 20, &buf, &len, err, sizeof err) == 0) {
 *             use(buf, len);
 *             free(buf);
 *     }
 */
#ifndef CIGT_FILE_H
#define CIGT_FILE_H

#include <stddef.h>

/* Reads the regular file at path, at most max bytes, into a malloc'd buffer (*buf, the
 * caller frees it; one byte is allocated for an empty file) of *len bytes. 0, or CIGT_EIO
 * (cannot open, not a regular file, read error), CIGT_ERANGE (larger than max) or CIGT_ENOMEM,
 * with "PATH: reason" in err; *buf is NULL and *len 0 on failure. Thread-safe. */
int cigt_file_read(const char *path, size_t max, void **buf, size_t *len, char *err,
		   size_t errlen);

#endif
