/* cigt quantize MODEL -o FILE [--data DIR | --validation-data DIR] [--validation N]: int8
 * calibration on held-out images. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/pool.h"
#include "cli.h"

static const char usage[] =
	"usage: cigt quantize MODEL -o FILE [--data DIR | --validation-data DIR]\n"
	"                     [--validation N] [--threads N]\n"
	"Calibrates MODEL for int8 (--precision int8) on its validation split (the last N\n"
	"training images its provenance held out, as cigt tune) or on images held out from\n"
	"training (--validation-data), never on the test set: every expert runs on every\n"
	"image in fp32 and the range of each expert conv and linear's input is recorded.\n"
	"Writes FILE: MODEL with the ranges in its quantization table (weights and operating\n"
	"points unchanged; a reader that ignores the table runs fp32 exactly). Then prints\n"
	"fp32 and int8 accuracy on the same images and how many change class or route.\n";

/* Accuracy, and classes and routes that differ from ref, of engine e on n images. */
struct score {
	int correct, cls_changed, route_changed;
};

static int classify_all(const struct cigt_engine *e, int threads, const float *x, int n,
			struct cigt_result *res)
{
	struct cigt_pool *pool;
	if (cigt_pool_new(e, threads, 256, &pool))
		return -1;
	int rc = cigt_pool_classify(pool, x, n, CIGT_EXEC_ROUTED, res, NULL, NULL);
	cigt_pool_free(pool);
	return rc;
}

static struct score score(const struct cigt_arch *a, const struct cigt_result *res,
			  const struct cigt_result *ref, const uint8_t *labels, int n)
{
	struct score s = {0};
	for (int i = 0; i < n; i++) {
		s.correct += res[i].cls == labels[i];
		s.cls_changed += res[i].cls != ref[i].cls;
		s.route_changed += memcmp(res[i].route, ref[i].route,
					  (size_t)a->nlayers * sizeof res[i].route[0]) != 0;
	}
	return s;
}

int cmd_quantize(int argc, char **argv)
{
	const char *out = NULL, *dir = CIGT_DEFAULT_DATA_DIR, *heldout = NULL;
	long long nval = 0, threads = cli_default_threads();
	const struct cigt_opt opts[] = {
		CIGT_OPT_BIND(cli_opt_out, out),
		{.like = &cli_opt_data, CIGT_OPT_VAR(dir),
		 .help = "the data MODEL was trained on: its validation split is the\n"
			 "last images of the training split there"},
		{"validation-data", 0, CIGT_OPT_STR, CIGT_OPT_VAR(heldout), .arg = "DIR",
		 .help = "calibrate on the images of DIR instead (an image folder or\n"
			 "IDX directory MODEL was not trained on)"},
		{"validation", 0, CIGT_OPT_INT, CIGT_OPT_VAR(nval), .lo = 1, .hi = 10000000,
		 .arg = "N", .help = "calibrate on the last N images only"},
		{.like = &cli_opt_threads, CIGT_OPT_VAR(threads)},
		{0},
	};
	const struct cli_cmd cmd = {usage, 20, 1, 1, opts};
	int status, operand = cli_parse(&cmd, argc, argv, &status);
	if (operand < 0)
		return status;
	const char *path = argv[operand];
	struct cigt_model *m = NULL;
	struct cigt_engine *e = NULL, *q = NULL;
	float *x = NULL;
	uint8_t *labels = NULL;
	struct cigt_result *r32 = NULL, *r8 = NULL;
	int n = 0, rc = 1;
	char err[512];
	cigt_blas_threads(1);
	if (cli_load(path, &m, &e) ||
	    cli_heldout_load(path, m, dir, heldout, (int)nval, &x, &labels, &n))
		goto out;
	if (cigt_engine_calibrate(e, m, x, n, heldout ? heldout : "validation", err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		goto out;
	}
	const struct cigt_engine_opts o8 = {.backend = CIGT_BACKEND_ONEDNN,
					    .precision = CIGT_PRECISION_INT8};
	r32 = calloc((size_t)n, sizeof *r32);
	r8 = calloc((size_t)n, sizeof *r8);
	if (!r32 || !r8 || cigt_engine_new_opts(m, &o8, &q, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", r32 && r8 ? err : "out of memory");
		goto out;
	}
	if (classify_all(e, (int)threads, x, n, r32) || classify_all(q, (int)threads, x, n, r8)) {
		fprintf(stderr, "cigt: cannot start %lld threads\n", threads);
		goto out;
	}
	const struct score s32 = score(m->arch, r32, r32, labels, n);
	const struct score s8 = score(m->arch, r8, r32, labels, n);
	if (cigt_model_save(m, out, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		goto out;
	}
	printf("calibrated on %d %s images; wrote %s\n", n,
	       heldout ? "held-out" : "validation", out);
	printf("  fp32  accuracy %.2f%%\n", 100.0 * s32.correct / n);
	printf("  int8  accuracy %.2f%%  (%s)\n", 100.0 * s8.correct / n, cigt_engine_backend(q));
	printf("  int8 against fp32: %d classes and %d routes of %d changed\n", s8.cls_changed,
	       s8.route_changed, n);
	rc = 0;
out:
	cigt_engine_free(q);
	cigt_engine_free(e);
	cigt_model_free(m);
	free(x);
	free(labels);
	free(r32);
	free(r8);
	return rc;
}
