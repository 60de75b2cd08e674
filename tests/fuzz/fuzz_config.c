/* Fuzz target: cigtd's configuration file parser (srv_config_load_json), the JSON form of the
 * one config table that also drives the flags.
 * Input: the file's bytes.
 * Properties: whatever it accepts leaves every numeric setting inside the bounds the table
 * declares (checked here against the documented bounds of `cigtd --help`); whatever it rejects
 * has a message; nothing leaks either way. */
#include <string.h>

#include "fuzz.h"
#include "srv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct srv_config cfg;
	srv_config_defaults(&cfg);
	char err[256] = "";
	int rc = srv_config_load_json((const char *)data, size, &cfg, err, sizeof err);
	FUZZ_NOTE("%d %s", rc, rc ? err : "accepted");
	if (rc) {
		FUZZ_CHECK(err[0] != 0);
	} else {
		FUZZ_CHECK(cfg.listen != NULL);
		FUZZ_CHECK(cfg.workers >= 0 && cfg.workers <= 64);
		FUZZ_CHECK(cfg.max_batch >= 1 && cfg.max_batch <= 4096);
		FUZZ_CHECK(cfg.max_delay_us >= 0 && cfg.max_delay_us <= 1000000);
		FUZZ_CHECK(cfg.queue_limit >= 1 && cfg.queue_limit <= 1000000);
		FUZZ_CHECK(cfg.timeout_ms >= 1 && cfg.timeout_ms <= 3600000);
		FUZZ_CHECK(cfg.max_images >= 1 && cfg.max_images <= 1000000);
		FUZZ_CHECK(cfg.max_body_bytes >= 1 && cfg.max_body_bytes <= 1LL << 32);
		FUZZ_CHECK(cfg.max_image_pixels >= 1 && cfg.max_image_pixels <= 4096 * 4096);
		FUZZ_CHECK(cfg.control_mode >= SRV_CONTROL_NONE && cfg.control_mode <= SRV_CONTROL_EXPLICIT);
		FUZZ_CHECK(cfg.repository_poll_secs >= 1 && cfg.repository_poll_secs <= 86400);
		for (int i = 0; i < cfg.nload_models; i++)
			FUZZ_CHECK(cfg.load_models[i] && strlen(cfg.load_models[i]) <= CIGT_NAME_MAX);
		FUZZ_CHECK(cfg.max_connections >= 1 && cfg.max_connections <= 100000);
		FUZZ_CHECK(cfg.read_timeout_ms >= 100 && cfg.read_timeout_ms <= 3600000);
		FUZZ_CHECK(cfg.log_level >= SRV_LOG_DEBUG && cfg.log_level < SRV_LOG_OFF);
		FUZZ_CHECK(cfg.grpc_max_message_bytes >= 64 &&
			   cfg.grpc_max_message_bytes <= 1LL << 31);
		FUZZ_CHECK(cfg.grpc_max_streams >= 1 && cfg.grpc_max_streams <= 65536);
		FUZZ_CHECK(cfg.grpc_max_header_bytes >= 1024 &&
			   cfg.grpc_max_header_bytes <= 1 << 20);
		FUZZ_CHECK(cfg.grpc_idle_timeout_s >= 1 && cfg.grpc_idle_timeout_s <= 86400);
	}
	srv_config_destroy(&cfg);
	return 0;
}
