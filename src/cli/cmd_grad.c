/* cigt grad MODEL --config CONFIG --out GRADS [--batch N] [--mode warmup|argmax]
 *                 [--temperature T] [--precision float|double] [--data DIR]
 * One deterministic training step (no dropout, no random re-routing) on the first N training
 * images, written as a safetensors file of gradients: the cross-check against PyTorch
 * autograd (tests/reference/) reads it. --precision double runs the same step code
 * instantiated for double (trellis.h), so the check can tell the algorithm's agreement
 * (to the rounding of the float32 file written) from float32 rounding inside the step, which
 * flips max-pooling choices at near-ties. The config's train.distill and train.label_smoothing
 * apply to the step (the teacher's posteriors computed by the engine on the same images), so
 * the reference can check those loss terms too. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/dataset.h"
#include "cigt/error.h"
#include "cigt/pool.h"
#include "cigt/train.h"
#include "cli.h"
#include "../model/model_internal.h"
#include "../train/levers.h"
#include "../train/trellis.h"

static const char usage[] =
	"usage: cigt grad MODEL --config CONFIG --out GRADS [--batch N]\n"
	"                 [--mode warmup|argmax] [--temperature T]\n"
	"                 [--precision float|double] [--data DIR]\n"
	"Runs one training step of MODEL on the first N training images (default 125)\n"
	"without dropout or random re-routing, and writes the gradient of every trainable\n"
	"tensor (same names and shapes as the model) plus the batch-norm running statistics\n"
	"after the step to GRADS (safetensors). __metadata__.provenance holds the loss, its\n"
	"cross-entropy and information-gain parts, and the step's settings. CONFIG supplies\n"
	"the information-gain weight and beta, and train.distill (teacher, temperature,\n"
	"weight) and train.label_smoothing when present. --precision double (default float, what\n"
	"cigt train runs) computes the step in double; the file stores float32 either way.\n"
	"For cross-checks against other implementations.\n";

/* One step in float, as cigt train runs it: the running statistics are updated in m->blob,
 * the gradients accumulated in grads. 0, or CIGT_ENOMEM. */
static int step_float(struct cigt_model *m, float *grads, const float *x, const uint8_t *y,
		      int n, const struct cigt_trellis_opts *o, struct cigt_trellis_stats *st)
{
	struct cigt_trellis *t = cigt_trellis_new(m, 1);
	struct cigt_rng rng;
	if (!t)
		return CIGT_ENOMEM;
	cigt_rng_seed(&rng, 1);
	int rc = cigt_trellis_step(t, m->blob, grads, x, y, n, o, &rng, st);
	cigt_trellis_free(t);
	return rc;
}

/* The same step computed in double from the float model and inputs; the updated running
 * statistics and the gradients are rounded back to float. */
static int step_double(struct cigt_model *m, float *grads, const float *x, const uint8_t *y,
		       int n, const struct cigt_trellis_opts *o, struct cigt_trellis_stats *st)
{
	const size_t nb = (size_t)m->blob_floats;
	const size_t nx = (size_t)n * (size_t)cigt_arch_input_size(m->arch);
	double *pd = malloc(nb * sizeof(double)), *gd = calloc(nb, sizeof(double));
	double *xd = malloc(nx * sizeof(double));
	struct cigt_trellis_d *t = cigt_trellis_new_d(m, 1);
	struct cigt_rng rng;
	int rc = CIGT_ENOMEM;
	if (!pd || !gd || !xd || !t)
		goto out;
	for (size_t i = 0; i < nb; i++)
		pd[i] = m->blob[i];
	for (size_t i = 0; i < nx; i++)
		xd[i] = x[i];
	cigt_rng_seed(&rng, 1);
	rc = cigt_trellis_step_d(t, pd, gd, xd, y, n, o, &rng, st);
	if (!rc)
		for (size_t i = 0; i < nb; i++) {
			m->blob[i] = (float)pd[i];
			grads[i] = (float)gd[i];
		}
out:
	cigt_trellis_free_d(t);
	free(pd);
	free(gd);
	free(xd);
	return rc;
}

