/* cigt bench MODEL [--batch N] [--seconds S] [--dense] [--ungrouped] [--compute NAME]
 *                  [--threads N] [--blas-threads N] [--profile] [--sgemm] [--json] */
#include <cblas.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/parallel.h"
#include "cli.h"
#include "../common/util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cigt bench MODEL [--batch N] [--seconds S] [--dense] [--ungrouped]\n"
		"                  [--compute NAME] [--threads N] [--blas-threads N] [--profile]\n"
		"                  [--sgemm] [--json]\n"
		"Measures engine throughput on test images: samples/s and effective GFLOPS\n"
		"(2 x MACs executed / s).\n"
		"  --batch N         samples per classify call (default 256)\n"
		"  --seconds S       measuring time after a warm-up (default 3)\n"
		"  --dense           run every expert on every sample\n"
		"  --ungrouped       classify one sample at a time (routing without grouping)\n"
		"  --compute NAME    run at the model's operating point NAME (cigt info lists\n"
		"                    them; an escalating one loads its second model from beside\n"
		"                    MODEL); MACs per sample are then the measured mean\n"
		"  --threads N       worker threads splitting each batch (default: online CPUs)\n"
		"  --blas-threads N  OpenBLAS threads inside each call (default 1)\n"
		"  --profile         time per part (im2col, sgemm, pooling, routing, regrouping)\n"
		"                    and the group size per expert\n"
		"  --sgemm           also measure OpenBLAS sgemm GFLOPS (1024^3) with the same\n"
		"                    threads, for comparison\n"
		"  --data DIR        IDX directory (default " CIGT_DEFAULT_DATA_DIR ")\n"
		"  --json            one JSON object\n");
}

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

