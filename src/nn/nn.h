/* Op kernels on channels-last (NHWC) batches: a batch of n samples of shape H x W x C is n*H*W
 * rows of C contiguous floats. One file per op family, forward and backward side by side.
 * Conventions for backward passes (the trainer's): gradients are dL/d(theta); parameter gradients
 * are accumulated (+=); an input gradient pointer of NULL skips that gradient. */
#ifndef CIGT_NN_H
#define CIGT_NN_H

#include <stdbool.h>
#include <stdint.h>

/* Geometry shared by convolution and pooling: input c x h x w, output oc x oh x ow. */
struct cigt_geom {
	int c, h, w;
	int oc, oh, ow;
	int kh, kw, sh, sw, ph, pw;
};

static inline int64_t cigt_geom_in_size(const struct cigt_geom *g)
{
	return (int64_t)g->h * g->w * g->c;
}
static inline int64_t cigt_geom_out_size(const struct cigt_geom *g)
{
	return (int64_t)g->oh * g->ow * g->oc;
}
/* Columns of the im2col matrix: kh * kw * c, ordered (ky, kx, channel). */
static inline int64_t cigt_geom_cols(const struct cigt_geom *g)
{
	return (int64_t)g->kh * g->kw * g->c;
}
/* True when the input itself is the im2col matrix (1x1 kernel, stride 1, no padding). */
static inline bool cigt_geom_is_pointwise(const struct cigt_geom *g)
{
	return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

/* --- conv.c --- */
/* Writes rows [row0, row0 + nrows) of the im2col matrix of a batch (row = one output pixel of
 * one sample, n*oh*ow rows in all) to col (nrows x cols). Padding reads as 0. */
void cigt_im2col(const struct cigt_geom *g, const float *in, int64_t row0, int64_t nrows,
		 float *col);
/* Adds col (nrows x cols) back into the input gradient (the adjoint of cigt_im2col). */
void cigt_col2im(const struct cigt_geom *g, const float *col, int64_t row0, int64_t nrows,
		 float *dx);
/* Packs a [oc, c, kh, kw] weight (PyTorch order) to [oc, kh, kw, c] (this engine's order). */
void cigt_conv_pack_weight(const struct cigt_geom *g, const float *w, float *packed);
void cigt_conv_unpack_weight(const struct cigt_geom *g, const float *packed, float *w);
/* Rows of im2col processed per sgemm call, for a col buffer of this many floats. */
int64_t cigt_conv_chunk_rows(const struct cigt_geom *g);
/* out[n*oh*ow, oc] = im2col(in) . w^T + b, with w packed [oc, cols]; b may be NULL; relu fuses
 * max(0, .). col is scratch of cigt_conv_chunk_rows(g) * cols floats (unused when pointwise).
 * ns_im2col / ns_gemm accumulate time when non-NULL. */
void cigt_conv_forward(const struct cigt_geom *g, int n, const float *in, const float *w,
		       const float *b, bool relu, float *out, float *col, uint64_t *ns_im2col,
		       uint64_t *ns_gemm);

/* --- linear.c --- */
/* out[n, fout] = in[n, fin] . w^T + b (w is [fout, fin]); b may be NULL; relu fuses. */
void cigt_linear_forward(int n, int fin, int fout, const float *in, const float *w,
			 const float *b, bool relu, float *out);

/* --- pool.c --- */
void cigt_maxpool_forward(const struct cigt_geom *g, int n, const float *in, float *out);
void cigt_avgpool_forward(const struct cigt_geom *g, int n, const float *in, float *out);

/* --- act.c --- */
/* y = x * scale[c] + shift[c] over rows of c channels (in place allowed), relu optional. */
void cigt_affine_forward(int64_t rows, int c, const float *x, const float *scale,
			 const float *shift, bool relu, float *y);
void cigt_relu_forward(int64_t n, const float *x, float *y);
/* HWC -> CHW order for each of n samples (the channels-first flatten). */
void cigt_hwc_to_chw(int n, int h, int w, int c, const float *in, float *out);
void cigt_chw_to_hwc(int n, int h, int w, int c, const float *in, float *out);
/* Index of the largest of x[0..k), lowest index on a tie. */
int cigt_argmax(const float *x, int k);

#endif
