/* cigt bench MODEL [--batch N] [--seconds S] [--dense] [--ungrouped] [--compute NAME]
 *                  [--threads N] [--blas-threads N] [--profile] [--sgemm] [--json] */
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
	"                  [--sgemm] [--json]\n"
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

int cmd_bench(int argc, char **argv)
{
	const char *compute = NULL;
	long long batch = 256, threads = cli_default_threads(), blas = 1;
	double seconds = 3;
	bool dense = false, ungrouped = false, profile = false, sgemm = false, as_json = false;
	const char *dir = CIGT_DEFAULT_DATA_DIR;
	const struct cli_opt opts[] = {
		{"batch", 0, CLI_LLONG, &batch, 1, 65536, .arg = "N",
		 .help = "samples per classify call (default 256)"},
		{"seconds", 0, CLI_DOUBLE, &seconds, .dlo = 0.01, .dhi = 3600, .arg = "S",
		 .help = "measuring time after a warm-up (default 3)"},
		{"dense", 0, CLI_FLAG, &dense, .help = "run every expert on every sample"},
		{"ungrouped", 0, CLI_FLAG, &ungrouped,
		 .help = "classify one sample at a time (routing without grouping)"},
		{"compute", 0, CLI_STR, &compute, .arg = "NAME",
		 .help = "run at the model's operating point NAME (cigt info lists\n"
			 "them; an escalating one loads its second model from beside\n"
			 "MODEL); MACs per sample are then the measured mean"},
		{"threads", 0, CLI_LLONG, &threads, 1, 64, .arg = "N",
		 .help = "worker threads splitting each batch (default: online CPUs)"},
		{"blas-threads", 0, CLI_LLONG, &blas, 1, 64, .arg = "N",
		 .help = "OpenBLAS threads inside each call (default 1)"},
		{"profile", 0, CLI_FLAG, &profile,
		 .help = "time per part (im2col, sgemm, pooling, routing, regrouping)\n"
			 "and the group size per expert"},
		{"sgemm", 0, CLI_FLAG, &sgemm,
		 .help = "also measure OpenBLAS sgemm GFLOPS (1024^3) with the same\n"
			 "threads, for comparison"},
		{"data", 0, CLI_STR, &dir, .arg = "DIR",
		 .help = "IDX directory (default " CIGT_DEFAULT_DATA_DIR ")"},
		{"json", 0, CLI_FLAG, &as_json, .help = "one JSON object"},
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
	if (cli_load(argv[operand], &m, &e))
		return 1;
	struct cigt_dial dial;
	cigt_dial_single(&dial);
	if (compute && cli_dial(argv[operand], e, compute, NULL, 0, &dial, &m2, &e2)) {
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
