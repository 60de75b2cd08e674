/* Fuzz target: cigtd's HTTP layer on a real connection. The input is every byte a client sends
 * on one connection. Once per process the harness starts the daemon as cigtd does (srv_open:
 * the same libmicrohttpd flags, options and callbacks, the framing checks, the handlers, the
 * scheduler with one worker and the registry, from a command line parsed by cigtd's own
 * config table) serving a tiny model with a bearer token (framing_cases.py's, so its seeds get
 * past authentication); only cigtd's signal handlers stay off, libFuzzer keeps its own. Per
 * input: one end of a socketpair goes to libmicrohttpd (MHD_add_connection), the harness
 * writes the bytes, runs the event loop until nothing can move (no byte left unread, no request
 * at the scheduler, libmicrohttpd idle), hangs up and runs the loop until the connection is
 * gone.
 * Properties: when the loop is idle libmicrohttpd holds no connection suspended that cigtd has
 * resumed; the connection and every request on it are finished once the client has hung up
 * (no connection, request in flight or suspended request left behind, checked after every
 * input); nothing waits forever; whatever cigtd writes starts with an HTTP/1.x status line. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cigt/arch.h"
#include "cigt/model.h"
#include "fuzz.h"
#include "loop.h"

/* Two experts after a one-expert layer on 8x8 images: every endpoint, routing and the batcher
 * work as with the real model at a fraction of the cost. */
static const char tiny_arch[] =
	"{\"name\": \"fuzz_http\", \"input\": {\"channels\": 1, \"height\": 8, \"width\": 8, "
	"\"range\": [0.0, 1.0]}, \"classes\": [\"a\", \"b\", \"c\"], \"layers\": ["
	"{\"experts\": 1, \"ops\": [{\"type\": \"conv\", \"out\": 2, \"kernel\": 3, \"stride\": 1, "
	"\"padding\": 1}, {\"type\": \"relu\"}, {\"type\": \"maxpool\", \"kernel\": 2, \"stride\": 2}], "
	"\"router\": {\"pool\": 4, \"hidden\": 4}}, "
	"{\"experts\": 2, \"ops\": [{\"type\": \"flatten\"}, {\"type\": \"linear\", \"out\": 3}]}]}";
#define TOKEN "framing-test-token"

static struct srv_config cfg;
static struct srv *S;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_http: %s\n", what);
	abort();
}

static void start(void)
{
	char dir[] = "/tmp/cigt-fuzz-http.XXXXXX", model[64], token[64], err[256];
	if (!mkdtemp(dir))
		die("mkdtemp failed");
	snprintf(model, sizeof model, "%s/model.safetensors", dir);
	snprintf(token, sizeof token, "%s/token", dir);
	struct cigt_arch *a;
	struct cigt_model *m;
	if (cigt_arch_parse(tiny_arch, sizeof tiny_arch - 1, &a, err, sizeof err) ||
	    cigt_model_new(a, &m))
		die(err);
	cigt_model_init_random(m, 1, true);
	if (cigt_model_save(m, model, err, sizeof err))
		die(err);
	cigt_model_free(m);
	FILE *f = fopen(token, "w");
	if (!f || fputs(TOKEN "\n", f) < 0 || fclose(f))
		die("cannot write the token file");
	/* Limits small enough for the fuzzer's inputs (at most 16 KiB) to cross them. */
	char *argv[] = {"cigtd", "--model", model, "--listen", "127.0.0.1:0", "--workers", "1",
			"--auth-token-file", token, "--max-body-bytes", "4096", "--max-images", "3",
			"--max-image-pixels", "4096", "--max-delay-us", "0", "--log-level", "error",
			NULL};
	enum srv_action action;
	const char *url;
	if (srv_config_parse((int)(sizeof argv / sizeof argv[0]) - 1, argv, &cfg, &action, &url,
			     err, sizeof err))
		die(err);
	srv_log_level = getenv("FUZZ_HTTP_LOG") ? SRV_LOG_DEBUG : SRV_LOG_OFF;
	if (srv_open(&cfg, 0, &S))
		die("srv_open failed");
	unlink(model);
	unlink(token);
	rmdir(dir);
}

