/* cigtd's configuration: one table of rows {name, type, bounds, default, help} drives the
 * command-line flags (--max-batch 64), the JSON config file ({"max_batch": 64}; dashes and
 * underscores are interchangeable) and --help, so the three can never disagree. Precedence:
 * defaults, then the --config file, then flags. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cigt/error.h"
#include "cigt/file.h"
#include "../common/util.h"
#include "srv.h"

/* Set by meson from its prefix, datadir, bindir and directories. */
#ifndef CIGT_DATADIR
#define CIGT_DATADIR "/usr/local/share/cigt"
#endif
#ifndef CIGT_DATADIR_REL
#define CIGT_DATADIR_REL "share"
#endif
#ifndef CIGT_BINDIR_REL
#define CIGT_BINDIR_REL "bin"
#endif
#ifndef CIGT_SOURCE_ROOT
#define CIGT_SOURCE_ROOT "."
#endif
#ifndef CIGT_BUILD_ROOT
#define CIGT_BUILD_ROOT "/nonexistent"
#endif

enum cfg_type { CFG_INT, CFG_LONG, CFG_STR, CFG_BOOL, CFG_LEVEL, CFG_CONTROL, CFG_LIST };

struct cfg_row {
	const char *name; /* flag spelling, dashes */
	enum cfg_type type;
	size_t off;
	long long lo, hi;
	const char *def;
	const char *meta;
	const char *help;
};

/* A configuration file is under 1 MiB. */
#define CONFIG_FILE_MAX (((size_t)1 << 20) - 1)

#define OFF(f) offsetof(struct srv_config, f)

