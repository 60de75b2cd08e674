/* The compute dial (src/engine/multipath.c): the threshold rule at its edges on routers whose
 * probabilities are fixed by construction (tau = 0, tau = 1, ties, just above and below a
 * probability), the mean posterior over paths against paths run one by one through the
 * node-level API, MACs per sample from the architecture's per-part counts, bit-identity with the
 * single path, escalation against two separate single-path runs, budgets, and the operating-point
 * table in model files (round trip, every kind of malformed table, the second model's checks). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cigt/engine.h"
#include "cigt/error.h"
#include "cigt/model.h"
#include "helpers.h"

/* 1x6x5 input, K = [1, 3, 2], 4 classes. */
static const char *const ARCH =
	"{\"name\":\"dial\",\"input\":{\"channels\":1,\"height\":6,\"width\":5},"
	"\"classes\":[\"a\",\"b\",\"c\",\"d\"],\"layers\":["
	"{\"experts\":1,\"ops\":[{\"type\":\"conv\",\"out\":3,\"kernel\":3,\"padding\":1},"
	"{\"type\":\"relu\"}],\"router\":{\"pool\":2,\"hidden\":5}},"
	"{\"experts\":3,\"ops\":[{\"type\":\"conv\",\"out\":2,\"kernel\":3},{\"type\":\"relu\"}],"
	"\"router\":{\"pool\":2,\"hidden\":4}},"
	"{\"experts\":2,\"ops\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":4}]}]}";

/* The same trellis shape (1x6x5, K = [1, 3, 2], 4 classes) built of residual blocks: an
 * identity shortcut, a 1x1-conv shortcut, a pre-activation block, global average pooling and
 * a router with its own op chain. Multipath and escalation run on it unchanged. */
static const char *const RES_ARCH =
	"{\"name\":\"dialres\",\"input\":{\"channels\":1,\"height\":6,\"width\":5},"
	"\"classes\":[\"a\",\"b\",\"c\",\"d\"],\"layers\":["
	"{\"experts\":1,\"ops\":[{\"type\":\"conv\",\"out\":3,\"kernel\":3,\"padding\":1},"
	"{\"type\":\"residual\",\"main\":[{\"type\":\"conv\",\"out\":3,\"kernel\":3,"
	"\"padding\":1},{\"type\":\"batchnorm\"}]}],\"router\":{\"ops\":[{\"type\":\"conv\","
	"\"out\":3,\"kernel\":3,\"padding\":1},{\"type\":\"relu\"}],\"pool\":2,\"hidden\":5}},"
	"{\"experts\":3,\"ops\":[{\"type\":\"residual\",\"main\":[{\"type\":\"conv\",\"out\":2,"
	"\"kernel\":3,\"padding\":1},{\"type\":\"batchnorm\"}],\"shortcut\":[{\"type\":\"conv\","
	"\"out\":2,\"kernel\":1}]}],\"router\":{\"pool\":2,\"hidden\":4}},"
	"{\"experts\":2,\"ops\":[{\"type\":\"residual\",\"main\":[{\"type\":\"batchnorm\"},"
	"{\"type\":\"relu\"},{\"type\":\"conv\",\"out\":2,\"kernel\":3,\"padding\":1}]},"
	"{\"type\":\"globalavgpool\"},{\"type\":\"linear\",\"out\":4}]}]}";

/* Same input and classes, one layer: the "second model" of escalation tests. */
static const char *const ARCH2 =
	"{\"name\":\"flat\",\"input\":{\"channels\":1,\"height\":6,\"width\":5},"
	"\"classes\":[\"a\",\"b\",\"c\",\"d\"],\"layers\":["
	"{\"experts\":1,\"ops\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":4}]}]}";

#define N 40
#define K 4
#define INSZ 30

static float *inputs(uint64_t seed)
{
	float *x = th_calloc((size_t)N * INSZ, sizeof *x);
	th_fill(x, (int64_t)N * INSZ, -2, 2, seed);
	return x;
}

/* Makes router l's probabilities the same for every input: fc2 weights 0, biases log(p). */
static void fix_router(struct cigt_model *m, int l, const double *p)
{
	const struct cigt_router_desc *rd = &m->arch->layers[l].router;
	memset(m->routers[l].fc2_w, 0, (size_t)rd->out * rd->hidden * sizeof(float));
	for (int k = 0; k < rd->out; k++)
		m->routers[l].fc2_b[k] = (float)log(p[k]);
}

