/* cigtd: the HTTP daemon's entry point. Parses the configuration and hands over to src/server/;
 * see `cigtd --help` and proto/http-api.yaml. */
#include <stdio.h>

#include "../server/srv.h"

int main(int argc, char **argv)
{
	struct srv_config cfg;
	enum srv_action action;
	const char *url;
	char err[512];
	int rc;
	if (srv_config_parse(argc, argv, &cfg, &action, &url, err, sizeof err)) {
		fprintf(stderr, "cigtd: %s\n", err);
		srv_config_destroy(&cfg);
		return 2;
	}
	srv_log_level = cfg.log_level;
	switch (action) {
	case SRV_HELP:
		srv_config_help(stdout);
		rc = 0;
		break;
	case SRV_VERSION:
		printf("cigtd " CIGT_VERSION "\n");
		rc = 0;
		break;
	case SRV_DESCRIBE:
		rc = srv_config_describe(stdout) ? 1 : 0;
		break;
	case SRV_HEALTHCHECK:
		rc = srv_healthcheck(url);
		break;
	case SRV_CHECK_CONFIG:
		rc = srv_check_config(&cfg);
		break;
	default:
		rc = srv_run(&cfg);
		break;
	}
	srv_config_destroy(&cfg);
	return rc;
}
