/* cigt eval MODEL [--data DIR] [--dense | --compute NAME | --thresholds T,... |
 * --max-macs N] [--json] [--limit N] [--threads N] [--dump FILE]: test accuracy, MACs (mean and
 * distribution), paths. An image folder without a train/test split is scored whole (said on
 * stderr), and refused when the model's provenance says it was trained on it
 * (--allow-training-data scores it anyway). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cigt/pool.h"
#include "cli.h"
#include "../common/util.h"

static const char usage[] =
	"usage: cigt eval MODEL [--data DIR] [--dense | --compute NAME | --thresholds T,... |\n"
	"                 --max-macs N] [--json] [--limit N] [--threads N] [--dump FILE]\n"
	"                 [--allow-training-data] [--backend B] [--precision P]\n"
	"Classifies the test set and prints accuracy, samples/s, mean MACs per sample and\n"
	"their distribution, dense MACs, compute saved, samples on several paths or\n"
	"escalated, the share of samples on each (argmax) route and a confusion matrix.\n";

/* Route index in mixed radix: route[0] * K1 * K2 ... + route[last]. */
static int route_index(const struct cigt_arch *a, const int *route)
{
	int idx = 0;
	for (int l = 0; l < a->nlayers; l++)
		idx = idx * a->layers[l].experts + route[l];
	return idx;
}

static void route_name(const struct cigt_arch *a, int idx, char *buf, size_t n)
{
	int r[CIGT_MAX_LAYERS];
	for (int l = a->nlayers - 1; l >= 0; l--) {
		r[l] = idx % a->layers[l].experts;
		idx /= a->layers[l].experts;
	}
	size_t off = 0;
	for (int l = 0; l < a->nlayers && off < n; l++)
		off += (size_t)snprintf(buf + off, n - off, "%s%d", l ? "-" : "", r[l]);
}

/* leaf[j * K + c]: test samples of class c that reached last-layer expert j. */
static void print_leaves(const struct cigt_arch *a, const int64_t *leaf)
{
	const int K = a->nclasses, J = a->layers[a->nlayers - 1].experts;
	printf("\nsamples of each class per leaf (last-layer expert)\n%-12s", "class");
	for (int j = 0; j < J; j++)
		printf("  leaf %-3d", j);
	printf("\n");
	for (int c = 0; c < K; c++) {
		printf("%-12.12s", a->classes[c]);
		for (int j = 0; j < J; j++)
			printf(" %8lld", (long long)leaf[j * K + c]);
		printf("\n");
	}
}

/* Draws the leaf table as a heatmap with gnuplot (share of each class per leaf). */
static int draw_leaves(const struct cigt_arch *a, const int64_t *leaf, const char *png)
{
	const int K = a->nclasses, J = a->layers[a->nlayers - 1].experts;
	char data[] = "/tmp/cigt-routes-XXXXXX";
	int fd = mkstemp(data);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		perror("cigt: temporary file");
		return -1;
	}
	for (int c = 0; c < K; c++) {
		int64_t total = 0;
		for (int j = 0; j < J; j++)
			total += leaf[j * K + c];
		for (int j = 0; j < J; j++)
			fprintf(f, "%d %d %.4f %lld\n", j, c,
				total ? (double)leaf[j * K + c] / total : 0.0,
				(long long)leaf[j * K + c]);
		fprintf(f, "\n");
	}
	fclose(f);
	FILE *g = popen("gnuplot", "w");
	if (!g) {
		perror("cigt: gnuplot");
		unlink(data);
		return -1;
	}
	fprintf(g, "set terminal pngcairo size %d,%d font 'sans,10'\n", 260 + 110 * J, 120 + 34 * K);
	fprintf(g, "set output '%s'\nset termoption noenhanced\n", png);
	fprintf(g, "set title 'Test samples of each class reaching each leaf (%s)'\n", a->name);
	fprintf(g, "set xlabel 'leaf (last-layer expert)'\nset xrange [-0.5:%d.5]\n", J - 1);
	fprintf(g, "set yrange [%d.5:-0.5]\nset cbrange [0:1]\n", K - 1);
	fprintf(g, "set cblabel 'share of the class'\nset palette defined (0 'white', 1 '#08306b')\n");
	fprintf(g, "set xtics (");
	for (int j = 0; j < J; j++)
		fprintf(g, "%s'%d' %d", j ? ", " : "", j, j);
	fprintf(g, ")\nset ytics (");
	for (int c = 0; c < K; c++) {
		fprintf(g, "%s'", c ? ", " : "");
		for (const char *p = a->classes[c]; *p; p++)
			if (*p != '\'' && *p != '\\')
				fputc(*p, g);
		fprintf(g, "' %d", c);
	}
	fprintf(g, ")\nunset key\n");
	fprintf(g, "plot '%s' using 1:2:3 with image, '' using 1:2:(sprintf('%%d', $4)) "
		   "with labels tc rgb '#d95f02'\n", data);
	int st = pclose(g);
	unlink(data);
	if (st != 0) {
		fprintf(stderr, "cigt: gnuplot failed drawing %s\n", png);
		return -1;
	}
	return 0;
}

