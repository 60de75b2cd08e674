/* The teacher of train.distill: a trained model run through the inference engine (its own
 * routed path, batch norm folded) on the very batch the student sees, its logits turned into
 * posteriors at the distillation temperature for the leaf loss (leaf.c). */
#include <math.h>
#include <stdlib.h>

#include "cigt/engine.h"
#include "cigt/error.h"
#include "cigt/model.h"
#include "levers.h"

struct cigt__teacher {
	struct cigt_model *m;
	struct cigt_engine *e;
	struct cigt_workspace *ws;
	struct cigt_result *res;
	float *logits;
	int max_batch;
};

void cigt__teacher_free(struct cigt__teacher *t)
{
	if (!t)
		return;
	free(t->res);
	free(t->logits);
	cigt_workspace_free(t->ws);
	cigt_engine_free(t->e);
	cigt_model_free(t->m);
	free(t);
}

int cigt__teacher_open(const char *path, const struct cigt_arch *student, int max_batch,
		       struct cigt__teacher **out, char *err, size_t errlen)
{
	struct cigt__teacher *t = calloc(1, sizeof *t);
	char e2[400];
	int rc;
	*out = NULL;
	if (!t)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	if ((rc = cigt_model_load(path, &t->m, e2, sizeof e2))) {
		rc = cigt_fail(err, errlen, rc, "train.distill.teacher: %s", e2);
		goto fail;
	}
	const struct cigt_arch *a = t->m->arch;
	if (a->nclasses != student->nclasses) {
		rc = cigt_fail(err, errlen, CIGT_ESHAPE,
			       "train.distill.teacher: %s has %d classes, the student %d", path,
			       a->nclasses, student->nclasses);
		goto fail;
	}
	if (a->input.c != student->input.c || a->input.h != student->input.h ||
	    a->input.w != student->input.w || a->range_lo != student->range_lo ||
	    a->range_hi != student->range_hi) {
		rc = cigt_fail(err, errlen, CIGT_ESHAPE,
			       "train.distill.teacher: %s takes %dx%dx%d inputs in [%g, %g], the "
			       "student %dx%dx%d in [%g, %g]",
			       path, a->input.c, a->input.h, a->input.w, a->range_lo, a->range_hi,
			       student->input.c, student->input.h, student->input.w,
			       student->range_lo, student->range_hi);
		goto fail;
	}
	if ((rc = cigt_engine_new(t->m, &t->e, e2, sizeof e2))) {
		rc = cigt_fail(err, errlen, rc, "train.distill.teacher: %s: %s", path, e2);
		goto fail;
	}
	t->max_batch = max_batch;
	t->ws = cigt_workspace_new(t->e, max_batch);
	t->res = malloc((size_t)max_batch * sizeof *t->res);
	t->logits = malloc((size_t)max_batch * (size_t)a->nclasses * sizeof *t->logits);
	if (!t->ws || !t->res || !t->logits) {
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
		goto fail;
	}
	*out = t;
	return 0;
fail:
	cigt__teacher_free(t);
	return rc;
}

int cigt__teacher_posteriors(struct cigt__teacher *t, const float *x, int n, double T,
			     double *q)
{
	const int C = t->m->arch->nclasses;
	if (n < 0 || n > t->max_batch)
		return CIGT_EINVAL;
	int rc = cigt_engine_classify(t->e, t->ws, x, n, CIGT_EXEC_ROUTED, t->res, NULL,
				      t->logits);
	if (rc)
		return rc;
	for (int i = 0; i < n; i++)
		cigt__softmax_t(C, t->logits + (int64_t)i * C, T, q + (int64_t)i * C);
	return 0;
}

void cigt__softmax_t(int C, const float *z, double T, double *q)
{
	double mx = z[0] / T, sum = 0;
	for (int j = 1; j < C; j++)
		mx = z[j] / T > mx ? z[j] / T : mx;
	for (int j = 0; j < C; j++)
		sum += q[j] = exp(z[j] / T - mx);
	for (int j = 0; j < C; j++)
		q[j] /= sum;
}
