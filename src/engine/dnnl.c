/* The oneDNN backend (dnnl.h): one primitive per power-of-two batch size for each conv and
 * linear, weights reordered once at load, the bf16 input conversion and the scratchpad in the
 * caller's stream. */
#include <dlfcn.h>
#include <dnnl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/error.h"
#include "../common/util.h"
#include "dnnl.h"

struct cigt__dnn_op {
	int nsizes;                             /* primitives for batch 1 .. 1 << (nsizes - 1) */
	int threads;                            /* OpenMP team the primitives were made for */
	bool cvt;                               /* bf16: the input is converted first */
	bool add;                               /* a binary add post-op (the form's add) */
	dnnl_primitive_t prim[CIGT__DNN_SIZES]; /* the op at batch 1 << i */
	dnnl_primitive_t tobf[CIGT__DNN_SIZES]; /* fp32 -> bf16 of its input (cvt) */
	dnnl_memory_desc_t src[CIGT__DNN_SIZES], src32[CIGT__DNN_SIZES], dst[CIGT__DNN_SIZES];
	dnnl_memory_desc_t add32[CIGT__DNN_SIZES]; /* the added input (fp32, dst's dims) */
	dnnl_memory_desc_t wmd, bmd, scr[CIGT__DNN_SIZES];
	void *wdata; /* owned: the weights in the primitive's layout */
	float *bias; /* owned */
	size_t in_bytes; /* bf16 input copy at the largest batch */
	size_t scratch;  /* the largest oneDNN scratchpad */
	const char *impl[CIGT__DNN_SIZES];
};

struct cigt__dnn_stream {
	dnnl_stream_t s;
	unsigned char *scratch;
	size_t bytes;
};

/* ------------------------------------------------------------ the library */

static dnnl_engine_t eng;
static dnnl_status_t eng_status = dnnl_runtime_error;
static pthread_once_t eng_once = PTHREAD_ONCE_INIT;

/* The thread count of oneDNN's OpenMP runtime (Debian's libdnnl runs on libgomp), found in
 * the process rather than linked: the same runtime whichever compiler built cigt, and no
 * OpenMP build dependency. Missing (another threading runtime): left as it is. */
static void (*omp_set)(int);
static int (*omp_get)(void);

static void eng_init(void)
{
	eng_status = dnnl_engine_create(&eng, dnnl_cpu, 0);
	*(void **)&omp_set = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
	*(void **)&omp_get = dlsym(RTLD_DEFAULT, "omp_get_max_threads");
	if (!omp_set || !omp_get)
		omp_set = NULL, omp_get = NULL;
}

static int threads_get(void)
{
	return omp_get ? omp_get() : 1;
}

static void threads_set(int n)
{
	if (omp_set && omp_get() != n)
		omp_set(n);
}

static int engine(char *err, size_t errlen)
{
	pthread_once(&eng_once, eng_init);
	if (eng_status != dnnl_success)
		return cigt_fail(err, errlen, CIGT_EIO, "oneDNN: no CPU engine (status %d)",
				 (int)eng_status);
	return 0;
}

bool cigt__dnn_has_vnni(void)
{
	const dnnl_cpu_isa_t i = dnnl_get_effective_cpu_isa();
	return i == dnnl_cpu_isa_avx2_vnni || i == dnnl_cpu_isa_avx512_core_vnni ||
	       i == dnnl_cpu_isa_avx512_core_bf16 || i == dnnl_cpu_isa_avx512_core_amx;
}

bool cigt__dnn_has_bf16(void)
{
	const dnnl_cpu_isa_t i = dnnl_get_effective_cpu_isa();
	return i == dnnl_cpu_isa_avx512_core_bf16 || i == dnnl_cpu_isa_avx512_core_amx;
}

const char *cigt__dnn_isa(void)
{
	switch (dnnl_get_effective_cpu_isa()) {
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
	default: return "generic";
	}
}

/* ------------------------------------------------------------ making ops */

#define TRY(call, what)                                                                     \
	do {                                                                                \
		dnnl_status_t st_ = (call);                                                 \
		if (st_ != dnnl_success) {                                                  \
			rc = cigt_fail(err, errlen, CIGT_EINVAL, "oneDNN: %s failed (status %d)", \
				       what, (int)st_);                                     \
			goto out;                                                           \
		}                                                                           \
	} while (0)

static dnnl_data_type_t dt(enum cigt__dnn_type t)
{
	return t == CIGT__DNN_BF16 ? dnnl_bf16 : dnnl_f32;
}

