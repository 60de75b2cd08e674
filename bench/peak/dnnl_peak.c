/* The machine's matrix-multiply peak per precision, for bench/run's precision section: one
 * oneDNN matmul C[N,N] = A[N,N] x B[N,N] (A and C row-major, C in f32; B reordered once, not
 * timed, into the layout the matmul prefers, as the engine reorders its weights), timed in
 * f32, in bf16 (bf16 A and B, f32 sums: what the engine's bf16 backend runs) and in int8
 * (u8 A, s8 B, s32 sums written as f32: the engine's int8 conv or linear whose input follows
 * a ReLU; VNNI where the CPU has it), so each engine row can be read as a fraction of what
 * this CPU does at its precision. Threads: OpenMP's, OMP_NUM_THREADS. Each answer is checked
 * on sampled entries before it is timed: the inputs are small dyadic numbers (small integers
 * in int8), exact in bf16 and summed exactly in f32 and s32.
 *   bench/peak/dnnl_peak [--size N] [--seconds S] [--types f32,bf16,int8]
 * Prints one JSON object: {"size", "threads", "isa", "rows": [{"type", "impl", "gflops",
 * "seconds", "calls"} or {"type", "error"}]}. Exit 0 when every type ran, 1 otherwise. */
#include <dnnl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char *isa_name(dnnl_cpu_isa_t isa)
{
	switch (isa) {
	case dnnl_cpu_isa_sse41: return "sse41";
	case dnnl_cpu_isa_avx: return "avx";
	case dnnl_cpu_isa_avx2: return "avx2";
	case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
	case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
	case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
	case dnnl_cpu_isa_avx512_core: return "avx512_core";
	case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
	case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
	case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
	default: return "unknown";
	}
}

/* Entry i of an input: a multiple of 1/4 in [-0.5, 0.5], so every product is a multiple of
 * 1/16 and a sum of N of them (|sum| <= N/4) is exact in f32 for N up to 2^20. */
static float entry(size_t i, unsigned salt)
{
	unsigned h = (unsigned)i * 2654435761u ^ salt;
	h ^= h >> 13;
	return (float)((int)(h % 5u) - 2) * 0.25f;
}

/* A's and B's entry i at type t (int8: A = 4 entry + 2 in [0, 4], B = 4 entry in [-2, 2];
 * products up to 8, a sum of N of them exact in f32 for N up to 2^21). */
static float a_entry(size_t i, dnnl_data_type_t t)
{
	return t == dnnl_u8 ? 4.0f * entry(i, 1u) + 2.0f : entry(i, 1u);
}

static float b_entry(size_t i, dnnl_data_type_t t)
{
	return t == dnnl_u8 ? 4.0f * entry(i, 2u) : entry(i, 2u);
}

/* The bf16 of an f32 that bf16 represents exactly: its upper half. */
static uint16_t to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return (uint16_t)(u >> 16);
}

struct result {
	const char *impl; /* oneDNN's implementation name (owned by the primitive desc) */
	double gflops, seconds;
	long calls;
	char error[96]; /* set when the type did not run */
};

/* Times C = A x B at type t (dnnl_f32, dnnl_bf16, or dnnl_u8 for u8 A x s8 B) for about
 * `secs` after one warm-up call. Returns 0, or -1 with r->error set; frees everything it made
 * either way. */
static int measure(dnnl_engine_t eng, dnnl_stream_t s, int n, dnnl_data_type_t t, double secs,
		   struct result *r)
{
	const size_t nn = (size_t)n * (size_t)n, esz = t == dnnl_bf16 ? 2 : t == dnnl_u8 ? 1 : 4;
	const dnnl_data_type_t tb = t == dnnl_u8 ? dnnl_s8 : t; /* B's type */
	dnnl_dims_t d = {n, n};
	dnnl_memory_desc_t a_md, b_user_md, any_md, c_md;
	dnnl_matmul_desc_t desc;
	dnnl_primitive_desc_t pd = NULL, rpd = NULL;
	dnnl_primitive_t mm = NULL, ro = NULL;
	dnnl_memory_t ma = NULL, mb_user = NULL, mb = NULL, mc = NULL;
	unsigned char *a = malloc(nn * esz), *b = malloc(nn * esz);
	float *c = malloc(nn * sizeof *c);
	dnnl_status_t st = dnnl_success;
	const char *what = "";
	int rc = -1;
	if (!a || !b || !c) {
		snprintf(r->error, sizeof r->error, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nn; i++) {
		float x = a_entry(i, t), y = b_entry(i, t);
		if (t == dnnl_u8) {
			((uint8_t *)a)[i] = (uint8_t)x;
			((int8_t *)b)[i] = (int8_t)y;
		} else if (t == dnnl_bf16) {
			((uint16_t *)a)[i] = to_bf16(x);
			((uint16_t *)b)[i] = to_bf16(y);
		} else {
			((float *)a)[i] = x;
			((float *)b)[i] = y;
		}
	}
#define TRY(call)                      \
	do {                           \
		what = #call;          \
		st = (call);           \
		if (st != dnnl_success) \
			goto fail;     \
	} while (0)
	TRY(dnnl_memory_desc_init_by_tag(&a_md, 2, d, t, dnnl_ab));
	TRY(dnnl_memory_desc_init_by_tag(&b_user_md, 2, d, tb, dnnl_ab));
	TRY(dnnl_memory_desc_init_by_tag(&any_md, 2, d, tb, dnnl_format_tag_any));
	TRY(dnnl_memory_desc_init_by_tag(&c_md, 2, d, dnnl_f32, dnnl_ab));
	TRY(dnnl_matmul_desc_init(&desc, &a_md, &any_md, NULL, &c_md));
	TRY(dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL));
	TRY(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &r->impl));
	TRY(dnnl_primitive_create(&mm, pd));
	const dnnl_memory_desc_t *b_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	TRY(dnnl_memory_create(&ma, &a_md, eng, a));
	TRY(dnnl_memory_create(&mb_user, &b_user_md, eng, b));
	TRY(dnnl_memory_create(&mb, b_md, eng, DNNL_MEMORY_ALLOCATE));
	TRY(dnnl_memory_create(&mc, &c_md, eng, c));
	TRY(dnnl_reorder_primitive_desc_create(&rpd, &b_user_md, eng, b_md, eng, NULL));
	TRY(dnnl_primitive_create(&ro, rpd));
	dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, mb_user}, {DNNL_ARG_TO, mb}};
	TRY(dnnl_primitive_execute(ro, s, 2, rargs));
	dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb},
				   {DNNL_ARG_DST, mc}};
	TRY(dnnl_primitive_execute(mm, s, 3, args));
	TRY(dnnl_stream_wait(s));
	for (int k = 0; k < 64; k++) { /* sampled entries, exact (see entry) */
		const size_t i = (size_t)k * 7919u % (size_t)n, j = (size_t)k * 104729u % (size_t)n;
		float want = 0;
		for (size_t p = 0; p < (size_t)n; p++)
			want += a_entry(i * (size_t)n + p, t) * b_entry(p * (size_t)n + j, t);
		if (c[i * (size_t)n + j] != want) {
			snprintf(r->error, sizeof r->error, "C[%zu][%zu] = %g, want %g", i, j,
				 (double)c[i * (size_t)n + j], (double)want);
			goto out;
		}
	}
	double t0 = now(), t1;
	long calls = 0;
	do {
		TRY(dnnl_primitive_execute(mm, s, 3, args));
		TRY(dnnl_stream_wait(s));
		calls++;
	} while ((t1 = now()) - t0 < secs);
