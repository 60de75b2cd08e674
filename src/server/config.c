/* cigtd's configuration: one option table (src/common/options.h) drives the command-line flags
 * (--max-batch 64), the JSON config file ({"max_batch": 64}; dashes and underscores are
 * interchangeable), --help, the effective configuration --check-config prints and the docs'
 * option list (--options-json), so they can never disagree. Precedence: defaults, then the
 * --config file, then flags. The actions (--help, --config, ...) are a second table of flags. */
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
#include "../common/options.h"
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

/* A configuration file is under 1 MiB. */
#define CONFIG_FILE_MAX (((size_t)1 << 20) - 1)

#define F(f) CIGT_OPT_FIELD(struct srv_config, f)
#define D (CIGT_OPT_IN_DAEMON | CIGT_OPT_IN_DAEMON_FILE)
#define OWNED .flags = CIGT_OPT_OWNED

/* --load-model NAME, repeatable: appended to cfg->load_models. */
static int load_model_text(const struct cigt_opt *o, void *target, const char *v, const char *at,
			   char *err, size_t errlen)
{
	struct srv_config *cfg = (void *)((char *)target - o->off);
	if (!*v || strlen(v) > CIGT_NAME_MAX)
		return cigt_fail(err, errlen, -1, "%s: '%.80s' is not a model name", at, v);
	char **list = realloc(cfg->load_models, (size_t)(cfg->nload_models + 2) * sizeof *list);
	if (!list)
		return cigt_fail(err, errlen, -1, "out of memory");
	cfg->load_models = list;
	if (!(list[cfg->nload_models] = strdup(v)))
		return cigt_fail(err, errlen, -1, "out of memory");
	list[++cfg->nload_models] = NULL;
	return 0;
}

/* In the file: a name or a list of names. */
static int load_model_json(const struct cigt_opt *o, void *target, const json_t *v,
			   const char *at, char *err, size_t errlen)
{
	size_t i;
	json_t *e;
	if (json_is_string(v))
		return load_model_text(o, target, json_string_value(v), at, err, errlen);
	if (!json_is_array(v))
		return cigt_fail(err, errlen, -1, "%s: expected a model name or a list of them", at);
	json_array_foreach((json_t *)v, i, e) {
		if (!json_is_string(e))
			return cigt_fail(err, errlen, -1, "%s: expected strings", at);
		if (load_model_text(o, target, json_string_value(e), at, err, errlen))
			return -1;
	}
	return 0;
}