/* The op's input type: fp32, bf16, or u8/s8 by the sign of its range. */
static dnnl_data_type_t src_dt(const struct cigt__dnn_form *f)
{
	if (f->type == CIGT__DNN_INT8)
		return f->in_lo >= 0 ? dnnl_u8 : dnnl_s8;
	return dt(f->type);
}

/* int8: the input's quantization scale (value = scale * integer). */
static float in_scale(const struct cigt__dnn_form *f)
{
	float m = CIGT_MAX(fabsf(f->in_lo), fabsf(f->in_hi));
	float s = m / (f->in_lo >= 0 ? 255.0f : 127.0f);
	return s > 0 && isfinite(s) ? s : 1.0f;
}

/* The shapes of one op at batch n: src/dst dims and tags, and its oneDNN op descriptor. */
struct shapes {
	bool conv;
	int nd;
	dnnl_dims_t sd, wd, dd, str, pl, pr;
	dnnl_format_tag_t stag, wtag;
};

static void shapes_at(struct shapes *sh, int n)
{
	sh->sd[0] = sh->dd[0] = n;
}

static int make_desc(const struct shapes *sh, const struct cigt__dnn_form *f,
		     const dnnl_memory_desc_t *w, dnnl_memory_desc_t *src, dnnl_memory_desc_t *dst,
		     dnnl_memory_desc_t *bias, void *desc, char *err, size_t errlen)
{
	int rc = 0;
	const enum cigt__dnn_type t = f->type;
	dnnl_memory_desc_t wany;
	dnnl_dims_t bd = {sh->wd[0]};
	TRY(dnnl_memory_desc_init_by_tag(src, sh->nd, sh->sd, src_dt(f), sh->stag),
	    "source layout");
	TRY(dnnl_memory_desc_init_by_tag(dst, sh->nd, sh->dd, f->dst_low ? dt(t) : dnnl_f32,
					 sh->stag), "output layout");
	TRY(dnnl_memory_desc_init_by_tag(bias, 1, bd, dnnl_f32, dnnl_a), "bias layout");
	if (!w) {
		TRY(dnnl_memory_desc_init_by_tag(&wany, sh->nd, sh->wd,
						 t == CIGT__DNN_INT8 ? dnnl_s8 : dt(t),
						 dnnl_format_tag_any), "weights layout");
		w = &wany;
	}
	if (sh->conv)
		TRY(dnnl_convolution_forward_desc_init(desc, dnnl_forward_inference,
						       dnnl_convolution_direct, src, w, bias, dst,
						       sh->str, sh->pl, sh->pr),
		    "convolution");
	else
		TRY(dnnl_inner_product_forward_desc_init(desc, dnnl_forward_inference, src, w, bias,
							 dst),
		    "inner product");
out:
	return rc;
}

/* Reorders the user's fp32 weights (tag wtag) into md, into freshly allocated memory; with
 * qscale (int8), each output channel o multiplied by qscale[o] on the way. */
static int reorder_weights(const struct shapes *sh, const float *w, const dnnl_memory_desc_t *md,
			   const float *qscale, void **data, char *err, size_t errlen)
{
	int rc = 0;
	dnnl_memory_desc_t umd;
	dnnl_memory_t um = NULL, wm = NULL;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t rpd = NULL;
	dnnl_primitive_t r = NULL;
	dnnl_stream_t s = NULL;
	size_t bytes = dnnl_memory_desc_get_size(md);
	if (!(*data = aligned_alloc(64, (bytes + 63) / 64 * 64)))
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	TRY(dnnl_memory_desc_init_by_tag(&umd, sh->nd, sh->wd, dnnl_f32, sh->wtag), "weights");
	TRY(dnnl_memory_create(&um, &umd, eng, (void *)w), "weights memory");
	TRY(dnnl_memory_create(&wm, md, eng, *data), "weights memory");
	if (qscale) {
		TRY(dnnl_primitive_attr_create(&attr), "attributes");
		TRY(dnnl_primitive_attr_set_output_scales(attr, sh->wd[0], 1, qscale),
		    "weight scales");
	}
	TRY(dnnl_reorder_primitive_desc_create(&rpd, &umd, eng, md, eng, attr), "weights reorder");
	TRY(dnnl_primitive_create(&r, rpd), "weights reorder");
	TRY(dnnl_stream_create(&s, eng, dnnl_stream_default_flags), "stream");
	dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, um}, {DNNL_ARG_TO, wm}};
	TRY(dnnl_primitive_execute(r, s, 2, a), "weights reorder");
	TRY(dnnl_stream_wait(s), "weights reorder");
