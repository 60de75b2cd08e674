/* cigt_file_read (include/cigt/file.h): the whole-file reader of every part of cigt. It opens
 * only regular files, refuses a file over the caller's limit before allocating, and reads
 * exactly the size fstat reported (a file that shrinks meanwhile is an error). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cigt/error.h"
#include "cigt/file.h"

int cigt_file_read(const char *path, size_t max, void **buf, size_t *len, char *err,
		   size_t errlen)
{
	*buf = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cigt_fail(err, errlen, CIGT_EIO, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return cigt_fail(err, errlen, CIGT_EIO, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return cigt_fail(err, errlen, CIGT_ERANGE, "%s: %lld bytes is over the %zu limit",
				 path, (long long)st.st_size, max);
	}
	size_t n = (size_t)st.st_size;
	uint8_t *p = malloc(n ? n : 1);
	if (!p) {
		close(fd);
		return cigt_fail(err, errlen, CIGT_ENOMEM, "%s: out of memory", path);
	}
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = errno;
			free(p);
			close(fd);
			return cigt_fail(err, errlen, CIGT_EIO, "%s: %s", path,
					 r < 0 ? strerror(e) : "file shrank while reading");
		}
		got += (size_t)r;
	}
	close(fd);
	*buf = p;
	*len = n;
	return 0;
}
