/* The compute dial of a request (include/cigt/engine.h, "The compute dial"): turns the job's
 * compute name or max_macs budget, or the version's default point, into the dial the scheduler
 * runs. Every dial was built and checked when the version loaded (srv_model_load); here a
 * request only picks one, so nothing about a second model can fail at request time. */
#include <stdio.h>
#include <string.h>

#include "cigt/error.h"
#include "srv.h"

/* The model's point names as "a, b, c" (cut to fit). */
static void point_list(const struct cigt_model *m, char *buf, size_t n)
{
	size_t k = 0;
	buf[0] = 0;
	for (int p = 0; p < m->npoints && k + 1 < n; p++) {
		int w = snprintf(buf + k, n - k, "%s%s", p ? ", " : "", m->points[p].name);
		if (w < 0 || (size_t)w >= n - k)
			break;
		k += (size_t)w;
	}
}

int srv_dial_resolve(const struct srv_model *sm, const struct srv_job *job, struct cigt_dial *d,
		     char *err, size_t errlen)
{
	const struct cigt_model *m = sm->m;
	int p = sm->default_point;
	if (job->compute[0]) {
		p = cigt_model_point(m, job->compute);
		if (p < 0) {
			char names[256];
			point_list(m, names, sizeof names);
			snprintf(err, errlen, "compute: model %s has no operating point '%s' (%s%s)",
				 sm->name, job->compute, m->npoints ? "it has: " : "it has none",
				 names);
			return 400;
		}
	} else if (job->max_macs) {
		char why[256];
		if (cigt_engine_dial_for_budget(sm->e, sm->point_engine, job->max_macs, d, why,
						sizeof why)) {
			snprintf(err, errlen, "max_macs: %s", why);
			return 400;
		}
		/* A budget picks a point (or the single path): run that point's prepared dial. */
		if (d->point >= 0)
			*d = sm->dials[d->point];
		return 200;
	}
	if (p < 0)
		cigt_dial_single(d);
	else
		*d = sm->dials[p];
	return 200;
}