static const struct cfg_row rows[] = {
	{"model", CFG_STR, OFF(model), 0, 0, NULL, "PATH",
	 "model file (default: fashion_mnist.safetensors in\n"
	 "                          " CIGT_DATADIR "/models/, looked up\n"
	 "                          relative to the binary; from the build directory, the\n"
	 "                          source tree's models/)"},
	{"model-repository", CFG_STR, OFF(model_repository), 0, 0, NULL, "DIR",
	 "serve every model of a repository laid out as\n"
	 "                          DIR/<name>/<version>/model.safetensors (Triton's layout;\n"
	 "                          optional DIR/<name>/config.json); replaces --model"},
	{"model-control-mode", CFG_CONTROL, OFF(control_mode), 0, 0, "none", "MODE",
	 "none: load the repository at start; poll: rescan it every\n"
	 "                          --repository-poll-secs; explicit: load only --load-model\n"
	 "                          and the repository API. SIGHUP rescans in every mode"},
	{"repository-poll-secs", CFG_INT, OFF(repository_poll_secs), 1, 86400, "15", "N",
	 "seconds between rescans in poll mode"},
	{"load-model", CFG_LIST, OFF(load_models), 0, 0, NULL, "NAME",
	 "explicit mode: load this model at start (repeatable)"},
	{"default-model", CFG_STR, OFF(default_model), 0, 0, NULL, "NAME",
	 "the model /v1/classify and /v1/model serve (default: the only\n"
	 "                          one loaded)"},
	{"compute", CFG_STR, OFF(compute), 0, 0, NULL, "NAME",
	 "the operating point requests without compute or max_macs\n"
	 "                          get (default: the single path); every model\n"
	 "                          loaded must have it"},
	{"listen", CFG_STR, OFF(listen), 0, 0, "127.0.0.1:8080", "ADDR:PORT",
	 "address to listen on; port 0 picks a free one; [::1]:8080 for IPv6"},
	{"workers", CFG_INT, OFF(workers), 0, 64, "0", "N",
	 "inference threads, each with one OpenBLAS thread (0 = online CPUs)"},
	{"max-batch", CFG_INT, OFF(max_batch), 1, 4096, "16", "N", "samples per engine batch"},
	{"max-delay-us", CFG_INT, OFF(max_delay_us), 0, 1000000, "200", "N",
	 "longest wait for a batch to fill after its first sample\n"
	 "                          (0 = never wait)"},
	{"queue-limit", CFG_INT, OFF(queue_limit), 1, 1000000, "4096", "N",
	 "samples waiting at most; beyond it requests get 503 + Retry-After"},
	{"timeout-ms", CFG_INT, OFF(timeout_ms), 1, 3600000, "10000", "N",
	 "default request deadline; a sample not started by then gets 504"},
	{"max-images", CFG_INT, OFF(max_images), 1, 1000000, "1024", "N",
	 "images per request at most (413 beyond)"},
	{"max-body-bytes", CFG_LONG, OFF(max_body_bytes), 1, 1LL << 32, "8388608", "N",
	 "request body size at most (413 beyond)"},
	{"max-image-pixels", CFG_INT, OFF(max_image_pixels), 1, 4096 * 4096, "1048576", "N",
	 "width*height of an encoded PNG/PGM at most (413 beyond)"},
	{"max-connections", CFG_INT, OFF(max_connections), 1, 100000, "1024", "N",
	 "open client connections at most; more are closed at accept"},
	{"max-connections-per-ip", CFG_INT, OFF(max_connections_per_ip), 0, 100000, "256", "N",
	 "open connections per client address at most (0 = no limit)"},
	{"read-timeout-ms", CFG_INT, OFF(read_timeout_ms), 100, 3600000, "10000", "N",
	 "time a connection has to deliver a complete request after\n"
	 "                          opening or its previous answer (slowloris guard)"},
	{"idle-timeout-s", CFG_INT, OFF(idle_timeout_s), 1, 86400, "30", "N",
	 "close a connection that makes no progress this long"},
	{"drain-timeout-ms", CFG_INT, OFF(drain_timeout_ms), 0, 3600000, "20000", "N",
	 "on SIGTERM, time to finish accepted requests before exiting anyway"},
	{"auth-token-file", CFG_STR, OFF(auth_token_file), 0, 0, NULL, "FILE",
	 "require 'Authorization: Bearer <token>' (/, /metrics and\n"
	 "                          /v2/health/* stay open)"},
	{"tls-cert", CFG_STR, OFF(tls_cert), 0, 0, NULL, "FILE", "serve HTTPS with this PEM"},
	{"tls-key", CFG_STR, OFF(tls_key), 0, 0, NULL, "FILE", "private key for --tls-cert"},
	{"log-level", CFG_LEVEL, OFF(log_level), 0, 0, "info", "L", "debug, info, warn, error"},
	{"access-log", CFG_BOOL, OFF(access_log), 0, 0, "false", NULL,
	 "log one line per request"},
};

#define NROWS (sizeof rows / sizeof rows[0])

/* The default model, first readable of: the source tree's models/ when this binary runs from
 * its own meson build directory (make serve, tests); <prefix>/<datadir>/cigt/models/ found
 * relative to the binary (an installed tree, also under a DESTDIR or moved elsewhere); the
 * compiled-in CIGT_DATADIR; models/ under the working directory. None readable: the path the
 * binary would be expected to use, so the load error names it. */