/* One evaluation: the models, the test images, the answers and what is counted from them.
 * Everything is owned here and freed by eval_destroy. */
struct eval {
	const char *dir;
	bool dense;
	int threads;
	struct cigt_model *m, *m2;
	struct cigt_engine *e, *e2; /* e2, m2: the dial's second model, or NULL */
	struct cigt_dial dial;
	const char *mode;          /* dense, routed, thresholds or the point's name */
	int n, K;                  /* images, classes */
	float *x, *probs, *logits; /* inputs; each image's posterior and logits */
	uint8_t *labels;
	struct cigt_result *res;
	double secs;
	/* Counted by eval_tally. */
	int correct, bad_label, multi, escalated;
	int64_t by_paths[65];      /* images per number of paths (64: 64 or more) */
	double macs;
	int64_t *sorted;           /* each image's MACs, sorted */
	int64_t *conf, *routes, *leaf; /* K x K confusion; images per route; leaf x class */
	/* Another engine than OpenBLAS fp32: the same images and dial on that one too. */
	bool vs32;
	int correct32, cls_changed, route_changed;
};

static void eval_destroy(struct eval *v)
{
	free(v->leaf);
	free(v->x);
	free(v->labels);
	free(v->res);
	free(v->probs);
	free(v->logits);
	free(v->conf);
	free(v->routes);
	free(v->sorted);
	cigt_engine_free(v->e);
	cigt_model_free(v->m);
	cigt_engine_free(v->e2);
	cigt_model_free(v->m2);
}

/* Classifies the n images in chunks through a pool of the engine's workers, timed. */
static int eval_classify(struct eval *v)
{
	const struct cigt_arch *a = v->m->arch;
	const int n = v->n, K = v->K;
	struct cigt_pool *pool = NULL;
	v->res = calloc((size_t)n, sizeof *v->res);
	v->probs = malloc((size_t)n * K * sizeof(float));
	v->logits = malloc((size_t)n * K * sizeof(float));
	v->conf = calloc((size_t)K * K, sizeof *v->conf);
	v->routes = calloc((size_t)a->npaths, sizeof *v->routes);
	v->leaf = calloc((size_t)a->layers[a->nlayers - 1].experts * K, sizeof *v->leaf);
	v->sorted = malloc((size_t)n * sizeof *v->sorted);
	if (!v->res || !v->probs || !v->logits || !v->conf || !v->routes || !v->leaf ||
	    !v->sorted) {
		fprintf(stderr, "cigt: out of memory\n");
		return -1;
	}
	cigt_blas_threads(1);
	if (cigt_pool_new(v->e, v->threads, 256 * v->threads, &pool) ||
	    cigt_pool_set_second(pool, v->e2)) {
		fprintf(stderr, "cigt: cannot start %d threads\n", v->threads);
		cigt_pool_free(pool);
		return -1;
	}
	const int64_t isz = cigt_arch_input_size(a);
	const int chunk = 256 * v->threads;
	uint64_t t0 = cigt_now_ns();
	for (int s0 = 0; s0 < n; s0 += chunk) {
		int k = CIGT_MIN(chunk, n - s0);
		if (v->dense)
			cigt_pool_classify(pool, v->x + s0 * isz, k, CIGT_EXEC_DENSE, v->res + s0,
					   v->probs + (int64_t)s0 * K, v->logits + (int64_t)s0 * K);
		else
			cigt_pool_classify_dial(pool, v->x + s0 * isz, k, &v->dial, v->res + s0,
						v->probs + (int64_t)s0 * K,
						v->logits + (int64_t)s0 * K);
	}
	v->secs = (double)(cigt_now_ns() - t0) * 1e-9;
	cigt_pool_free(pool);
	return 0;
}

