/* The loop's state, shared by server.c (the event loop, connections, signals, startup) and
 * handler.c (what each request is answered). Loop thread only. */
#ifndef CIGT_SRV_LOOP_H
#define CIGT_SRV_LOOP_H

#include <microhttpd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <uv.h>

#include "srv.h"

struct srv_conn {
	struct srv_conn *prev, *next;
	struct MHD_Connection *mc;
	int fd;
	uint64_t deadline; /* a complete request must have arrived by then, unless busy */
	bool busy;         /* a request was received and is not answered yet */
	char ip[INET6_ADDRSTRLEN];
};

struct srv {
	const struct srv_config *cfg;
	uv_loop_t loop;
	uv_poll_t mhd_poll;
	uv_timer_t mhd_timer, sweep_timer, watchdog_timer, drain_timer, stop_timer;
	uv_signal_t sigs[32]; /* srv_signals[i] */
	uv_async_t done_async;
	struct MHD_Daemon *d;
	int listen_fd;
	struct srv_sched *sched;
	struct srv_registry *reg;
	pthread_mutex_t done_mu;
	struct srv_req *done_head;
	char *token;
	size_t token_len;
	char *tls_cert, *tls_key;
	struct srv_conn conns; /* list sentinel */
	bool ready, draining, stopping, reloading;
	bool loop_ok;          /* loop initialised: srv_close runs and closes it */
	int port;              /* the port listened on */
	int grpc_port;         /* the gRPC port listened on (--grpc-listen), else 0 */
	int nsuspended;        /* connections suspended while the scheduler or registry has them */
	bool mhd_rerun;        /* a connection was resumed inside a libmicrohttpd callback */
	int exit_code;
	struct srv_grpc *grpc; /* --grpc-listen (src/server/grpc.h), or NULL */
};

/* srv_open's flags. SRV_OPEN_SIGNALS: install cigtd's signal handlers (srv_signals); without
 * it (the HTTP fuzz target) the process keeps its own. */
enum { SRV_OPEN_SIGNALS = 1 };

/* Everything srv_run does before serving, on the calling thread: secrets, models, workers, the
 * listening socket (cfg->listen), the loop with its handles and libmicrohttpd configured as
 * cigtd runs it, already driven once. 0 on success; otherwise logs why and returns 1. Either
 * way *out must be given to srv_close (which takes NULL). */
int srv_open(const struct srv_config *cfg, unsigned flags, struct srv **out);
/* Stops what srv_open started that a drain has not (workers, daemon, listening socket), runs the
 * loop until its handles are closed, and frees S. */
void srv_close(struct srv *S);

enum srv_body_kind { BODY_COPY, BODY_TAKE, BODY_STATIC };

/* Queues an answer on mc for r (status, Content-Type, body of the given kind); records the
 * status and size in r for the access log and the metrics. */
enum MHD_Result srv_respond(struct srv *S, struct MHD_Connection *mc, struct srv_req *r,
			    int status, const char *ctype, const void *body, size_t len,
			    enum srv_body_kind kind);
/* {"error": msg} with status. */
enum MHD_Result srv_respond_error(struct srv *S, struct MHD_Connection *mc, struct srv_req *r,
				  int status, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* Takes b's bytes as the body (500 when b ran out of memory). */
enum MHD_Result srv_respond_buf(struct srv *S, struct MHD_Connection *mc, struct srv_req *r,
				int status, const char *ctype, struct srv_buf *b);
/* Decides a fully received request: an answer, or a hand-off to the scheduler or registry. */
enum MHD_Result srv_dispatch(struct srv *S, struct MHD_Connection *mc, struct srv_req *r,
			     const char *url, const char *method);
/* (listen.c) A listening socket (non-blocking) for "host:port", "[v6]:port" or ":port"; *port_out gets
 * the port bound. The fd, or -1 with a message. */
int srv_open_listener(const char *spec, int *port_out, char *err, size_t errlen);

#endif