const char *srv_default_model(void)
{
	static const char name[] = "/models/fashion_mnist.safetensors";
	static char exe_rel[PATH_MAX];
	char exe[PATH_MAX], dir[PATH_MAX], build[PATH_MAX];
	const char *candidates[4];
	int n = 0;
	ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
	bool in_build = false;
	if (len > 0) {
		exe[len] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			in_build = realpath(exe, dir) && realpath(CIGT_BUILD_ROOT, build) &&
				   !strcmp(dir, build);
			/* <prefix>/<bindir>/cigtd -> <prefix>/<datadir>/cigt/models/... */
			size_t nb = strlen(CIGT_BINDIR_REL), ne = strlen(exe);
			if (!in_build && ne > nb && exe[ne - nb - 1] == '/' &&
			    !strcmp(exe + ne - nb, CIGT_BINDIR_REL)) {
				exe[ne - nb - 1] = 0;
				int w = snprintf(exe_rel, sizeof exe_rel, "%s/%s/cigt%s", exe,
						 CIGT_DATADIR_REL, name);
				if (w <= 0 || (size_t)w >= sizeof exe_rel)
					exe_rel[0] = 0;
			}
		}
	}
	if (in_build)
		candidates[n++] = CIGT_SOURCE_ROOT "/models/fashion_mnist.safetensors";
	if (exe_rel[0])
		candidates[n++] = exe_rel;
	candidates[n++] = CIGT_DATADIR "/models/fashion_mnist.safetensors";
	candidates[n++] = "models/fashion_mnist.safetensors";
	for (int i = 0; i < n; i++)
		if (!access(candidates[i], R_OK))
			return candidates[i];
	return candidates[0];
}

/* Matches a key with dashes or underscores against a row name. */
static const struct cfg_row *find_row(const char *key, size_t n)
{
	for (size_t i = 0; i < NROWS; i++) {
		const char *r = rows[i].name;
		size_t k = 0;
		while (k < n && r[k] && (key[k] == r[k] || (key[k] == '_' && r[k] == '-')))
			k++;
		if (k == n && !r[k])
			return &rows[i];
	}
	return NULL;
}

static int set_value(struct srv_config *cfg, const struct cfg_row *row, const char *v,
		     const char *from, char *err, size_t errlen)
{
	void *field = (char *)cfg + row->off;
	char *end;
	switch (row->type) {
	case CFG_INT:
	case CFG_LONG: {
		errno = 0;
		long long x = strtoll(v, &end, 10);
		if (errno || end == v || *end || x < row->lo || x > row->hi)
			return cigt_fail(err, errlen, -1, "%s%s: '%s' is not an integer in [%lld, %lld]",
					 from, row->name, v, row->lo, row->hi);
		if (row->type == CFG_INT)
			*(int *)field = (int)x;
		else
			*(long long *)field = x;
		return 0;
	}
	case CFG_STR: {
		char *s = strdup(v);
		if (!s)
			return cigt_fail(err, errlen, -1, "out of memory");
		free(*(char **)field);
		*(char **)field = s;
		return 0;
	}
	case CFG_BOOL:
		if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes"))
			*(bool *)field = true;
		else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no"))
			*(bool *)field = false;
		else
			return cigt_fail(err, errlen, -1, "%s%s: '%s' is not true or false", from,
					 row->name, v);
		return 0;
	case CFG_CONTROL: {
		static const char *const modes[] = {"none", "poll", "explicit"};
		for (int i = 0; i < 3; i++)
			if (!strcmp(v, modes[i])) {
				*(int *)field = i;
				return 0;
			}
		return cigt_fail(err, errlen, -1, "%s%s: '%s' is not none, poll or explicit", from,
				 row->name, v);
	}
	case CFG_LIST: {
		if (!*v || strlen(v) > CIGT_NAME_MAX)
			return cigt_fail(err, errlen, -1, "%s%s: '%.80s' is not a model name", from,
					 row->name, v);
		char **list = realloc(cfg->load_models,
				      (size_t)(cfg->nload_models + 2) * sizeof *list);
		if (!list)
			return cigt_fail(err, errlen, -1, "out of memory");
		cfg->load_models = list;
		if (!(list[cfg->nload_models] = strdup(v)))
			return cigt_fail(err, errlen, -1, "out of memory");
		list[++cfg->nload_models] = NULL;
		return 0;
	}
	case CFG_LEVEL: {
		int lv = srv_log_level_parse(v);
		if (lv < 0 || lv == SRV_LOG_OFF)
			return cigt_fail(err, errlen, -1,
					 "%s%s: '%s' is not debug, info, warn or error", from,
					 row->name, v);
		*(int *)field = lv;
		return 0;
	}
	}
	return -1;
}