/* --backend/--precision other than OpenBLAS fp32: the same images under the same dial on an
 * OpenBLAS fp32 engine (and second model), and how many answers change class or route. */
static int eval_against_fp32(struct eval *v)
{
	struct eval r = *v;
	struct cigt_engine *e2 = NULL;
	char err[512];
	int rc = -1;
	r.e = NULL;
	r.e2 = NULL;
	if (cigt_engine_new(v->m, &r.e, err, sizeof err)) {
		fprintf(stderr, "cigt: %s\n", err);
		goto out;
	}
	if (v->e2) {
		if (cigt_engine_new(v->m2, &e2, err, sizeof err)) {
			fprintf(stderr, "cigt: %s\n", err);
			goto out;
		}
		r.e2 = e2;
		r.dial.second = e2;
	}
	/* eval_classify allocates the answers afresh: r's are freed here. */
	if (eval_classify(&r))
		goto out;
	const struct cigt_arch *a = v->m->arch;
	for (int i = 0; i < v->n; i++) {
		v->correct32 += v->labels[i] < v->K && r.res[i].cls == v->labels[i];
		v->cls_changed += r.res[i].cls != v->res[i].cls;
		v->route_changed += memcmp(r.res[i].route, v->res[i].route,
					   (size_t)a->nlayers * sizeof r.res[i].route[0]) != 0;
	}
	v->vs32 = true;
	rc = 0;
out:
	free(r.res), free(r.probs), free(r.logits), free(r.conf), free(r.routes), free(r.leaf);
	free(r.sorted);
	cigt_engine_free(r.e);
	cigt_engine_free(e2);
	return rc;
}

/* Accuracy, MACs, routes, paths, the confusion matrix and the leaf table from the answers. */
static void eval_tally(struct eval *v)
{
	const struct cigt_arch *a = v->m->arch;
	const int K = v->K;
	for (int i = 0; i < v->n; i++) {
		const struct cigt_result *r = &v->res[i];
		v->routes[route_index(a, r->route)]++;
		v->macs += (double)r->macs;
		v->sorted[i] = r->macs;
		v->multi += r->npaths > 1;
		v->escalated += r->escalated;
		v->by_paths[CIGT_MIN(r->npaths, 64)]++;
		if (v->labels[i] >= K) {
			v->bad_label++;
			continue;
		}
		v->correct += r->cls == v->labels[i];
		v->conf[v->labels[i] * K + r->cls]++;
		v->leaf[r->route[a->nlayers - 1] * K + v->labels[i]]++;
	}
	if (v->bad_label)
		fprintf(stderr,
			"cigt: warning: %d labels are >= %d classes: those images count as wrong "
			"answers in the accuracy (over all %d) and are left out of the confusion "
			"matrix and the leaf table\n",
			v->bad_label, K, v->n);
	qsort(v->sorted, (size_t)v->n, sizeof *v->sorted, cli_cmp_i64);
}

/* --dump FILE: one JSON line per image. */
static int write_dump(const struct eval *v, const char *dump)
{
	const struct cigt_arch *a = v->m->arch;
	const int K = v->K;
	char rn[64];
	FILE *f = fopen(dump, "w");
	if (!f) {
		perror(dump);
		return -1;
	}
	for (int i = 0; i < v->n; i++) {
		const struct cigt_result *r = &v->res[i];
		fprintf(f, "{\"index\": %d, \"label\": %d, \"class\": %d, \"route\": [", i,
			v->labels[i], r->cls);
		for (int l = 0; l < a->nlayers; l++)
			fprintf(f, "%s%d", l ? ", " : "", r->route[l]);
		fprintf(f, "], \"logits\": [");
		for (int k = 0; k < K; k++)
			fprintf(f, "%s%.9g", k ? ", " : "", (double)v->logits[(int64_t)i * K + k]);
		fprintf(f, "], \"probs\": [");
		for (int k = 0; k < K; k++)
			fprintf(f, "%s%.9g", k ? ", " : "", (double)v->probs[(int64_t)i * K + k]);
		fprintf(f, "], \"macs\": %lld, \"npaths\": %d, \"escalated\": %s, "
			   "\"paths\": [", (long long)r->macs, r->npaths,
			r->escalated ? "true" : "false");
		for (int p = 0, first = 1; p < a->npaths && p < 64; p++)
			if ((r->paths >> p) & 1) {
				route_name(a, p, rn, sizeof rn);
				fprintf(f, "%s\"%s\"", first ? "" : ", ", rn);
				first = 0;
			}
		fprintf(f, "]}\n");
	}
	if (fclose(f)) {
		perror(dump);
		return -1;
	}
	return 0;
}

