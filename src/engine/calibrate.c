/* int8 calibration (cigt_engine_calibrate): every expert on every given sample, in fp32, with
 * the workspace recording the range of each expert conv and linear's input as it runs; the
 * ranges go into the model's quantization table. Calls down into engine.c (a workspace and
 * dense classification) and never the other way. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "engine_internal.h"

int cigt_engine_calibrate(const struct cigt_engine *e, struct cigt_model *m, const float *x,
			  int n, const char *split, char *err, size_t errlen)
{
	const struct cigt_arch *a = e->a;
	if (e->m != m || n < 1 || !split || !split[0] || strlen(split) >= sizeof m->quant_split)
		return cigt_fail(err, errlen, CIGT_EINVAL, "calibration needs the engine's own "
				 "model, at least one sample and a split name");
	if (e->opts.precision != CIGT_PRECISION_FP32)
		return cigt_fail(err, errlen, CIGT_EINVAL, "calibrate on an fp32 engine (this one "
				 "is %s)", e->desc);
	struct cigt_workspace *ws = cigt_workspace_new(e, 64);
	struct cigt_result *res = calloc(64, sizeof *res);
	int rc = 0;
	if (!ws || !res) {
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
		goto out;
	}
	for (int l = 0; l < a->nlayers; l++) {
		size_t k = (size_t)a->layers[l].experts * (size_t)a->layers[l].nops;
		ws->calib_lo[l] = malloc((k ? k : 1) * sizeof(float));
		ws->calib_hi[l] = malloc((k ? k : 1) * sizeof(float));
		if (!ws->calib_lo[l] || !ws->calib_hi[l]) {
			rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < k; i++) {
			ws->calib_lo[l][i] = FLT_MAX;
			ws->calib_hi[l][i] = -FLT_MAX;
		}
	}
	ws->calib = true;
	/* Dense: each expert sees every sample, so the ranges also hold for the samples the
	 * compute dial sends it beyond those its router picks. */
	const int64_t isz = cigt_shape_size(a->input);
	for (int s0 = 0; s0 < n; s0 += 64) {
		int k = CIGT_MIN(64, n - s0);
		cigt_engine_classify(e, ws, x + (int64_t)s0 * isz, k, CIGT_EXEC_DENSE, res, NULL,
				     NULL);
	}
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		for (int i = 0; i < L->experts * L->nops; i++) {
			enum cigt_op_kind kind = L->ops[i % L->nops].kind;
			if (kind != CIGT_OP_CONV && kind != CIGT_OP_LINEAR)
				continue;
			CIGT_ASSERT(ws->calib_lo[l][i] <= ws->calib_hi[l][i]);
			m->ops[l][i].in_min = ws->calib_lo[l][i];
			m->ops[l][i].in_max = ws->calib_hi[l][i];
		}
	}
	m->quant_samples = n;
	snprintf(m->quant_split, sizeof m->quant_split, "%s", split);
out:
	if (ws)
		for (int l = 0; l < CIGT_MAX_LAYERS; l++)
			free(ws->calib_lo[l]), free(ws->calib_hi[l]), ws->calib_lo[l] = NULL;
	cigt_workspace_free(ws);
	free(res);
	return rc;
}
