/* Fuzz target: the architecture parser (cigt_arch_parse), the JSON that describes a trellis in
 * config files and inside every model file's __metadata__.
 * Input: the JSON text.
 * Properties: an accepted architecture has its counts inside the documented limits, its MAC and
 * parameter totals are consistent (a route costs no more than running every expert), and its
 * canonical serialisation parses back to the same architecture (a fixed point: serialising that
 * gives the same text). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cigt_arch *a = NULL, *b = NULL;
	char err[256] = "";
	int rc = cigt_arch_parse((const char *)data, size, &a, err, sizeof err);
	FUZZ_NOTE("%d %s", rc, rc ? err : "accepted");
	if (rc) {
		FUZZ_CHECK(rc < 0 && err[0] != 0 && a == NULL);
		return 0;
	}
	FUZZ_CHECK(a->nlayers >= 1 && a->nlayers <= CIGT_MAX_LAYERS);
	FUZZ_CHECK(a->nclasses >= 1 && a->nclasses <= CIGT_MAX_CLASSES);
	FUZZ_CHECK(a->layers[0].experts == 1);
	FUZZ_CHECK(a->path_macs >= 0 && a->path_macs <= a->dense_macs && a->params >= 0);
	int64_t paths = 1;
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		FUZZ_CHECK(L->experts >= 1 && L->experts <= CIGT_MAX_EXPERTS);
		FUZZ_CHECK(L->nops >= 1 && L->nops <= CIGT_MAX_OPS);
		FUZZ_CHECK(L->has_router == (l + 1 < a->nlayers));
		FUZZ_CHECK(L->expert_macs >= 0 && L->expert_params >= 0);
		paths *= L->experts;
	}
	FUZZ_CHECK(paths == a->npaths);
	char *j1 = cigt_arch_to_json(a);
	FUZZ_CHECK(j1 != NULL);
	rc = cigt_arch_parse(j1, strlen(j1), &b, err, sizeof err);
	if (rc)
		fprintf(stderr, "canonical form rejected: %s\n%s\n", err, j1);
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(b->path_macs == a->path_macs && b->dense_macs == a->dense_macs &&
		   b->params == a->params && b->npaths == a->npaths && b->nlayers == a->nlayers);
	char *j2 = cigt_arch_to_json(b);
	FUZZ_CHECK(j2 && strcmp(j1, j2) == 0);
	free(j1);
	free(j2);
	cigt_arch_free(b);
	cigt_arch_free(a);
	return 0;
}