/* Reads what cigtd wrote; false once it has closed the connection. */
static bool drain(int fd, uint8_t *out, size_t *len, size_t cap)
{
	for (;;) {
		uint8_t buf[4096];
		ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (k > 0) {
			size_t n = (size_t)k < cap - *len ? (size_t)k : cap - *len;
			memcpy(out + *len, buf, n);
			*len += n;
			continue;
		}
		if (k == 0)
			return false;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK ? true : false;
	}
}

static bool mhd_busy(void)
{
	MHD_UNSIGNED_LONG_LONG to;
	return MHD_get_timeout(S->d, &to) == MHD_YES && to == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!S)
		start();
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		die("socketpair failed");
	int client = sv[0], server = sv[1];
	fcntl(client, F_SETFL, O_NONBLOCK);
	struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (MHD_add_connection(S->d, server, (struct sockaddr *)&peer, sizeof peer) != MHD_YES)
		die("MHD_add_connection failed");
	static uint8_t out[1 << 16];
	size_t outlen = 0, sent = 0;
	bool open = true;
	int idle = 0, rounds = 0;
	/* Until nothing can move: every byte sent and read by libmicrohttpd, nothing at the
	 * scheduler, libmicrohttpd without pending work, twice in a row. */
	while (open && idle < 2) {
		FUZZ_CHECK(++rounds < 20000); /* a request that never ends is a finding */
		while (sent < size) {
			ssize_t k = send(client, data + sent, size - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (k <= 0)
				break;
			sent += (size_t)k;
		}
		/* A suspended request comes back through the workers' uv_async: wait for it. */
		uv_run(&S->loop, S->nsuspended ? UV_RUN_ONCE : UV_RUN_NOWAIT);
		size_t before = outlen;
		open = drain(client, out, &outlen, sizeof out);
		int unread = 0;
		if (open && ioctl(server, FIONREAD, &unread))
			unread = 0;
		bool still = sent == size && unread == 0 && S->nsuspended == 0 && !mhd_busy() &&
			     outlen == before;
		idle = still ? idle + 1 : 0;
	}
	/* Idle with nothing at the scheduler: libmicrohttpd must not hold the connection
	 * suspended (cigtd resumed it; an answer stuck there waits for an unrelated timer). */
	for (struct srv_conn *c = S->conns.next; open && c != &S->conns; c = c->next) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_SUSPENDED);
		FUZZ_CHECK(S->nsuspended > 0 || !ci || ci->suspended != MHD_YES);
	}
	/* Hang up; libmicrohttpd sees it and finishes the connection and its requests. */
	close(client);
	for (rounds = 0; atomic_load(&srv_stats.stat_connections) > 0; rounds++) {
		if (rounds == 1000)
			fprintf(stderr, "fuzz_http: connection still open after 1000 loop rounds: "
				"%d suspended, %lld in flight\n", S->nsuspended,
				(long long)atomic_load(&srv_stats.stat_inflight));
		FUZZ_CHECK(rounds < 20000); /* the daemon must notice a client that hung up */
		uv_run(&S->loop, UV_RUN_ONCE);
	}
	FUZZ_CHECK(atomic_load(&srv_stats.stat_inflight) == 0);
	FUZZ_CHECK(S->nsuspended == 0);
	FUZZ_NOTE("%zu bytes in, %zu out: %.*s", size, outlen,
		  (int)(memchr(out, '\r', outlen) ? (uint8_t *)memchr(out, '\r', outlen) - out : 0),
		  (const char *)out);
	/* Whatever cigtd answered starts with a status line. */
	if (outlen > 0) {
		FUZZ_CHECK(outlen >= 13 && (!memcmp(out, "HTTP/1.1 ", 9) || !memcmp(out, "HTTP/1.0 ", 9)));
		FUZZ_CHECK(out[9] >= '1' && out[9] <= '5' && out[10] >= '0' && out[10] <= '9' &&
			   out[11] >= '0' && out[11] <= '9' && out[12] == ' ');
	}
	return 0;
}
