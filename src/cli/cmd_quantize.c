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
	"Writes FILE: MODEL with the ranges in its quantization table (weights unchanged; a\n"
	"reader that ignores the table runs fp32 exactly). A second model MODEL's points\n"
	"escalate to is calibrated the same way (on its own held-out images) and written\n"
	"beside FILE as SECOND_int8.safetensors, and FILE's points name that copy. Prints\n"
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

/* m calibrated: fp32 (e), bf16 and int8 accuracy on the n calibration images into
 * m->quant_acc (what --precision auto reads), the int8 answers into r8 against fp32's in r32;
 * *q the int8 engine (the caller frees it). 0, or -1 after saying why. */
static int measure(struct cigt_model *m, const struct cigt_engine *e, int threads, const float *x,
		   const uint8_t *labels, int n, struct cigt_result *r32, struct cigt_result *r8,
		   struct cigt_engine **q)
{
	char err[512];
	struct cigt_engine *b = NULL;
	const struct cigt_engine_opts o8 = {.backend = CIGT_BACKEND_ONEDNN,
					    .precision = CIGT_PRECISION_INT8};
	const struct cigt_engine_opts o16 = {.backend = CIGT_BACKEND_ONEDNN,
					     .precision = CIGT_PRECISION_BF16};
	if (cigt_engine_new_opts(m, &o8, q, err, sizeof err) ||
	    cigt_engine_new_opts(m, &o16, &b, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		return -1;
	}
	int rc = -1;
	/* bf16's answers go through r8 first; int8's are left there. */
	const struct cigt_engine *run[3] = {e, b, *q};
	for (int k = 0; k < 3; k++) {
		struct cigt_result *r = k ? r8 : r32;
		if (classify_all(run[k], threads, x, n, r)) {
			fprintf(stderr, "cigt: cannot start %d threads\n", threads);
			goto out;
		}
		m->quant_acc[k] = (double)score(m->arch, r, r32, labels, n).correct / n;
	}
	rc = 0;
out:
	cigt_engine_free(b);
	return rc;
}

/* The second models m's escalating points name: each calibrated on its own held-out images
 * (as MODEL: its validation split of dir, or heldout) and written beside out as
 * <second>_int8.safetensors, and the points renamed to it with its sha256 (the table changes
 * the file, and int8 escalation needs a calibrated second model). 0, or -1 after saying why. */
static int quantize_seconds(const char *path, struct cigt_model *m, const char *out,
			    const char *dir, const char *heldout, int nval)
{
	char err[512];
	const char *slash = strrchr(out, '/');
	const int outdir = slash ? (int)(slash - out + 1) : 0;
	for (int p = 0; p < m->npoints; p++) {
		struct cigt_point *pt = &m->points[p];
		const size_t sl = strlen(pt->second);
		if (!sl || (sl > 5 && !strcmp(pt->second + sl - 5, "_int8")))
			continue; /* no second model, or already a calibrated copy */
		char name[CIGT_NAME_MAX], file[4096], sha[65], sp[4096];
		if (snprintf(name, sizeof name, "%s_int8", pt->second) >= (int)sizeof name ||
		    snprintf(file, sizeof file, "%.*s%s.safetensors", outdir, out, name) >=
			    (int)sizeof file) {
			fprintf(stderr, "cigt: second model '%s': its int8 name is too long\n",
				pt->second);
			return -1;
		}
		const char *ms = strrchr(path, '/');
		snprintf(sp, sizeof sp, "%.*s%s.safetensors", ms ? (int)(ms - path + 1) : 0, path,
			 pt->second);
		struct cigt_model *m2 = NULL;
		struct cigt_engine *e2 = NULL;
		float *x = NULL;
		uint8_t *labels = NULL;
		int n = 0, rc = -1;
		const struct cigt_engine_opts fp32 = {0};
		if (cigt_model_load_second(path, m, p, &m2, err, sizeof err) ||
		    cigt_engine_new_opts(m2, &fp32, &e2, err, sizeof err)) {
			fprintf(stderr, "cigt: %s\n", err);
			goto next;
		}
		if (cli_heldout_load(sp, m2, dir, heldout, nval, &x, &labels, &n))
			goto next;
		struct cigt_result *a = calloc((size_t)n, sizeof *a), *c = calloc((size_t)n, sizeof *c);
		struct cigt_engine *q2 = NULL;
		if (cigt_engine_calibrate(e2, m2, x, n, heldout ? heldout : "validation", err,
					  sizeof err)) {
			free(a), free(c);
			fprintf(stderr, "cigt: second model '%s': %s\n", pt->second, err);
			goto next;
		}
		int bad = !a || !c || measure(m2, e2, cli_default_threads(), x, labels, n, a, c, &q2);
		free(a), free(c);
		cigt_engine_free(q2);
		if (bad)
			goto next;
		if (cigt_model_save(m2, file, err, sizeof err) ||
		    cigt_file_sha256(file, sha, err, sizeof err)) {
			fprintf(stderr, "cigt: second model '%s': %s\n", pt->second, err);
			goto next;
		}
		printf("second model %s: calibrated on %d images; wrote %s\n", pt->second, n, file);
		/* Every point naming this second model (and file) now names the copy. */
		char old[CIGT_NAME_MAX], oldsha[65];
		snprintf(old, sizeof old, "%s", pt->second);
		snprintf(oldsha, sizeof oldsha, "%s", pt->second_sha256);
		for (int q = p; q < m->npoints; q++)
			if (!strcmp(m->points[q].second, old) &&
			    !strcmp(m->points[q].second_sha256, oldsha)) {
				snprintf(m->points[q].second, sizeof m->points[q].second, "%s", name);
				snprintf(m->points[q].second_sha256, sizeof m->points[q].second_sha256,
					 "%s", sha);
			}
		rc = 0;
next:
		cigt_engine_free(e2);
		cigt_model_free(m2);
		free(x);
		free(labels);
		if (rc)
			return -1;
	}
	return 0;
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
	cli_backend = 1; /* calibrated on the reference, OpenBLAS fp32, on any CPU */
	if (cli_load(path, &m, &e) ||
	    cli_heldout_load(path, m, dir, heldout, (int)nval, &x, &labels, &n))
		goto out;
	if (cigt_engine_calibrate(e, m, x, n, heldout ? heldout : "validation", err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		goto out;
	}
	r32 = calloc((size_t)n, sizeof *r32);
	r8 = calloc((size_t)n, sizeof *r8);
	if (!r32 || !r8) {
		fprintf(stderr, "cigt: out of memory\n");
		goto out;
	}
	if (measure(m, e, (int)threads, x, labels, n, r32, r8, &q))
		goto out;
	const struct score s32 = score(m->arch, r32, r32, labels, n);
	const struct score s8 = score(m->arch, r8, r32, labels, n);
	if (quantize_seconds(path, m, out, dir, heldout, (int)nval))
		goto out;
	if (cigt_model_save(m, out, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		goto out;
	}
	printf("calibrated on %d %s images; wrote %s\n", n,
	       heldout ? "held-out" : "validation", out);
	printf("  fp32  accuracy %.2f%%\n", 100.0 * s32.correct / n);
	printf("  bf16  accuracy %.2f%%\n", 100.0 * m->quant_acc[1]);
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
