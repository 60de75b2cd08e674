/* cigt bench MODEL [--batch N] [--seconds S] [--dense] [--ungrouped] [--compute NAME]
 *                  [--threads N] [--blas-threads N] [--profile] [--sgemm] [--json]
 *                  [--backend B] [--precision P] */
#include <cblas.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/pool.h"
#include "cli.h"
#include "../common/util.h"

static const char usage[] =
	"usage: cigt bench MODEL [--batch N] [--seconds S] [--dense] [--ungrouped]\n"
	"                  [--compute NAME] [--threads N] [--blas-threads N] [--profile]\n"
	"                  [--sgemm] [--json] [--backend B] [--precision P]\n"
	"Measures engine throughput on test images: samples/s and effective GFLOPS\n"
	"(2 x MACs executed / s).\n";

/* OpenBLAS sgemm on 1024^3 matrices for `secs` seconds: GFLOPS. */
static double sgemm_gflops(int threads, double secs)
{
	const int n = 1024;
	float *a = cigt_alloc_floats((int64_t)n * n), *b = cigt_alloc_floats((int64_t)n * n),
	      *c = cigt_alloc_floats((int64_t)n * n);
	if (!a || !b || !c) {
		free(a);
		free(b);
		free(c);
		return 0;
	}
	for (int64_t i = 0; i < (int64_t)n * n; i++) {
		a[i] = (float)(i % 7) * 0.1f;
		b[i] = (float)(i % 5) * 0.1f;
	}
	cigt_blas_threads(threads);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
	uint64_t t0 = cigt_now_ns(), t;
	int reps = 0;
	do {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c,
			    n);
		reps++;
		t = cigt_now_ns();
	} while ((double)(t - t0) * 1e-9 < secs);
	free(a);
	free(b);
	free(c);
	return 2.0 * n * (double)n * n * reps / ((double)(t - t0) * 1e-9) * 1e-9;
}

/* One benchmark: what was asked, the pool and what was measured. */
struct bench {
	const struct cigt_arch *a;
	const char *compute;       /* an operating point's name, or NULL */
	const char *backend;       /* cigt_engine_backend */
	const struct cigt_dial *dial;
	int batch, threads, blas;
	double seconds;
	bool dense, ungrouped, profile, sgemm;
	struct cigt_pool *pool;
	const float *x;            /* n test images */
	int n;
	struct cigt_result *res;   /* batch of them */
	struct cigt_profile *prof; /* with --profile: reset when the warm-up ends */
	/* Measured. */
	double secs, sps, macs, gflops;
	double peak; /* --sgemm: OpenBLAS sgemm's GFLOPS */
};

/* One call's worth: batch samples from position pos, grouped or not, under the dial or not. */
static void bench_call(struct bench *b, int pos)
{
	const int64_t isz = cigt_arch_input_size(b->a);
	const enum cigt_exec_mode mode = b->dense ? CIGT_EXEC_DENSE : CIGT_EXEC_ROUTED;
	if (b->ungrouped) {
		/* Each worker classifies one sample per call. */
		for (int i = 0; i < b->batch; i += b->threads) {
			int k = CIGT_MIN(b->threads, b->batch - i);
			cigt_pool_classify(b->pool, b->x + (int64_t)(pos + i) * isz, k, mode,
					   b->res + i, NULL, NULL);
		}
	} else if (b->compute) {
		cigt_pool_classify_dial(b->pool, b->x + (int64_t)pos * isz, b->batch, b->dial,
					b->res, NULL, NULL);
	} else {
		cigt_pool_classify(b->pool, b->x + (int64_t)pos * isz, b->batch, mode, b->res, NULL,
				   NULL);
	}
}

/* Calls for a tenth of the time (at least one call) to warm up, then for b->seconds. */
static void bench_measure(struct bench *b)
{
	int pos = 0;
	uint64_t samples = 0, run_macs = 0, t0 = 0, t;
	bool warm = false;
	uint64_t start = cigt_now_ns();
	for (;;) {
		if (pos + b->batch > b->n)
			pos = 0;
		bench_call(b, pos);
		pos += b->batch;
		t = cigt_now_ns();
		if (!warm) {
			if ((double)(t - start) * 1e-9 >= b->seconds * 0.1) {
				warm = true;
				t0 = t;
				if (b->profile)
					cigt_pool_profile(b->pool, b->prof);
			}
			continue;
		}
		samples += (uint64_t)b->batch;
		for (int i = 0; b->compute && i < b->batch; i++)
			run_macs += (uint64_t)b->res[i].macs;
		if ((double)(t - t0) * 1e-9 >= b->seconds)
			break;
	}
	b->secs = (double)(t - t0) * 1e-9;
	b->sps = (double)samples / b->secs;
	b->macs = b->compute ? (double)run_macs / (double)samples
			     : (double)(b->dense ? b->a->dense_macs : b->a->path_macs);
	b->gflops = 2.0 * b->macs * b->sps * 1e-9;
}