out:
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	if (s)
		dnnl_stream_destroy(s);
	if (r)
		dnnl_primitive_destroy(r);
	if (rpd)
		dnnl_primitive_desc_destroy(rpd);
	if (um)
		dnnl_memory_destroy(um);
	if (wm)
		dnnl_memory_destroy(wm);
	if (rc) {
		free(*data);
		*data = NULL;
	}
	return rc;
}

/* int8: per output channel o, 1 / sw[o] with sw[o] = max |w[o]| / 127 (the weights' scale;
 * w is [oc][row] in both layouts), the output scale sin * sw[o] that brings the s32 sums back
 * to fp32, and the bias divided by it (oneDNN 2.x adds the bias before the output scale). */
static int int8_scales(const struct shapes *sh, const float *w, const float *b, float sin,
		       float **wq, float **outs, float **biasq, char *err, size_t errlen)
{
	const dnnl_dim_t oc = sh->wd[0];
	int64_t row = 1;
	for (int d = 1; d < sh->nd; d++)
		row *= sh->wd[d];
	*wq = cigt_alloc_floats(oc);
	*outs = cigt_alloc_floats(oc);
	*biasq = cigt_alloc_floats(oc);
	if (!*wq || !*outs || !*biasq)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	for (dnnl_dim_t o = 0; o < oc; o++) {
		float mx = 0;
		for (int64_t k = 0; k < row; k++)
			mx = CIGT_MAX(mx, fabsf(w[o * row + k]));
		float sw = mx > 0 ? mx / 127.0f : 1.0f;
		(*wq)[o] = 1.0f / sw;
		(*outs)[o] = sin * sw;
		(*biasq)[o] = (b ? b[o] : 0.0f) / (*outs)[o];
	}
	return 0;
}

/* The conversion of the op's fp32 input at batch size i to its type (bf16, or int8 at scale
 * sin). */
static int make_cvt(struct cigt__dnn_op *op, const struct shapes *sh,
		    const struct cigt__dnn_form *f, int i, float sin, char *err, size_t errlen)
{
	int rc = 0;
	dnnl_primitive_attr_t qa = NULL;
	dnnl_primitive_desc_t cpd = NULL;
	TRY(dnnl_memory_desc_init_by_tag(&op->src32[i], sh->nd, sh->sd, dnnl_f32, sh->stag),
	    "source layout");
	if (f->type == CIGT__DNN_INT8) {
		const float inv = 1.0f / sin;
		TRY(dnnl_primitive_attr_create(&qa), "attributes");
		TRY(dnnl_primitive_attr_set_output_scales(qa, 1, 0, &inv), "input scale");
	}
	TRY(dnnl_reorder_primitive_desc_create(&cpd, &op->src32[i], eng, &op->src[i], eng, qa),
	    "input conversion");
	TRY(dnnl_primitive_create(&op->tobf[i], cpd), "input conversion");
	op->in_bytes = CIGT_MAX(op->in_bytes, (dnnl_memory_desc_get_size(&op->src[i]) + 63) / 64 * 64);
out:
	if (qa)
		dnnl_primitive_attr_destroy(qa);
	if (cpd)
		dnnl_primitive_desc_destroy(cpd);
	return rc;
}

/* The op's primitive at batch size 1 << i with attributes attr (its post-ops set here: they
 * name the batch size when one adds a tensor). The largest size comes first, with weights
 * "any": its choice of weights layout is every size's. */
static int make_size(struct cigt__dnn_op *op, struct shapes *sh, const struct cigt__dnn_form *f,
		     bool relu, int i, dnnl_primitive_attr_t attr, float sin, char *err,
		     size_t errlen)
{
	union {
		dnnl_convolution_desc_t c;
		dnnl_inner_product_desc_t ip;
	} d;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_post_ops_t po = NULL;
	shapes_at(sh, 1 << i);
	int rc = make_desc(sh, f, i == op->nsizes - 1 ? NULL : &op->wmd, &op->src[i], &op->dst[i],
			   &op->bmd, &d, err, errlen);
	if (rc)
		return rc;
	TRY(dnnl_post_ops_create(&po), "post-ops");
	if (f->add) {
		TRY(dnnl_memory_desc_init_by_tag(&op->add32[i], sh->nd, sh->dd, dnnl_f32, sh->stag),
		    "added input");
		TRY(dnnl_post_ops_append_binary(po, dnnl_binary_add, &op->add32[i]), "residual add");
	}
	if (relu)
		TRY(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f), "ReLU");
	TRY(dnnl_primitive_attr_set_post_ops(attr, po), "post-ops");
	TRY(dnnl_primitive_desc_create(&pd, &d, attr, eng, NULL), "primitive descriptor");
	if (i == op->nsizes - 1)
		op->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	op->scr[i] = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
	op->scratch = CIGT_MAX(op->scratch, dnnl_memory_desc_get_size(&op->scr[i]));
	/* oneDNN's name of the kernel lives with its descriptor: a copy is kept. */
	const char *impl = NULL;
	dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
	if (!(op->impl[i] = strdup(impl ? impl : "?"))) {
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
		goto out;
	}
	TRY(dnnl_primitive_create(&op->prim[i], pd), "primitive");
	if (op->cvt)
		rc = make_cvt(op, sh, f, i, sin, err, errlen);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (po)
		dnnl_post_ops_destroy(po);
	return rc;
}