/* The "train" section of the config file: the loss's settings. */
static int read_train_config(const char *config, struct cigt_train_config *tc)
{
	char err[512];
	json_error_t je;
	json_t *root = json_load_file(config, 0, &je);
	if (!root) {
		fprintf(stderr, "cigt: %s: %s\n", config, je.text);
		return -1;
	}
	int rc = cigt_train_config_parse(json_object_get(root, "train"), tc, err, sizeof err);
	json_decref(root);
	if (rc) {
		fprintf(stderr, "cigt: %s: %s\n", config, err);
		return -1;
	}
	return 0;
}

/* train.distill: the teacher's posteriors of the n images (*soft, malloc'd) and its path
 * (*path, malloc'd, for the provenance). */
static int teacher_posteriors(const char *config, const struct cigt_train_config *tc,
			      const struct cigt_arch *a, const float *x, int n, char **path,
			      double **soft)
{
	struct cigt__teacher *teacher = NULL;
	char err[512];
	int rc = -1;
	if (!(*path = cigt__config_path(config, tc->distill_teacher)) ||
	    !(*soft = malloc((size_t)n * (size_t)a->nclasses * sizeof **soft)))
		fprintf(stderr, "cigt: out of memory\n");
	else if (cigt__teacher_open(*path, a, n, &teacher, err, sizeof err))
		fprintf(stderr, "cigt: %s: %s\n", config, err);
	else if (cigt__teacher_posteriors(teacher, x, n, tc->distill_t, *soft))
		fprintf(stderr, "cigt: the teacher failed\n");
	else
		rc = 0;
	cigt__teacher_free(teacher);
	return rc;
}

/* The step's settings and results, for the gradient file's provenance. */
struct grad_run {
	const struct cigt_train_config *tc;
	const struct cigt_trellis_opts *o;
	const struct cigt_trellis_stats *st;
	const char *teacher_path; /* NULL: no distillation */
	int n;
};

/* Puts the gradients in place of m's trainable tensors (the blob holds the updated running
 * statistics) and writes m with the step in its provenance to out. */