struct rig {
	struct cigt_model *m;
	struct cigt_engine *e;
	struct cigt_workspace *ws;
};

static struct rig rig(const char *arch, uint64_t seed, int max_batch)
{
	struct rig r = {.m = th_model(arch, seed, true)};
	char err[256] = "";
	cr_assert_eq(cigt_engine_new(r.m, &r.e, err, sizeof err), 0, "%s", err);
	r.ws = cigt_workspace_new(r.e, max_batch);
	cr_assert_not_null(r.ws);
	return r;
}

static void rig_free(struct rig *r)
{
	cigt_workspace_free(r->ws);
	cigt_engine_free(r->e);
	cigt_model_free(r->m);
}

static struct cigt_dial dial2(float t0, float t1)
{
	struct cigt_dial d;
	cigt_dial_single(&d);
	d.tau[0] = t0;
	d.tau[1] = t1;
	return d;
}

/* The posterior of sample x along one path, through the node-level API. */
static void path_probs(struct rig *r, const float *x, int e1, int e2, float *probs)
{
	float a0[256], a1[256], lg[K]; /* layer 0 and layer 1 outputs (both archs) */
	int next;
	cr_assert_eq(cigt_engine_run_expert(r->e, r->ws, 0, 0, 1, x, a0, &next), 0);
	cr_assert_eq(cigt_engine_run_expert(r->e, r->ws, 1, e1, 1, a0, a1, &next), 0);
	cr_assert_eq(cigt_engine_run_expert(r->e, r->ws, 2, e2, 1, a1, lg, NULL), 0);
	cigt_softmax(lg, K, probs);
}

/* MACs of a sample that opened n1 layer-1 experts and n2 leaves, from the arch's part counts. */
static int64_t macs_of(const struct cigt_arch *a, int n1, int n2)
{
	return a->layers[0].expert_macs + a->layers[0].router.macs +
	       n1 * (a->layers[1].expert_macs + a->layers[1].router.macs) +
	       n2 * a->layers[2].expert_macs;
}

/* Runs the dial and checks every sample against the expected open sets (open1 over layer 1's
 * experts, open2 over the leaves, the same for every sample since the routers are fixed). */
static void check_fixed(struct rig *r, struct cigt_dial d, const int *open1, const int *open2)
{
	float *x = inputs(5);
	struct cigt_result res[N];
	float probs[N * K];
	cr_assert_eq(cigt_engine_classify_dial(r->e, r->ws, x, N, &d, res, probs, NULL), 0);
	int n1 = 0, n2 = 0;
	uint64_t want_paths = 0;
	for (int i = 0; i < 3; i++)
		n1 += open1[i];
	for (int j = 0; j < 2; j++)
		n2 += open2[j];
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 2; j++)
			if (open1[i] && open2[j])
				want_paths |= (uint64_t)1 << (i * 2 + j);
	for (int s = 0; s < N; s++) {
		cr_assert_eq(res[s].npaths, n1 * n2, "sample %d: %d paths, want %d", s,
			     res[s].npaths, n1 * n2);
		cr_assert_eq(res[s].paths, want_paths, "sample %d: paths %#llx, want %#llx", s,
			     (unsigned long long)res[s].paths, (unsigned long long)want_paths);
		cr_assert_eq(res[s].macs, macs_of(r->m->arch, n1, n1 * n2));
		cr_assert_not(res[s].escalated);
		float mean[K] = {0}, p[K];
		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 2; j++)
				if (open1[i] && open2[j]) {
					path_probs(r, x + (size_t)s * INSZ, i, j, p);
					for (int c = 0; c < K; c++)
						mean[c] += p[c] / (float)(n1 * n2);
				}
		for (int c = 0; c < K; c++)
			cr_assert_float_eq(probs[s * K + c], mean[c], 2e-6,
					   "sample %d class %d: %g, want %g", s, c,
					   (double)probs[s * K + c], (double)mean[c]);
	}
	free(x);
}

static struct rig fixed_rig_of(const char *arch)
{
	struct rig r = rig(arch, 11, 16);
	static const double p0[3] = {0.5, 0.3, 0.2}, p1[2] = {0.7, 0.3};
	fix_router(r.m, 0, p0);
	fix_router(r.m, 1, p1);
	cigt_workspace_free(r.ws);
	cigt_engine_free(r.e);
	char err[256];
	cr_assert_eq(cigt_engine_new(r.m, &r.e, err, sizeof err), 0, "%s", err);
	r.ws = cigt_workspace_new(r.e, 16);
	return r;
}