#undef TRY
	r->calls = calls;
	r->seconds = t1 - t0;
	r->gflops = 2.0 * (double)n * (double)n * (double)n * (double)calls / r->seconds * 1e-9;
	rc = 0;
	goto out;
fail:
	snprintf(r->error, sizeof r->error, "%s: oneDNN status %d", what, (int)st);
out:
	if (r->impl)
		r->impl = strdup(r->impl); /* outlives pd; NULL when out of memory */
	dnnl_memory_destroy(ma);
	dnnl_memory_destroy(mb_user);
	dnnl_memory_destroy(mb);
	dnnl_memory_destroy(mc);
	dnnl_primitive_destroy(ro);
	dnnl_primitive_destroy(mm);
	dnnl_primitive_desc_destroy(rpd);
	dnnl_primitive_desc_destroy(pd);
	free(a), free(b), free(c);
	return rc;
}

static void usage(void)
{
	fprintf(stderr, "usage: dnnl_peak [--size N] [--seconds S] [--types f32,bf16,int8]\n");
}

int main(int argc, char **argv)
{
	int n = 2048;
	double secs = 1.0;
	const char *types = "f32,bf16,int8";
	for (int i = 1; i < argc; i++) {
		if (i + 1 < argc && !strcmp(argv[i], "--size"))
			n = atoi(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--seconds"))
			secs = atof(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--types"))
			types = argv[++i];
		else {
			usage();
			return 2;
		}
	}
	if (n < 1 || n > 1 << 15 || !(secs >= 0)) {
		usage();
		return 2;
	}
	dnnl_data_type_t want[8];
	const char *names[8];
	int ntypes = 0;
	char list[64];
	snprintf(list, sizeof list, "%s", types);
	for (char *save, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (ntypes == 8 ||
		    (strcmp(tok, "f32") && strcmp(tok, "bf16") && strcmp(tok, "int8"))) {
			fprintf(stderr, "dnnl_peak: --types takes up to 8 of f32, bf16, int8; not %s\n",
				tok);
			return 2;
		}
		if (!strcmp(tok, "f32"))
			want[ntypes] = dnnl_f32;
		else if (!strcmp(tok, "bf16"))
			want[ntypes] = dnnl_bf16;
		else
			want[ntypes] = dnnl_u8; /* int8: u8 A, s8 B (see measure) */
		names[ntypes++] = tok;
	}
	dnnl_engine_t eng;
	dnnl_stream_t s;
	if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
	    dnnl_stream_create(&s, eng, dnnl_stream_default_flags) != dnnl_success) {
		fprintf(stderr, "dnnl_peak: no oneDNN CPU engine\n");
		return 1;
	}
	/* oneDNN's OpenMP team: OMP_NUM_THREADS (the run sets it), else the CPUs online. */
	const char *ot = getenv("OMP_NUM_THREADS");
	const int threads = ot && atoi(ot) > 0 ? atoi(ot) : (int)sysconf(_SC_NPROCESSORS_ONLN);
	printf("{\"size\":%d,\"threads\":%d,\"isa\":\"%s\",\"rows\":[", n, threads,
	       isa_name(dnnl_get_effective_cpu_isa()));
	int failed = 0;
	for (int k = 0; k < ntypes; k++) {
		struct result r = {0};
		int rc = measure(eng, s, n, want[k], secs, &r);
		printf("%s{\"type\":\"%s\"", k ? "," : "", names[k]);
		if (r.impl)
			printf(",\"impl\":\"%s\"", r.impl);
		if (rc == 0)
			printf(",\"gflops\":%.3f,\"seconds\":%.4f,\"calls\":%ld}", r.gflops, r.seconds,
			       r.calls);
		else
			printf(",\"error\":\"%s\"}", r.error);
		failed |= rc != 0;
		free((void *)r.impl);
	}
	printf("]}\n");
	dnnl_stream_destroy(s);
	dnnl_engine_destroy(eng);
	return failed;
}
