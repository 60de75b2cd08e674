/* cigt eval MODEL [--data DIR] [--dense | --compute NAME | --thresholds T,... |
 * --max-macs N] [--json] [--limit N] [--threads N] [--dump FILE]: test accuracy, MACs (mean and distribution), paths. */
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

int cmd_eval(int argc, char **argv)
{
	const char *dir = CIGT_DEFAULT_DATA_DIR, *dump = NULL, *routes_png = NULL;
	const char *compute = NULL, *thresholds = NULL;
	bool dense = false, as_json = false, show_routes = false;
	long long limit = 0, threads = cli_default_threads(), max_macs = 0;
	const struct cli_opt opts[] = {
		{"data", 0, CLI_STR, &dir, .arg = "DIR",
		 .help = "IDX directory with t10k-{images-idx3,labels-idx1}-ubyte.gz\n"
			 "(default " CIGT_DEFAULT_DATA_DIR "), or an image folder:\n"
			 "DIR/test/<class>/ (or DIR/val/) when DIR/train/ exists, else\n"
			 "DIR/<class>/; .png .jpg .jpeg .pgm .ppm files"},
		{"cache-mb", 0, CLI_CALL, &cli_cache_bytes, 1, 1 << 24, .fn = cli_mebibytes,
		 .arg = "N", .help = "bound on a folder's images held as float32 (default 2048)"},
		{"dense", 0, CLI_FLAG, &dense,
		 .help = "run every expert on every sample (same predictions, more MACs)"},
		{"compute", 0, CLI_STR, &compute, .arg = "NAME",
		 .help = "the model's operating point NAME (cigt info lists them); one that\n"
			 "escalates loads its second model from beside MODEL"},
		{"thresholds", 0, CLI_STR, &thresholds, .arg = "T,...",
		 .help = "multipath with one threshold in [0, 1] per router (1 = single)"},
		{"max-macs", 0, CLI_LLONG, &max_macs, 1, (long long)1 << 62, .arg = "N",
		 .help = "the most accurate (on validation) operating point whose worst\n"
			 "case fits in N MACs per sample; less than one path is an error"},
		{"json", 0, CLI_FLAG, &as_json, .help = "one JSON object instead of text"},
		{"limit", 0, CLI_LLONG, &limit, 1, 100000000, .arg = "N",
		 .help = "only the first N test images"},
		{"threads", 0, CLI_LLONG, &threads, 1, 64, .arg = "N",
		 .help = "worker threads (default: online CPUs)"},
		{"dump", 0, CLI_STR, &dump, .arg = "FILE",
		 .help = "write one JSON line per sample: index, label, class, route\n"
			 "(argmax path), logits (of that path), probs (the answer's\n"
			 "posterior), macs, npaths, escalated, paths (\"0-1-3\", ...)"},
		{"routes", 0, CLI_FLAG, &show_routes,
		 .help = "for every leaf (last-layer expert), how many test samples of\n"
			 "each class reached it"},
		{"routes-png", 0, CLI_STR, &routes_png, .arg = "FILE",
		 .help = "draw that table as a heatmap (needs gnuplot)"},
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
	struct cigt_model *m, *m2 = NULL;
	struct cigt_engine *e, *e2 = NULL;
	struct cigt_dial dial;
	if (cli_load(argv[operand], &m, &e))
		return 1;
	if (cli_dial(argv[operand], e, compute, thresholds, max_macs, &dial, &m2, &e2)) {
		cigt_engine_free(e);
		cigt_model_free(m);
		return 1;
	}
	const struct cigt_arch *a = m->arch;
	int n = (int)limit, rc = 1;
	int64_t *sorted = NULL;
	float *x = NULL, *probs = NULL, *logits = NULL;
	uint8_t *labels = NULL;
	struct cigt_result *res = NULL;
	struct cigt_pool *pool = NULL;
	int64_t *conf = NULL, *routes = NULL, *leaf = NULL;
	if (cli_load_inputs(dir, "t10k", a, &n, &x, &labels))
		goto out;
	const int K = a->nclasses;
	res = calloc((size_t)n, sizeof *res);
	probs = malloc((size_t)n * K * sizeof(float));
	logits = malloc((size_t)n * K * sizeof(float));
	conf = calloc((size_t)K * K, sizeof *conf);
	routes = calloc((size_t)a->npaths, sizeof *routes);
	const int nleaves = a->layers[a->nlayers - 1].experts;
	leaf = calloc((size_t)nleaves * K, sizeof *leaf);
	if (!res || !probs || !logits || !conf || !routes || !leaf) {
		fprintf(stderr, "cigt: out of memory\n");
		goto out;
	}
	cigt_blas_threads(1);
	if (cigt_pool_new(e, (int)threads, 256 * (int)threads, &pool) ||
	    cigt_pool_set_second(pool, e2)) {
		fprintf(stderr, "cigt: cannot start %lld threads\n", threads);
		goto out;
	}
	const int64_t isz = cigt_arch_input_size(a);
	const int chunk = 256 * (int)threads;
	uint64_t t0 = cigt_now_ns();
	for (int s0 = 0; s0 < n; s0 += chunk) {
		int k = CIGT_MIN(chunk, n - s0);
		if (dense)
			cigt_pool_classify(pool, x + s0 * isz, k, CIGT_EXEC_DENSE, res + s0,
					   probs + (int64_t)s0 * K, logits + (int64_t)s0 * K);
		else
			cigt_pool_classify_dial(pool, x + s0 * isz, k, &dial, res + s0,
						probs + (int64_t)s0 * K, logits + (int64_t)s0 * K);
	}
	double secs = (double)(cigt_now_ns() - t0) * 1e-9;
	int correct = 0, bad_label = 0, multi = 0, escalated = 0;
	int64_t by_paths[65] = {0};
	double macs = 0;
	if (!(sorted = malloc((size_t)n * sizeof *sorted))) {
		fprintf(stderr, "cigt: out of memory\n");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		routes[route_index(a, res[i].route)]++;
		macs += (double)res[i].macs;
		sorted[i] = res[i].macs;
		multi += res[i].npaths > 1;
		escalated += res[i].escalated;
		by_paths[CIGT_MIN(res[i].npaths, 64)]++;
		if (labels[i] >= K) {
			bad_label++;
			continue;
		}
		correct += res[i].cls == labels[i];
		conf[labels[i] * K + res[i].cls]++;
		leaf[res[i].route[a->nlayers - 1] * K + labels[i]]++;
	}
	if (bad_label)
		fprintf(stderr,
			"cigt: warning: %d labels are >= %d classes: those images count as wrong "
			"answers in the accuracy (over all %d) and are left out of the confusion "
			"matrix and the leaf table\n",
			bad_label, K, n);
	qsort(sorted, (size_t)n, sizeof *sorted, cli_cmp_i64);
	double acc = (double)correct / n, mean_macs = macs / n;
	const char *mode = dense ? "dense"
			   : dial.point >= 0 ? m->points[dial.point].name
			   : thresholds ? "thresholds"
			   : "routed";
	double saved = 1.0 - mean_macs / (double)a->dense_macs;
	char rn[64];
	if (dump) {
		FILE *f = fopen(dump, "w");
		if (!f) {
			perror(dump);
			goto out;
		}
		for (int i = 0; i < n; i++) {
			fprintf(f, "{\"index\": %d, \"label\": %d, \"class\": %d, \"route\": [", i,
				labels[i], res[i].cls);
			for (int l = 0; l < a->nlayers; l++)
				fprintf(f, "%s%d", l ? ", " : "", res[i].route[l]);
			fprintf(f, "], \"logits\": [");
			for (int k = 0; k < K; k++)
				fprintf(f, "%s%.9g", k ? ", " : "", (double)logits[(int64_t)i * K + k]);
			fprintf(f, "], \"probs\": [");
			for (int k = 0; k < K; k++)
				fprintf(f, "%s%.9g", k ? ", " : "", (double)probs[(int64_t)i * K + k]);
			fprintf(f, "], \"macs\": %lld, \"npaths\": %d, \"escalated\": %s, "
				   "\"paths\": [", (long long)res[i].macs, res[i].npaths,
				res[i].escalated ? "true" : "false");
			for (int r = 0, first = 1; r < a->npaths && r < 64; r++)
				if ((res[i].paths >> r) & 1) {
					route_name(a, r, rn, sizeof rn);
					fprintf(f, "%s\"%s\"", first ? "" : ", ", rn);
					first = 0;
				}
			fprintf(f, "]}\n");
		}
		if (fclose(f)) {
			perror(dump);
			goto out;
		}
	}
	if (as_json) {
		json_t *share = json_object(), *cm = json_array();
		for (int r = 0; r < a->npaths; r++) {
			route_name(a, r, rn, sizeof rn);
			json_object_set_new(share, rn, json_real((double)routes[r] / n));
		}
		for (int i = 0; i < K; i++) {
			json_t *row = json_array();
			for (int j = 0; j < K; j++)
				json_array_append_new(row, json_integer(conf[i * K + j]));
			json_array_append_new(cm, row);
		}
		json_t *dist = json_pack("{sI sI sI sI sI}", "min", (json_int_t)sorted[0], "p50",
					 (json_int_t)sorted[n / 2], "p90",
					 (json_int_t)sorted[(int64_t)n * 9 / 10], "p99",
					 (json_int_t)sorted[(int64_t)n * 99 / 100], "max",
					 (json_int_t)sorted[n - 1]);
		json_t *np = json_object(), *tj = json_array();
		for (int k = 1; k <= 64; k++)
			if (by_paths[k]) {
				char key[8];
				snprintf(key, sizeof key, "%d", k);
				json_object_set_new(np, key, json_integer(by_paths[k]));
			}
		for (int l = 0; l + 1 < a->nlayers; l++)
			json_array_append_new(tj, json_real(dial.tau[l]));
		json_t *j = json_pack("{ss ss so sf sf si si sf sf so si si so sI sf sf si so so}",
				      "model", a->name, "mode", mode, "thresholds", tj,
				      "confidence", (double)dial.confidence, "accuracy", acc,
				      "correct",
				      correct, "samples", n, "samples_per_second", n / secs,
				      "mean_macs", mean_macs, "macs", dist, "multipath_samples", multi,
				      "escalated_samples", escalated, "samples_by_paths", np,
				      "dense_macs", (json_int_t)a->dense_macs,
				      "compute_saved", saved, "seconds", secs, "threads",
				      (int)threads, "route_share", share, "confusion", cm);
		json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(j);
	} else {
		printf("model          %s (%s, %lld thread%s)\n", a->name, mode, threads,
		       threads == 1 ? "" : "s");
		if (compute || thresholds || max_macs) {
			printf("thresholds     ");
			for (int l = 0; l + 1 < a->nlayers; l++)
				printf("%s%g", l ? ", " : "", (double)dial.tau[l]);
			if (dial.confidence > 0.0f)
				printf("; escalate to %s below confidence %g", e2 ? m2->arch->name : "",
				       (double)dial.confidence);
			printf("\n");
		}
		printf("test set       %s, %d images\n", dir, n);
		printf("accuracy       %.2f%% (%d/%d)\n", 100 * acc, correct, n);
		printf("samples/s      %.0f\n", n / secs);
		printf("mean MACs      %.0f per sample\n", mean_macs);
		printf("MACs           min %lld, median %lld, p90 %lld, p99 %lld, max %lld\n",
		       (long long)sorted[0], (long long)sorted[n / 2],
		       (long long)sorted[(int64_t)n * 9 / 10], (long long)sorted[(int64_t)n * 99 / 100],
		       (long long)sorted[n - 1]);
		printf("several paths  %d samples (%.2f%%)", multi, 100.0 * multi / n);
		for (int k = 2; k <= 64; k++)
			if (by_paths[k])
				printf("%s%d paths: %lld", k == 2 || !by_paths[k - 1] ? "; " : ", ", k,
				       (long long)by_paths[k]);
		printf("\nescalated      %d samples (%.2f%%)\n", escalated, 100.0 * escalated / n);
		printf("dense MACs     %lld per sample\n", (long long)a->dense_macs);
		printf("compute saved  %.4f\n", saved);
		printf("\nroute share (argmax path)\n");
		for (int r = 0; r < a->npaths; r++) {
			route_name(a, r, rn, sizeof rn);
			printf("  %-12s %6.2f%%  (%lld)\n", rn, 100.0 * routes[r] / n,
			       (long long)routes[r]);
		}
		printf("\nconfusion matrix (rows: true class, columns: predicted)\n%14s", "");
		for (int j = 0; j < K; j++)
			printf(" %5d", j);
		printf("\n");
		for (int i = 0; i < K; i++) {
			printf("%2d %-11.11s", i, a->classes[i]);
			for (int j = 0; j < K; j++)
				printf(" %5lld", (long long)conf[i * K + j]);
			printf("\n");
		}
	}
	if (show_routes && !as_json)
		print_leaves(a, leaf);
	if (routes_png && draw_leaves(a, leaf, routes_png))
		goto out;
	rc = 0;
out:
	free(leaf);
	cigt_pool_free(pool);
	free(x);
	free(labels);
	free(res);
	free(probs);
	free(logits);
	free(conf);
	free(routes);
	free(sorted);
	cigt_engine_free(e);
	cigt_model_free(m);
	cigt_engine_free(e2);
	cigt_model_free(m2);
	return rc;
}