static struct rig fixed_rig(void)
{
	return fixed_rig_of(ARCH);
}

/* ------------------------------------------------------------------ the threshold rule */

Test(threshold, residual_trellis_opens_and_averages_the_same_paths)
{
	struct rig r = fixed_rig_of(RES_ARCH);
	check_fixed(&r, dial2(0, 0), (int[]){1, 1, 1}, (int[]){1, 1});
	check_fixed(&r, dial2(1, 1), (int[]){1, 0, 0}, (int[]){1, 0});
	check_fixed(&r, dial2(0.29f, 1), (int[]){1, 1, 0}, (int[]){1, 0});
	check_fixed(&r, dial2(0.19f, 0.31f), (int[]){1, 1, 1}, (int[]){1, 0});
	rig_free(&r);
}


Test(threshold, tau_zero_opens_every_path_and_averages_all_posteriors)
{
	struct rig r = fixed_rig();
	check_fixed(&r, dial2(0, 0), (int[]){1, 1, 1}, (int[]){1, 1});
	rig_free(&r);
}

Test(threshold, tau_one_is_the_argmax_path)
{
	struct rig r = fixed_rig();
	check_fixed(&r, dial2(1, 1), (int[]){1, 0, 0}, (int[]){1, 0});
	rig_free(&r);
}

Test(threshold, just_below_and_above_a_probability)
{
	struct rig r = fixed_rig();
	check_fixed(&r, dial2(0.29f, 1), (int[]){1, 1, 0}, (int[]){1, 0});
	check_fixed(&r, dial2(0.31f, 0.29f), (int[]){1, 0, 0}, (int[]){1, 1});
	check_fixed(&r, dial2(0.19f, 0.31f), (int[]){1, 1, 1}, (int[]){1, 0});
	rig_free(&r);
}

Test(threshold, ties_take_the_first_expert_as_argmax_and_open_the_others_at_their_probability)
{
	struct rig r = fixed_rig();
	static const double even[3] = {1.0 / 3, 1.0 / 3, 1.0 / 3}, half[2] = {0.5, 0.5};
	fix_router(r.m, 0, even);
	fix_router(r.m, 1, half);
	cigt_workspace_free(r.ws);
	cigt_engine_free(r.e);
	char err[256];
	cr_assert_eq(cigt_engine_new(r.m, &r.e, err, sizeof err), 0, "%s", err);
	r.ws = cigt_workspace_new(r.e, 16);
	check_fixed(&r, dial2(1, 1), (int[]){1, 0, 0}, (int[]){1, 0});
	check_fixed(&r, dial2(0.3f, 0.5f), (int[]){1, 1, 1}, (int[]){1, 1});
	check_fixed(&r, dial2(0.34f, 0.51f), (int[]){1, 0, 0}, (int[]){1, 0});
	rig_free(&r);
}

Test(threshold, above_one_half_is_bit_identical_to_the_single_path)
{
	struct rig r = rig(ARCH, 3, 8);
	float *x = inputs(9);
	struct cigt_result a[N], b[N];
	float pa[N * K], pb[N * K], la[N * K], lb[N * K];
	cr_assert_eq(cigt_engine_classify(r.e, r.ws, x, N, CIGT_EXEC_ROUTED, a, pa, la), 0);
	struct cigt_dial d = dial2(0.75f, 0.51f);
	cr_assert_eq(cigt_engine_classify_dial(r.e, r.ws, x, N, &d, b, pb, lb), 0);
	for (int s = 0; s < N; s++) {
		cr_assert_eq(a[s].cls, b[s].cls);
		cr_assert_eq(a[s].macs, b[s].macs);
		cr_assert_eq(a[s].macs, r.m->arch->path_macs);
		cr_assert_eq(b[s].npaths, 1);
		cr_assert_eq(a[s].paths, b[s].paths);
		for (int l = 0; l < 3; l++)
			cr_assert_eq(a[s].route[l], b[s].route[l]);
	}
	cr_assert_eq(memcmp(pa, pb, sizeof pa), 0, "posteriors differ");
	cr_assert_eq(memcmp(la, lb, sizeof la), 0, "logits differ");
	free(x);
	rig_free(&r);
}