static int write_grads(struct cigt_model *m, const float *grads, const struct grad_run *g,
		       const char *out)
{
	const struct cigt_arch *a = m->arch;
	const struct cigt_trellis_stats *st = g->st;
	const struct cigt_train_config *tc = g->tc;
	char err[512];
	for (int i = 0; i < m->ntensors; i++) {
		const struct cigt_tensor_info *ti = &m->tensors[i];
		if (ti->trainable)
			memcpy(m->blob + ti->offset, grads + ti->offset,
			       (size_t)ti->numel * sizeof(float));
	}
	json_t *ig = json_array();
	for (int l = 0; l < a->nlayers; l++)
		if (a->layers[l].has_router)
			json_array_append_new(ig, json_real(st->ig[l]));
	json_t *prov = json_pack("{ss sf sf so ss sf sf sf si}", "tool", "cigt grad", "loss",
				 st->loss, "ce", st->ce, "ig", ig, "mode",
				 g->o->warmup ? "warmup" : "argmax", "temperature",
				 g->o->temperature, "ig_lambda", tc->ig_lambda, "ig_beta",
				 tc->ig_beta, "batch", g->n);
	if (tc->label_smoothing > 0)
		json_object_set_new(prov, "label_smoothing", json_real(tc->label_smoothing));
	if (g->teacher_path)
		json_object_set_new(prov, "distill",
				    json_pack("{ss sf sf sf}", "teacher", g->teacher_path,
					      "temperature", tc->distill_t, "weight",
					      tc->distill_weight, "term", st->distill));
	free(m->provenance);
	m->provenance = json_dumps(prov, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(prov);
	if (cigt_model_save(m, out, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		return -1;
	}
	return 0;
}

int cmd_grad(int argc, char **argv)
{
	static const char *const modes[] = {"warmup", "argmax", NULL};
	static const char *const precisions[] = {"float", "double", NULL};
	const char *config = NULL, *out = NULL, *dir = CIGT_DEFAULT_DATA_DIR;
	long long batch = 125;
	double temp = 25.0;
	int mode = 0, precision = 0;
	/* Hidden from --help: the usage text above says what each does. */
	const struct cigt_opt opts[] = {
		{.like = &cli_opt_config, CIGT_OPT_VAR(config), .flags = CIGT_OPT_HIDDEN},
		{.like = &cli_opt_out, CIGT_OPT_VAR(out), .arg = "GRADS", .flags = CIGT_OPT_HIDDEN,
		 .help = "the gradients' .safetensors file (required)"},
		{"batch", 0, CIGT_OPT_INT, CIGT_OPT_VAR(batch), .lo = 1, .hi = 60000, .def = "125",
		 .arg = "N", .flags = CIGT_OPT_HIDDEN, .help = "the first N training images"},
		{"mode", 0, CIGT_OPT_CHOICE, CIGT_OPT_VAR(mode), .choices = modes, .def = "warmup",
		 .arg = "MODE", .flags = CIGT_OPT_HIDDEN,
		 .help = "warm-up routing (every row to every expert) or argmax"},
		{"temperature", 0, CIGT_OPT_DOUBLE, CIGT_OPT_VAR(temp), .dlo = 1e-6, .dhi = 1e6,
		 .def = "25", .arg = "T", .flags = CIGT_OPT_HIDDEN,
		 .help = "the routers' softmax temperature"},
		{"precision", 0, CIGT_OPT_CHOICE, CIGT_OPT_VAR(precision), .choices = precisions,
		 .def = "float", .arg = "P", .flags = CIGT_OPT_HIDDEN,
		 .help = "compute the step in float (as cigt train) or double"},
		{.like = &cli_opt_data, CIGT_OPT_VAR(dir), .flags = CIGT_OPT_HIDDEN},
		{0},
	};
	const struct cli_cmd cmd = {usage, 0, 1, 1, opts};
	int status, operand = cli_parse(&cmd, argc, argv, &status);
	if (operand < 0)
		return status;
	const bool warmup = mode == 0, dbl = precision == 1;
	char err[512];
	struct cigt_train_config tc;
	if (read_train_config(config, &tc))
		return 1;
	struct cigt_model *m;
	if (cigt_model_load(argv[operand], &m, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		return 1;
	}
	const struct cigt_arch *a = m->arch;
	int n = (int)batch, rc = 1;
	float *x = NULL, *grads = NULL;
	uint8_t *y = NULL;
	double *soft = NULL;
	char *teacher_path = NULL;
	if (cli_load_inputs(dir, "train", a, &n, &x, &y))
		goto done;
	if (tc.distill_teacher[0] &&
	    teacher_posteriors(config, &tc, a, x, n, &teacher_path, &soft))
		goto done;
	grads = calloc((size_t)m->blob_floats, sizeof(float));
	if (!grads) {
		fprintf(stderr, "cigt: out of memory\n");
		goto done;
	}
	cigt_blas_threads(1);
	struct cigt_trellis_opts o = {.warmup = warmup, .temperature = temp,
				      .ig_lambda = tc.ig_lambda, .ig_beta = tc.ig_beta, .rho = 0,
				      .dropout = false, .label_smoothing = tc.label_smoothing};
	if (soft) {
		o.teacher = soft;
		o.kd_t = tc.distill_t;
		o.kd_weight = tc.distill_weight;
	}
	struct cigt_trellis_stats st;
	if (dbl ? step_double(m, grads, x, y, n, &o, &st) : step_float(m, grads, x, y, n, &o, &st)) {
		fprintf(stderr, "cigt: out of memory in the step\n");
		goto done;
	}
	const struct grad_run g = {.tc = &tc, .o = &o, .st = &st, .n = n,
				   .teacher_path = soft ? teacher_path : NULL};
	if (write_grads(m, grads, &g, out))
		goto done;
	printf("loss %.9g (ce %.9g), %lld leaf rows, written to %s\n", st.loss, st.ce,
	       (long long)st.leaf_rows, out);
	rc = 0;
done:
	free(x);
	free(y);
	free(grads);
	free(soft);
	free(teacher_path);
	cigt_model_free(m);
	return rc;
}
