/* cigtd's configuration (src/server/config.c) through the option table: defaults, then the
 * --config file, then flags; the flag forms (--name value, --name=value, '_' for '-', flags
 * without a value); the actions (the last one wins, read before the file); the messages of a
 * bad flag, file value or key; and the effective configuration --check-config prints, which
 * loads back into the same settings. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "srv.h"

static int parse(struct srv_config *cfg, enum srv_action *act, char *err, int n,
		 const char *const *words)
{
	static char buf[24][256];
	static char *argv[25];
	const char *url;
	cr_assert(n < 24);
	argv[0] = strcpy(buf[0], "cigtd");
	for (int i = 0; i < n; i++)
		argv[i + 1] = strcpy(buf[i + 1], words[i]);
	err[0] = 0;
	return srv_config_parse(n + 1, argv, cfg, act, &url, err, 512);
}

#define PARSE(cfg, act, err, ...)                                                            \
	parse(cfg, act, err, (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *)), \
	      (const char *const[]){__VA_ARGS__})

/* A config file with this text; its path in path. */
static void file(char *path, const char *text)
{
	snprintf(path, 64, "/tmp/cigt-test-config.XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

Test(config, defaults_from_the_table)
{
	struct srv_config c;
	srv_config_defaults(&c);
	cr_assert_str_eq(c.listen, "127.0.0.1:8080");
	cr_assert_eq(c.max_batch, 16);
	cr_assert_eq(c.max_delay_us, 200);
	cr_assert_eq(c.queue_limit, 4096);
	cr_assert_eq(c.max_body_bytes, 8388608);
	cr_assert_eq(c.repository_poll_secs, 15);
	cr_assert_eq(c.control_mode, SRV_CONTROL_NONE);
	cr_assert_eq(c.log_level, SRV_LOG_INFO);
	cr_assert_not(c.access_log);
	cr_assert_null(c.model);
	srv_config_destroy(&c);
}

Test(config, file_then_flags)
{
	struct srv_config c;
	enum srv_action a;
	char err[512], path[64];
	file(path, "{\"max_batch\": 32, \"max-delay-us\": 7, \"log_level\": \"warn\", "
		   "\"load_model\": [\"a\", \"b\"], \"model_control_mode\": \"explicit\", "
		   "\"model_repository\": \"/r\", \"access_log\": true}");
	cr_assert_eq(PARSE(&c, &a, err, "--max-batch", "8", "--config", path, "--load-model=c",
			   "--queue_limit", "9", "--access-log=false"),
		     0, "%s", err);
	unlink(path);
	cr_assert_eq(a, SRV_RUN);
	cr_assert_eq(c.max_batch, 8, "the flag wins over the file, wherever it stands");
	cr_assert_eq(c.max_delay_us, 7);
	cr_assert_eq(c.queue_limit, 9);
	cr_assert_eq(c.max_images, 9, "clamped to the queue");
	cr_assert_eq(c.log_level, SRV_LOG_WARN);
	cr_assert_eq(c.nload_models, 3);
	cr_assert_str_eq(c.load_models[2], "c");
	cr_assert_null(c.load_models[3]);
	cr_assert_str_eq(c.model_repository, "/r");
	cr_assert_not(c.access_log);
	srv_config_destroy(&c);
}

Test(config, flag_messages)
{
	static const struct {
		const char *a, *b, *msg;
	} bad[] = {
		{"--max-batch", "0", "--max-batch: '0' is not an integer in [1, 4096]"},
		{"--max-delay-us", "-1", "--max-delay-us: '-1' is not an integer in [0, 1000000]"},
		{"--log-level", "loud", "--log-level: 'loud' is not debug, info, warn or error"},
		{"--model-control-mode", "auto",
		 "--model-control-mode: 'auto' is not none, poll or explicit"},
		{"--access-log=maybe", "--workers=1", "--access-log: 'maybe' is not true or false"},
		{"--bogus", "1", "unknown option '--bogus' (see --help)"},
		{"stray", "--workers=1", "unexpected argument 'stray' (see --help)"},
		{"--workers=1", "--max-batch", "--max-batch needs a value"},
		{"--workers=1", "--config", "--config needs a value"},
		{"--load-model", "", "--load-model: '' is not a model name"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct srv_config c;
		enum srv_action a;
		char err[512];
		cr_assert_neq(PARSE(&c, &a, err, bad[i].a, bad[i].b), 0, "%s %s", bad[i].a, bad[i].b);
		cr_assert_str_eq(err, bad[i].msg);
		srv_config_destroy(&c);
	}
}

Test(config, file_messages)
{
	static const struct {
		const char *text, *msg;
	} bad[] = {
		{"{\"max_batch\": 0}", "config: max_batch: expected an integer in [1, 4096]"},
		{"{\"workers\": \"2\"}", "config: workers: expected an integer in [0, 64]"},
		{"{\"max_bach\": 3}", "config: unknown key 'max_bach'"},
		{"{\"check_config\": true}", "config: unknown key 'check_config'"},
		{"{\"access_log\": 1}", "config: access_log: expected true or false"},
		{"{\"log_level\": \"loud\"}", "config: log_level: expected debug, info, warn or error"},
		{"{\"load_model\": [1]}", "config: load_model: expected strings"},
		{"{\"load_model\": 1}", "config: load_model: expected a model name or a list of them"},
		{"{\"listen\": 8080}", "config: listen: expected a string"},
		{"{\"max_batch\": 1, \"max-batch\": 2}", "config: 'max_batch' and 'max-batch' are one "
							 "option"},
		{"[]", "config: expected a JSON object"},
		{"{", "config: line 1: string or '}' expected near end of file"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct srv_config c;
		char err[512] = "";
		srv_config_defaults(&c);
		cr_assert_neq(srv_config_load_json(bad[i].text, strlen(bad[i].text), &c, err,
						   sizeof err),
			      0, "%s", bad[i].text);
		cr_assert_str_eq(err, bad[i].msg);
		srv_config_destroy(&c);
	}
}

Test(config, the_last_action_wins_before_the_file_is_read)
{
	struct srv_config c;
	enum srv_action a;
	char err[512];
	cr_assert_eq(PARSE(&c, &a, err, "--check-config", "--help", "--config", "/nonexistent"),
		     0, "%s", err);
	cr_assert_eq(a, SRV_HELP);
	srv_config_destroy(&c);
	cr_assert_eq(PARSE(&c, &a, err, "-h", "--version"), 0);
	cr_assert_eq(a, SRV_VERSION);
	srv_config_destroy(&c);
	cr_assert_eq(PARSE(&c, &a, err, "--options-json", "--max-batch", "0"), 0);
	cr_assert_eq(a, SRV_DESCRIBE);
	srv_config_destroy(&c);
	cr_assert_neq(PARSE(&c, &a, err, "--check-config", "--config=/nonexistent"), 0);
	cr_assert(strstr(err, "config: /nonexistent: No such file"), "%s", err);
	srv_config_destroy(&c);
}

Test(config, effective_configuration_loads_back)
{
	struct srv_config c, d;
	enum srv_action a;
	char err[512];
	cr_assert_eq(PARSE(&c, &a, err, "--model-repository", "/r", "--model-control-mode",
			   "explicit", "--load-model", "x", "--workers", "3", "--tls-cert", "c",
			   "--tls-key", "k", "--log-level", "DEBUG", "--max-body-bytes", "4294967296"),
		     0, "%s", err);
	json_t *j = srv_config_json(&c);
	char *text = json_dumps(j, JSON_COMPACT);
	srv_config_defaults(&d);
	cr_assert_eq(srv_config_load_json(text, strlen(text), &d, err, sizeof err), 0, "%s: %s",
		     text, err);
	cr_assert_str_eq(d.model_repository, "/r");
	cr_assert_null(d.model);
	cr_assert_eq(d.control_mode, SRV_CONTROL_EXPLICIT);
	cr_assert_eq(d.nload_models, 1);
	cr_assert_str_eq(d.load_models[0], "x");
	cr_assert_eq(d.workers, 3);
	cr_assert_str_eq(d.tls_key, "k");
	cr_assert_eq(d.log_level, SRV_LOG_DEBUG);
	cr_assert_eq(d.max_body_bytes, 1LL << 32);
	cr_assert_eq(d.max_batch, c.max_batch);
	cr_assert_str_eq(d.listen, c.listen);
	cr_assert(strstr(text, "\"log_level\":\"debug\""), "%s", text);
	free(text);
	json_decref(j);
	srv_config_destroy(&c);
	srv_config_destroy(&d);
}

Test(config, options_described)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_eq(srv_config_describe(f), 0);
	fclose(f);
	json_t *j = json_loads(buf, 0, NULL);
	free(buf);
	cr_assert(json_is_array(json_object_get(j, "cigtd")));
	cr_assert(json_is_array(json_object_get(j, "repository")));
	size_t i;
	json_t *r;
	int settings = 0;
	json_array_foreach(json_object_get(j, "cigtd"), i, r) {
		json_t *w = json_object_get(r, "where");
		settings += json_array_size(w) == 2;
	}
	/* 27 (eager-dispatch the last), the five gRPC ones, backend and precision */
	cr_assert_eq(settings, 34);
	json_decref(j);
}
