/* The compute dial: multipath execution (the authors' rule: argmax expert plus every expert whose
 * routing probability reaches the layer's threshold, expanded as a tree, posteriors averaged over
 * the leaves), confidence escalation to a second model, and the choice of a dial from an
 * operating point or a MAC budget. Rows are copies of samples: after each router the opened
 * copies are counting-sorted by expert, so every expert still runs once per slice on one
 * contiguous group, exactly as on the single path. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "../common/util.h"
#include "engine_internal.h"

/* ------------------------------------------------------------------- dials */

void cigt_dial_single(struct cigt_dial *d)
{
	memset(d, 0, sizeof *d);
	for (int l = 0; l < CIGT_MAX_LAYERS; l++)
		d->tau[l] = 1.0f;
	d->point = -1;
}

/* Most experts that can reach tau at a router of k experts: their probabilities sum to 1 (the
 * 1e-4 allows for float rounding of the softmax), and the argmax always runs. */
static int fan_bound(float tau, int k)
{
	if (!(tau > 0.0f))
		return k;
	double f = floor(1.0001 / (double)tau);
	return f >= k ? k : f < 1 ? 1 : (int)f;
}

static bool dial_is_single(const struct cigt_arch *a, const struct cigt_dial *d)
{
	for (int l = 0; l + 1 < a->nlayers; l++)
		if (d->tau[l] < 1.0f)
			return false;
	return true;
}

/* Worst-case rows (opened paths) per sample at the leaves. */
static int64_t dial_fan(const struct cigt_arch *a, const struct cigt_dial *d)
{
	int64_t rows = 1;
	for (int l = 0; l + 1 < a->nlayers && rows <= CIGT__MAX_TREE; l++)
		rows *= fan_bound(d->tau[l], a->layers[l].router.out);
	return rows;
}

int cigt_engine_dial_check(const struct cigt_engine *e, const struct cigt_dial *d, char *err,
			   size_t errlen)
{
	const struct cigt_arch *a = e->a;
	for (int l = 0; l + 1 < a->nlayers; l++)
		if (!(d->tau[l] >= 0.0f && d->tau[l] <= 1.0f))
			return cigt_fail(err, errlen, CIGT_EINVAL,
					 "threshold of router %d is %g, not in [0, 1]", l,
					 (double)d->tau[l]);
	if (!(d->confidence >= 0.0f && d->confidence <= 1.0f))
		return cigt_fail(err, errlen, CIGT_EINVAL, "confidence %g is not in [0, 1]",
				 (double)d->confidence);
	if (d->confidence > 0.0f) {
		const struct cigt_arch *b = d->second ? d->second->a : NULL;
		if (!b)
			return cigt_fail(err, errlen, CIGT_EINVAL,
					 "escalation (confidence %g) needs a second model",
					 (double)d->confidence);
		if (b->nclasses != a->nclasses || b->input.c != a->input.c ||
		    b->input.h != a->input.h || b->input.w != a->input.w ||
		    b->range_lo != a->range_lo || b->range_hi != a->range_hi)
			return cigt_fail(err, errlen, CIGT_EINVAL,
					 "second model '%s' does not take the same input and classes "
					 "as '%s'", b->name, a->name);
	}
	if (dial_fan(a, d) > CIGT__MAX_TREE)
		return cigt_fail(err, errlen, CIGT_EINVAL,
				 "these thresholds can open more than %d paths per sample",
				 CIGT__MAX_TREE);
	return 0;
}

int64_t cigt_engine_dial_worst_macs(const struct cigt_engine *e, const struct cigt_dial *d)
{
	const struct cigt_arch *a = e->a;
	int64_t rows = 1, macs = 0;
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		macs += rows * L->expert_macs;
		if (L->has_router) {
			macs += rows * L->router.macs;
			rows *= fan_bound(d->tau[l], L->router.out);
		}
	}
	if (d->confidence > 0.0f && d->second)
		macs += d->second->a->path_macs;
	return macs;
}