Test(threshold, multipath_in_a_workspace_of_one_sample)
{
	struct rig r = fixed_rig();
	struct cigt_workspace *small = cigt_workspace_new(r.e, 1);
	cr_assert_not_null(small);
	cigt_workspace_free(r.ws);
	r.ws = small;
	check_fixed(&r, dial2(0, 0), (int[]){1, 1, 1}, (int[]){1, 1});
	rig_free(&r);
}

Test(threshold, every_expert_runs_once_per_batch_on_all_its_copies)
{
	struct rig r = fixed_rig();
	struct cigt_workspace *ws = cigt_workspace_new(r.e, N);
	cr_assert_not_null(ws);
	struct cigt_profile prof;
	memset(&prof, 0, sizeof prof);
	cigt_workspace_profile(ws, &prof);
	float *x = inputs(3);
	struct cigt_result res[N];
	struct cigt_dial d = dial2(0, 0);
	cr_assert_eq(cigt_engine_classify_dial(r.e, ws, x, N, &d, res, NULL, NULL), 0);
	cr_assert_eq(prof.batches, 1);
	cr_assert_eq(prof.groups[0][0], 1);
	cr_assert_eq(prof.rows[0][0], N);
	for (int e = 0; e < 3; e++) {
		cr_assert_eq(prof.groups[1][e], 1, "layer 1 expert %d ran in %llu groups", e,
			     (unsigned long long)prof.groups[1][e]);
		cr_assert_eq(prof.rows[1][e], N);
	}
	for (int e = 0; e < 2; e++) {
		cr_assert_eq(prof.groups[2][e], 1);
		cr_assert_eq(prof.rows[2][e], 3 * N, "leaf %d: one copy per parent", e);
	}
	free(x);
	cigt_workspace_free(ws);
	rig_free(&r);
}

Test(threshold, worst_case_macs_bound_every_sample)
{
	struct rig r = rig(ARCH, 5, 16);
	float *x = inputs(21);
	const float taus[] = {1, 0.5f, 0.4f, 0.3f, 0.2f, 0.1f, 0};
	for (size_t i = 0; i < sizeof taus / sizeof *taus; i++)
		for (size_t j = 0; j < sizeof taus / sizeof *taus; j++) {
			struct cigt_dial d = dial2(taus[i], taus[j]);
			struct cigt_result res[N];
			cr_assert_eq(cigt_engine_classify_dial(r.e, r.ws, x, N, &d, res, NULL, NULL),
				     0);
			int64_t worst = cigt_engine_dial_worst_macs(r.e, &d);
			for (int s = 0; s < N; s++)
				cr_assert_leq(res[s].macs, worst);
		}
	struct cigt_dial all = dial2(0, 0);
	cr_assert_eq(cigt_engine_dial_worst_macs(r.e, &all), macs_of(r.m->arch, 3, 6));
	free(x);
	rig_free(&r);
}

Test(threshold, bad_dials_are_refused)
{
	struct rig r = rig(ARCH, 5, 4);
	char err[256] = "";
	struct cigt_dial d = dial2(1.5f, 1);
	cr_assert_eq(cigt_engine_dial_check(r.e, &d, err, sizeof err), CIGT_EINVAL);
	cr_assert(strstr(err, "router 0"), "%s", err);
	d = dial2(1, -0.1f);
	cr_assert_eq(cigt_engine_dial_check(r.e, &d, err, sizeof err), CIGT_EINVAL);
	d = dial2(NAN, 1);
	cr_assert_eq(cigt_engine_dial_check(r.e, &d, err, sizeof err), CIGT_EINVAL);
	d = dial2(1, 1);
	d.confidence = 0.5f;
	cr_assert_eq(cigt_engine_dial_check(r.e, &d, err, sizeof err), CIGT_EINVAL);
	cr_assert(strstr(err, "second model"), "%s", err);
	float x[INSZ] = {0};
	struct cigt_result res;
	cr_assert_eq(cigt_engine_classify_dial(r.e, r.ws, x, 1, &d, &res, NULL, NULL),
		     CIGT_EINVAL);
	rig_free(&r);
}

/* ------------------------------------------------------------------ escalation */

