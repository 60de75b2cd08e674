/* mhd_bare PORT: the ceiling of libmicrohttpd on this machine, for bench/run's http section.
 * One epoll thread (like cigtd's loop thread), every POST body read in full and answered with a
 * fixed JSON body the size of a /v1/classify answer; no parsing, no inference. */
#include <microhttpd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char answer[] =
	"{\"class\": 9, \"label\": \"Ankle boot\", \"probabilities\": [0.0959371701, 0.101496413, "
	"0.0906816572, 0.107837111, 0.0883646756, 0.111674838, 0.111642189, 0.0879222527, "
	"0.0982957184, 0.10614793], \"route\": [0, 1, 1], \"macs\": 5749632, \"dense_macs\": "
	"11054848, \"compute_saved\": 0.4799}\n";

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *data,
			       size_t *size, void **ctx)
{
	if (!*ctx) {
		*ctx = c; /* first call: headers only */
		return MHD_YES;
	}
	if (*size) {
		*size = 0; /* body read and dropped */
		return MHD_YES;
	}
	struct MHD_Response *r = MHD_create_response_from_buffer(sizeof answer - 1, (void *)answer,
								 MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, "Content-Type", "application/json");
	enum MHD_Result ok = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ok;
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 8090;
	/* Driven the way cigtd's loop thread drives it: MHD_USE_EPOLL, its epoll fd polled here,
	 * MHD_run on every wake-up. (MHD's own MHD_USE_EPOLL_INTERNAL_THREAD stalled at 256
	 * connections on this libmicrohttpd: a few hundred requests/s.) */
	struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, (uint16_t)port,
						NULL, NULL, handler, NULL,
						MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_END);
	const union MHD_DaemonInfo *di = d ? MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD)
					   : NULL;
	if (!d || !di) {
		fprintf(stderr, "mhd_bare: cannot listen on port %d\n", port);
		return 1;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	struct pollfd p = {.fd = di->epoll_fd, .events = POLLIN};
	while (!stop) {
		MHD_UNSIGNED_LONG_LONG to;
		int ms = MHD_get_timeout(d, &to) == MHD_YES ? (to > 1000 ? 1000 : (int)to) : 1000;
		poll(&p, 1, ms);
		MHD_run(d);
	}
	MHD_stop_daemon(d);
	return 0;
}
