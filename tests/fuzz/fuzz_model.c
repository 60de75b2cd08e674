/* Fuzz target: the model-file reader (cigt_model_load_buffer): the safetensors container, its
 * JSON header, the __metadata__ strings and the architecture and operating-point table inside
 * them, tensor offsets, shapes and values.
 * Input: the file's bytes.
 * Properties: a rejected file has a message and allocates nothing that outlives the call (ASan's
 * leak check); an accepted one holds only finite values, serialises, and reads back to the same
 * architecture, the same weights bit for bit and the same operating points (names, thresholds,
 * confidences, second models). */
#include <stdlib.h>
#include <string.h>

#include "cigt/model.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cigt_model *m = NULL, *m2 = NULL;
	char err[256] = "";
	int rc = cigt_model_load_buffer(data, size, &m, err, sizeof err);
	FUZZ_NOTE("%d %s", rc, rc ? err : "loaded");
	if (rc) {
		FUZZ_CHECK(rc < 0 && err[0] != 0 && m == NULL);
		return 0;
	}
	FUZZ_CHECK(m && m->arch && m->blob_floats >= 0);
	void *buf = NULL;
	size_t len = 0;
	FUZZ_CHECK(cigt_model_serialize(m, &buf, &len) == 0);
	rc = cigt_model_load_buffer(buf, len, &m2, err, sizeof err);
	if (rc)
		fprintf(stderr, "re-reading the serialised model failed: %s\n", err);
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(m2->blob_floats == m->blob_floats);
	FUZZ_CHECK(memcmp(m2->blob, m->blob, (size_t)m->blob_floats * sizeof(float)) == 0);
	char *j1 = cigt_arch_to_json(m->arch), *j2 = cigt_arch_to_json(m2->arch);
	FUZZ_CHECK(j1 && j2 && strcmp(j1, j2) == 0);
	FUZZ_CHECK((m->provenance == NULL) == (m2->provenance == NULL));
	FUZZ_CHECK(m2->npoints == m->npoints);
	for (int i = 0; i < m->npoints; i++) {
		const struct cigt_point *p = &m->points[i], *q = &m2->points[i];
		FUZZ_CHECK(strcmp(p->name, q->name) == 0 && strcmp(p->second, q->second) == 0);
		FUZZ_CHECK(memcmp(p->tau, q->tau, sizeof p->tau) == 0 &&
			   p->confidence == q->confidence);
	}
	FUZZ_CHECK(!m->provenance || strcmp(m->provenance, m2->provenance) == 0);
	free(j1);
	free(j2);
	free(buf);
	cigt_model_free(m2);
	cigt_model_free(m);
	return 0;
}