static void check_escalation(const char *arch)
{
	struct rig a = rig(arch, 3, 8), b = rig(ARCH2, 4, 8);
	cigt_workspace_set_second(a.ws, b.ws);
	float *x = inputs(13);
	struct cigt_result ra[N], rb[N], rd[N];
	float pa[N * K], pb[N * K], pd[N * K];
	cr_assert_eq(cigt_engine_classify(a.e, a.ws, x, N, CIGT_EXEC_ROUTED, ra, pa, NULL), 0);
	cr_assert_eq(cigt_engine_classify(b.e, b.ws, x, N, CIGT_EXEC_ROUTED, rb, pb, NULL), 0);
	/* The median top probability as confidence: about half the samples escalate. */
	float tops[N];
	for (int s = 0; s < N; s++) {
		tops[s] = 0;
		for (int c = 0; c < K; c++)
			tops[s] = fmaxf(tops[s], pa[s * K + c]);
	}
	float conf = 0;
	int below = 0;
	for (int s = 0; s < N; s++) {
		int n = 0;
		for (int t = 0; t < N; t++)
			n += tops[t] < tops[s];
		if (n == N / 2)
			conf = tops[s];
	}
	cr_assert_gt(conf, 0);
	struct cigt_dial d;
	cigt_dial_single(&d);
	d.confidence = conf;
	d.second = b.e;
	cr_assert_eq(cigt_engine_classify_dial(a.e, a.ws, x, N, &d, rd, pd, NULL), 0);
	for (int s = 0; s < N; s++) {
		bool esc = tops[s] < conf;
		below += esc;
		cr_assert_eq(rd[s].escalated, esc, "sample %d", s);
		cr_assert_eq(rd[s].macs, ra[s].macs + (esc ? rb[s].macs : 0));
		cr_assert_eq(rd[s].route[1], ra[s].route[1]);
		int best = 0;
		for (int c = 0; c < K; c++) {
			float want = esc ? 0.5f * (pa[s * K + c] + pb[s * K + c]) : pa[s * K + c];
			cr_assert_float_eq(pd[s * K + c], want, 1e-6);
			if (want > (esc ? 0.5f * (pa[s * K + best] + pb[s * K + best])
					: pa[s * K + best]))
				best = c;
		}
		cr_assert_eq(rd[s].cls, esc ? best : ra[s].cls);
	}
	cr_assert_eq(below, N / 2);
	free(x);
	rig_free(&a);
	rig_free(&b);
}

Test(escalation, below_the_confidence_the_second_posterior_is_averaged_in)
{
	check_escalation(ARCH);
}

Test(escalation, a_residual_trellis_escalates_the_same_way)
{
	check_escalation(RES_ARCH);
}

Test(escalation, needs_the_second_workspace_and_matching_models)
{
	struct rig a = rig(ARCH, 3, 8), b = rig(ARCH2, 4, 8);
	struct cigt_dial d;
	cigt_dial_single(&d);
	d.confidence = 0.9f;
	d.second = b.e;
	float x[INSZ] = {0};
	struct cigt_result res;
	cr_assert_eq(cigt_engine_classify_dial(a.e, a.ws, x, 1, &d, &res, NULL, NULL),
		     CIGT_EINVAL, "no second workspace attached");
	struct cigt_model *other = th_model(
		"{\"name\":\"o\",\"input\":{\"channels\":1,\"height\":6,\"width\":5},"
		"\"classes\":[\"a\",\"b\",\"c\"],\"layers\":[{\"experts\":1,\"ops\":["
		"{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":3}]}]}",
		1, false);
	struct cigt_engine *oe;
	char err[256];
	cr_assert_eq(cigt_engine_new(other, &oe, err, sizeof err), 0);
	d.second = oe;
	cr_assert_eq(cigt_engine_dial_check(a.e, &d, err, sizeof err), CIGT_EINVAL);
	cr_assert(strstr(err, "same input and classes"), "%s", err);
	cigt_engine_free(oe);
	cigt_model_free(other);
	rig_free(&a);
	rig_free(&b);
}

/* ------------------------------------------------------------------ budgets and points */

static void set_point(struct cigt_model *m, int i, const char *name, float t0, float t1,
		      double acc)
{
	struct cigt_point *p = &m->points[i];
	memset(p, 0, sizeof *p);
	snprintf(p->name, sizeof p->name, "%s", name);
	for (int l = 0; l < CIGT_MAX_LAYERS; l++)
		p->tau[l] = 1;
	p->tau[0] = t0;
	p->tau[1] = t1;
	p->val_accuracy = acc;
	p->mean_macs = 1000;
}

