/* cigt tune MODEL [--escalate SECOND]: chooses operating points on the validation split the model
 * was trained with (the last N training images, N from its provenance; never the test set), or
 * on a folder of images held out from training (--validation-data). Refuses images either model
 * may have trained on: a model whose provenance records no held-out split, or other data than
 * it records.
 * Runs every combination of a per-router threshold grid through the engine, simulates
 * escalation at a grid of confidences from the two posteriors exactly as the engine combines
 * them, prints the accuracy-vs-mean-MACs Pareto fronts and writes the chosen points into the
 * model file's __metadata__.operating_points. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/pool.h"
#include "cli.h"
#include "../common/util.h"
#include "../nn/nn.h"

static const char usage[] =
	"usage: cigt tune MODEL [--escalate SECOND] [--data DIR | --validation-data DIR]\n"
	"                 [--validation N] [--threads N] [--out FILE]\n"
	"Searches per-router multipath thresholds and escalation confidences on the\n"
	"validation split MODEL was trained with (the last N training images, N from its\n"
	"provenance) or on images held out from training (--validation-data), prints the\n"
	"accuracy-vs-mean-MACs Pareto fronts and writes the chosen operating points into\n"
	"the model file (replacing any it had). A model whose provenance records no\n"
	"held-out split, or other data than --data, needs --validation-data.\n";

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

/* One tuning run: the models, the validation images, both models' answers and the candidates.
 * Everything is owned here and freed by tune_destroy. */
struct tune {
	const char *path, *second_path, *dir, *out_path;
	const char *heldout;        /* --validation-data DIR, or NULL: the split of dir */
	struct cli_trained_on p, p2; /* what MODEL's and SECOND's provenances say */
	char what2[300];            /* "--escalate SECOND", for messages */
	int threads;
	struct cigt_model *m, *m2;
	struct cigt_engine *e, *e2; /* e2, m2: the --escalate model, or NULL */
	struct cigt_pool *pool;
	int nr, K, nval;            /* routers, classes, validation images */
	float *x, *probs, *probs2;  /* the images; the posteriors of MODEL and of the second */
	uint8_t *labels;
	struct cigt_result *res, *res2;
	const float *grid;          /* the thresholds tried at every router */
	int ng;
	long long ncombo;           /* ng^nr threshold combinations */
	struct cand *cands;         /* nc of them: each combination, then with each confidence */
	int *idx, nc;
	char sha[65], second_name[CIGT_NAME_MAX];
};

static void tune_destroy(struct tune *t)
{
	cigt_pool_free(t->pool);
	free(t->x);
	free(t->labels);
	free(t->res);
	free(t->res2);
	free(t->probs);
	free(t->probs2);
	free(t->cands);
	free(t->idx);
	cigt_engine_free(t->e);
	cigt_engine_free(t->e2);
	cigt_model_free(t->m);
	cigt_model_free(t->m2);
}

/* The number of validation images (--validation N, else each model's whole held-out split, the
 * smaller of the two) and every check that needs no image read. */
static int tune_split(struct tune *t, long long nval_opt)
{
	cli_trained_on(t->m, &t->p);
	if (t->m2) {
		cli_trained_on(t->m2, &t->p2);
		snprintf(t->what2, sizeof t->what2, "--escalate %s", t->second_path);
	}
	t->nval = (int)nval_opt; /* 0 with --validation-data: all of it */
	if (t->heldout) {
		if (cli_has_subdir(t->heldout, "train")) {
			fprintf(stderr, "cigt: --validation-data %s has a train/ folder: give the "
				"held-out images themselves (an image folder DIR/<class>/... or an IDX "
				"directory)\n", t->heldout);
			return -1;
		}
		return cli_check_heldout(t->heldout, t->path, &t->p) ||
		       (t->m2 && cli_check_heldout(t->heldout, t->what2, &t->p2));
	}
	if (cli_check_split(t->dir, t->path, &t->p) ||
	    (t->m2 && cli_check_split(t->dir, t->what2, &t->p2)))
		return -1;
	const struct cli_trained_on *p[2] = {&t->p, t->m2 ? &t->p2 : NULL};
	const char *what[2] = {t->path, t->what2};
	for (int k = 0; k < 2 && p[k]; k++) {
		if (nval_opt > p[k]->validation) {
			fprintf(stderr, "cigt: --validation %lld: %s was validated on the last %d "
				"training images; more would take in images it was trained on\n",
				nval_opt, what[k], p[k]->validation);
			return -1;
		}
		if (!nval_opt && (t->nval == 0 || p[k]->validation < t->nval))
			t->nval = p[k]->validation;
	}
	return 0;
}

