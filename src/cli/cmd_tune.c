/* cigt tune MODEL [--escalate SECOND]: chooses operating points on the validation split the model
 * was trained with (the last N training images, N from its provenance; never the test set).
 * Runs every combination of a per-router threshold grid through the engine, simulates
 * escalation at a grid of confidences from the two posteriors exactly as the engine combines
 * them, prints the accuracy-vs-mean-MACs Pareto fronts and writes the chosen points into the
 * model file's __metadata__.operating_points. */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/pool.h"
#include "cli.h"
#include "../common/util.h"
#include "../nn/nn.h"

static const char usage[] =
	"usage: cigt tune MODEL [--escalate SECOND] [--data DIR] [--validation N]\n"
	"                 [--threads N] [--out FILE]\n"
	"Searches per-router multipath thresholds and escalation confidences on the\n"
	"validation split MODEL was trained with (the last N training images, N from its\n"
	"provenance), prints the accuracy-vs-mean-MACs Pareto fronts and writes the chosen\n"
	"operating points into the model file (replacing any it had).\n";

/* Thresholds tried at every router (values above 1/2 open nothing more than 1 does). */
static const float grid_fine[] = {1.0f, 0.49f, 0.45f, 0.4f, 0.35f, 0.3f, 0.25f, 0.2f,
				  0.1f, 0.05f, 0.0f};
static const float grid_coarse[] = {1.0f, 0.45f, 0.3f, 0.1f, 0.0f};
static const float confidences[] = {0.3f, 0.4f, 0.5f, 0.55f, 0.6f, 0.65f, 0.7f,
				    0.75f, 0.8f, 0.85f, 0.9f, 0.95f};
#define NCONF ((int)(sizeof confidences / sizeof confidences[0]))

struct cand {
	float tau[CIGT_MAX_LAYERS];
	float c; /* 0: no escalation */
	double acc, macs;
};

static int cmp_cand(const void *pa, const void *pb)
{
	const struct cand *a = pa, *b = pb;
	if (a->macs != b->macs)
		return a->macs < b->macs ? -1 : 1;
	return (a->acc < b->acc) - (a->acc > b->acc);
}

/* Pareto front of c[0..n) (sorted in place by MACs): indices into c, in MAC order. */
static int front(struct cand *c, int n, int *idx)
{
	qsort(c, (size_t)n, sizeof *c, cmp_cand);
	int k = 0;
	double best = -1.0;
	for (int i = 0; i < n; i++)
		if (c[i].acc > best) {
			best = c[i].acc;
			idx[k++] = i;
		}
	return k;
}

static bool all_single(const struct cand *c, int nr)
{
	for (int l = 0; l < nr; l++)
		if (c->tau[l] < 1.0f)
			return false;
	return true;
}

static void print_front(const char *title, const struct cand *c, const int *idx, int k, int nr,
			double single_macs, double thick_macs)
{
	printf("\n%s (validation)\n  %-16s %-6s %9s %12s %9s", title, "thresholds", "conf",
	       "accuracy", "mean MACs", "x single");
	if (thick_macs > 0)
		printf(" %9s", "x second");
	printf("\n");
	for (int i = 0; i < k; i++) {
		const struct cand *p = &c[idx[i]];
		char t[64];
		int off = 0;
		for (int l = 0; l < nr && off < (int)sizeof t; l++)
			off += snprintf(t + off, sizeof t - (size_t)off, "%s%g", l ? "," : "",
					(double)p->tau[l]);
		printf("  %-16s %-6g %8.2f%% %12.0f %9.3f", t, (double)p->c, 100 * p->acc, p->macs,
		       p->macs / single_macs);
		if (thick_macs > 0)
			printf(" %9.3f", p->macs / thick_macs);
		printf("\n");
	}
}

/* Picks up to `want` points of a front spread evenly over it (by position), without its first
 * entry when that is the single path. */