int cigt_engine_dial_from_point(const struct cigt_engine *e, int point,
				const struct cigt_engine *second, struct cigt_dial *out, char *err,
				size_t errlen)
{
	const struct cigt_model *m = e->m;
	if (point < 0 || point >= m->npoints)
		return cigt_fail(err, errlen, CIGT_EINVAL, "no operating point %d", point);
	const struct cigt_point *p = &m->points[point];
	cigt_dial_single(out);
	for (int l = 0; l + 1 < e->a->nlayers; l++)
		out->tau[l] = p->tau[l];
	out->confidence = p->second[0] ? p->confidence : 0.0f;
	out->second = p->second[0] ? second : NULL;
	out->point = point;
	if (p->second[0] && !second)
		return cigt_fail(err, errlen, CIGT_EINVAL,
				 "operating point '%s' needs the second model '%s', not loaded",
				 p->name, p->second);
	return cigt_engine_dial_check(e, out, err, errlen);
}

int cigt_engine_dial_for_budget(const struct cigt_engine *e,
				const struct cigt_engine *const *seconds, int64_t max_macs,
				struct cigt_dial *out, char *err, size_t errlen)
{
	const struct cigt_model *m = e->m;
	cigt_dial_single(out);
	if (max_macs < e->a->path_macs)
		return cigt_fail(err, errlen, CIGT_EINVAL,
				 "a budget of %lld MACs is less than one path of '%s' (%lld MACs)",
				 (long long)max_macs, e->a->name, (long long)e->a->path_macs);
	double best = -1.0;
	for (int i = 0; i < m->npoints; i++) {
		const struct cigt_engine *s = seconds ? seconds[i] : NULL;
		struct cigt_dial d;
		if (m->points[i].second[0] && !s)
			continue;
		if (cigt_engine_dial_from_point(e, i, s, &d, NULL, 0))
			continue;
		if (cigt_engine_dial_worst_macs(e, &d) > max_macs)
			continue;
		if (m->points[i].val_accuracy > best) {
			best = m->points[i].val_accuracy;
			*out = d;
		}
	}
	return 0;
}

/* --------------------------------------------------------------- execution */

/* After the router of layer l: opens each row's experts (argmax plus those reaching tau, at
 * most fan_bound of them) and counting-sorts the copies from ws->out into ws->in, grouped by
 * expert (off[k]..off[k+1]). Returns the new row count. */
static int expand(struct cigt_workspace *ws, const struct cigt_layer_desc *L, int rows,
		  float tau, struct cigt_result *res, int *off)
{
	const int k = L->router.out, fanb = fan_bound(tau, k);
	const int64_t sz = cigt_shape_size(L->out);
	int cnt[CIGT_MAX_EXPERTS] = {0};
	float pr[CIGT_MAX_EXPERTS];
	PROF_START(ws);
	for (int i = 0; i < rows; i++) {
		int top = ws->next[i], opened = 1;
		uint64_t mask = (uint64_t)1 << top;
		res[ws->perm[i]].macs += L->router.macs;
		if (fanb > 1) {
			cigt_softmax(ws->rlog + (int64_t)i * k, k, pr);
			for (int j = 0; j < k && opened < fanb; j++)
				if (j != top && pr[j] >= tau) {
					mask |= (uint64_t)1 << j;
					opened++;
				}
		}
		ws->rmask[i] = mask;
		for (int j = 0; j < k; j++)
			cnt[j] += (int)((mask >> j) & 1);
	}
	off[0] = 0;
	for (int j = 0; j < k; j++)
		off[j + 1] = off[j] + cnt[j];
	const int total = off[k];
	CIGT_ASSERT(total <= ws->rows_cap);
	int to = 0;
	for (int j = 0; j < k; j++)
		for (int i = 0; i < rows; i++) {
			if (!((ws->rmask[i] >> j) & 1))
				continue;
			memcpy(ws->in + (int64_t)to * sz, ws->out + (int64_t)i * sz,
			       (size_t)sz * sizeof(float));
			ws->perm2[to] = ws->perm[i];
			ws->rroute2[to] = ws->rroute[i] * k + j;
			ws->rmain2[to] = ws->rmain[i] && ws->next[i] == j;
			to++;
		}
	int *t = ws->perm;
	ws->perm = ws->perm2;
	ws->perm2 = t;
	t = ws->rroute;
	ws->rroute = ws->rroute2;
	ws->rroute2 = t;
	unsigned char *u = ws->rmain;
	ws->rmain = ws->rmain2;
	ws->rmain2 = u;
	PROF_END(ws, CIGT_PROF_REGROUP);
	return total;
}

