/* The residual trellises' hot path measured side by side: cigt's 3x3 convolution (im2col +
 * OpenBLAS sgemm, NHWC, what the engine runs) against oneDNN's fp32 convolution (Debian's
 * libdnnl, its own pick of algorithm), on the conv shapes of the CIFAR ResNet-110 trellis
 * (models/cifar10_resnet110_trellis.json) at batch 64 (the engine's pass through a chain), one
 * thread. oneDNN runs twice: on our NHWC layout (what an engine backend could use without
 * reordering between ops) and on the blocked layout it prefers (the reorders not timed). Each
 * answer is checked against cigt's before it is timed.
 *   bench/conv/conv_bench [SECONDS]        (built by meson when libdnnl-dev is installed)
 * Run with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1. */
#include <dnnl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/nn/nn.h"

#define CHECK(x)                                                                      \
	do {                                                                          \
		dnnl_status_t st_ = (x);                                              \
		if (st_ != dnnl_success) {                                            \
			fprintf(stderr, "conv_bench: %s: oneDNN status %d\n", #x, st_); \
			exit(1);                                                      \
		}                                                                     \
	} while (0)

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *randf(size_t n, unsigned seed)
{
	float *p = malloc(n * sizeof *p);
	if (!p)
		exit(1);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
	}
	return p;
}

struct shape {
	const char *what;
	int c, hw, oc, stride;
};

/* Runs f for about `secs` seconds; returns calls per second. */
#define TIMED(secs, body)                                         \
	({                                                        \
		body;                                             \
		double t0_ = now(), t_;                           \
		long k_ = 0;                                      \
		do {                                              \
			body;                                     \
			k_++;                                     \
		} while ((t_ = now()) - t0_ < (secs));            \
		(double)k_ / (t_ - t0_);                          \
	})

/* oneDNN conv n x c x hw x hw -> oc, 3x3, padding 1; src/dst in `tag` (nhwc or any). Returns
 * calls per second; *maxdiff: largest difference from want (NHWC). */
static double onednn(dnnl_engine_t eng, dnnl_stream_t s, const struct shape *sh, int n,
		     const float *x, const float *w_oihw, const float *want, double secs,
		     bool any, double *maxdiff)
{
	const int oh = (sh->hw + 2 - 3) / sh->stride + 1;
	dnnl_dims_t sd = {n, sh->c, sh->hw, sh->hw}, wd = {sh->oc, sh->c, 3, 3},
		    dd = {n, sh->oc, oh, oh}, str = {sh->stride, sh->stride}, pad = {1, 1};
	dnnl_memory_desc_t src_nhwc, dst_nhwc, w_user, src_md, w_md, dst_md;
	CHECK(dnnl_memory_desc_init_by_tag(&src_nhwc, 4, sd, dnnl_f32, dnnl_nhwc));
	CHECK(dnnl_memory_desc_init_by_tag(&dst_nhwc, 4, dd, dnnl_f32, dnnl_nhwc));
	CHECK(dnnl_memory_desc_init_by_tag(&w_user, 4, wd, dnnl_f32, dnnl_oihw));
	CHECK(dnnl_memory_desc_init_by_tag(&src_md, 4, sd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_nhwc));
	CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 4, dd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_nhwc));
	CHECK(dnnl_memory_desc_init_by_tag(&w_md, 4, wd, dnnl_f32, dnnl_format_tag_any));
	dnnl_convolution_desc_t cd;
	CHECK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference,
						 dnnl_convolution_direct, &src_md, &w_md, NULL,
						 &dst_md, str, pad, pad));
	dnnl_primitive_desc_t pd;
	CHECK(dnnl_primitive_desc_create(&pd, &cd, NULL, eng, NULL));
	const dnnl_memory_desc_t *psrc = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
	const dnnl_memory_desc_t *pw = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	const dnnl_memory_desc_t *pdst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	dnnl_memory_t mx_user, mw_user, mo_user, mx, mw, mo;
	CHECK(dnnl_memory_create(&mx_user, &src_nhwc, eng, (void *)x));
	CHECK(dnnl_memory_create(&mw_user, &w_user, eng, (void *)w_oihw));
	CHECK(dnnl_memory_create(&mo_user, &dst_nhwc, eng, DNNL_MEMORY_ALLOCATE));
	CHECK(dnnl_memory_create(&mx, psrc, eng, DNNL_MEMORY_ALLOCATE));
	CHECK(dnnl_memory_create(&mw, pw, eng, DNNL_MEMORY_ALLOCATE));
	CHECK(dnnl_memory_create(&mo, pdst, eng, DNNL_MEMORY_ALLOCATE));
	/* reorders in (src, weights) and out (dst): not timed */
	const struct {
		dnnl_memory_t from, to;
	} ro[3] = {{mx_user, mx}, {mw_user, mw}, {mo, mo_user}};
	for (int k = 0; k < 2; k++) {
		dnnl_primitive_desc_t rpd;
		dnnl_primitive_t r;
		const dnnl_memory_desc_t *a, *b;
		CHECK(dnnl_memory_get_memory_desc(ro[k].from, &a));
		CHECK(dnnl_memory_get_memory_desc(ro[k].to, &b));
		CHECK(dnnl_reorder_primitive_desc_create(&rpd, a, eng, b, eng, NULL));
		CHECK(dnnl_primitive_create(&r, rpd));
		dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ro[k].from}, {DNNL_ARG_TO, ro[k].to}};
		CHECK(dnnl_primitive_execute(r, s, 2, args));
		CHECK(dnnl_stream_wait(s));
		dnnl_primitive_destroy(r);
		dnnl_primitive_desc_destroy(rpd);
	}
	dnnl_primitive_t conv;
	CHECK(dnnl_primitive_create(&conv, pd));
	dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, mx}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, mo}};
	double rate = TIMED(secs, {
		CHECK(dnnl_primitive_execute(conv, s, 3, args));
		CHECK(dnnl_stream_wait(s));
	});
	{
		dnnl_primitive_desc_t rpd;
		dnnl_primitive_t r;
		const dnnl_memory_desc_t *a, *b;
		CHECK(dnnl_memory_get_memory_desc(mo, &a));
		CHECK(dnnl_memory_get_memory_desc(mo_user, &b));
		CHECK(dnnl_reorder_primitive_desc_create(&rpd, a, eng, b, eng, NULL));
		CHECK(dnnl_primitive_create(&r, rpd));
		dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, mo}, {DNNL_ARG_TO, mo_user}};
		CHECK(dnnl_primitive_execute(r, s, 2, ra));
		CHECK(dnnl_stream_wait(s));
		dnnl_primitive_destroy(r);
		dnnl_primitive_desc_destroy(rpd);
	}
	float *got;
	CHECK(dnnl_memory_get_data_handle(mo_user, (void **)&got));
	*maxdiff = 0;
	for (long i = 0; i < (long)n * oh * oh * sh->oc; i++)
		*maxdiff = fmax(*maxdiff, fabs((double)got[i] - want[i]));
	dnnl_primitive_destroy(conv);
	dnnl_primitive_desc_destroy(pd);
	dnnl_memory_t all[6] = {mx_user, mw_user, mo_user, mx, mw, mo};
	for (int k = 0; k < 6; k++)
		dnnl_memory_destroy(all[k]);
	return rate;
}