/* The mean rows per call of expert ex of layer l (--profile). */
static double group_size(const struct cigt_profile *prof, int l, int ex)
{
	return prof->groups[l][ex] ? (double)prof->rows[l][ex] / prof->groups[l][ex] : 0.0;
}

/* --json: one object. */
static void print_json(const struct bench *b, const char *modename)
{
	const struct cigt_arch *a = b->a;
	json_t *j = json_pack("{ss ss sI sI sI sf sf sf sf}", "model", a->name, "mode", modename,
			      "batch", (json_int_t)b->batch, "threads", (json_int_t)b->threads,
			      "blas_threads", (json_int_t)b->blas, "samples_per_second", b->sps,
			      "gflops", b->gflops, "macs_per_sample", b->macs, "seconds", b->secs);
	json_object_set_new(j, "backend", json_string(b->backend));
	if (b->sgemm) {
		json_object_set_new(j, "sgemm_gflops", json_real(b->peak));
		json_object_set_new(j, "fraction_of_sgemm", json_real(b->gflops / b->peak));
	}
	if (b->profile) {
		json_t *parts = json_object(), *groups = json_array();
		for (int k = 0; k < CIGT_PROF_COUNT; k++)
			json_object_set_new(parts, cigt_prof_part_name(k),
					    json_real((double)b->prof->ns[k] * 1e-9));
		for (int l = 0; l < a->nlayers; l++) {
			json_t *row = json_array();
			for (int ex = 0; ex < a->layers[l].experts; ex++)
				json_array_append_new(row, json_real(group_size(b->prof, l, ex)));
			json_array_append_new(groups, row);
		}
		json_object_set_new(j, "profile_seconds", parts);
		json_object_set_new(j, "mean_group_size", groups);
	}
	json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
	putchar('\n');
	json_decref(j);
}

static void print_text(const struct bench *b, const char *modename)
{
	const struct cigt_arch *a = b->a;
	const struct cigt_profile *prof = b->prof;
	printf("%s %s batch %d, %d thread%s (BLAS %d), %s: %.0f samples/s, %.1f GFLOPS", a->name,
	       modename, b->batch, b->threads, b->threads == 1 ? "" : "s", b->blas, b->backend,
	       b->sps, b->gflops);
	if (b->sgemm)
		printf("; sgemm %.1f GFLOPS, engine at %.0f%% of it", b->peak,
		       100 * b->gflops / b->peak);
	printf("\n");
	if (!b->profile)
		return;
	double total = 0;
	for (int k = 0; k < CIGT_PROF_COUNT; k++)
		total += (double)prof->ns[k];
	printf("time per part (all threads):\n");
	for (int k = 0; k < CIGT_PROF_COUNT; k++)
		printf("  %-12s %7.3f s  %5.1f%%\n", cigt_prof_part_name(k),
		       (double)prof->ns[k] * 1e-9, 100 * (double)prof->ns[k] / total);
	printf("mean group size per expert:\n");
	for (int l = 0; l < a->nlayers; l++) {
		printf("  layer %d:", l);
		for (int ex = 0; ex < a->layers[l].experts; ex++)
			printf(" %.1f", group_size(prof, l, ex));
		printf("\n");
	}
}

