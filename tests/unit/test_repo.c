/* The model repository's pure parsers (src/server/repo_config.c, route.c): a model's
 * config.json into a version policy and batching overrides, the repository API's bodies, model
 * and version folder names (the name rule of src/common/name.c), and request paths into
 * endpoint, model and version. Each test states the exact result the input must give. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/name.h"
#include "srv.h"

static int cfg(const char *text, struct srv_model_cfg *c, char *err)
{
	return srv_model_cfg_parse(text, strlen(text), c, err, 256);
}

Test(repo_config, empty_object_is_latest_one_with_server_batching)
{
	struct srv_model_cfg c;
	char err[256];
	cr_assert_eq(cfg("{}", &c, err), 0);
	cr_assert_eq(c.policy, SRV_POLICY_LATEST);
	cr_assert_eq(c.latest, 1);
	cr_assert_eq(c.bat.max_batch, 0);
	cr_assert_eq(c.bat.max_delay_us, 0);
	cr_assert_eq(c.bat.queue_limit, 0);
	cr_assert_eq(c.bat.timeout_ms, 0);
}

Test(repo_config, every_key)
{
	struct srv_model_cfg c;
	char err[256];
	cr_assert_eq(cfg("{\"name\": \"m\", \"version_policy\": {\"specific\": {\"versions\": [3, "
			 "1]}}, \"max_batch_size\": 32, \"dynamic_batching\": "
			 "{\"max_queue_delay_microseconds\": 0, \"default_queue_policy\": "
			 "{\"max_queue_size\": 100, \"default_timeout_microseconds\": 2500000}}}",
			 &c, err),
		     0, "%s", err);
	cr_assert_eq(c.policy, SRV_POLICY_SPECIFIC);
	cr_assert_eq(c.nspecific, 2);
	cr_assert_eq(c.specific[0], 3);
	cr_assert_eq(c.specific[1], 1);
	cr_assert_eq(c.bat.max_batch, 32);
	cr_assert_eq(c.bat.max_delay_us, -1, "an explicit 0 is kept apart from 'unset'");
	cr_assert_eq(c.bat.queue_limit, 100);
	cr_assert_eq(c.bat.timeout_ms, 2500);
	cr_assert_eq(cfg("{\"version_policy\": {\"all\": {}}}", &c, err), 0);
	cr_assert_eq(c.policy, SRV_POLICY_ALL);
	cr_assert_eq(cfg("{\"version_policy\": {\"latest\": {\"num_versions\": 3}}}", &c, err), 0);
	cr_assert_eq(c.latest, 3);
}

Test(repo_config, errors_name_the_problem)
{
	static const struct {
		const char *text, *words;
	} bad[] = {
		{"{", "config.json: line 1"},
		{"[]", "expected a JSON object"},
		{"{\"max_batch\": 4}", "unknown key 'max_batch'"},
		{"{\"max_batch_size\": 0}",
		 "config.json: max_batch_size: expected an integer in [1, 4096]"},
		{"{\"max_batch_size\": 4097}", "max_batch_size: expected an integer"},
		{"{\"max_batch_size\": \"8\"}", "max_batch_size: expected an integer"},
		{"{\"version_policy\": {}}", "one of latest, specific, all"},
		{"{\"version_policy\": {\"latest\": {}, \"all\": {}}}", "one of latest"},
		{"{\"version_policy\": {\"newest\": {}}}", "version_policy: unknown key 'newest'"},
		{"{\"version_policy\": {\"latest\": {\"num_versions\": 0}}}",
		 "version_policy.latest.num_versions: expected an integer in [1, 1000000]"},
		{"{\"version_policy\": {\"latest\": {}}}", "version_policy.latest.num_versions: missing"},
		{"{\"version_policy\": {\"specific\": {\"versions\": []}}}", "list of 1 to 64"},
		{"{\"version_policy\": {\"specific\": {\"versions\": [0]}}}", "specific.versions"},
		{"{\"version_policy\": {\"all\": {\"x\": 1}}}", "version_policy.all: unknown key 'x'"},
		{"{\"version_policy\": {\"all\": 1}}", "version_policy.all: expected {}"},
		{"{\"dynamic_batching\": {\"preferred_batch_size\": [4]}}", "unknown key"},
		{"{\"dynamic_batching\": {\"default_queue_policy\": {\"x\": 1}}}",
		 "config.json: dynamic_batching.default_queue_policy: unknown key 'x'"},
		{"{\"dynamic_batching\": {\"default_queue_policy\": "
		 "{\"default_timeout_microseconds\": 999}}}",
		 "dynamic_batching.default_queue_policy.default_timeout_microseconds: expected an "
		 "integer in [1000, 3600000000]"},
		{"{\"dynamic_batching\": 5}", "config.json: dynamic_batching: expected {"},
		{"{\"name\": \"../x\"}", "config.json: name: expected a model name"},
		{"{\"max_batch_size\": 1, \"max_batch_size\": 2}", "duplicate"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct srv_model_cfg c;
		char err[256] = "";
		cr_assert_eq(cfg(bad[i].text, &c, err), -1, "accepted %s", bad[i].text);
		cr_assert(strstr(err, bad[i].words), "%s: '%s' lacks '%s'", bad[i].text, err,
			  bad[i].words);
	}
}

Test(repo_body, index_and_load_bodies)
{
	char err[256];
	bool ready = true;
	cr_assert_eq(srv_parse_repo_body("", 0, true, &ready, err, sizeof err), 0);
	cr_assert(!ready);
	cr_assert_eq(srv_parse_repo_body(" \n", 2, true, &ready, err, sizeof err), 0);
	cr_assert_eq(srv_parse_repo_body("{\"ready\": true}", 15, true, &ready, err, sizeof err), 0);
	cr_assert(ready);
	cr_assert_eq(srv_parse_repo_body("{\"ready\": 1}", 12, true, &ready, err, sizeof err), -1);
	cr_assert(strstr(err, "true or false"));
	cr_assert_eq(srv_parse_repo_body("{\"ready\": true}", 15, false, &ready, err, sizeof err),
		     -1, "ready is the index's key only");
	const char *p = "{\"parameters\": {\"unload_dependents\": true}}";
	cr_assert_eq(srv_parse_repo_body(p, strlen(p), false, &ready, err, sizeof err), 0);
	p = "{\"parameters\": {\"config\": \"{}\"}}";
	cr_assert_eq(srv_parse_repo_body(p, strlen(p), false, &ready, err, sizeof err), -1);
	cr_assert(strstr(err, "'config' is not supported"), "%s", err);
}

Test(repo_names, models_and_versions)
{
	cr_assert(cigt__model_file_name_ok("fashion_mnist-2.b", 17));
	cr_assert(!cigt__model_file_name_ok("", 0));
	cr_assert(!cigt__model_file_name_ok("..", 2));
	cr_assert(!cigt__model_file_name_ok(".hidden", 7));
	cr_assert(!cigt__model_file_name_ok("a/b", 3));
	cr_assert(!cigt__model_file_name_ok("sp ace", 6));
	char long_name[66];
	memset(long_name, 'a', 65);
	long_name[65] = 0;
	cr_assert(cigt__model_file_name_ok(long_name, 63));
	cr_assert(!cigt__model_file_name_ok(long_name, 64), "a model name is 1-63 bytes");
	cr_assert_eq(srv_version_parse("1"), 1);
	cr_assert_eq(srv_version_parse("10000"), 10000);
	cr_assert_eq(srv_version_parse("999999999999999"), 999999999999999LL);
	cr_assert_eq(srv_version_parse("1000000000000000"), -1);
	cr_assert_eq(srv_version_parse("0"), -1);
	cr_assert_eq(srv_version_parse("007"), -1);
	cr_assert_eq(srv_version_parse("-1"), -1);
	cr_assert_eq(srv_version_parse("1.5"), -1);
	cr_assert_eq(srv_version_parse(""), -1);
}

Test(route, paths)
{
	static const struct {
		const char *url;
		enum srv_endpoint ep;
		bool post;
		const char *model;
		long long version;
	} cases[] = {
		{"/v1/classify", SRV_EP_CLASSIFY, true, "", 0},
		{"/v1/models", SRV_EP_MODELS, false, "", 0},
		{"/v1/models/m", SRV_EP_MODEL_INFO, false, "m", 0},
		{"/v1/models/m/classify", SRV_EP_CLASSIFY, true, "m", 0},
		{"/v1/models/m/versions/7/classify", SRV_EP_CLASSIFY, true, "m", 7},
		{"/v2/models/m/versions/12/infer", SRV_EP_V2_INFER, true, "m", 12},
		{"/v2/models/m/versions/012/infer", SRV_EP_V2_INFER, true, "m", -1},
		{"/v2/models/m/versions/x/ready", SRV_EP_V2_MODEL_READY, false, "m", -1},
		{"/v2/models/m/config", SRV_EP_V2_MODEL_CONFIG, false, "m", 0},
		{"/v2/models/m/versions/2/stats", SRV_EP_V2_MODEL_STATS, false, "m", 2},
		{"/v2/models/stats", SRV_EP_V2_MODEL_STATS, false, "", 0},
		{"/v2/models/m", SRV_EP_V2_MODEL, false, "m", 0},
		{"/v2/repository/index", SRV_EP_REPO_INDEX, true, "", 0},
		{"/v2/repository/models/m/load", SRV_EP_REPO_LOAD, true, "m", 0},
		{"/v2/repository/models/m/unload", SRV_EP_REPO_UNLOAD, true, "m", 0},
		{"/v2/repository/models/m/delete", SRV_EP_OTHER, true, "m", 0},
		{"/v2/models//infer", SRV_EP_OTHER, false, "", 0},
		{"/v2/models/m/explain", SRV_EP_OTHER, false, "m", 0},
		{"/", SRV_EP_PAGE, false, "", 0},
		{"/index.html", SRV_EP_PAGE, false, "", 0},
		{"/metrics", SRV_EP_METRICS, false, "", 0},
		{"/v1/model", SRV_EP_MODEL_INFO, false, "", 0},
		{"/v1/models/m/versions/3", SRV_EP_MODEL_INFO, false, "m", 3},
		{"/v1/models/", SRV_EP_OTHER, false, "", 0},
		{"/v1/models/m/", SRV_EP_OTHER, false, "", 0},
		{"/v2", SRV_EP_V2_SERVER, false, "", 0},
		{"/v2/", SRV_EP_OTHER, false, "", 0},
		{"/v2/health/live", SRV_EP_V2_LIVE, false, "", 0},
		{"/v2/health/ready", SRV_EP_V2_READY, false, "", 0},
		{"/v2/models/stats/ready", SRV_EP_V2_MODEL_READY, false, "stats", 0},
		{"/v2/models/m/versions/", SRV_EP_V2_MODEL, false, "m", -1},
		{"/v2/models/m/versions//infer", SRV_EP_V2_INFER, true, "m", -1},
		{"/v2/models/m/versions/123456789012345678901/infer", SRV_EP_V2_INFER, true, "m", -1},
		{"/v2/models/m/versions/1/versions/2", SRV_EP_OTHER, false, "", 0},
		{"/v2/models/m/versionsx", SRV_EP_OTHER, false, "", 0},
		{"/v2/repository/models/m/versions/1/load", SRV_EP_OTHER, false, "", 0},
		{"/v2/repository/models//load", SRV_EP_OTHER, false, "", 0},
		{"/v2/repository/index/", SRV_EP_OTHER, false, "", 0},
		{"/metrics/", SRV_EP_OTHER, false, "", 0},
		{"", SRV_EP_OTHER, false, "", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct srv_route rt;
		srv_route_path(cases[i].url, &rt);
		cr_assert_eq(rt.ep, cases[i].ep, "%s: endpoint %d", cases[i].url, (int)rt.ep);
		if (rt.ep == SRV_EP_OTHER)
			continue;
		cr_assert_eq(rt.post, cases[i].post, "%s: method", cases[i].url);
		cr_assert_str_eq(rt.model, cases[i].model, "%s", cases[i].url);
		cr_assert_eq(rt.version, cases[i].version, "%s: version %lld", cases[i].url,
			     rt.version);
	}
	char url[200] = "/v2/models/";
	memset(url + 11, 'm', 65);
	strcpy(url + 76, "/infer");
	struct srv_route rt;
	srv_route_path(url, &rt);
	cr_assert_eq(rt.ep, SRV_EP_OTHER, "a 65-byte model name is no route");
}

/* Every row of the route table is reachable (no earlier row shadows it) and routes to itself. */
Test(route, table)
{
	for (size_t i = 0; i < srv_nroutes; i++) {
		char url[256], *o = url;
		for (const char *t = srv_routes[i].path; *t;) {
			if (!strncmp(t, "{name}", 6)) {
				o += sprintf(o, "fashion_mnist");
				t += 6;
			} else if (!strncmp(t, "{version}", 9)) {
				o += sprintf(o, "2");
				t += 9;
			} else {
				*o++ = *t++;
			}
		}
		*o = 0;
		struct srv_route rt;
		srv_route_path(url, &rt);
		cr_assert_eq(rt.ep, srv_routes[i].ep, "%s: endpoint %d", url, (int)rt.ep);
		cr_assert_eq(rt.post, srv_routes[i].post, "%s", url);
		bool named = strstr(srv_routes[i].path, "{name}") != NULL;
		cr_assert_str_eq(rt.model, named ? "fashion_mnist" : "", "%s", url);
		cr_assert_eq(rt.version, strstr(srv_routes[i].path, "{version}") ? 2 : 0, "%s", url);
		for (size_t j = 0; j < i; j++)
			cr_assert(strcmp(srv_routes[i].path, srv_routes[j].path), "%s twice", url);
	}
}