/* --json: one object on stdout. */
static void print_json(const struct eval *v)
{
	const struct cigt_arch *a = v->m->arch;
	const int K = v->K, n = v->n;
	const int64_t *sorted = v->sorted;
	char rn[64];
	json_t *share = json_object(), *cm = json_array();
	for (int r = 0; r < a->npaths; r++) {
		route_name(a, r, rn, sizeof rn);
		json_object_set_new(share, rn, json_real((double)v->routes[r] / n));
	}
	for (int i = 0; i < K; i++) {
		json_t *row = json_array();
		for (int j = 0; j < K; j++)
			json_array_append_new(row, json_integer(v->conf[i * K + j]));
		json_array_append_new(cm, row);
	}
	json_t *dist = json_pack("{sI sI sI sI sI}", "min", (json_int_t)sorted[0], "p50",
				 (json_int_t)sorted[n / 2], "p90",
				 (json_int_t)sorted[(int64_t)n * 9 / 10], "p99",
				 (json_int_t)sorted[(int64_t)n * 99 / 100], "max",
				 (json_int_t)sorted[n - 1]);
	json_t *np = json_object(), *tj = json_array();
	for (int k = 1; k <= 64; k++)
		if (v->by_paths[k]) {
			char key[8];
			snprintf(key, sizeof key, "%d", k);
			json_object_set_new(np, key, json_integer(v->by_paths[k]));
		}
	for (int l = 0; l + 1 < a->nlayers; l++)
		json_array_append_new(tj, json_real(v->dial.tau[l]));
	const double mean_macs = v->macs / n;
	json_t *j = json_pack("{ss ss so sf sf si si sf sf so si si so sI sf sf si so so}",
			      "model", a->name, "mode", v->mode, "thresholds", tj,
			      "confidence", (double)v->dial.confidence, "accuracy",
			      (double)v->correct / n, "correct", v->correct, "samples", n,
			      "samples_per_second", n / v->secs, "mean_macs", mean_macs, "macs",
			      dist, "multipath_samples", v->multi, "escalated_samples",
			      v->escalated, "samples_by_paths", np, "dense_macs",
			      (json_int_t)a->dense_macs, "compute_saved",
			      1.0 - mean_macs / (double)a->dense_macs, "seconds", v->secs,
			      "threads", v->threads, "route_share", share, "confusion", cm);
	json_object_set_new(j, "engine", json_string(cigt_engine_backend(v->e)));
	if (v->vs32)
		json_object_set_new(j, "against_fp32",
				    json_pack("{sf si si}", "accuracy", (double)v->correct32 / n,
					      "classes_changed", v->cls_changed, "routes_changed",
					      v->route_changed));
	json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
	putchar('\n');
	json_decref(j);
}