/* Samples per multipath slice: the whole batch when its worst-case trees fit the workspace
 * (they do under any dial when the workspace could afford it), else fewer. */
static int slice_size(const struct cigt_engine *e, const struct cigt_workspace *ws,
		      const struct cigt_dial *d)
{
	const struct cigt_arch *a = e->a;
	int64_t n = ws->max_batch, rows = 1;
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		int64_t need = rows * CIGT_MAX(cigt_shape_size(L->in), cigt_shape_size(L->out));
		n = CIGT_MIN(n, ws->cap_floats / need);
		n = CIGT_MIN(n, ws->rows_cap / rows);
		if (L->has_router)
			rows *= fan_bound(d->tau[l], L->router.out);
	}
	return (int)CIGT_MAX(n, 1);
}

/* One slice under multipath: n samples whose worst-case trees fit in rows_cap rows. Leaves the
 * mean posterior of each sample in ws->acc. */
static void mp_slice(const struct cigt_engine *e, struct cigt_workspace *ws, const float *x,
		     int n, const struct cigt_dial *d, struct cigt_result *res, float *logits)
{
	const struct cigt_arch *a = e->a;
	const int K = a->nclasses;
	int off[CIGT_MAX_EXPERTS + 1] = {0, n};
	int rows = n;
	cigt__slice_input(ws, x, n);
	for (int i = 0; i < n; i++) {
		ws->perm[i] = i;
		ws->rroute[i] = 0;
		ws->rmain[i] = 1;
		res[i].macs = 0;
		res[i].npaths = 0;
		res[i].paths = 0;
		res[i].escalated = false;
	}
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		const int64_t isz = cigt_shape_size(L->in), osz = cigt_shape_size(L->out);
		for (int ex = 0; ex < L->experts; ex++) {
			int cnt = off[ex + 1] - off[ex];
			for (int p = off[ex]; p < off[ex + 1]; p++) {
				res[ws->perm[p]].macs += L->expert_macs;
				if (ws->rmain[p])
					res[ws->perm[p]].route[l] = ex;
			}
			cigt__run_group(ws, l, ex, cnt, ws->in + (int64_t)off[ex] * isz,
					ws->out + (int64_t)off[ex] * osz);
		}
		if (L->has_router) {
			cigt__route_rows(ws, l, rows, ws->out, ws->next);
			rows = expand(ws, L, rows, d->tau[l], res, off);
			continue;
		}
		float pr[CIGT_MAX_CLASSES];
		memset(ws->acc, 0, (size_t)n * K * sizeof(float));
		for (int p = 0; p < rows; p++) {
			int s = ws->perm[p];
			const float *lg = ws->out + (int64_t)p * K;
			float *acc = ws->acc + (int64_t)s * K;
			cigt_softmax(lg, K, pr);
			for (int c = 0; c < K; c++)
				acc[c] += pr[c];
			res[s].npaths++;
			if (a->npaths <= 64)
				res[s].paths |= (uint64_t)1 << ws->rroute[p];
			if (ws->rmain[p]) {
				res[s].cls = cigt_argmax(lg, K);
				if (logits)
					memcpy(logits + (int64_t)s * K, lg, (size_t)K * sizeof(float));
			}
		}
		for (int s = 0; s < n; s++) {
			if (res[s].npaths == 1)
				continue; /* the single path's own softmax and argmax of its logits */
			float *acc = ws->acc + (int64_t)s * K, inv = 1.0f / (float)res[s].npaths;
			for (int c = 0; c < K; c++)
				acc[c] *= inv;
			res[s].cls = cigt_argmax(acc, K);
		}
	}
	if (ws->prof)
		ws->prof->batches++;
}