static const char *const control_modes[] = {"none", "poll", "explicit", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
const char *const srv_backends[] = {"auto", "openblas", "onednn", NULL};
const char *const srv_precisions[] = {"fp32", "bf16", "int8", "auto", NULL};
_Static_assert(SRV_CONTROL_NONE == 0 && SRV_CONTROL_POLL == 1 && SRV_CONTROL_EXPLICIT == 2,
	       "control_modes[] follows enum srv_control");
_Static_assert(SRV_LOG_DEBUG == 0 && SRV_LOG_INFO == 1 && SRV_LOG_WARN == 2 &&
		       SRV_LOG_ERROR == 3,
	       "log_levels[] follows enum srv_log_level");

/* Every setting: a flag and a key of the --config file alike. */
static const struct cigt_opt rows[] = {
	{"model", 0, CIGT_OPT_STR, F(model), .where = D, OWNED, .arg = "PATH",
	 .help = "model file (default: fashion_mnist.safetensors in\n"
		 CIGT_DATADIR "/models/, looked up\n"
		 "relative to the binary; from the build directory, the\n"
		 "source tree's models/)"},
	{"model-repository", 0, CIGT_OPT_STR, F(model_repository), .where = D, OWNED, .arg = "DIR",
	 .help = "serve every model of a repository laid out as\n"
		 "DIR/<name>/<version>/model.safetensors (Triton's layout;\n"
		 "optional DIR/<name>/config.json); replaces --model"},
	{"model-control-mode", 0, CIGT_OPT_CHOICE, F(control_mode), .where = D,
	 .choices = control_modes, .def = "none", .arg = "MODE",
	 .help = "none: load the repository at start; poll: rescan it every\n"
		 "--repository-poll-secs; explicit: load only --load-model\n"
		 "and the repository API. SIGHUP rescans in every mode"},
	{"repository-poll-secs", 0, CIGT_OPT_INT, F(repository_poll_secs), .where = D, .lo = 1,
	 .hi = 86400, .def = "15", .arg = "N", .help = "seconds between rescans in poll mode"},
	{"load-model", 0, CIGT_OPT_CALL, F(load_models), .where = D, .text = load_model_text,
	 .json = load_model_json, .arg = "NAME",
	 .help = "explicit mode: load this model at start (repeatable; in the\n"
		 "file a name or a list of names)"},
	{"default-model", 0, CIGT_OPT_STR, F(default_model), .where = D, OWNED, .arg = "NAME",
	 .help = "the model /v1/classify and /v1/model serve (default: the only\n"
		 "one loaded)"},
	{"compute", 0, CIGT_OPT_STR, F(compute), .where = D, OWNED, .arg = "NAME",
	 .help = "the operating point requests without compute or max_macs\n"
		 "get (default: the single path); every model\n"
		 "loaded must have it"},
	{"backend", 0, CIGT_OPT_CHOICE, F(backend), .where = D, .choices = srv_backends,
	 .def = "auto", .arg = "B",
	 .help = "where convs and linears run: openblas (im2col + sgemm,\n"
		 "fp32), onednn, or auto (onednn for bf16 and int8, openblas\n"
		 "for fp32); a model's config.json may say otherwise"},
	{"precision", 0, CIGT_OPT_CHOICE, F(precision), .where = D, .choices = srv_precisions,
	 .def = "fp32", .arg = "P",
	 .help = "fp32, bf16 (oneDNN: bf16 weights and inputs, fp32\n"
		 "sums), int8 (oneDNN; a model cigt quantize calibrated) or\n"
		 "auto (the fastest the CPU has whose accuracy cigt quantize\n"
		 "validated, else fp32); a model's config.json may say otherwise"},
	{"listen", 0, CIGT_OPT_STR, F(listen), .where = D, OWNED, .def = "127.0.0.1:8080",
	 .arg = "ADDR:PORT",
	 .help = "address to listen on; port 0 picks a free one;\n[::1]:8080 for IPv6"},
	{"workers", 0, CIGT_OPT_INT, F(workers), .where = D, .lo = 0, .hi = 64, .def = "0",
	 .arg = "N", .help = "inference threads, each with one OpenBLAS thread\n(0 = online CPUs)"},
	{"max-batch", 0, CIGT_OPT_INT, F(max_batch), .where = D, .lo = 1, .hi = 4096, .def = "16",
	 .arg = "N", .help = "samples per engine batch"},
	{"max-delay-us", 0, CIGT_OPT_INT, F(max_delay_us), .where = D, .lo = 0, .hi = 1000000,
	 .def = "200", .arg = "N",
	 .help = "longest wait for a batch to fill after its first sample\n"
		 "(0 = never wait)"},
	{"eager-dispatch", 0, CIGT_OPT_FLAG, F(eager_dispatch), .where = D, .def = "true",
	 .help = "run a batch at once when no other request is in flight\n"
		 "(one connection never waits out --max-delay-us);\n"
		 "--eager-dispatch=false always waits"},
	{"queue-limit", 0, CIGT_OPT_INT, F(queue_limit), .where = D, .lo = 1, .hi = 1000000,
	 .def = "4096", .arg = "N",
	 .help = "samples waiting at most; beyond it requests get\n503 + Retry-After"},
	{"timeout-ms", 0, CIGT_OPT_INT, F(timeout_ms), .where = D, .lo = 1, .hi = 3600000,
	 .def = "10000", .arg = "N",
	 .help = "default request deadline; a sample not started by\nthen gets 504"},
	{"max-images", 0, CIGT_OPT_INT, F(max_images), .where = D, .lo = 1, .hi = 1000000,
	 .def = "1024", .arg = "N", .help = "images per request at most (413 beyond)"},
	{"max-body-bytes", 0, CIGT_OPT_INT, F(max_body_bytes), .where = D, .lo = 1,
	 .hi = 1LL << 32, .def = "8388608", .arg = "N",
	 .help = "request body size at most (413 beyond)"},
	{"max-image-pixels", 0, CIGT_OPT_INT, F(max_image_pixels), .where = D, .lo = 1,
	 .hi = 4096 * 4096, .def = "1048576", .arg = "N",
	 .help = "width*height of an encoded PNG/PGM at most (413 beyond)"},
	{"max-connections", 0, CIGT_OPT_INT, F(max_connections), .where = D, .lo = 1,
	 .hi = 100000, .def = "1024", .arg = "N",
	 .help = "open client connections at most; more are closed at accept"},
	{"max-connections-per-ip", 0, CIGT_OPT_INT, F(max_connections_per_ip), .where = D,
	 .lo = 0, .hi = 100000, .def = "256", .arg = "N",
	 .help = "open connections per client address at most (0 = no limit)"},
	{"read-timeout-ms", 0, CIGT_OPT_INT, F(read_timeout_ms), .where = D, .lo = 100,
	 .hi = 3600000, .def = "10000", .arg = "N",
	 .help = "time a connection has to deliver a complete request after\n"
		 "opening or its previous answer (slowloris guard)"},
	{"idle-timeout-s", 0, CIGT_OPT_INT, F(idle_timeout_s), .where = D, .lo = 1, .hi = 86400,
	 .def = "30", .arg = "N", .help = "close a connection that makes no progress this long"},
	{"drain-timeout-ms", 0, CIGT_OPT_INT, F(drain_timeout_ms), .where = D, .lo = 0,
	 .hi = 3600000, .def = "20000", .arg = "N",
	 .help = "on SIGTERM, time to finish accepted requests\nbefore exiting anyway"},
	{"auth-token-file", 0, CIGT_OPT_STR, F(auth_token_file), .where = D, OWNED, .arg = "FILE",
	 .help = "require 'Authorization: Bearer <token>' (/, /metrics and\n"
		 "/v2/health/* stay open)"},
	{"tls-cert", 0, CIGT_OPT_STR, F(tls_cert), .where = D, OWNED, .arg = "FILE",
	 .help = "serve HTTPS with this PEM"},
	{"tls-key", 0, CIGT_OPT_STR, F(tls_key), .where = D, OWNED, .arg = "FILE",
	 .help = "private key for --tls-cert"},
	{"log-level", 0, CIGT_OPT_CHOICE, F(log_level), .where = D, .flags = CIGT_OPT_NOCASE,
	 .choices = log_levels, .def = "info", .arg = "L", .help = "debug, info, warn, error"},
	{"access-log", 0, CIGT_OPT_FLAG, F(access_log), .where = D, .def = "false",
	 .help = "log one line per request"},
	/* gRPC (issue 28): the OIP gRPC service beside HTTP, off unless an address is given. */
	{"grpc-listen", 0, CIGT_OPT_STR, F(grpc_listen), .where = D, OWNED, .arg = "ADDR:PORT",
	 .help = "also serve the OIP gRPC service (inference.GRPCInferenceService,\n"
		 "HTTP/2 cleartext) on this address, e.g. 0.0.0.0:8001;\n"
		 "port 0 picks a free one (default: off)"},
	{"grpc-max-message-bytes", 0, CIGT_OPT_INT, F(grpc_max_message_bytes), .where = D,
	 .lo = 64, .hi = 1LL << 31, .def = "8388608", .arg = "N",
	 .help = "gRPC request message size at most (RESOURCE_EXHAUSTED beyond)"},
	{"grpc-max-streams", 0, CIGT_OPT_INT, F(grpc_max_streams), .where = D, .lo = 1,
	 .hi = 65536, .def = "128", .arg = "N",
	 .help = "concurrent gRPC calls per connection\n(SETTINGS_MAX_CONCURRENT_STREAMS)"},
	{"grpc-max-header-bytes", 0, CIGT_OPT_INT, F(grpc_max_header_bytes), .where = D,
	 .lo = 1024, .hi = 1 << 20, .def = "16384", .arg = "N",
	 .help = "header list of a gRPC call at most (SETTINGS_MAX_HEADER_LIST_SIZE;\n"
		 "RESOURCE_EXHAUSTED beyond)"},
	{"grpc-idle-timeout-s", 0, CIGT_OPT_INT, F(grpc_idle_timeout_s), .where = D, .lo = 1,
	 .hi = 86400, .def = "300", .arg = "N",
	 .help = "close a gRPC connection without calls after this long (GOAWAY)"},
	{0},
};

/* What cigtd does besides serving: flags only, read before the file and the settings. */
struct actions {
	const char *config, *healthcheck;
	bool check, help, version, describe;
};
#define A(f) CIGT_OPT_FIELD(struct actions, f)
static const struct cigt_opt actions[] = {
	{"config", 0, CIGT_OPT_STR, A(config), .where = CIGT_OPT_IN_DAEMON, .arg = "FILE",
	 .help = "JSON object with any of the options below\n"
		 "(e.g. {\"max_batch\": 32}); flags override it"},
	{"check-config", 0, CIGT_OPT_FLAG, A(check), .where = CIGT_OPT_IN_DAEMON,
	 .help = "validate the configuration and model, print the effective\n"
		 "configuration, then exit"},
	{"healthcheck", 0, CIGT_OPT_STR, A(healthcheck), .where = CIGT_OPT_IN_DAEMON,
	 .arg = "URL", .help = "GET URL; exit 0 on 200, 1 otherwise (for HEALTHCHECK)"},
	{"help", 'h', CIGT_OPT_FLAG, A(help), .where = CIGT_OPT_IN_DAEMON, .help = "this text"},
	{"version", 0, CIGT_OPT_FLAG, A(version), .where = CIGT_OPT_IN_DAEMON,
	 .help = "print the version"},
	{"options-json", 0, CIGT_OPT_FLAG, A(describe), .where = CIGT_OPT_IN_DAEMON,
	 .flags = CIGT_OPT_HIDDEN, .help = "print the option tables as JSON (for the docs' tests)"},
	{0},
};

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

void srv_config_defaults(struct srv_config *cfg)
{
	*cfg = (struct srv_config){0};
	CIGT_ASSERT(cigt__opts_defaults(rows, cfg) == 0);
}

void srv_config_destroy(struct srv_config *cfg)
{
	cigt__opts_destroy(rows, cfg);
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
	if (!json_is_object(root))
		rc = cigt_fail(err, errlen, -1, "config: expected a JSON object");
	else if (cigt__opts_read_json(rows, CIGT_OPT_IN_DAEMON_FILE, cfg, root, "config: ", NULL,
				      err, errlen))
		rc = -1;
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
		   "Protocol v2 under /v2, Prometheus metrics at /metrics and a demo page at /.\n\n");
	cigt__opts_help(actions, 0, 24, f);
	fputc('\n', f);
	cigt__opts_help(rows, 0, 24, f);
	fputc('\n', f);
	srv_signals_help(f);
}