static int spread(const int *idx, int k, int want, int *out)
{
	if (k <= want) {
		memcpy(out, idx, (size_t)k * sizeof *idx);
		return k;
	}
	int n = 0;
	for (int i = 0; i < want; i++) {
		int j = idx[(int)((double)i * (k - 1) / (want - 1) + 0.5)];
		if (n == 0 || out[n - 1] != j)
			out[n++] = j;
	}
	return n;
}

static int add_point(struct cigt_model *m, const char *name, const struct cand *c, int nr,
		     const char *second, const char *sha)
{
	if (m->npoints >= CIGT_MAX_POINTS || cigt_model_point(m, name) >= 0)
		return 0;
	struct cigt_point *p = &m->points[m->npoints++];
	memset(p, 0, sizeof *p);
	snprintf(p->name, sizeof p->name, "%s", name);
	for (int l = 0; l < CIGT_MAX_LAYERS; l++)
		p->tau[l] = l < nr ? c->tau[l] : 1.0f;
	if (c->c > 0.0f) {
		p->confidence = c->c;
		snprintf(p->second, sizeof p->second, "%s", second);
		snprintf(p->second_sha256, sizeof p->second_sha256, "%s", sha);
	}
	p->val_accuracy = c->acc;
	p->mean_macs = c->macs;
	return 1;
}

static void point_name(const struct cand *c, int nr, char *buf, size_t n)
{
	if (c->c > 0.0f && all_single(c, nr)) {
		snprintf(buf, n, "escalate-%g", (double)c->c);
		return;
	}
	int off = snprintf(buf, n, "%s", c->c > 0.0f ? "mix" : "multi");
	for (int l = 0; l < nr && off < (int)n; l++)
		off += snprintf(buf + off, n - (size_t)off, "-%g", (double)c->tau[l]);
	if (c->c > 0.0f && off < (int)n)
		snprintf(buf + off, n - (size_t)off, "-c%g", (double)c->c);
}

/* The validation split's size from the model's provenance (data.validation), or -1. */
static int provenance_validation(const struct cigt_model *m)
{
	if (!m->provenance)
		return -1;
	json_t *j = json_loads(m->provenance, 0, NULL);
	json_t *v = json_object_get(json_object_get(j, "data"), "validation");
	int n = json_is_integer(v) && json_integer_value(v) > 0 &&
				json_integer_value(v) < INT_MAX
			? (int)json_integer_value(v)
			: -1;
	json_decref(j);
	return n;
}