Test(budget, smaller_than_one_path_is_an_error_not_a_downgrade)
{
	struct rig r = rig(ARCH, 3, 4);
	struct cigt_dial d;
	char err[256] = "";
	const int64_t path = r.m->arch->path_macs;
	cr_assert_eq(cigt_engine_dial_for_budget(r.e, NULL, path - 1, &d, err, sizeof err),
		     CIGT_EINVAL);
	char want[64];
	snprintf(want, sizeof want, "%lld MACs", (long long)path);
	cr_assert(strstr(err, want), "%s", err);
	cr_assert_eq(cigt_engine_dial_for_budget(r.e, NULL, -5, &d, err, sizeof err),
		     CIGT_EINVAL);
	cr_assert_eq(cigt_engine_dial_for_budget(r.e, NULL, path, &d, err, sizeof err), 0);
	cr_assert_eq(d.point, -1);
	cr_assert_eq(d.tau[0], 1.0f);
	rig_free(&r);
}

Test(budget, picks_the_most_accurate_point_whose_worst_case_fits)
{
	struct rig r = rig(ARCH, 3, 4);
	const struct cigt_arch *a = r.m->arch;
	set_point(r.m, 0, "single", 1, 1, 0.80);
	set_point(r.m, 1, "leaves", 1, 0, 0.85);  /* worst: 1 x 3 experts, 2 leaves */
	set_point(r.m, 2, "all", 0, 0, 0.90);     /* worst: 3 x 2 */
	set_point(r.m, 3, "worse", 0.3f, 0, 0.70); /* worst: 3 x 2, less accurate */
	r.m->npoints = 4;
	struct cigt_dial d;
	char err[256] = "";
	cr_assert_eq(cigt_engine_dial_for_budget(r.e, NULL, a->path_macs, &d, err, sizeof err),
		     0);
	cr_assert_eq(d.point, 0);
	cr_assert_eq(cigt_engine_dial_for_budget(r.e, NULL, macs_of(a, 1, 2), &d, err,
						 sizeof err),
		     0);
	cr_assert_eq(d.point, 1);
	cr_assert_eq(cigt_engine_dial_for_budget(r.e, NULL, macs_of(a, 3, 6) - 1, &d, err,
						 sizeof err),
		     0);
	cr_assert_eq(d.point, 1);
	cr_assert_eq(cigt_engine_dial_for_budget(r.e, NULL, macs_of(a, 3, 6), &d, err,
						 sizeof err),
		     0);
	cr_assert_eq(d.point, 2);
	cr_assert_eq(d.tau[0], 0.0f);
	rig_free(&r);
}

/* ------------------------------------------------------------------ the table in model files */

static const char *const GOOD_POINTS =
	"[{\"name\":\"single\",\"thresholds\":[1,1],\"val_accuracy\":0.9,\"mean_macs\":100},"
	"{\"name\":\"esc-0.8\",\"thresholds\":[1,0.25],\"confidence\":0.8,\"second\":\"thick\","
	"\"second_sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
	"\"val_accuracy\":0.95,\"mean_macs\":250.5}]";

static int parse(const char *json, struct cigt_point *pts, int *n, char *err, size_t errlen)
{
	struct cigt_arch *a = th_arch(ARCH);
	int rc = cigt_points_parse(json, strlen(json), a, pts, n, err, errlen);
	cigt_arch_free(a);
	return rc;
}