/* Escalation of one slice: the samples whose top probability in ws->acc is below the dial's
 * confidence run through the second model as one batch; their posterior becomes the mean of
 * the two. */
static void escalate(const struct cigt_engine *e, struct cigt_workspace *ws, const float *x,
		     int n, const struct cigt_dial *d, struct cigt_result *res)
{
	const int K = e->a->nclasses;
	const int64_t isz = cigt_shape_size(e->a->input);
	int m = 0;
	for (int s = 0; s < n; s++) {
		const float *acc = ws->acc + (int64_t)s * K;
		if (acc[cigt_argmax(acc, K)] < d->confidence) {
			memcpy(ws->esc_x + (int64_t)m * isz, x + (int64_t)s * isz,
			       (size_t)isz * sizeof(float));
			ws->esc_idx[m++] = s;
		}
	}
	if (m == 0)
		return;
	cigt_engine_classify(d->second, ws->second, ws->esc_x, m, CIGT_EXEC_ROUTED, ws->esc_res,
			     ws->esc_probs, NULL);
	for (int j = 0; j < m; j++) {
		int s = ws->esc_idx[j];
		float *acc = ws->acc + (int64_t)s * K;
		const float *p2 = ws->esc_probs + (int64_t)j * K;
		for (int c = 0; c < K; c++)
			acc[c] = 0.5f * (acc[c] + p2[c]);
		res[s].cls = cigt_argmax(acc, K);
		res[s].macs += ws->esc_res[j].macs;
		res[s].escalated = true;
	}
}

int cigt_engine_classify_dial(const struct cigt_engine *e, struct cigt_workspace *ws,
			      const float *x, int n, const struct cigt_dial *d,
			      struct cigt_result *res, float *probs, float *logits)
{
	if (!d)
		return cigt_engine_classify(e, ws, x, n, CIGT_EXEC_ROUTED, res, probs, logits);
	if (!e || !ws || ws->e != e || n < 0 || (n > 0 && (!x || !res)))
		return CIGT_EINVAL;
	if (cigt_engine_dial_check(e, d, NULL, 0))
		return CIGT_EINVAL;
	const bool esc = d->confidence > 0.0f;
	if (esc && (!ws->second || ws->second->e != d->second))
		return CIGT_EINVAL;
	const struct cigt_arch *a = e->a;
	const bool single = dial_is_single(a, d);
	if (single && !esc)
		return cigt_engine_classify(e, ws, x, n, CIGT_EXEC_ROUTED, res, probs, logits);
	const int K = a->nclasses;
	const int64_t isz = cigt_shape_size(a->input);
	const int chunk = slice_size(e, ws, d);
	for (int s0 = 0; s0 < n; s0 += chunk) {
		int m = CIGT_MIN(chunk, n - s0);
		const float *xs = x + s0 * isz;
		float *lg = logits ? logits + (int64_t)s0 * K : NULL;
		if (single)
			cigt__classify_slice(e, ws, xs, m, CIGT_EXEC_ROUTED, res + s0, ws->acc, lg);
		else
			mp_slice(e, ws, xs, m, d, res + s0, lg);
		if (esc)
			escalate(e, ws, xs, m, d, res + s0);
		if (probs)
			memcpy(probs + (int64_t)s0 * K, ws->acc, (size_t)m * K * sizeof(float));
	}
	return 0;
}