int cmd_tune(int argc, char **argv)
{
	const char *dir = CIGT_DEFAULT_DATA_DIR, *second_path = NULL, *out_path = NULL;
	long long threads = cli_default_threads(), nval_opt = 0;
	const struct cli_opt opts[] = {
		{"escalate", 0, CLI_STR, &second_path, .arg = "SECOND",
		 .help = "a model with the same classes and input, lying beside MODEL,\n"
			 "to escalate uncertain answers to"},
		{"data", 0, CLI_STR, &dir, .arg = "DIR",
		 .help = "IDX directory with train-{images-idx3,labels-idx1}-ubyte.gz\n"
			 "(default " CIGT_DEFAULT_DATA_DIR ")"},
		{"validation", 0, CLI_LLONG, &nval_opt, 1, 10000000, .arg = "N",
		 .help = "tune on the last N images only: at most the validation split\n"
			 "its provenance gives (required when it gives none)"},
		{"threads", 0, CLI_LLONG, &threads, 1, 64, .arg = "N",
		 .help = "worker threads (default: online CPUs)"},
		{"out", 0, CLI_STR, &out_path, .arg = "FILE",
		 .help = "write the model with its points here (default: MODEL)"},
		{0},
	};
	const struct cli_cmd cmd = {usage, 19, 1, 1, opts};
	int status, operand = cli_parse(&cmd, argc, argv, &status);
	if (operand < 0)
		return status;
	const char *path = argv[operand];
	if (!out_path)
		out_path = path;
	struct cigt_model *m = NULL, *m2 = NULL;
	struct cigt_engine *e = NULL, *e2 = NULL;
	struct cigt_pool *pool = NULL;
	float *x = NULL, *probs = NULL, *probs2 = NULL;
	uint8_t *labels = NULL;
	struct cigt_result *res = NULL, *res2 = NULL;
	struct cand *cands = NULL;
	int *idx = NULL, rc = 1;
	char err[512], sha[65] = "", second_name[CIGT_NAME_MAX] = "";
	if (cli_load(path, &m, &e))
		return 1;
	const struct cigt_arch *a = m->arch;
	const int nr = a->nlayers - 1, K = a->nclasses;
	const int nprov = provenance_validation(m);
	if (nval_opt && nprov > 0 && nval_opt > nprov) {
		fprintf(stderr, "cigt: --validation %lld: %s was validated on the last %d training "
			"images; more would take in images it was trained on\n", nval_opt, path,
			nprov);
		goto out;
	}
	int nval = nval_opt ? (int)nval_opt : nprov;
	if (nval < 1) {
		fprintf(stderr, "cigt: %s: its provenance does not give the validation split's size "
			"(data.validation); give --validation N\n", path);
		goto out;
	}
	if (second_path) {
		/* The point names the second model by file stem; eval looks for it beside MODEL. */
		const char *base = strrchr(second_path, '/');
		base = base ? base + 1 : second_path;
		size_t bl = strlen(base), sl = strlen(".safetensors");
		if (bl <= sl || strcmp(base + bl - sl, ".safetensors") != 0 ||
		    bl - sl >= sizeof second_name) {
			fprintf(stderr, "cigt: --escalate %s: expected NAME.safetensors\n",
				second_path);
			goto out;
		}
		memcpy(second_name, base, bl - sl);
		const char *ms = strrchr(path, '/'), *ss = strrchr(second_path, '/');
		int md = ms ? (int)(ms - path) : 0, sd = ss ? (int)(ss - second_path) : 0;
		if (md != sd || strncmp(path, second_path, (size_t)md) != 0) {
			fprintf(stderr, "cigt: --escalate %s: the second model must lie beside %s "
				"(same directory), where eval and cigtd look for it\n",
				second_path, path);
			goto out;
		}
		if (cli_load(second_path, &m2, &e2) ||
		    cigt_file_sha256(second_path, sha, err, sizeof err)) {
			if (sha[0] == '\0' && m2)
				fprintf(stderr, "cigt: %s\n", err);
			goto out;
		}
		struct cigt_dial probe;
		cigt_dial_single(&probe);
		probe.confidence = 0.5f;
		probe.second = e2;
		if (cigt_engine_dial_check(e, &probe, err, sizeof err)) {
			fprintf(stderr, "cigt: %s\n", err);
			goto out;
		}
		if (!cigt_arch_same_io(a, m2->arch)) { /* as the points' reader will check */
			fprintf(stderr, "cigt: --escalate %s does not take the same input (geometry, "
				"scaling) and classes (count and names) as %s\n", second_path, path);
			goto out;
		}
	}
	int want = nval;
	if (cli_load_tail(dir, "train", a, &want, true, &x, &labels))
		goto out;
	if (want != nval) {
		fprintf(stderr, "cigt: %s has %d training images, fewer than the %d of the "
			"validation split\n", dir, want, nval);
		goto out;
	}
	const float *grid = grid_fine;
	int ng = (int)(sizeof grid_fine / sizeof grid_fine[0]);
	long long ncombo = 1;
	for (int l = 0; l < nr; l++)
		ncombo *= ng;
	if (ncombo > 200) {
		grid = grid_coarse;
		ng = (int)(sizeof grid_coarse / sizeof grid_coarse[0]);
		ncombo = 1;
		for (int l = 0; l < nr && ncombo <= 1000000; l++)
			ncombo *= ng;
	}
	if (ncombo > 1000) {
		fprintf(stderr, "cigt: %d routers make %lld threshold combinations; tune handles "
			"up to 4 routers\n", nr, ncombo);
		goto out;
	}
	res = calloc((size_t)nval, sizeof *res);
	res2 = calloc((size_t)nval, sizeof *res2);
	probs = malloc((size_t)nval * K * sizeof(float));
	probs2 = malloc((size_t)nval * K * sizeof(float));
	cands = calloc((size_t)ncombo * (NCONF + 1), sizeof *cands);
	idx = malloc((size_t)ncombo * (NCONF + 1) * sizeof *idx);
	if (!res || !res2 || !probs || !probs2 || !cands || !idx) {
		fprintf(stderr, "cigt: out of memory\n");
		goto out;
	}
	cigt_blas_threads(1);
	if (cigt_pool_new(e, (int)threads, 256 * (int)threads, &pool)) {
		fprintf(stderr, "cigt: cannot start %lld threads\n", threads);
		goto out;
	}
	if (e2) {
		struct cigt_pool *p2;
		if (cigt_pool_new(e2, (int)threads, 256 * (int)threads, &p2)) {
			fprintf(stderr, "cigt: cannot start %lld threads\n", threads);
			goto out;
		}
		cigt_pool_classify(p2, x, nval, CIGT_EXEC_ROUTED, res2, probs2, NULL);
		cigt_pool_free(p2);
	}
	fprintf(stderr, "tune %s: %d validation images (the last of %s/train), %lld threshold "
		"combinations%s\n", a->name, nval, dir, ncombo,
		e2 ? ", each with escalation at 12 confidences" : "");
	int nc = 0;
	for (long long ci = 0; ci < ncombo; ci++) {
		struct cigt_dial d;
		cigt_dial_single(&d);
		long long r = ci;
		for (int l = nr - 1; l >= 0; l--) {
			d.tau[l] = grid[r % ng];
			r /= ng;
		}
		if (cigt_pool_classify_dial(pool, x, nval, &d, res, probs, NULL)) {
			fprintf(stderr, "cigt: the engine refused thresholds combination %lld\n", ci);
			goto out;
		}
		struct cand base = {.c = 0.0f};
		memcpy(base.tau, d.tau, sizeof base.tau);
		int correct = 0;
		double macs = 0;
		for (int i = 0; i < nval; i++) {
			correct += res[i].cls == labels[i];
			macs += (double)res[i].macs;
		}
		base.acc = (double)correct / nval;
		base.macs = macs / nval;
		cands[nc++] = base;
		for (int k = 0; e2 && k < NCONF; k++) {
			struct cand ce = base;
			ce.c = confidences[k];
			correct = 0;
			macs = 0;
			for (int i = 0; i < nval; i++) {
				const float *p1 = probs + (int64_t)i * K, *q = probs2 + (int64_t)i * K;
				int cls = res[i].cls;
				double mc = (double)res[i].macs;
				if (p1[cigt_argmax(p1, K)] < ce.c) {
					float mix[CIGT_MAX_CLASSES];
					for (int j = 0; j < K; j++)
						mix[j] = 0.5f * (p1[j] + q[j]);
					cls = cigt_argmax(mix, K);
					mc += (double)res2[i].macs;
				}
				correct += cls == labels[i];
				macs += mc;
			}
			ce.acc = (double)correct / nval;
			ce.macs = macs / nval;
			cands[nc++] = ce;
		}
		fprintf(stderr, "\r  %lld/%lld", ci + 1, ncombo);
	}
	fprintf(stderr, "\n");

	/* Fronts per mechanism: multipath alone (c = 0), escalation alone (every tau 1), both. */
	const double single = (double)a->path_macs, thick = e2 ? (double)m2->arch->path_macs : 0;
	struct cand *mp = malloc((size_t)nc * sizeof *mp), *es = malloc((size_t)nc * sizeof *es);
	int *fm = malloc((size_t)nc * sizeof *fm), *fe = malloc((size_t)nc * sizeof *fe);
	if (!mp || !es || !fm || !fe) {
		free(mp);
		free(es);
		free(fm);
		free(fe);
		fprintf(stderr, "cigt: out of memory\n");
		goto out;
	}
	int nm = 0, ne = 0;
	struct cand single_c = {.c = 0.0f}, all_c = {.c = 0.0f};
	for (int i = 0; i < nc; i++) {
		if (cands[i].c == 0.0f)
			mp[nm++] = cands[i];
		if (all_single(&cands[i], nr)) {
			es[ne++] = cands[i];
			if (cands[i].c == 0.0f)
				single_c = cands[i];
		}
		bool all = cands[i].c == 0.0f;
		for (int l = 0; l < nr && all; l++)
			all = cands[i].tau[l] == 0.0f;
		if (all)
			all_c = cands[i];
	}
	int km = front(mp, nm, fm), ke = e2 ? front(es, ne, fe) : 0;
	int kj = front(cands, nc, idx);
	print_front("multipath front", mp, fm, km, nr, single, thick);
	if (e2) {
		print_front("escalation front", es, fe, ke, nr, single, thick);
		print_front("joint front (thresholds and escalation)", cands, idx, kj, nr, single,
			    thick);
	}

	/* The table: single, each mechanism's front (spread over at most 12 points), all paths,
	 * then the joint front's points that mix both mechanisms (at most 4). */
	m->npoints = 0;
	char name[CIGT_POINT_NAME_MAX];
	add_point(m, "single", &single_c, nr, "", "");
	int pick[12], np = spread(fm, km, 12, pick);
	for (int i = 0; i < np; i++) {
		if (all_single(&mp[pick[i]], nr))
			continue;
		point_name(&mp[pick[i]], nr, name, sizeof name);
		add_point(m, name, &mp[pick[i]], nr, "", "");
	}
	add_point(m, "all-paths", &all_c, nr, "", "");
	if (e2) {
		np = spread(fe, ke, 12, pick);
		for (int i = 0; i < np; i++) {
			if (es[pick[i]].c == 0.0f)
				continue;
			point_name(&es[pick[i]], nr, name, sizeof name);
			add_point(m, name, &es[pick[i]], nr, second_name, sha);
		}
		int mix[CIGT_MAX_POINTS], nmix = 0;
		for (int i = 0; i < kj && nmix < CIGT_MAX_POINTS; i++)
			if (cands[idx[i]].c > 0.0f && !all_single(&cands[idx[i]], nr))
				mix[nmix++] = idx[i];
		np = spread(mix, nmix, 4, pick);
		for (int i = 0; i < np; i++) {
			point_name(&cands[pick[i]], nr, name, sizeof name);
			add_point(m, name, &cands[pick[i]], nr, second_name, sha);
		}
	}
	free(mp);
	free(es);
	free(fm);
	free(fe);
	printf("\noperating points written to %s\n", out_path);
	for (int i = 0; i < m->npoints; i++) {
		const struct cigt_point *p = &m->points[i];
		printf("  %-22s val %.2f%%  mean MACs %.0f (%.3fx single)%s%s\n", p->name,
		       100 * p->val_accuracy, p->mean_macs, p->mean_macs / single,
		       p->second[0] ? "  escalates to " : "", p->second);
	}
	if (cigt_model_save(m, out_path, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		goto out;
	}
	rc = 0;
out:
	cigt_pool_free(pool);
	free(x);
	free(labels);
	free(res);
	free(res2);
	free(probs);
	free(probs2);
	free(cands);
	free(idx);
	cigt_engine_free(e);
	cigt_engine_free(e2);
	cigt_model_free(m);
	cigt_model_free(m2);
	return rc;
}