Test(points, parse_and_round_trip_through_a_model_file)
{
	struct cigt_point pts[CIGT_MAX_POINTS];
	int n;
	char err[256] = "";
	cr_assert_eq(parse(GOOD_POINTS, pts, &n, err, sizeof err), 0, "%s", err);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(pts[1].name, "esc-0.8");
	cr_assert_eq(pts[1].tau[1], 0.25f);
	cr_assert_eq(pts[1].confidence, 0.8f);
	cr_assert_str_eq(pts[1].second, "thick");
	struct cigt_model *m = th_model(ARCH, 1, false);
	memcpy(m->points, pts, sizeof pts);
	m->npoints = n;
	void *buf;
	size_t len;
	cr_assert_eq(cigt_model_serialize(m, &buf, &len), 0);
	struct cigt_model *back;
	cr_assert_eq(cigt_model_load_buffer(buf, len, &back, err, sizeof err), 0, "%s", err);
	cr_assert_eq(back->npoints, 2);
	cr_assert_eq(memcmp(back->points, m->points, 2 * sizeof *pts), 0);
	cr_assert_eq(cigt_model_point(back, "esc-0.8"), 1);
	cr_assert_eq(cigt_model_point(back, "nope"), -1);
	/* A model without the key has no points and loads as before. */
	m->npoints = 0;
	free(buf);
	cr_assert_eq(cigt_model_serialize(m, &buf, &len), 0);
	cigt_model_free(back);
	cr_assert_eq(cigt_model_load_buffer(buf, len, &back, err, sizeof err), 0, "%s", err);
	cr_assert_eq(back->npoints, 0);
	cr_assert_null(memmem(buf, len, "operating_points", 16));
	free(buf);
	cigt_model_free(back);
	cigt_model_free(m);
}

static void expect_bad(const char *json, const char *want)
{
	struct cigt_point pts[CIGT_MAX_POINTS];
	int n = 99;
	char err[256] = "";
	cr_assert_eq(parse(json, pts, &n, err, sizeof err), CIGT_EFORMAT, "accepted %s", json);
	cr_assert(strstr(err, want), "message '%s' does not say '%s'", err, want);
	cr_assert_eq(n, 0);
}

#define P(body) "[{\"name\":\"p\",\"val_accuracy\":0.5,\"mean_macs\":10," body "}]"

Test(points, malformed_tables_are_refused)
{
	expect_bad("{}", "not a JSON array");
	expect_bad("[1]", "is not an object");
	expect_bad("[x", "not valid JSON");
	expect_bad(P("\"thresholds\":[1,1],\"speed\":1"), "unknown key 'speed'");
	expect_bad(P("\"thresholds\":[1,1.5]"), "thresholds[1]");
	expect_bad(P("\"thresholds\":[-0.1,1]"), "thresholds[0]");
	expect_bad(P("\"thresholds\":[1,\"0.5\"]"), "thresholds[1]");
	expect_bad(P("\"thresholds\":[1]"), "array of 2 numbers");
	expect_bad(P("\"thresholds\":[1,1,1]"), "array of 2 numbers");
	expect_bad(P("\"thresholds\":[1,1],\"confidence\":-0.5"), "confidence is -0.5");
	expect_bad(P("\"thresholds\":[1,1],\"confidence\":0.5"), "second must name");
	expect_bad(P("\"thresholds\":[1,1],\"confidence\":0.5,\"second\":\"thick\""),
		   "second_sha256");
	expect_bad(P("\"thresholds\":[1,1],\"confidence\":0.5,\"second\":\"thick\","
		     "\"second_sha256\":\"ABCDEF\""),
		   "second_sha256");
	expect_bad(P("\"thresholds\":[1,1],\"confidence\":0.5,\"second\":\"../x\","
		     "\"second_sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef"
		     "0123456789abcdef\""),
		   "second must name");
	expect_bad(P("\"thresholds\":[1,1],\"second\":\"thick\",\"second_sha256\":"
		     "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\""),
		   "confidence is not above 0");
	expect_bad("[{\"thresholds\":[1,1],\"val_accuracy\":0.5,\"mean_macs\":10}]", "name");
	expect_bad("[{\"name\":\"a b\",\"thresholds\":[1,1],\"val_accuracy\":0.5,"
		   "\"mean_macs\":10}]",
		   "name");
	expect_bad("[{\"name\":\"p\",\"thresholds\":[1,1],\"val_accuracy\":1.5,"
		   "\"mean_macs\":10}]",
		   "val_accuracy");
	expect_bad("[{\"name\":\"p\",\"thresholds\":[1,1],\"val_accuracy\":0.5,"
		   "\"mean_macs\":0}]",
		   "mean_macs");
	expect_bad("[{\"name\":\"p\",\"thresholds\":[1,1],\"val_accuracy\":0.5}]",
		   "mean_macs is missing");
	expect_bad("[{\"name\":\"p\",\"thresholds\":[1,1],\"val_accuracy\":0.5,\"mean_macs\":1},"
		   "{\"name\":\"p\",\"thresholds\":[1,1],\"val_accuracy\":0.5,\"mean_macs\":1}]",
		   "used twice");
}

