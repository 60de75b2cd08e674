/* URL routing: a request path to its endpoint, the model and version it names and the method it
 * takes. A pure function of the path (the hostile-input tests and the fuzz targets rely on it
 * never reading past the string). Model names are checked here only for length; the registry
 * answers 404 for a name it does not hold. */
#include <string.h>

#include "srv.h"

/* Parses "/versions/{v}" at *p into rt->version (-1 when not a version number) and advances. */
static void route_version(const char **p, struct srv_route *rt)
{
	if (strncmp(*p, "/versions/", 10))
		return;
	const char *v = *p + 10, *end = strchr(v, '/');
	size_t n = end ? (size_t)(end - v) : strlen(v);
	char buf[20];
	rt->version = -1;
	if (n > 0 && n < sizeof buf) {
		memcpy(buf, v, n);
		buf[n] = 0;
		rt->version = srv_version_parse(buf);
	}
	*p = v + n;
}

/* Copies the path segment at *p into rt->model; false when empty or too long. */
static bool route_name(const char **p, struct srv_route *rt)
{
	const char *slash = strchr(*p, '/');
	size_t n = slash ? (size_t)(slash - *p) : strlen(*p);
	if (n == 0 || n > CIGT_NAME_MAX)
		return false;
	memcpy(rt->model, *p, n);
	rt->model[n] = 0;
	*p += n;
	return true;
}

void srv_route_path(const char *url, struct srv_route *rt)
{
	*rt = (struct srv_route){.ep = SRV_EP_OTHER};
	static const struct {
		const char *path;
		enum srv_endpoint ep;
		bool post;
	} fixed[] = {
		{"/", SRV_EP_PAGE, false},
		{"/index.html", SRV_EP_PAGE, false},
		{"/metrics", SRV_EP_METRICS, false},
		{"/v1/classify", SRV_EP_CLASSIFY, true},
		{"/v1/model", SRV_EP_MODEL_INFO, false},
		{"/v1/models", SRV_EP_MODELS, false},
		{"/v2", SRV_EP_V2_SERVER, false},
		{"/v2/health/live", SRV_EP_V2_LIVE, false},
		{"/v2/health/ready", SRV_EP_V2_READY, false},
		{"/v2/repository/index", SRV_EP_REPO_INDEX, true},
		{"/v2/models/stats", SRV_EP_V2_MODEL_STATS, false},
	};
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (!strcmp(url, fixed[i].path)) {
			rt->ep = fixed[i].ep;
			rt->post = fixed[i].post;
			return;
		}
	const char *p;
	if (!strncmp(url, "/v2/repository/models/", 22)) {
		p = url + 22;
		if (!route_name(&p, rt))
			return;
		rt->post = true;
		if (!strcmp(p, "/load"))
			rt->ep = SRV_EP_REPO_LOAD;
		else if (!strcmp(p, "/unload"))
			rt->ep = SRV_EP_REPO_UNLOAD;
		return;
	}
	bool v1 = !strncmp(url, "/v1/models/", 11);
	if (!v1 && strncmp(url, "/v2/models/", 11))
		return;
	p = url + 11;
	if (!route_name(&p, rt))
		return;
	route_version(&p, rt);
	rt->model_path = true;
	if (v1 && !*p) {
		rt->ep = SRV_EP_MODEL_INFO;
	} else if (v1 && !strcmp(p, "/classify")) {
		rt->ep = SRV_EP_CLASSIFY;
		rt->post = true;
	} else if (v1) {
		rt->model_path = false;
	} else if (!*p) {
		rt->ep = SRV_EP_V2_MODEL;
	} else if (!strcmp(p, "/ready")) {
		rt->ep = SRV_EP_V2_MODEL_READY;
	} else if (!strcmp(p, "/infer")) {
		rt->ep = SRV_EP_V2_INFER;
		rt->post = true;
	} else if (!strcmp(p, "/config")) {
		rt->ep = SRV_EP_V2_MODEL_CONFIG;
	} else if (!strcmp(p, "/stats")) {
		rt->ep = SRV_EP_V2_MODEL_STATS;
	} else {
		rt->model_path = false;
	}
}