int main(int argc, char **argv)
{
	const double secs = argc > 1 ? atof(argv[1]) : 1.0;
	const int n = 64;
	static const struct shape shapes[] = {
		{"16->16 at 32x32 (layer 0, layer 1's second half)", 16, 32, 16, 1},
		{"12->12 at 32x32 (layer 1's first half)", 12, 32, 12, 1},
		{"16->16 at 16x16 (after stride 2)", 16, 16, 16, 1},
		{"16->16 at 8x8", 16, 8, 16, 1},
		{"16->16 stride 2, 32x32 -> 16x16 (router conv)", 16, 32, 16, 2},
		{"64->64 at 8x8 (ResNet-110's last stage)", 64, 8, 64, 1},
	};
	dnnl_engine_t eng;
	dnnl_stream_t s;
	CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
	CHECK(dnnl_stream_create(&s, eng, dnnl_stream_default_flags));
	printf("batch %d, 3x3 padding 1, fp32, one thread; GFLOPS = 2 x MACs / s\n", n);
	printf("%-50s %10s %14s %14s\n", "conv", "cigt", "oneDNN nhwc", "oneDNN blocked");
	for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
		const struct shape *sh = &shapes[k];
		struct cigt_geom g = {.c = sh->c, .h = sh->hw, .w = sh->hw, .oc = sh->oc,
				      .kh = 3, .kw = 3, .sh = sh->stride, .sw = sh->stride,
				      .ph = 1, .pw = 1};
		g.oh = g.ow = (sh->hw + 2 - 3) / sh->stride + 1;
		const size_t isz = (size_t)n * cigt_geom_in_size(&g);
		const size_t osz = (size_t)n * cigt_geom_out_size(&g);
		float *x = randf(isz, 1 + (unsigned)k), *w = randf((size_t)sh->oc * sh->c * 9, 7);
		float *wp = malloc((size_t)cigt_geom_cols(&g) * sh->oc * sizeof *wp);
		float *out = malloc(osz * sizeof *out);
		float *col = malloc((size_t)(cigt_conv_chunk_rows(&g) * cigt_geom_cols(&g)) *
				    sizeof *col);
		cigt_conv_pack_weight(&g, w, wp);
		double r0 = TIMED(secs, cigt_conv_forward(&g, n, x, wp, NULL, false, out, col, NULL,
							     NULL));
		double d1, d2;
		double r1 = onednn(eng, s, sh, n, x, w, out, secs, false, &d1);
		double r2 = onednn(eng, s, sh, n, x, w, out, secs, true, &d2);
		if (d1 > 1e-3 || d2 > 1e-3) {
			fprintf(stderr, "conv_bench: %s: oneDNN differs from cigt by %g / %g\n",
				sh->what, d1, d2);
			return 1;
		}
		double gf = 2.0 * (double)osz * (double)cigt_geom_cols(&g) * 1e-9;
		printf("%-50s %7.1f GF %9.1f GF %9.1f GF\n", sh->what, r0 * gf, r1 * gf, r2 * gf);
		free(x), free(w), free(wp), free(out), free(col);
	}
	dnnl_stream_destroy(s);
	dnnl_engine_destroy(eng);
	return 0;
}
