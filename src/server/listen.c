/* cigtd's listening sockets: "host:port", "[v6]:port" or ":port" resolved, bound and listened
 * on, non-blocking, for the HTTP daemon (server.c) and the gRPC service (grpc_server.c), so both
 * ports take the same spellings and give the same messages. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cigt/error.h"
#include "srv.h"

#include "loop.h"

/* "host:port", "[v6]:port" or ":port". */
int srv_open_listener(const char *spec, int *port_out, char *err, size_t errlen)
{
	char host[256] = "", port[16];
	const char *colon;
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof host)
			return cigt_fail(err, errlen, -1, "listen: '%s' is not [ADDR]:PORT", spec);
		memcpy(host, spec + 1, (size_t)(end - spec - 1));
		colon = end + 1;
	} else {
		colon = strrchr(spec, ':');
		if (!colon || (size_t)(colon - spec) >= sizeof host)
			return cigt_fail(err, errlen, -1, "listen: '%s' is not ADDR:PORT", spec);
		memcpy(host, spec, (size_t)(colon - spec));
	}
	if (srv_parse_ll(colon + 1, 0, 65535) < 0)
		return cigt_fail(err, errlen, -1, "listen: bad port in '%s'", spec);
	snprintf(port, sizeof port, "%s", colon + 1);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE}, *ai;
	int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (rc)
		return cigt_fail(err, errlen, -1, "listen: %s: %s", spec, gai_strerror(rc));
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 1024)) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return cigt_fail(err, errlen, -1, "listen: %s: %s", spec, strerror(e));
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	*port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						   : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}
