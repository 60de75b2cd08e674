/* The stats struct and its rendering as Prometheus text format 0.0.4. Counters are relaxed
 * atomics bumped by the loop and the workers; /metrics reads them without a lock, so a scrape
 * may see a histogram's buckets a few observations apart from its count (as with every client
 * library). process_* metrics come from /proc/self. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "srv.h"

struct srv_stats srv_stats;

void srv_hist_init(struct srv_hist *h, const double *bounds, int n, double scale)
{
	h->n = n;
	h->scale = scale;
	for (int i = 0; i < n; i++)
		h->bounds[i] = bounds[i];
}

void srv_hist_observe(struct srv_hist *h, uint64_t raw)
{
	double v = (double)raw * h->scale;
	int i = 0;
	while (i < h->n && v > h->bounds[i])
		i++;
	atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, raw, memory_order_relaxed);
}

void srv_stats_init(void)
{
	static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
				      0.05,   0.1,   0.25,   0.5,   1,    2.5, 5, 10};
	static const double sizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
	const int ns = (int)(sizeof secs / sizeof secs[0]), nz = (int)(sizeof sizes / sizeof sizes[0]);
	srv_hist_init(&srv_stats.stat_request_duration, secs, ns, 1e-9);
	srv_hist_init(&srv_stats.stat_queue_duration, secs, ns, 1e-9);
	srv_hist_init(&srv_stats.stat_batch_size, sizes, nz, 1);
	for (int l = 0; l < CIGT_MAX_LAYERS; l++)
		srv_hist_init(&srv_stats.stat_group_size[l], sizes, nz, 1);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void hist_render(struct srv_buf *b, const char *name, const char *labels,
			const struct srv_hist *h)
{
	uint64_t cum = 0;
	const char *sep = labels[0] ? "," : "";
	for (int i = 0; i <= h->n; i++) {
		cum += LOAD(h->counts[i]);
		if (i < h->n)
			srv_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
				       h->bounds[i], (unsigned long long)cum);
		else
			srv_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
				       (unsigned long long)cum);
	}
	const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
	srv_buf_printf(b, "%s_sum%s%s%s %.9g\n", name, open, labels, close,
		       (double)LOAD(h->sum) * h->scale);
	srv_buf_printf(b, "%s_count%s%s%s %llu\n", name, open, labels, close,
		       (unsigned long long)cum);
}

static void head(struct srv_buf *b, const char *name, const char *type, const char *help)
{
	srv_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* process_* from /proc/self/stat, /proc/stat and /proc/self/fd. */
static void process_render(struct srv_buf *b)
{
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
	long long rss = 0;
	if (p && tck > 0 &&
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
			  "%*d %*d %llu %llu %lld",
		   &utime, &stime, &start, &vsize, &rss) == 5) {
		head(b, "process_cpu_seconds_total", "counter",
		     "Total user and system CPU time spent in seconds.");
		srv_buf_printf(b, "process_cpu_seconds_total %.2f\n",
			       (double)(utime + stime) / (double)tck);
		head(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
		srv_buf_printf(b, "process_virtual_memory_bytes %llu\n", vsize);
		head(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
		srv_buf_printf(b, "process_resident_memory_bytes %lld\n", rss * page);
		unsigned long long btime = 0;
		FILE *s = fopen("/proc/stat", "r");
		char line[256];
		while (s && fgets(line, sizeof line, s))
			if (sscanf(line, "btime %llu", &btime) == 1)
				break;
		if (s)
			fclose(s);
		if (btime) {
			head(b, "process_start_time_seconds", "gauge",
			     "Start time of the process since unix epoch in seconds.");
			srv_buf_printf(b, "process_start_time_seconds %.2f\n",
				       (double)btime + (double)start / (double)tck);
		}
	}
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		long fds = -1; /* the directory's own descriptor */
		while (readdir(d))
			fds++;
		closedir(d);
		head(b, "process_open_fds", "gauge", "Number of open file descriptors.");
		srv_buf_printf(b, "process_open_fds %ld\n", fds - 2); /* "." and ".." */
	}
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		head(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
		srv_buf_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	}
}

