/* The model holder: one loaded version of a model, reference-counted so that requests already
 * accepted keep it alive after the registry swaps in another version. srv_model_load builds
 * it completely (the model file validated, its engine planned, the second models of its
 * operating points loaded from beside it and every point's dial built) before anyone sees it;
 * after that it is read-only but for its stats and its reference count. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "../common/util.h"
#include "srv.h"

static _Atomic uint64_t model_generation;

/* Frees what srv_model_load built (any part may be NULL). */
static void model_free(struct srv_model *sm)
{
	for (int i = 0; i < sm->nsecond; i++) {
		cigt_engine_free(sm->second_e[i]);
		cigt_model_free(sm->second_m[i]);
	}
	cigt_engine_free(sm->e);
	cigt_model_free(sm->m);
	free(sm->st.batch);
	free(sm);
}

/* Loads the second models of sm's operating points (each distinct one once, from beside path)
 * and builds every point's dial and the default (compute). 0 or an error in err. */
static int model_dials(struct srv_model *sm, const char *path, const char *compute,
		       const struct cigt_engine_opts *eo, char *err, size_t errlen)
{
	const struct cigt_model *m = sm->m;
	char why[512];
	for (int p = 0; p < m->npoints; p++) {
		const struct cigt_point *pt = &m->points[p];
		sm->point_second[p] = -1;
		sm->point_engine[p] = NULL;
		if (pt->second[0]) {
			int k;
			/* Points naming the same file share one engine; the sha256 was checked on
			 * the first load, a point with another sha256 must load (and fail) itself. */
			for (k = 0; k < sm->nsecond; k++) {
				int q = 0;
				while (q < p && sm->point_second[q] != k)
					q++;
				if (q < p && !strcmp(m->points[q].second, pt->second) &&
				    !strcmp(m->points[q].second_sha256, pt->second_sha256))
					break;
			}
			if (k == sm->nsecond) {
				if (cigt_model_load_second(path, m, p, &sm->second_m[k], err,
							   errlen))
					return CIGT_EINVAL;
				sm->nsecond++;
				if (cigt_engine_new_opts(sm->second_m[k], eo, &sm->second_e[k], why,
							 sizeof why))
					return cigt_fail(err, errlen, CIGT_EINVAL, "operating point "
							 "'%s': second model: %s", pt->name, why);
			}
			sm->point_second[p] = k;
			sm->point_engine[p] = sm->second_e[k];
		}
		if (cigt_engine_dial_from_point(sm->e, p, sm->point_engine[p], &sm->dials[p], why,
						sizeof why))
			return cigt_fail(err, errlen, CIGT_EINVAL, "operating point '%s': %s",
					 pt->name, why);
	}
	sm->default_point = -1;
	if (compute && (sm->default_point = cigt_model_point(m, compute)) < 0)
		return cigt_fail(err, errlen, CIGT_EINVAL, "--compute %s: the model has no such "
				 "operating point (%d point%s; cigt info lists them)", compute,
				 m->npoints, m->npoints == 1 ? "" : "s");
	return 0;
}

struct cigt_engine_opts srv_engine_opts(int backend, int precision)
{
	struct cigt_engine_opts o = {.precision = (enum cigt_precision)precision};
	o.backend = backend == 0   ? cigt_backend_auto(o.precision)
		    : backend == 2 ? CIGT_BACKEND_ONEDNN
				   : CIGT_BACKEND_OPENBLAS;
	return o;
}

int srv_model_load(const char *path, const char *compute, const struct cigt_engine_opts *eo,
		   struct srv_model **out, char *err, size_t errlen)
{
	*out = NULL;
	struct srv_model *sm = calloc(1, sizeof *sm);
	if (!sm)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	int rc = cigt_model_load(path, &sm->m, err, errlen);
	if (!rc)
		rc = cigt_engine_new_opts(sm->m, eo, &sm->e, err, errlen);
	if (!rc)
		rc = model_dials(sm, path, compute, eo, err, errlen);
	if (rc) {
		model_free(sm);
		return rc;
	}
	static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
				      0.05,   0.1,   0.25,   0.5,   1,    2.5, 5, 10};
	srv_hist_init(&sm->st.duration, secs, (int)(sizeof secs / sizeof secs[0]), 1e-9);
	atomic_init(&sm->refs, 1);
	sm->generation = ++model_generation;
	snprintf(sm->name, sizeof sm->name, "%s", sm->m->arch->name);
	sm->version = 1;
	*out = sm;
	return 0;
}

int srv_model_set_batching(struct srv_model *sm, const struct srv_batching *bat)
{
	CIGT_ASSERT(!sm->st.batch && bat->max_batch >= 1);
	struct srv_bstat *b = calloc((size_t)bat->max_batch + 1, sizeof *b);
	if (!b)
		return CIGT_ENOMEM;
	sm->st.batch = b;
	sm->st.nbatch = bat->max_batch + 1;
	sm->bat = *bat;
	return 0;
}

struct srv_model *srv_model_ref(struct srv_model *sm)
{
	if (sm)
		atomic_fetch_add_explicit(&sm->refs, 1, memory_order_relaxed);
	return sm;
}

void srv_model_unref(struct srv_model *sm)
{
	if (!sm || atomic_fetch_sub_explicit(&sm->refs, 1, memory_order_acq_rel) != 1)
		return;
	model_free(sm);
}

int srv_model_compatible(const struct cigt_arch *o, const struct cigt_arch *n, char *err,
			 size_t errlen)
{
	if (strcmp(o->name, n->name))
		return cigt_fail(err, errlen, CIGT_EINVAL, "model name '%s' differs from '%s'",
				 n->name, o->name);
	if (o->input.c != n->input.c || o->input.h != n->input.h || o->input.w != n->input.w)
		return cigt_fail(err, errlen, CIGT_EINVAL, "input %dx%dx%d differs from %dx%dx%d",
				 n->input.c, n->input.h, n->input.w, o->input.c, o->input.h,
				 o->input.w);
	if (o->nclasses != n->nclasses || o->nlayers != n->nlayers)
		return cigt_fail(err, errlen, CIGT_EINVAL, "classes or layers differ");
	for (int l = 0; l < o->nlayers; l++)
		if (o->layers[l].experts != n->layers[l].experts)
			return cigt_fail(err, errlen, CIGT_EINVAL,
					 "layer %d has %d experts instead of %d", l,
					 n->layers[l].experts, o->layers[l].experts);
	return 0;
}