static int op_new(struct shapes *sh, const float *w, const float *b, bool relu,
		  const struct cigt__dnn_form *f, int max_batch, int threads,
		  struct cigt__dnn_op **out, char *err, size_t errlen)
{
	*out = NULL;
	int rc = engine(err, errlen);
	if (rc)
		return rc;
	CIGT_ASSERT(max_batch >= 1 && max_batch <= 1 << (CIGT__DNN_SIZES - 1) &&
		    !(max_batch & (max_batch - 1)));
	CIGT_ASSERT(!f->add || sh->conv);
	CIGT_ASSERT(f->type != CIGT__DNN_INT8 || (!f->src_low && !f->dst_low));
	struct cigt__dnn_op *op = calloc(1, sizeof *op);
	if (!op)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	dnnl_primitive_attr_t attr = NULL;
	float *wq = NULL, *outs = NULL, *biasq = NULL; /* int8 only */
	const float sin = in_scale(f);
	const dnnl_dim_t oc = sh->wd[0];
	/* oneDNN sizes a primitive's parallel work by the thread count it sees when making it. */
	const int saved = threads_get();
	op->threads = threads < 1 ? 1 : threads;
	threads_set(op->threads);
	op->cvt = f->type != CIGT__DNN_F32 && !f->src_low;
	op->add = f->add;
	while (1 << op->nsizes <= max_batch)
		op->nsizes++;
	TRY(dnnl_primitive_attr_create(&attr), "attributes");
	TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad");
	if (f->type == CIGT__DNN_INT8) {
		if ((rc = int8_scales(sh, w, b, sin, &wq, &outs, &biasq, err, errlen)))
			goto out;
		TRY(dnnl_primitive_attr_set_output_scales(attr, oc, 1 << 1, outs), "output scales");
	}
	for (int i = op->nsizes - 1; i >= 0 && !rc; i--)
		rc = make_size(op, sh, f, relu, i, attr, sin, err, errlen);
	if (rc || (rc = reorder_weights(sh, w, &op->wmd, wq, &op->wdata, err, errlen)))
		goto out;
	if (!(op->bias = cigt_alloc_floats(oc))) {
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
		goto out;
	}
	for (dnnl_dim_t o = 0; o < oc; o++)
		op->bias[o] = biasq ? biasq[o] : b ? b[o] : 0.0f;
out:
	free(wq);
	free(outs);
	free(biasq);
	threads_set(saved);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	if (rc)
		cigt__dnn_op_free(op);
	else
		*out = op;
	return rc;
}

int cigt__dnn_conv_new(const struct cigt_geom *g, const float *w, const float *b, bool relu,
		       const struct cigt__dnn_form *f, int max_batch, int threads,
		       struct cigt__dnn_op **out, char *err, size_t errlen)
{
	struct shapes sh = {
		.conv = true, .nd = 4,
		.sd = {0, g->c, g->h, g->w}, .wd = {g->oc, g->c, g->kh, g->kw},
		.dd = {0, g->oc, g->oh, g->ow}, .str = {g->sh, g->sw}, .pl = {g->ph, g->pw},
		/* the right and bottom padding that makes the output exactly oh x ow */
		.pr = {(g->oh - 1) * g->sh + g->kh - g->h - g->ph,
		       (g->ow - 1) * g->sw + g->kw - g->w - g->pw},
		.stag = dnnl_nhwc, .wtag = dnnl_ohwi,
	};
	return op_new(&sh, w, b, relu, f, max_batch, threads, out, err, errlen);
}

int cigt__dnn_linear_new(int fin, int fout, const float *w, const float *b, bool relu,
			 const struct cigt__dnn_form *f, int max_batch, int threads,
			 struct cigt__dnn_op **out, char *err, size_t errlen)
{
	struct shapes sh = {.conv = false, .nd = 2, .sd = {0, fin}, .wd = {fout, fin},
			    .dd = {0, fout}, .stag = dnnl_nc, .wtag = dnnl_oi};
	return op_new(&sh, w, b, relu, f, max_batch, threads, out, err, errlen);
}