/* --escalate SECOND: a NAME.safetensors beside MODEL, with the same input and classes, that
 * the engine accepts as MODEL's second; its name and sha256 go into the points. */
static int tune_load_second(struct tune *t)
{
	const char *path = t->path, *second_path = t->second_path;
	char err[512];
	/* The point names the second model by file stem; eval looks for it beside MODEL. */
	const char *base = strrchr(second_path, '/');
	base = base ? base + 1 : second_path;
	size_t bl = strlen(base), sl = strlen(".safetensors");
	if (bl <= sl || strcmp(base + bl - sl, ".safetensors") != 0 ||
	    bl - sl >= sizeof t->second_name) {
		fprintf(stderr, "cigt: --escalate %s: expected NAME.safetensors\n", second_path);
		return -1;
	}
	memcpy(t->second_name, base, bl - sl);
	const char *ms = strrchr(path, '/'), *ss = strrchr(second_path, '/');
	int md = ms ? (int)(ms - path) : 0, sd = ss ? (int)(ss - second_path) : 0;
	if (md != sd || strncmp(path, second_path, (size_t)md) != 0) {
		fprintf(stderr, "cigt: --escalate %s: the second model must lie beside %s "
			"(same directory), where eval and cigtd look for it\n",
			second_path, path);
		return -1;
	}
	if (cli_load(second_path, &t->m2, &t->e2) ||
	    cigt_file_sha256(second_path, t->sha, err, sizeof err)) {
		if (t->sha[0] == '\0' && t->m2)
			fprintf(stderr, "cigt: %s\n", err);
		return -1;
	}
	struct cigt_dial probe;
	cigt_dial_single(&probe);
	probe.confidence = 0.5f;
	probe.second = t->e2;
	if (cigt_engine_dial_check(t->e, &probe, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		return -1;
	}
	if (!cigt_arch_same_io(t->m->arch, t->m2->arch)) { /* as the points' reader will check */
		fprintf(stderr, "cigt: --escalate %s does not take the same input (geometry, "
			"scaling) and classes (count and names) as %s\n", second_path, path);
		return -1;
	}
	return 0;
}

/* The validation images: the last nval of DIR's training split, or of --validation-data. */
static int tune_load_images(struct tune *t)
{
	const char *src = t->heldout ? t->heldout : t->dir;
	int want = t->nval, total = 0;
	if (cli_load_tail(src, "train", t->m->arch, &want, true, &t->x, &t->labels, &total))
		return -1;
	if (t->heldout) {
		if (cli_check_heldout_images(t->heldout, t->path, &t->p, total) ||
		    (t->m2 && cli_check_heldout_images(t->heldout, t->what2, &t->p2, total)))
			return -1;
	} else if (cli_check_images(t->dir, t->path, &t->p, total) ||
		   (t->m2 && cli_check_images(t->dir, t->what2, &t->p2, total))) {
		return -1;
	}
	if (t->nval && want != t->nval) {
		fprintf(stderr, "cigt: %s has %d %s images, fewer than the %d of the validation "
			"split\n", src, want, t->heldout ? "held-out" : "training", t->nval);
		return -1;
	}
	t->nval = want;
	return 0;
}

/* The fine grid when it gives at most 200 combinations, else the coarse one (at most 1000). */
static int tune_grid(struct tune *t)
{
	const int nr = t->nr;
	t->grid = grid_fine;
	t->ng = (int)(sizeof grid_fine / sizeof grid_fine[0]);
	t->ncombo = 1;
	for (int l = 0; l < nr; l++)
		t->ncombo *= t->ng;
	if (t->ncombo > 200) {
		t->grid = grid_coarse;
		t->ng = (int)(sizeof grid_coarse / sizeof grid_coarse[0]);
		t->ncombo = 1;
		for (int l = 0; l < nr && t->ncombo <= 1000000; l++)
			t->ncombo *= t->ng;
	}
	if (t->ncombo > 1000) {
		fprintf(stderr, "cigt: %d routers make %lld threshold combinations; tune handles "
			"up to 4 routers\n", nr, t->ncombo);
		return -1;
	}
	return 0;
}

/* The work arrays, MODEL's pool and, with a second model, its answers (computed once). */
static int tune_start(struct tune *t)
{
	const size_t nval = (size_t)t->nval, K = (size_t)t->K, ncand = (size_t)t->ncombo * (NCONF + 1);
	t->res = calloc(nval, sizeof *t->res);
	t->res2 = calloc(nval, sizeof *t->res2);
	t->probs = malloc(nval * K * sizeof(float));
	t->probs2 = malloc(nval * K * sizeof(float));
	t->cands = calloc(ncand, sizeof *t->cands);
	t->idx = malloc(ncand * sizeof *t->idx);
	if (!t->res || !t->res2 || !t->probs || !t->probs2 || !t->cands || !t->idx) {
		fprintf(stderr, "cigt: out of memory\n");
		return -1;
	}
	cigt_blas_threads(1);
	if (cigt_pool_new(t->e, t->threads, 256 * t->threads, &t->pool)) {
		fprintf(stderr, "cigt: cannot start %d threads\n", t->threads);
		return -1;
	}
	if (t->e2) {
		struct cigt_pool *p2;
		if (cigt_pool_new(t->e2, t->threads, 256 * t->threads, &p2)) {
			fprintf(stderr, "cigt: cannot start %d threads\n", t->threads);
			return -1;
		}
		cigt_pool_classify(p2, t->x, t->nval, CIGT_EXEC_ROUTED, t->res2, t->probs2, NULL);
		cigt_pool_free(p2);
	}
	return 0;
}

/* Escalation simulated from the two posteriors exactly as the engine combines them: below
 * each confidence, the answer is the argmax of the mean of both and costs both models. */
static void add_escalations(struct tune *t, const struct cand *base)
{
	const int K = t->K, nval = t->nval;
	for (int k = 0; k < NCONF; k++) {
		struct cand ce = *base;
		ce.c = confidences[k];
		int correct = 0;
		double macs = 0;
		for (int i = 0; i < nval; i++) {
			const float *p1 = t->probs + (int64_t)i * K, *q = t->probs2 + (int64_t)i * K;
			int cls = t->res[i].cls;
			double mc = (double)t->res[i].macs;
			if (p1[cigt_argmax(p1, K)] < ce.c) {
				float mix[CIGT_MAX_CLASSES];
				for (int j = 0; j < K; j++)
					mix[j] = 0.5f * (p1[j] + q[j]);
				cls = cigt_argmax(mix, K);
				mc += (double)t->res2[i].macs;
			}
			correct += cls == t->labels[i];
			macs += mc;
		}
		ce.acc = (double)correct / nval;
		ce.macs = macs / nval;
		t->cands[t->nc++] = ce;
	}
}

/* Every threshold combination through the engine (and, with a second model, each with every
 * confidence): the candidates. */
static int tune_search(struct tune *t)
{
	const int nr = t->nr, nval = t->nval;
	t->nc = 0;
	for (long long ci = 0; ci < t->ncombo; ci++) {
		struct cigt_dial d;
		cigt_dial_single(&d);
		long long r = ci;
		for (int l = nr - 1; l >= 0; l--) {
			d.tau[l] = t->grid[r % t->ng];
			r /= t->ng;
		}
		if (cigt_pool_classify_dial(t->pool, t->x, nval, &d, t->res, t->probs, NULL)) {
			fprintf(stderr, "cigt: the engine refused thresholds combination %lld\n", ci);
			return -1;
		}
		struct cand base = {.c = 0.0f};
		memcpy(base.tau, d.tau, sizeof base.tau);
		int correct = 0;
		double macs = 0;
		for (int i = 0; i < nval; i++) {
			correct += t->res[i].cls == t->labels[i];
			macs += (double)t->res[i].macs;
		}
		base.acc = (double)correct / nval;
		base.macs = macs / nval;
		t->cands[t->nc++] = base;
		if (t->e2)
			add_escalations(t, &base);
		fprintf(stderr, "\r  %lld/%lld", ci + 1, t->ncombo);
	}
	fprintf(stderr, "\n");
	return 0;
}

/* The Pareto fronts per mechanism: multipath alone (mp: c = 0), escalation alone (es: every
 * tau 1), both (the candidates themselves, front in t->idx); single and all-paths. */
struct fronts {
	struct cand *mp, *es, single, all;
	int *fm, *fe;
	int nm, ne, km, ke, kj;
};

static int find_fronts(struct tune *t, struct fronts *f)
{
	const int nc = t->nc, nr = t->nr;
	f->mp = malloc((size_t)nc * sizeof *f->mp);
	f->es = malloc((size_t)nc * sizeof *f->es);
	f->fm = malloc((size_t)nc * sizeof *f->fm);
	f->fe = malloc((size_t)nc * sizeof *f->fe);
	if (!f->mp || !f->es || !f->fm || !f->fe) {
		fprintf(stderr, "cigt: out of memory\n");
		return -1;
	}
	const struct cand *cands = t->cands;
	f->single = f->all = (struct cand){.c = 0.0f};
	for (int i = 0; i < nc; i++) {
		if (cands[i].c == 0.0f)
			f->mp[f->nm++] = cands[i];
		if (all_single(&cands[i], nr)) {
			f->es[f->ne++] = cands[i];
			if (cands[i].c == 0.0f)
				f->single = cands[i];
		}
		bool all = cands[i].c == 0.0f;
		for (int l = 0; l < nr && all; l++)
			all = cands[i].tau[l] == 0.0f;
		if (all)
			f->all = cands[i];
	}
	f->km = front(f->mp, f->nm, f->fm);
	f->ke = t->e2 ? front(f->es, f->ne, f->fe) : 0;
	f->kj = front(t->cands, nc, t->idx);
	return 0;
}

static void fronts_destroy(struct fronts *f)
{
	free(f->mp);
	free(f->es);
	free(f->fm);
	free(f->fe);
}

/* The table: single, each mechanism's front (spread over at most 12 points), all paths, then
 * the joint front's points that mix both mechanisms (at most 4). */
static void choose_points(struct tune *t, const struct fronts *f)
{
	struct cigt_model *m = t->m;
	const int nr = t->nr;
	char name[CIGT_POINT_NAME_MAX];
	m->npoints = 0;
	add_point(m, "single", &f->single, nr, "", "");
	int pick[12], np = spread(f->fm, f->km, 12, pick);
	for (int i = 0; i < np; i++) {
		if (all_single(&f->mp[pick[i]], nr))
			continue;
		point_name(&f->mp[pick[i]], nr, name, sizeof name);
		add_point(m, name, &f->mp[pick[i]], nr, "", "");
	}
	add_point(m, "all-paths", &f->all, nr, "", "");
	if (!t->e2)
		return;
	np = spread(f->fe, f->ke, 12, pick);
	for (int i = 0; i < np; i++) {
		if (f->es[pick[i]].c == 0.0f)
			continue;
		point_name(&f->es[pick[i]], nr, name, sizeof name);
		add_point(m, name, &f->es[pick[i]], nr, t->second_name, t->sha);
	}
	int mix[CIGT_MAX_POINTS], nmix = 0;
	for (int i = 0; i < f->kj && nmix < CIGT_MAX_POINTS; i++)
		if (t->cands[t->idx[i]].c > 0.0f && !all_single(&t->cands[t->idx[i]], nr))
			mix[nmix++] = t->idx[i];
	np = spread(mix, nmix, 4, pick);
	for (int i = 0; i < np; i++) {
		point_name(&t->cands[pick[i]], nr, name, sizeof name);
		add_point(m, name, &t->cands[pick[i]], nr, t->second_name, t->sha);
	}
}

/* Prints the fronts, chooses the points and writes the model with them to --out. */
static int tune_write(struct tune *t)
{
	const double single = (double)t->m->arch->path_macs;
	const double thick = t->e2 ? (double)t->m2->arch->path_macs : 0;
	const int nr = t->nr;
	struct fronts f = {0};
	char err[512];
	if (find_fronts(t, &f)) {
		fronts_destroy(&f);
		return -1;
	}
	print_front("multipath front", f.mp, f.fm, f.km, nr, single, thick);
	if (t->e2) {
		print_front("escalation front", f.es, f.fe, f.ke, nr, single, thick);
		print_front("joint front (thresholds and escalation)", t->cands, t->idx, f.kj, nr,
			    single, thick);
	}
	choose_points(t, &f);
	fronts_destroy(&f);
	printf("\noperating points written to %s\n", t->out_path);
	for (int i = 0; i < t->m->npoints; i++) {
		const struct cigt_point *p = &t->m->points[i];
		printf("  %-22s val %.2f%%  mean MACs %.0f (%.3fx single)%s%s\n", p->name,
		       100 * p->val_accuracy, p->mean_macs, p->mean_macs / single,
		       p->second[0] ? "  escalates to " : "", p->second);
	}
	if (cigt_model_save(t->m, t->out_path, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		return -1;
	}
	return 0;
}

int cmd_tune(int argc, char **argv)
{
	const char *dir = CIGT_DEFAULT_DATA_DIR, *second_path = NULL, *out_path = NULL;
	const char *heldout = NULL;
	long long threads = cli_default_threads(), nval_opt = 0;
	const struct cigt_opt opts[] = {
		{"escalate", 0, CIGT_OPT_STR, CIGT_OPT_VAR(second_path), .arg = "SECOND",
		 .help = "a model with the same classes and input, lying beside MODEL,\n"
			 "to escalate uncertain answers to"},
		{.like = &cli_opt_data, CIGT_OPT_VAR(dir),
		 .help = "IDX directory with train-{images-idx3,labels-idx1}-ubyte.gz"},
		{"validation-data", 0, CIGT_OPT_STR, CIGT_OPT_VAR(heldout), .arg = "DIR",
		 .help = "tune on the images of DIR instead, an image folder\n"
			 "(DIR/<class>/...) or IDX directory (train-*-ubyte.gz) that\n"
			 "neither model was trained on (needed when MODEL's provenance\n"
			 "records no held-out split); replaces --data"},
		{"validation", 0, CIGT_OPT_INT, CIGT_OPT_VAR(nval_opt), .lo = 1, .hi = 10000000,
		 .arg = "N",
		 .help = "tune on the last N images only: at most the validation split\n"
			 "the provenance gives"},
		CIGT_OPT_BIND(cli_opt_threads, threads),
		{"out", 0, CIGT_OPT_STR, CIGT_OPT_VAR(out_path), .arg = "FILE",
		 .help = "write the model with its points here (default: MODEL)"},
		{0},
	};
	const struct cli_cmd cmd = {usage, 19, 1, 1, opts};
	int status, operand = cli_parse(&cmd, argc, argv, &status);
	if (operand < 0)
		return status;
	struct tune t = {.path = argv[operand], .second_path = second_path, .dir = dir,
			 .heldout = heldout, .out_path = out_path ? out_path : argv[operand],
			 .threads = (int)threads};
	if (cli_load(t.path, &t.m, &t.e))
		return 1;
	t.nr = t.m->arch->nlayers - 1;
	t.K = t.m->arch->nclasses;
	int rc = 1;
	if ((second_path && tune_load_second(&t)) || tune_split(&t, nval_opt) ||
	    tune_load_images(&t) || tune_grid(&t) || tune_start(&t))
		goto out;
	if (heldout)
		fprintf(stderr, "tune %s: %d validation images (the last of --validation-data %s), "
			"%lld threshold combinations%s\n", t.m->arch->name, t.nval, heldout,
			t.ncombo, t.e2 ? ", each with escalation at 12 confidences" : "");
	else
		fprintf(stderr, "tune %s: %d validation images (the last of the training split of "
			"%s), %lld threshold combinations%s\n", t.m->arch->name, t.nval, dir, t.ncombo,
			t.e2 ? ", each with escalation at 12 confidences" : "");
	if (tune_search(&t) || tune_write(&t))
		goto out;
	rc = 0;
out:
	tune_destroy(&t);
	return rc;
}
