/* `cigtd --healthcheck URL`: a dependency-free HTTP/1.0 GET for container HEALTHCHECKs. Exits
 * 0 when the server answers 200 within three seconds, 1 otherwise (message on stderr). Plain
 * http:// only; point it at the loopback listener inside the container. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/util.h"
#include "srv.h"

#define HC_TIMEOUT_MS 3000

static int wait_fd(int fd, short ev, uint64_t deadline)
{
	uint64_t now = cigt_now_ns();
	if (now >= deadline)
		return -1;
	struct pollfd p = {.fd = fd, .events = ev};
	int rc = poll(&p, 1, (int)((deadline - now) / 1000000 + 1));
	return rc == 1 ? 0 : -1;
}

int srv_healthcheck(const char *url)
{
	char host[256], port[16] = "80", path[1024] = "/";
	const char *p = url;
	if (strncmp(p, "http://", 7)) {
		fprintf(stderr, "cigtd: --healthcheck: only http:// URLs are supported\n");
		return 1;
	}
	p += 7;
	size_t hl = strcspn(p, "/");
	const char *hostpart = p, *slash = p + hl;
	if (*slash)
		snprintf(path, sizeof path, "%s", slash);
	if (hl == 0 || hl >= sizeof host) {
		fprintf(stderr, "cigtd: --healthcheck: bad URL '%s'\n", url);
		return 1;
	}
	memcpy(host, hostpart, hl);
	host[hl] = 0;
	char *colon = host[0] == '[' ? strstr(host, "]:") : strrchr(host, ':');
	if (host[0] == '[') {
		char *end = strchr(host, ']');
		if (!end) {
			fprintf(stderr, "cigtd: --healthcheck: bad URL '%s'\n", url);
			return 1;
		}
		if (colon)
			snprintf(port, sizeof port, "%s", colon + 2);
		*end = 0;
		memmove(host, host + 1, strlen(host));
	} else if (colon) {
		snprintf(port, sizeof port, "%s", colon + 1);
		*colon = 0;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		fprintf(stderr, "cigtd: --healthcheck: %s: %s\n", host, gai_strerror(rc));
		return 1;
	}
	uint64_t deadline = cigt_now_ns() + (uint64_t)HC_TIMEOUT_MS * 1000000u;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), ok = 1;
	int status = -1;
	errno = 0;
	if (fd < 0)
		goto out;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS)
		goto out;
	if (wait_fd(fd, POLLOUT, deadline))
		goto out;
	int soerr = 0;
	socklen_t sl = sizeof soerr;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
		errno = soerr;
		goto out;
	}
	char req[1400];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n",
			 path, host);
	if (n < 0 || (size_t)n >= sizeof req || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
		goto out;
	char resp[64];
	size_t got = 0;
	while (got < 12) {
		if (wait_fd(fd, POLLIN, deadline))
			goto out;
		ssize_t k = recv(fd, resp + got, sizeof resp - 1 - got, 0);
		if (k <= 0)
			goto out;
		got += (size_t)k;
	}
	resp[got] = 0;
	status = 0;
	if (sscanf(resp, "HTTP/%*d.%*d %d", &status) == 1 && status == 200)
		ok = 0;
	else
		fprintf(stderr, "cigtd: --healthcheck: %s answered %d\n", url, status);
out:
	if (ok && status < 0)
		fprintf(stderr, "cigtd: --healthcheck: %s: %s\n", url,
			errno ? strerror(errno) : "timed out");
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return ok;
}