int cmd_bench(int argc, char **argv)
{
	static const struct option opts[] = {
		{"batch", required_argument, NULL, 'b'},   {"seconds", required_argument, NULL, 's'},
		{"dense", no_argument, NULL, 'D'},         {"ungrouped", no_argument, NULL, 'u'},
		{"threads", required_argument, NULL, 't'}, {"blas-threads", required_argument, NULL, 'B'},
		{"profile", no_argument, NULL, 'p'},       {"sgemm", no_argument, NULL, 'g'},
		{"data", required_argument, NULL, 'd'},    {"json", no_argument, NULL, 'j'},
		{"compute", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *compute = NULL;
	long long batch = 256, threads = cli_default_threads(), blas = 1;
	double seconds = 3;
	bool dense = false, ungrouped = false, profile = false, sgemm = false, as_json = false;
	const char *dir = CIGT_DEFAULT_DATA_DIR;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (cli_int("--batch", optarg, 1, 65536, &batch))
				return 2;
			break;
		case 's':
			if (cli_double("--seconds", optarg, 0.01, 3600, &seconds))
				return 2;
			break;
		case 'D':
			dense = true;
			break;
		case 'u':
			ungrouped = true;
			break;
		case 't':
			if (cli_int("--threads", optarg, 1, 64, &threads))
				return 2;
			break;
		case 'B':
			if (cli_int("--blas-threads", optarg, 1, 64, &blas))
				return 2;
			break;
		case 'p':
			profile = true;
			break;
		case 'g':
			sgemm = true;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'j':
			as_json = true;
			break;
		case 'c':
			compute = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	if (compute && (dense || ungrouped)) {
		fprintf(stderr, "cigt: --compute runs routed batches; not with --dense or --ungrouped\n");
		return 2;
	}
	struct cigt_model *m, *m2 = NULL;
	struct cigt_engine *e, *e2 = NULL;
	if (cli_load(argv[optind], &m, &e))
		return 1;
	struct cigt_dial dial;
	cigt_dial_single(&dial);
	if (compute && cli_dial(argv[optind], e, compute, NULL, 0, &dial, &m2, &e2)) {
		cigt_engine_free(e2);
		cigt_model_free(m2);
		cigt_engine_free(e);
		cigt_model_free(m);
		return 1;
	}
	uint64_t run_macs = 0;
	const struct cigt_arch *a = m->arch;
	int n = 0, rc = 1;
	float *x = NULL;
	uint8_t *labels = NULL;
	struct cigt_result *res = NULL;
	struct cigt_pool *pool = NULL;
	struct cigt_profile *prof = NULL;
	if (cli_load_inputs(dir, "t10k", a, &n, &x, &labels))
		goto out;
	res = calloc((size_t)batch, sizeof *res);
	prof = calloc(1, sizeof *prof);
	if (!res || !prof)
		goto out;
	/* One worker per thread; with --ungrouped each worker classifies one sample per call. */
	cigt_blas_threads((int)blas);
	int per_call = ungrouped ? 1 : (int)batch;
	if (cigt_pool_new(e, (int)threads, ungrouped ? (int)threads : (int)batch, &pool) ||
	    (e2 && cigt_pool_set_second(pool, e2))) {
		fprintf(stderr, "cigt: cannot start %lld threads\n", threads);
		goto out;
	}
	enum cigt_exec_mode mode = dense ? CIGT_EXEC_DENSE : CIGT_EXEC_ROUTED;
	const int64_t isz = cigt_arch_input_size(a);
	int pos = 0;
	uint64_t samples = 0, t0 = 0, t;
	bool warm = false;
	uint64_t start = cigt_now_ns();
	for (;;) {
		if (pos + batch > n)
			pos = 0;
		if (ungrouped) {
			for (int i = 0; i < batch; i += (int)threads) {
				int k = CIGT_MIN((int)threads, (int)batch - i);
				cigt_pool_classify(pool, x + (int64_t)(pos + i) * isz, k, mode, res + i,
						   NULL, NULL);
			}
		} else if (compute) {
			cigt_pool_classify_dial(pool, x + (int64_t)pos * isz, per_call, &dial, res,
						NULL, NULL);
		} else {
			cigt_pool_classify(pool, x + (int64_t)pos * isz, per_call, mode, res, NULL,
					   NULL);
		}
		pos += (int)batch;
		t = cigt_now_ns();
		if (!warm) {
			/* Warm up for a tenth of the time (at least one call), then measure. */
			if ((double)(t - start) * 1e-9 >= seconds * 0.1) {
				warm = true;
				t0 = t;
				if (profile)
					cigt_pool_profile(pool, prof);
			}
			continue;
		}
		samples += (uint64_t)batch;
		for (int i = 0; compute && i < batch; i++)
			run_macs += (uint64_t)res[i].macs;
		if ((double)(t - t0) * 1e-9 >= seconds)
			break;
	}
	double secs = (double)(t - t0) * 1e-9;
	double sps = (double)samples / secs;
	double macs = compute ? (double)run_macs / (double)samples
			      : (double)(dense ? a->dense_macs : a->path_macs);
	double gflops = 2.0 * macs * sps * 1e-9;
	double peak = sgemm ? sgemm_gflops((int)(threads * blas), CIGT_MIN(seconds, 2.0)) : 0;
	const char *modename = compute     ? compute
			       : dense     ? "dense"
			       : ungrouped ? "ungrouped"
					   : "routed";
	if (as_json) {
		json_t *j = json_pack("{ss ss sI sI sI sf sf sf sf}", "model", a->name, "mode",
				      modename, "batch", (json_int_t)batch, "threads",
				      (json_int_t)threads, "blas_threads", (json_int_t)blas,
				      "samples_per_second", sps, "gflops", gflops, "macs_per_sample",
				      macs, "seconds", secs);
		if (sgemm) {
			json_object_set_new(j, "sgemm_gflops", json_real(peak));
			json_object_set_new(j, "fraction_of_sgemm", json_real(gflops / peak));
		}
		if (profile) {
			json_t *parts = json_object(), *groups = json_array();
			for (int k = 0; k < CIGT_PROF_COUNT; k++)
				json_object_set_new(parts, cigt_prof_part_name(k),
						    json_real((double)prof->ns[k] * 1e-9));
			for (int l = 0; l < a->nlayers; l++) {
				json_t *row = json_array();
				for (int ex = 0; ex < a->layers[l].experts; ex++)
					json_array_append_new(
						row, json_real(prof->groups[l][ex]
								       ? (double)prof->rows[l][ex] /
									       prof->groups[l][ex]
								       : 0));
				json_array_append_new(groups, row);
			}
			json_object_set_new(j, "profile_seconds", parts);
			json_object_set_new(j, "mean_group_size", groups);
		}
		json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(j);
	} else {
		printf("%s %s batch %lld, %lld thread%s (BLAS %lld): %.0f samples/s, %.1f GFLOPS",
		       a->name, modename, batch, threads, threads == 1 ? "" : "s", blas, sps, gflops);
		if (sgemm)
			printf("; sgemm %.1f GFLOPS, engine at %.0f%% of it", peak,
			       100 * gflops / peak);
		printf("\n");
		if (profile) {
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
					printf(" %.1f", prof->groups[l][ex]
								? (double)prof->rows[l][ex] /
									  prof->groups[l][ex]
								: 0.0);
				printf("\n");
			}
		}
	}
	rc = 0;
out:
	cigt_pool_free(pool);
	free(x);
	free(labels);
	free(res);
	free(prof);
	cigt_engine_free(e2);
	cigt_model_free(m2);
	cigt_engine_free(e);
	cigt_model_free(m);
	return rc;
}
