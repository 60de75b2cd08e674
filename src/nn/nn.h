/* Op kernels on channels-last (NHWC) batches: a batch of n samples of shape H x W x C is n*H*W
 * rows of C contiguous values. One file per op family, forward and backward side by side.
 * Conventions for backward passes: gradients are dL/d(theta); parameter gradients are
 * accumulated (+=); input gradients are overwritten (=); a NULL input-gradient pointer skips it. */
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

/* Rows of im2col processed per gemm call (the col scratch holds this many rows). */
int64_t cigt_conv_chunk_rows(const struct cigt_geom *g);
/* Conv output rows per band of cigt_conv_pool_forward, and the values its tmp scratch holds. */
int64_t cigt_conv_pool_band_rows(const struct cigt_geom *g, const struct cigt_geom *pg);
int64_t cigt_conv_pool_tmp(const struct cigt_geom *g, const struct cigt_geom *pg);

/* Every kernel exists in float (cigt_NAME, used by the engine and the trainer) and in double
 * (cigt_NAME_d, used by the gradient checks): the same source is compiled twice. */
#define CIGT_NN_REAL float
#define CIGT_NN(name) cigt_##name
#include "nn_decl.h"
#undef CIGT_NN_REAL
#undef CIGT_NN
#define CIGT_NN_REAL double
#define CIGT_NN(name) cigt_##name##_d
#include "nn_decl.h"
#undef CIGT_NN_REAL
#undef CIGT_NN

#endif