Test(points, a_bad_table_in_a_file_fails_the_load)
{
	struct cigt_model *m = th_model(ARCH, 1, false);
	set_point(m, 0, "p", 1, 1, 0.5);
	m->npoints = 1;
	void *buf;
	size_t len;
	cr_assert_eq(cigt_model_serialize(m, &buf, &len), 0);
	/* Same length edit: threshold 1 -> 7 inside the JSON string. */
	char *at = memmem(buf, len, "\\\"thresholds\\\":[1", 17);
	cr_assert_not_null(at);
	at[16] = '7';
	struct cigt_model *back;
	char err[256] = "";
	cr_assert_neq(cigt_model_load_buffer(buf, len, &back, err, sizeof err), 0);
	cr_assert_null(back);
	cr_assert(strstr(err, "__metadata__.operating_points[0].thresholds[0]"), "%s", err);
	free(buf);
	cigt_model_free(m);
}

Test(points, the_second_model_is_found_beside_the_first_and_checked)
{
	char dir[256], p1[300], p2[300], err[512] = "";
	th_tmpdir(dir, sizeof dir);
	snprintf(p1, sizeof p1, "%s/first.safetensors", dir);
	snprintf(p2, sizeof p2, "%s/flat.safetensors", dir);
	struct cigt_model *m = th_model(ARCH, 1, false), *s = th_model(ARCH2, 2, false), *got;
	cr_assert_eq(cigt_model_save(s, p2, err, sizeof err), 0, "%s", err);
	set_point(m, 0, "esc", 1, 1, 0.5);
	m->points[0].confidence = 0.7f;
	strcpy(m->points[0].second, "flat");
	cr_assert_eq(cigt_file_sha256(p2, m->points[0].second_sha256, err, sizeof err), 0);
	m->npoints = 1;
	cr_assert_eq(cigt_model_save(m, p1, err, sizeof err), 0, "%s", err);
	cr_assert_eq(cigt_model_load_second(p1, m, 0, &got, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(got->arch->name, "flat");
	cigt_model_free(got);
	/* A different file under the name: the sha256 says so. */
	s->blob[0] += 1.0f;
	cr_assert_eq(cigt_model_save(s, p2, err, sizeof err), 0, "%s", err);
	cr_assert_eq(cigt_model_load_second(p1, m, 0, &got, err, sizeof err), CIGT_EFORMAT);
	cr_assert(strstr(err, "sha256"), "%s", err);
	cr_assert_null(got);
	/* Missing. */
	unlink(p2);
	cr_assert_neq(cigt_model_load_second(p1, m, 0, &got, err, sizeof err), 0);
	cr_assert(strstr(err, "cannot be read"), "%s", err);
	/* Other classes, right sha256. */
	struct cigt_model *o = th_model(
		"{\"name\":\"o\",\"input\":{\"channels\":1,\"height\":6,\"width\":5},"
		"\"classes\":[\"a\",\"b\",\"c\",\"x\"],\"layers\":[{\"experts\":1,\"ops\":["
		"{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":4}]}]}",
		1, false);
	cr_assert_eq(cigt_model_save(o, p2, err, sizeof err), 0, "%s", err);
	cr_assert_eq(cigt_file_sha256(p2, m->points[0].second_sha256, err, sizeof err), 0);
	cr_assert_eq(cigt_model_load_second(p1, m, 0, &got, err, sizeof err), CIGT_EFORMAT);
	cr_assert(strstr(err, "classes"), "%s", err);
	cigt_model_free(o);
	cigt_model_free(s);
	cigt_model_free(m);
	th_rmdir(dir);
}

Test(points, sha256_of_known_inputs)
{
	char dir[256], p[300], hex[65], err[256];
	th_tmpdir(dir, sizeof dir);
	snprintf(p, sizeof p, "%s/f", dir);
	struct {
		const char *text, *sha;
	} cases[] = {
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		FILE *f = fopen(p, "wb");
		cr_assert_not_null(f);
		fputs(cases[i].text, f);
		fclose(f);
		cr_assert_eq(cigt_file_sha256(p, hex, err, sizeof err), 0, "%s", err);
		cr_assert_str_eq(hex, cases[i].sha, "sha256('%s')", cases[i].text);
	}
	th_rmdir(dir);
}
