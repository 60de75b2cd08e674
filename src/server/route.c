/* URL routing: a request path to its endpoint, the model and version it names and the method it
 * takes. One table, srv_routes, lists every path cigtd serves as the templates
 * proto/http-api.yaml names them; tests/api checks the two agree both ways. A pure function of
 * the path (the hostile-input tests and the fuzz targets rely on it never reading past the
 * string). Model names are checked here only for length; the registry answers 404 for a name
 * it does not hold. */
#include <string.h>

#include "../common/util.h"
#include "srv.h"

/* In matching order: the first template that matches wins, so /v2/models/stats comes before
 * /v2/models/{name}. {name} is one path segment of 1..CIGT_NAME_MAX bytes; {version} is one
 * segment of any length (not a positive integer: version -1, which the handler answers 404). */
const struct srv_route_def srv_routes[] = {
	{"/", SRV_EP_PAGE, false},
	{"/index.html", SRV_EP_PAGE, false},
	{"/metrics", SRV_EP_METRICS, false},
	{"/v1/classify", SRV_EP_CLASSIFY, true},
	{"/v1/model", SRV_EP_MODEL_INFO, false},
	{"/v1/models", SRV_EP_MODELS, false},
	{"/v1/models/{name}", SRV_EP_MODEL_INFO, false},
	{"/v1/models/{name}/versions/{version}", SRV_EP_MODEL_INFO, false},
	{"/v1/models/{name}/classify", SRV_EP_CLASSIFY, true},
	{"/v1/models/{name}/versions/{version}/classify", SRV_EP_CLASSIFY, true},
	{"/v2", SRV_EP_V2_SERVER, false},
	{"/v2/health/live", SRV_EP_V2_LIVE, false},
	{"/v2/health/ready", SRV_EP_V2_READY, false},
	{"/v2/models/stats", SRV_EP_V2_MODEL_STATS, false},
	{"/v2/models/{name}", SRV_EP_V2_MODEL, false},
	{"/v2/models/{name}/versions/{version}", SRV_EP_V2_MODEL, false},
	{"/v2/models/{name}/ready", SRV_EP_V2_MODEL_READY, false},
	{"/v2/models/{name}/versions/{version}/ready", SRV_EP_V2_MODEL_READY, false},
	{"/v2/models/{name}/infer", SRV_EP_V2_INFER, true},
	{"/v2/models/{name}/versions/{version}/infer", SRV_EP_V2_INFER, true},
	{"/v2/models/{name}/config", SRV_EP_V2_MODEL_CONFIG, false},
	{"/v2/models/{name}/versions/{version}/config", SRV_EP_V2_MODEL_CONFIG, false},
	{"/v2/models/{name}/stats", SRV_EP_V2_MODEL_STATS, false},
	{"/v2/models/{name}/versions/{version}/stats", SRV_EP_V2_MODEL_STATS, false},
	{"/v2/repository/index", SRV_EP_REPO_INDEX, true},
	{"/v2/repository/models/{name}/load", SRV_EP_REPO_LOAD, true},
	{"/v2/repository/models/{name}/unload", SRV_EP_REPO_UNLOAD, true},
};
const size_t srv_nroutes = sizeof srv_routes / sizeof srv_routes[0];

/* Matches url against one template, filling rt's model and version; false if it does not. */
static bool route_match(const char *t, const char *u, struct srv_route *rt)
{
	while (*t) {
		if (*t != '{') {
			if (*t++ != *u++)
				return false;
			continue;
		}
		size_t n = strcspn(u, "/");
		if (!strncmp(t, "{name}", 6)) {
			if (n == 0 || n > CIGT_NAME_MAX)
				return false;
			memcpy(rt->model, u, n);
			rt->model[n] = 0;
			rt->model_path = true;
			t += 6;
		} else {
			CIGT_ASSERT(!strncmp(t, "{version}", 9));
			char buf[20];
			rt->version = -1;
			if (n > 0 && n < sizeof buf) {
				memcpy(buf, u, n);
				buf[n] = 0;
				rt->version = srv_version_parse(buf);
			}
			t += 9;
		}
		u += n;
	}
	return *u == 0;
}

void srv_route_path(const char *url, struct srv_route *rt)
{
	for (size_t i = 0; i < srv_nroutes; i++) {
		*rt = (struct srv_route){.ep = SRV_EP_OTHER};
		if (route_match(srv_routes[i].path, url, rt)) {
			rt->ep = srv_routes[i].ep;
			rt->post = srv_routes[i].post;
			return;
		}
	}
	*rt = (struct srv_route){.ep = SRV_EP_OTHER};
}