void srv_config_defaults(struct srv_config *cfg)
{
	*cfg = (struct srv_config){0};
	for (size_t i = 0; i < NROWS; i++)
		if (rows[i].def)
			CIGT_ASSERT(set_value(cfg, &rows[i], rows[i].def, "", NULL, 0) == 0);
}

void srv_config_destroy(struct srv_config *cfg)
{
	for (size_t i = 0; i < NROWS; i++)
		if (rows[i].type == CFG_STR) {
			char **p = (char **)((char *)cfg + rows[i].off);
			free(*p);
			*p = NULL;
		}
	for (int i = 0; i < cfg->nload_models; i++)
		free(cfg->load_models[i]);
	free(cfg->load_models);
	cfg->load_models = NULL;
	cfg->nload_models = 0;
}

int srv_config_load_json(const char *text, size_t len, struct srv_config *cfg, char *err,
			 size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return cigt_fail(err, errlen, -1, "config: line %d: %s", je.line, je.text);
	int rc = 0;
	const char *key;
	json_t *v;
	if (!json_is_object(root)) {
		rc = cigt_fail(err, errlen, -1, "config: expected a JSON object");
		goto out;
	}
	json_object_foreach(root, key, v) {
		const struct cfg_row *row = find_row(key, strlen(key));
		char tmp[64];
		const char *s = tmp;
		if (!row) {
			rc = cigt_fail(err, errlen, -1, "config: unknown key '%.64s'", key);
			goto out;
		}
		if (row->type == CFG_LIST && json_is_array(v)) {
			size_t i;
			json_t *e;
			json_array_foreach(v, i, e) {
				if (!json_is_string(e)) {
					rc = cigt_fail(err, errlen, -1, "config: %s: expected strings",
						       key);
					goto out;
				}
				if ((rc = set_value(cfg, row, json_string_value(e), "config: ", err,
						    errlen)))
					goto out;
			}
			continue;
		}
		if (json_is_string(v) && (row->type == CFG_STR || row->type == CFG_LEVEL ||
					  row->type == CFG_CONTROL || row->type == CFG_LIST))
			s = json_string_value(v);
		else if (json_is_integer(v) && (row->type == CFG_INT || row->type == CFG_LONG))
			snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
		else if (json_is_boolean(v) && row->type == CFG_BOOL)
			s = json_is_true(v) ? "true" : "false";
		else {
			rc = cigt_fail(err, errlen, -1, "config: %s: wrong type", key);
			goto out;
		}
		if ((rc = set_value(cfg, row, s, "config: ", err, errlen)))
			goto out;
	}
out:
	json_decref(root);
	return rc;
}

static int load_file(const char *path, struct srv_config *cfg, char *err, size_t errlen)
{
	void *buf;
	size_t n;
	char why[512];
	if (cigt_file_read(path, CONFIG_FILE_MAX, &buf, &n, why, sizeof why))
		return cigt_fail(err, errlen, -1, "config: %s", why);
	int rc = srv_config_load_json(buf, n, cfg, err, errlen);
	free(buf);
	return rc;
}

void srv_config_help(FILE *f)
{
	fprintf(f, "usage: cigtd [OPTIONS]\n"
		   "Serves a cigt trellis model over HTTP: POST /v1/classify, the Open Inference\n"
		   "Protocol v2 under /v2, Prometheus metrics at /metrics and a demo page at /.\n\n"
		   "  --config FILE           JSON object with any of the options below\n"
		   "                          (e.g. {\"max_batch\": 32}); flags override it\n"
		   "  --check-config          validate the configuration and model, then exit\n"
		   "  --healthcheck URL       GET URL; exit 0 on 200, 1 otherwise (for HEALTHCHECK)\n"
		   "  --help, --version\n\n");
	for (size_t i = 0; i < NROWS; i++) {
		char left[64];
		snprintf(left, sizeof left, "--%s%s%s", rows[i].name, rows[i].meta ? " " : "",
			 rows[i].meta ? rows[i].meta : "");
		if (strlen(left) >= 24)
			fprintf(f, "  %s\n%26s%s", left, "", rows[i].help);
		else
			fprintf(f, "  %-24s%s", left, rows[i].help);
		if (rows[i].def && rows[i].type != CFG_BOOL)
			fprintf(f, " [%s]", rows[i].def);
		fputc('\n', f);
	}
	fputc('\n', f);
	srv_signals_help(f);
}

