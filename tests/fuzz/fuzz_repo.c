/* Fuzz target: the model repository's outside inputs. The first byte picks the parser, the rest
 * is its input: 0 a model's config.json (srv_model_cfg_parse), 1 the body of
 * POST /v2/repository/index, 2 the body of .../load or .../unload (srv_parse_repo_body), 3 a
 * request path (srv_route_path), 4 a folder name (cigt__model_file_name_ok, srv_version_parse).
 * Properties: accepted configs stay inside their documented bounds; rejected inputs have a
 * message; routes name models of 1..64 bytes and versions >= -1; nothing leaks. */
#include <stdlib.h>
#include <string.h>

#include "common/name.h"
#include "fuzz.h"
#include "srv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	char err[256] = "";
	switch (data[0] % 5) {
	case 0: {
		struct srv_model_cfg c;
		int rc = srv_model_cfg_parse(text, len, &c, err, sizeof err);
		FUZZ_NOTE("cfg %d %s", rc, rc ? err : "accepted");
		if (rc) {
			FUZZ_CHECK(err[0] != 0);
			break;
		}
		FUZZ_CHECK(c.policy == SRV_POLICY_LATEST || c.policy == SRV_POLICY_SPECIFIC ||
			   c.policy == SRV_POLICY_ALL);
		FUZZ_CHECK(c.latest >= 1 && c.latest <= 1000000);
		FUZZ_CHECK(c.nspecific >= 0 && c.nspecific <= SRV_SPECIFIC_MAX);
		for (int i = 0; i < c.nspecific; i++)
			FUZZ_CHECK(c.specific[i] >= 1);
		FUZZ_CHECK(c.bat.max_batch >= 0 && c.bat.max_batch <= 4096);
		FUZZ_CHECK(c.bat.max_delay_us >= -1 && c.bat.max_delay_us <= 1000000);
		FUZZ_CHECK(c.bat.queue_limit >= 0 && c.bat.queue_limit <= 1000000);
		FUZZ_CHECK(c.bat.timeout_ms >= 0 && c.bat.timeout_ms <= 3600000);
		break;
	}
	case 1:
	case 2: {
		bool ready = true;
		int rc = srv_parse_repo_body(text, len, data[0] % 5 == 1, &ready, err, sizeof err);
		FUZZ_NOTE("body %d %s ready=%d", rc, rc ? err : "accepted", ready);
		FUZZ_CHECK(rc == 0 || err[0] != 0);
		FUZZ_CHECK(data[0] % 5 == 1 || !ready);
		break;
	}
	case 3:
	case 4: {
		char *s = malloc(len + 1);
		if (!s)
			return 0;
		memcpy(s, text, len);
		s[len] = 0;
		if (data[0] % 5 == 3) {
			struct srv_route rt;
			srv_route_path(s, &rt);
			FUZZ_NOTE("route %d model '%s' version %lld", (int)rt.ep, rt.model,
				  rt.version);
			FUZZ_CHECK(rt.ep >= 0 && rt.ep < SRV_EP_COUNT);
			FUZZ_CHECK(strlen(rt.model) <= CIGT_NAME_MAX);
			FUZZ_CHECK(rt.version >= -1);
			FUZZ_CHECK(!rt.model_path || rt.model[0]);
		} else {
			long long v = srv_version_parse(s);
			bool ok = cigt__model_file_name_ok(s, strlen(s));
			FUZZ_NOTE("version %lld name %d", v, ok);
			FUZZ_CHECK(v == -1 || (v >= 1 && s[0] != '0'));
			FUZZ_CHECK(!ok || (s[0] != '.' && !strchr(s, '/')));
		}
		free(s);
		break;
	}
	}
	return 0;
}