void cigt__dnn_op_free(struct cigt__dnn_op *op)
{
	if (!op)
		return;
	for (int i = 0; i < CIGT__DNN_SIZES; i++) {
		if (op->prim[i])
			dnnl_primitive_destroy(op->prim[i]);
		if (op->tobf[i])
			dnnl_primitive_destroy(op->tobf[i]);
		free((void *)op->impl[i]);
	}
	free(op->wdata);
	free(op->bias);
	free(op);
}

size_t cigt__dnn_op_scratch(const struct cigt__dnn_op *op)
{
	return op->scratch + op->in_bytes;
}

static int size_index(const struct cigt__dnn_op *op, int n)
{
	int i = 0;
	while (i + 1 < op->nsizes && 1 << (i + 1) <= n)
		i++;
	return i;
}

const char *cigt__dnn_op_impl(const struct cigt__dnn_op *op, int n)
{
	return op->impl[size_index(op, n)];
}

/* ------------------------------------------------------------ running */

struct cigt__dnn_stream *cigt__dnn_stream_new(size_t scratch_bytes)
{
	if (engine(NULL, 0))
		return NULL;
	struct cigt__dnn_stream *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->bytes = scratch_bytes;
	if ((scratch_bytes &&
	     !(s->scratch = aligned_alloc(64, (scratch_bytes + 63) / 64 * 64))) ||
	    dnnl_stream_create(&s->s, eng, dnnl_stream_default_flags) != dnnl_success) {
		free(s->scratch);
		free(s);
		return NULL;
	}
	return s;
}

void cigt__dnn_stream_free(struct cigt__dnn_stream *s)
{
	if (!s)
		return;
	dnnl_stream_destroy(s->s);
	free(s->scratch);
	free(s);
}

/* A failure here is a planning bug (shapes and sizes are fixed at load): it stops the
 * process rather than answer wrongly. */
#define RUN(call)                                                                       \
	do {                                                                            \
		dnnl_status_t st_ = (call);                                             \
		if (st_ != dnnl_success) {                                              \
			fprintf(stderr, "cigt: oneDNN: %s: status %d\n", #call, (int)st_); \
			abort();                                                        \
		}                                                                       \
	} while (0)

void cigt__dnn_run(const struct cigt__dnn_op *op, struct cigt__dnn_stream *s, int n,
		   const float *in, const float *add, float *out)
{
	const int i = size_index(op, n);
	CIGT_ASSERT(n == 1 << i && op->scratch + op->in_bytes <= s->bytes);
	threads_set(op->threads);
	dnnl_memory_t src, dst, wei, bias, scr = NULL, src32 = NULL, addm = NULL;
	CIGT_ASSERT(!op->add == !add);
	void *x = (void *)in;
	if (op->cvt) {
		x = s->scratch + op->scratch;
		RUN(dnnl_memory_create(&src32, &op->src32[i], eng, (void *)in));
	}
	RUN(dnnl_memory_create(&src, &op->src[i], eng, x));
	RUN(dnnl_memory_create(&dst, &op->dst[i], eng, out));
	RUN(dnnl_memory_create(&wei, &op->wmd, eng, op->wdata));
	RUN(dnnl_memory_create(&bias, &op->bmd, eng, op->bias));
	if (op->scratch)
		RUN(dnnl_memory_create(&scr, &op->scr[i], eng, s->scratch));
	if (op->add)
		RUN(dnnl_memory_create(&addm, &op->add32[i], eng, (void *)add));
	if (op->cvt) {
		dnnl_exec_arg_t ca[2] = {{DNNL_ARG_FROM, src32}, {DNNL_ARG_TO, src}};
		RUN(dnnl_primitive_execute(op->tobf[i], s->s, 2, ca));
	}
	dnnl_exec_arg_t a[6] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei},
				{DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}};
	int na = 4;
	if (scr)
		a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, scr};
	if (addm)
		a[na++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, addm};
	RUN(dnnl_primitive_execute(op->prim[i], s->s, na, a));
	RUN(dnnl_stream_wait(s->s));
	dnnl_memory_destroy(src);
	dnnl_memory_destroy(dst);
	dnnl_memory_destroy(wei);
	dnnl_memory_destroy(bias);
	if (scr)
		dnnl_memory_destroy(scr);
	if (src32)
		dnnl_memory_destroy(src32);
	if (addm)
		dnnl_memory_destroy(addm);
}