int srv_config_parse(int argc, char **argv, struct srv_config *cfg, enum srv_action *action,
		     const char **hc_url, char *err, size_t errlen)
{
	srv_config_defaults(cfg);
	*action = SRV_RUN;
	*hc_url = NULL;
	/* First pass: actions and --config, so the file comes before any flag. */
	const char *file = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			*action = SRV_HELP;
		else if (!strcmp(a, "--version"))
			*action = SRV_VERSION;
		else if (!strcmp(a, "--check-config"))
			*action = SRV_CHECK_CONFIG;
		else if (!strcmp(a, "--healthcheck") || !strcmp(a, "--config")) {
			if (i + 1 >= argc)
				return cigt_fail(err, errlen, -1, "%s needs a value", a);
			if (a[2] == 'h') {
				*action = SRV_HEALTHCHECK;
				*hc_url = argv[i + 1];
			} else {
				file = argv[i + 1];
			}
			i++;
		} else if (!strncmp(a, "--config=", 9)) {
			file = a + 9;
		} else if (!strncmp(a, "--healthcheck=", 14)) {
			*action = SRV_HEALTHCHECK;
			*hc_url = a + 14;
		}
	}
	if (*action == SRV_HELP || *action == SRV_VERSION || *action == SRV_HEALTHCHECK)
		return 0;
	if (file && load_file(file, cfg, err, errlen))
		return -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--check-config"))
			continue;
		if (!strcmp(a, "--config") || !strcmp(a, "--healthcheck")) {
			i++;
			continue;
		}
		if (!strncmp(a, "--config=", 9))
			continue;
		if (strncmp(a, "--", 2))
			return cigt_fail(err, errlen, -1, "unexpected argument '%s' (see --help)", a);
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const struct cfg_row *row = find_row(name, nlen);
		if (!row)
			return cigt_fail(err, errlen, -1, "unknown option '%s' (see --help)", a);
		const char *v;
		if (eq)
			v = eq + 1;
		else if (row->type == CFG_BOOL)
			v = "true";
		else if (i + 1 < argc)
			v = argv[++i];
		else
			return cigt_fail(err, errlen, -1, "--%s needs a value", row->name);
		if (set_value(cfg, row, v, "--", err, errlen))
			return -1;
	}
	if (cfg->model && cfg->model_repository)
		return cigt_fail(err, errlen, -1, "--model and --model-repository exclude each other");
	if (cfg->nload_models && cfg->control_mode != SRV_CONTROL_EXPLICIT)
		return cigt_fail(err, errlen, -1,
				 "--load-model needs --model-control-mode explicit");
	if (!cfg->model && !cfg->model_repository && !(cfg->model = strdup(srv_default_model())))
		return cigt_fail(err, errlen, -1, "out of memory");
	if (!!cfg->tls_cert != !!cfg->tls_key)
		return cigt_fail(err, errlen, -1, "--tls-cert and --tls-key go together");
	/* A request larger than the whole queue could never be queued. */
	if (cfg->max_images > cfg->queue_limit)
		cfg->max_images = cfg->queue_limit;
	if (cfg->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		cfg->workers = n < 1 ? 1 : n > 64 ? 64 : (int)n;
	}
	return 0;
}