json_t *srv_config_json(const struct srv_config *cfg)
{
	json_t *o = json_object();
	for (const struct cigt_opt *r = rows; o && !cigt__opt_end(r); r++) {
		char key[64];
		snprintf(key, sizeof key, "%s", r->name);
		for (char *c = key; *c; c++)
			if (*c == '-')
				*c = '_';
		json_t *v = NULL;
		if (r->text == load_model_text) {
			v = json_array();
			for (int i = 0; i < cfg->nload_models; i++)
				json_array_append_new(v, json_string(cfg->load_models[i]));
		} else {
			v = cigt__opt_get_json(r, (void *)cfg);
		}
		if (json_is_null(v) || (json_is_array(v) && !json_array_size(v)))
			json_decref(v); /* not set: the file leaves it out */
		else if (json_object_set_new(o, key, v)) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

int srv_config_describe(FILE *f)
{
	json_t *d = cigt__opts_describe(actions), *s = cigt__opts_describe(rows);
	json_t *r = cigt__opts_describe(srv_model_cfg_rows);
	json_t *all = d && s && r && !json_array_extend(d, s) ? json_pack("{sOsO}", "cigtd", d,
									   "repository", r)
							  : NULL;
	int rc = all && !json_dumpf(all, f, JSON_INDENT(1) | JSON_PRESERVE_ORDER) ? 0 : -1;
	fputc('\n', f);
	json_decref(all);
	json_decref(d);
	json_decref(s);
	json_decref(r);
	return rc;
}

/* The row an argument "--name[=value]" or "-h" names in table t (where: DAEMON), or NULL;
 * *val is what follows '='. */
static const struct cigt_opt *flag_row(const struct cigt_opt *t, const char *a, const char **val)
{
	*val = NULL;
	if (a[0] == '-' && a[1] && a[1] != '-' && !a[2]) {
		for (; !cigt__opt_end(t); t++)
			if (t->short_name == a[1])
				return t;
		return NULL;
	}
	if (strncmp(a, "--", 2))
		return NULL;
	const char *name = a + 2, *eq = strchr(name, '=');
	if (eq)
		*val = eq + 1;
	return cigt__opts_find(t, CIGT_OPT_IN_DAEMON, name, eq ? (size_t)(eq - name) : strlen(name));
}

int srv_config_parse(int argc, char **argv, struct srv_config *cfg, enum srv_action *action,
		     const char **hc_url, char *err, size_t errlen)
{
	struct actions act = {0};
	const char *val;
	srv_config_defaults(cfg);
	*action = SRV_RUN;
	*hc_url = NULL;
	/* First pass: the actions and --config, so the file comes before any flag. The last
	 * action given wins. */
	for (int i = 1; i < argc; i++) {
		const struct cigt_opt *row = flag_row(actions, argv[i], &val);
		if (!row)
			continue;
		if (!val && row->type != CIGT_OPT_FLAG) {
			if (i + 1 >= argc)
				return cigt_fail(err, errlen, -1, "%s needs a value", argv[i]);
			val = argv[++i];
		}
		if (cigt__opt_set(row, &act, val ? val : "true", "--", err, errlen))
			return -1;
		*action = row->off == offsetof(struct actions, help)          ? SRV_HELP
			  : row->off == offsetof(struct actions, version)     ? SRV_VERSION
			  : row->off == offsetof(struct actions, check)       ? SRV_CHECK_CONFIG
			  : row->off == offsetof(struct actions, healthcheck) ? SRV_HEALTHCHECK
			  : row->off == offsetof(struct actions, describe)    ? SRV_DESCRIBE
									      : *action;
	}
	*hc_url = act.healthcheck;
	if (*action != SRV_RUN && *action != SRV_CHECK_CONFIG)
		return 0;
	if (act.config && load_file(act.config, cfg, err, errlen))
		return -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const struct cigt_opt *row = flag_row(actions, a, &val);
		if (row) {
			i += !val && row->type != CIGT_OPT_FLAG;
			continue;
		}
		if (strncmp(a, "--", 2))
			return cigt_fail(err, errlen, -1, "unexpected argument '%s' (see --help)", a);
		if (!(row = flag_row(rows, a, &val)))
			return cigt_fail(err, errlen, -1, "unknown option '%s' (see --help)", a);
		if (!val && row->type == CIGT_OPT_FLAG)
			val = "true";
		else if (!val && i + 1 < argc)
			val = argv[++i];
		else if (!val)
			return cigt_fail(err, errlen, -1, "--%s needs a value", row->name);
		if (cigt__opt_set(row, cfg, val, "--", err, errlen))
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