void srv_metrics_render(struct srv_buf *b, const struct cigt_arch *a, const char *model_name,
			bool ready)
{
	struct srv_stats *s = &srv_stats;
	head(b, "cigt_requests_total", "counter",
	     "HTTP requests answered, by endpoint and status code (499: client went away).");
	for (int e = 0; e < SRV_EP_COUNT; e++)
		for (int c = 0; c < SRV_S_COUNT; c++) {
			uint64_t v = LOAD(s->stat_requests[e][c]);
			if (v)
				srv_buf_printf(b, "cigt_requests_total{endpoint=\"%s\",code=\"%d\"} "
						  "%llu\n",
					       srv_endpoint_name(e), srv_status_code(c),
					       (unsigned long long)v);
		}
	head(b, "cigt_request_duration_seconds", "histogram",
	     "Time from a request's arrival to its answer being queued.");
	hist_render(b, "cigt_request_duration_seconds", "", &s->stat_request_duration);
	head(b, "cigt_queue_duration_seconds", "histogram",
	     "Time a sample waited in the queue before its batch ran.");
	hist_render(b, "cigt_queue_duration_seconds", "", &s->stat_queue_duration);
	head(b, "cigt_batch_size", "histogram", "Samples per engine batch.");
	hist_render(b, "cigt_batch_size", "", &s->stat_batch_size);
	head(b, "cigt_expert_group_size", "histogram",
	     "Samples per expert run (one group of a batch), by layer.");
	char lab[64];
	for (int l = 0; a && l < a->nlayers; l++) {
		snprintf(lab, sizeof lab, "layer=\"%d\"", l);
		hist_render(b, "cigt_expert_group_size", lab, &s->stat_group_size[l]);
	}
	head(b, "cigt_route_samples_total", "counter",
	     "Expert runs: samples routed through each expert, one per opened copy with several paths.");
	for (int l = 0; a && l < a->nlayers; l++)
		for (int e = 0; e < a->layers[l].experts; e++)
			srv_buf_printf(b, "cigt_route_samples_total{layer=\"%d\",expert=\"%d\"} "
					  "%llu\n",
				       l, e, (unsigned long long)LOAD(s->stat_route_samples[l][e]));
	head(b, "cigt_samples_total", "counter", "Samples classified.");
	srv_buf_printf(b, "cigt_samples_total %llu\n", (unsigned long long)LOAD(s->stat_samples));
	head(b, "cigt_samples_expired_total", "counter",
	     "Samples dropped uncomputed because their deadline passed (answered 504).");
	srv_buf_printf(b, "cigt_samples_expired_total %llu\n",
		       (unsigned long long)LOAD(s->stat_samples_expired));
	head(b, "cigt_macs_total", "counter",
	     "Multiply-accumulates executed (every path and second model that ran).");
	srv_buf_printf(b, "cigt_macs_total %llu\n", (unsigned long long)LOAD(s->stat_macs));
	head(b, "cigt_dense_macs_total", "counter",
	     "Multiply-accumulates the same samples would cost with every expert run.");
	srv_buf_printf(b, "cigt_dense_macs_total %llu\n",
		       (unsigned long long)LOAD(s->stat_dense_macs));
	head(b, "cigt_queue_depth", "gauge", "Samples waiting for a batch.");
	srv_buf_printf(b, "cigt_queue_depth %lld\n", (long long)LOAD(s->stat_queue_depth));
	head(b, "cigt_queue_limit", "gauge",
	     "Samples the queue holds at most (queue_limit); beyond it requests get 503.");
	srv_buf_printf(b, "cigt_queue_limit %lld\n", (long long)LOAD(s->stat_queue_limit));
	head(b, "cigt_queue_full_total", "counter", "Requests refused with 503 on a full queue.");
	srv_buf_printf(b, "cigt_queue_full_total %llu\n",
		       (unsigned long long)LOAD(s->stat_queue_full));
	head(b, "cigt_requests_in_flight", "gauge", "Requests received and not yet answered.");
	srv_buf_printf(b, "cigt_requests_in_flight %lld\n", (long long)LOAD(s->stat_inflight));
	head(b, "cigt_model_reloads_total", "counter", "Version loads after the start (SIGHUP, polling, the repository API), by result.");
	srv_buf_printf(b, "cigt_model_reloads_total{result=\"success\"} %llu\n",
		       (unsigned long long)LOAD(s->stat_reloads_ok));
	srv_buf_printf(b, "cigt_model_reloads_total{result=\"failure\"} %llu\n",
		       (unsigned long long)LOAD(s->stat_reloads_failed));
	head(b, "cigt_connections", "gauge", "Open client connections.");
	srv_buf_printf(b, "cigt_connections %lld\n", (long long)LOAD(s->stat_connections));
	head(b, "cigt_connections_rejected_total", "counter",
	     "Connections closed at accept because of the connection limits.");
	srv_buf_printf(b, "cigt_connections_rejected_total %llu\n",
		       (unsigned long long)LOAD(s->stat_connections_rejected));
	head(b, "cigt_connections_slow_total", "counter",
	     "Connections closed for not sending a complete request within read_timeout_ms.");
	srv_buf_printf(b, "cigt_connections_slow_total %llu\n",
		       (unsigned long long)LOAD(s->stat_connections_slow));
	head(b, "cigt_ready", "gauge", "1 when the server accepts inference requests.");
	srv_buf_printf(b, "cigt_ready %d\n", ready ? 1 : 0);
	head(b, "cigt_build_info", "gauge", "Version and serving model.");
	srv_buf_puts(b, "cigt_build_info{version=\"" CIGT_VERSION "\",model=");
	srv_buf_json_str(b, model_name);
	srv_buf_puts(b, "} 1\n");
	process_render(b);
}