/* The text report; `dialled`: a point, thresholds or a budget was asked for. */
static void print_text(const struct eval *v, bool dialled)
{
	const struct cigt_arch *a = v->m->arch;
	const int K = v->K, n = v->n;
	const int64_t *sorted = v->sorted;
	const double mean_macs = v->macs / n;
	char rn[64];
	printf("model          %s (%s, %d thread%s)\n", a->name, v->mode, v->threads,
	       v->threads == 1 ? "" : "s");
	if (dialled) {
		printf("thresholds     ");
		for (int l = 0; l + 1 < a->nlayers; l++)
			printf("%s%g", l ? ", " : "", (double)v->dial.tau[l]);
		if (v->dial.confidence > 0.0f)
			printf("; escalate to %s below confidence %g", v->e2 ? v->m2->arch->name : "",
			       (double)v->dial.confidence);
		printf("\n");
	}
	printf("test set       %s, %d images\n", v->dir, n);
	printf("accuracy       %.2f%% (%d/%d)\n", 100 * ((double)v->correct / n), v->correct, n);
	printf("engine         %s\n", cigt_engine_backend(v->e));
	if (v->vs32)
		printf("against fp32   OpenBLAS fp32 %.2f%%; %d classes and %d routes of %d changed\n",
		       100 * ((double)v->correct32 / n), v->cls_changed, v->route_changed, n);
	printf("samples/s      %.0f\n", n / v->secs);
	printf("mean MACs      %.0f per sample\n", mean_macs);
	printf("MACs           min %lld, median %lld, p90 %lld, p99 %lld, max %lld\n",
	       (long long)sorted[0], (long long)sorted[n / 2],
	       (long long)sorted[(int64_t)n * 9 / 10], (long long)sorted[(int64_t)n * 99 / 100],
	       (long long)sorted[n - 1]);
	printf("several paths  %d samples (%.2f%%)", v->multi, 100.0 * v->multi / n);
	for (int k = 2; k <= 64; k++)
		if (v->by_paths[k])
			printf("%s%d paths: %lld", k == 2 || !v->by_paths[k - 1] ? "; " : ", ", k,
			       (long long)v->by_paths[k]);
	printf("\nescalated      %d samples (%.2f%%)\n", v->escalated, 100.0 * v->escalated / n);
	printf("dense MACs     %lld per sample\n", (long long)a->dense_macs);
	printf("compute saved  %.4f\n", 1.0 - mean_macs / (double)a->dense_macs);
	printf("\nroute share (argmax path)\n");
	for (int r = 0; r < a->npaths; r++) {
		route_name(a, r, rn, sizeof rn);
		printf("  %-12s %6.2f%%  (%lld)\n", rn, 100.0 * v->routes[r] / n,
		       (long long)v->routes[r]);
	}
	printf("\nconfusion matrix (rows: true class, columns: predicted)\n%14s", "");
	for (int j = 0; j < K; j++)
		printf(" %5d", j);
	printf("\n");
	for (int i = 0; i < K; i++) {
		printf("%2d %-11.11s", i, a->classes[i]);
		for (int j = 0; j < K; j++)
			printf(" %5lld", (long long)v->conf[i * K + j]);
		printf("\n");
	}
}

/* An image folder of one split is scored whole: says so on stderr, and refuses it when a
 * provenance (MODEL's, or the second model's of an escalating point) says it was trained on it,
 * unless allow. */
static int eval_check_data(const struct eval *v, const char *path, bool allow)
{
	if (!cli_single_split_folder(v->dir))
		return 0;
	struct cli_trained_on p;
	const struct cigt_model *ms[2] = {v->m, v->m2};
	const char *trained = NULL;
	for (int k = 0; k < 2 && ms[k] && !trained; k++) {
		cli_trained_on(ms[k], &p);
		if (cli_trained_on_dir(&p, v->dir))
			trained = k ? ms[k]->arch->name : path;
	}
	if (trained && !allow) {
		fprintf(stderr, "cigt: %s: %s was trained on this folder (its provenance's data): "
			"its accuracy here is not a test result; evaluate on held-out images, or "
			"give --allow-training-data\n", v->dir, trained);
		return -1;
	}
	fprintf(stderr, "cigt: %s is an image folder without a train/ and test/ split: scoring "
		"every image in it%s\n", v->dir,
		trained ? ", images the model was trained on included (--allow-training-data)"
			: "");
	return 0;
}