int cmd_bench(int argc, char **argv)
{
	const char *compute = NULL;
	long long batch = 256, threads = cli_default_threads(), blas = 1;
	double seconds = 3;
	bool dense = false, ungrouped = false, profile = false, sgemm = false, as_json = false;
	const char *dir = CIGT_DEFAULT_DATA_DIR;
	const struct cigt_opt opts[] = {
		{"batch", 0, CIGT_OPT_INT, CIGT_OPT_VAR(batch), .lo = 1, .hi = 65536, .def = "256",
		 .arg = "N", .help = "samples per classify call"},
		{"seconds", 0, CIGT_OPT_DOUBLE, CIGT_OPT_VAR(seconds), .dlo = 0.01, .dhi = 3600,
		 .def = "3", .arg = "S", .help = "measuring time after a warm-up"},
		CIGT_OPT_BIND(cli_opt_dense, dense),
		{"ungrouped", 0, CIGT_OPT_FLAG, CIGT_OPT_VAR(ungrouped),
		 .help = "classify one sample at a time (routing without grouping)"},
		{.like = &cli_opt_compute, CIGT_OPT_VAR(compute),
		 .help = "run at the model's operating point NAME (cigt info lists\n"
			 "them; an escalating one loads its second model from beside\n"
			 "MODEL); MACs per sample are then the measured mean"},
		{.like = &cli_opt_threads, CIGT_OPT_VAR(threads),
		 .help = "worker threads splitting each batch (default: online CPUs)"},
		{"blas-threads", 0, CIGT_OPT_INT, CIGT_OPT_VAR(blas), .lo = 1, .hi = 64, .def = "1",
		 .arg = "N", .help = "OpenBLAS or oneDNN threads inside each call"},
		{"profile", 0, CIGT_OPT_FLAG, CIGT_OPT_VAR(profile),
		 .help = "time per part (im2col, sgemm, pooling, routing, regrouping)\n"
			 "and the group size per expert"},
		{"sgemm", 0, CIGT_OPT_FLAG, CIGT_OPT_VAR(sgemm),
		 .help = "also measure OpenBLAS sgemm GFLOPS (1024^3) with the same\n"
			 "threads, for comparison"},
		{.like = &cli_opt_data, CIGT_OPT_VAR(dir), .help = "IDX directory"},
		CIGT_OPT_BIND(cli_opt_json, as_json),
		CIGT_OPT_BIND(cli_opt_backend, cli_backend),
		CIGT_OPT_BIND(cli_opt_precision, cli_precision),
		{0},
	};
	const struct cli_cmd cmd = {usage, 18, 1, 1, opts};
	int status, operand = cli_parse(&cmd, argc, argv, &status);
	if (operand < 0)
		return status;
	if (compute && (dense || ungrouped)) {
		fprintf(stderr, "cigt: --compute runs routed batches; not with --dense or --ungrouped\n");
		return 2;
	}
	struct cigt_model *m, *m2 = NULL;
	struct cigt_engine *e, *e2 = NULL;
	cli_inner_threads = (int)blas;
	if (cli_load(argv[operand], &m, &e))
		return 1;
	struct cigt_dial dial;
	cigt_dial_single(&dial);
	struct bench b = {.a = m->arch, .compute = compute, .dial = &dial, .batch = (int)batch,
			  .threads = (int)threads, .blas = (int)blas, .seconds = seconds,
			  .dense = dense, .ungrouped = ungrouped, .profile = profile,
			  .sgemm = sgemm, .backend = cigt_engine_backend(e)};
	float *x = NULL;
	uint8_t *labels = NULL;
	int rc = 1;
	if (compute && cli_dial(argv[operand], e, compute, NULL, 0, &dial, &m2, &e2))
		goto out;
	if (cli_load_inputs(dir, "t10k", b.a, &b.n, &x, &labels))
		goto out;
	b.x = x;
	b.res = calloc((size_t)batch, sizeof *b.res);
	b.prof = calloc(1, sizeof *b.prof);
	if (!b.res || !b.prof)
		goto out;
	/* One worker per thread; with --ungrouped each worker classifies one sample per call. */
	cigt_blas_threads((int)blas);
	if (cigt_pool_new(e, (int)threads, ungrouped ? (int)threads : (int)batch, &b.pool) ||
	    (e2 && cigt_pool_set_second(b.pool, e2))) {
		fprintf(stderr, "cigt: cannot start %lld threads\n", threads);
		goto out;
	}
	bench_measure(&b);
	b.peak = sgemm ? sgemm_gflops((int)(threads * blas), CIGT_MIN(seconds, 2.0)) : 0;
	const char *modename = compute     ? compute
			       : dense     ? "dense"
			       : ungrouped ? "ungrouped"
					   : "routed";
	if (as_json)
		print_json(&b, modename);
	else
		print_text(&b, modename);
	rc = 0;
out:
	cigt_pool_free(b.pool);
	free(x);
	free(labels);
	free(b.res);
	free(b.prof);
	cigt_engine_free(e2);
	cigt_model_free(m2);
	cigt_engine_free(e);
	cigt_model_free(m);
	return rc;
}