int cmd_eval(int argc, char **argv)
{
	const char *dir = CIGT_DEFAULT_DATA_DIR, *dump = NULL, *routes_png = NULL;
	const char *compute = NULL, *thresholds = NULL;
	bool dense = false, as_json = false, show_routes = false, allow_train = false;
	long long limit = 0, threads = cli_default_threads(), max_macs = 0;
	const struct cigt_opt opts[] = {
		{.like = &cli_opt_data, CIGT_OPT_VAR(dir),
		 .help = "IDX directory with t10k-{images-idx3,labels-idx1}-ubyte.gz, or\n"
			 "an image folder: DIR/test/<class>/ (or DIR/val/) when\n"
			 "DIR/train/ exists, else DIR/<class>/; .png .jpg .jpeg .pgm\n"
			 ".ppm files"},
		CIGT_OPT_BIND(cli_opt_cache_mb, cli_cache_bytes),
		{.like = &cli_opt_dense, CIGT_OPT_VAR(dense),
		 .help = "run every expert on every sample (same predictions, more MACs)"},
		CIGT_OPT_BIND(cli_opt_compute, compute),
		{"thresholds", 0, CIGT_OPT_STR, CIGT_OPT_VAR(thresholds), .arg = "T,...",
		 .help = "multipath with one threshold in [0, 1] per router (1 = single)"},
		{"max-macs", 0, CIGT_OPT_INT, CIGT_OPT_VAR(max_macs), .lo = 1,
		 .hi = (long long)1 << 62, .arg = "N",
		 .help = "the most accurate (on validation) operating point whose worst\n"
			 "case fits in N MACs per sample; less than one path is an error"},
		CIGT_OPT_BIND(cli_opt_json, as_json),
		{"limit", 0, CIGT_OPT_INT, CIGT_OPT_VAR(limit), .lo = 1, .hi = 100000000, .arg = "N",
		 .help = "only the first N test images"},
		CIGT_OPT_BIND(cli_opt_threads, threads),
		{"dump", 0, CIGT_OPT_STR, CIGT_OPT_VAR(dump), .arg = "FILE",
		 .help = "write one JSON line per sample: index, label, class, route\n"
			 "(argmax path), logits (of that path), probs (the answer's\n"
			 "posterior), macs, npaths, escalated, paths (\"0-1-3\", ...)"},
		{"routes", 0, CIGT_OPT_FLAG, CIGT_OPT_VAR(show_routes),
		 .help = "for every leaf (last-layer expert), how many test samples of\n"
			 "each class reached it"},
		{"routes-png", 0, CIGT_OPT_STR, CIGT_OPT_VAR(routes_png), .arg = "FILE",
		 .help = "draw that table as a heatmap (needs gnuplot)"},
		{"allow-training-data", 0, CIGT_OPT_FLAG, CIGT_OPT_VAR(allow_train),
		 .help = "score an image folder without a test split even when the\n"
			 "provenance says MODEL was trained on it"},
		CIGT_OPT_BIND(cli_opt_backend, cli_backend),
		CIGT_OPT_BIND(cli_opt_precision, cli_precision),
		{0},
	};
	const struct cli_cmd cmd = {usage, 15, 1, 1, opts};
	int status, operand = cli_parse(&cmd, argc, argv, &status);
	if (operand < 0)
		return status;
	if (dense && (compute || thresholds || max_macs)) {
		fprintf(stderr, "cigt: --dense runs every expert; it takes no --compute, "
			"--thresholds or --max-macs\n");
		return 2;
	}
	struct eval v = {.dir = dir, .dense = dense, .threads = (int)threads, .n = (int)limit};
	if (cli_load(argv[operand], &v.m, &v.e))
		return 1;
	int rc = 1;
	if (cli_dial(argv[operand], v.e, compute, thresholds, max_macs, &v.dial, &v.m2, &v.e2) ||
	    eval_check_data(&v, argv[operand], allow_train) ||
	    cli_load_inputs(dir, "t10k", v.m->arch, &v.n, &v.x, &v.labels))
		goto out;
	v.K = v.m->arch->nclasses;
	const struct cigt_engine_opts eo = cli_engine_opts();
	if (eval_classify(&v) || ((eo.backend != CIGT_BACKEND_OPENBLAS ||
				   eo.precision != CIGT_PRECISION_FP32) &&
				  eval_against_fp32(&v)))
		goto out;
	eval_tally(&v);
	v.mode = dense ? "dense"
		 : v.dial.point >= 0 ? v.m->points[v.dial.point].name
		 : thresholds ? "thresholds"
		 : "routed";
	if (dump && write_dump(&v, dump))
		goto out;
	if (as_json)
		print_json(&v);
	else
		print_text(&v, compute || thresholds || max_macs);
	if (show_routes && !as_json)
		print_leaves(v.m->arch, v.leaf);
	if (routes_png && draw_leaves(v.m->arch, v.leaf, routes_png))
		goto out;
	rc = 0;
out:
	eval_destroy(&v);
	return rc;
}
