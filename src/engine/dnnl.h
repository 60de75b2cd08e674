/* The oneDNN backend of the engine (Debian's libdnnl 2.6): convolutions and fully connected
 * layers as oneDNN primitives on the engine's channels-last activations, in fp32 or bf16.
 * engine.c plans an op chain with these for its convs and linears when the model is loaded with
 * the oneDNN backend; this file knows nothing of chains, routes or workspaces beyond the
 * stream it is given.
 *
 * A primitive is made for one batch size, so each op holds one per power of two up to the
 * chain's pass size (1, 2, 4, ... sub): the engine runs a chain on power-of-two slices of its
 * rows. Weights are reordered once, at load, into the layout (and type) oneDNN picks for them.
 * Activations stay fp32 in the engine's buffers, except between two bf16 ops that follow each
 * other (the first writes bf16, the second reads it as it is); otherwise a bf16 op converts its
 * input as it reads it and writes fp32 (accumulation is fp32 throughout). A conv may add a
 * second fp32 input of its output's shape before its ReLU (a residual block's identity
 * shortcut, fused). Not a public interface. */
#ifndef CIGT_ENGINE_DNNL_H
#define CIGT_ENGINE_DNNL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../nn/nn.h"

/* Batch sizes an op has primitives for: 1, 2, 4, ..., 1 << (CIGT__DNN_SIZES - 1). */
#define CIGT__DNN_SIZES 8

enum cigt__dnn_type { CIGT__DNN_F32, CIGT__DNN_BF16, CIGT__DNN_INT8 };

/* How an op computes and what it reads and writes. */
struct cigt__dnn_form {
	enum cigt__dnn_type type; /* weights and input in this type, sums in fp32 */
	bool src_low;             /* bf16: the input arrives in bf16 (the op before wrote it) */
	bool dst_low;             /* bf16: write the output in bf16 (the op after reads it) */
	bool add;                 /* conv: + a second fp32 input shaped as the output, then ReLU */
	/* int8: the input's calibrated range. It is quantized per tensor to u8 when in_lo >= 0
	 * (after a ReLU), else to s8, with scale max(|in_lo|, |in_hi|) / 255 (or 127); weights
	 * per output channel to s8 with scale max |w| / 127; the sums (s32) are scaled back to
	 * fp32 before the bias, the add and the ReLU. */
	float in_lo, in_hi;
};

struct cigt__dnn_op;     /* one conv or linear, every batch size; read-only once made */
struct cigt__dnn_stream; /* one per thread (per workspace): oneDNN stream and scratch */

/* A convolution of geometry g on NHWC rows, weights packed [oc][kh][kw][c] (the engine's
 * cigt_conv_pack_weight order, batch norm folded in), bias b[oc], ReLU fused when relu; batch
 * sizes 1 .. max_batch (a power of two <= 1 << (CIGT__DNN_SIZES - 1)), each call on `threads`
 * OpenMP threads (oneDNN fixes a primitive's team when it makes it). */
int cigt__dnn_conv_new(const struct cigt_geom *g, const float *w, const float *b, bool relu,
		       const struct cigt__dnn_form *f, int max_batch, int threads,
		       struct cigt__dnn_op **out, char *err, size_t errlen);
/* A fully connected layer out[n, fout] = in[n, fin] . w^T + b (w [fout][fin]), ReLU fused
 * (f->add must be false). */
int cigt__dnn_linear_new(int fin, int fout, const float *w, const float *b, bool relu,
			 const struct cigt__dnn_form *f, int max_batch, int threads,
			 struct cigt__dnn_op **out, char *err, size_t errlen);
void cigt__dnn_op_free(struct cigt__dnn_op *op);
/* Bytes of stream scratch the op needs at its largest batch (oneDNN's scratchpad plus the bf16
 * copy of its input). */
size_t cigt__dnn_op_scratch(const struct cigt__dnn_op *op);
/* oneDNN's name for the kernel it runs at batch size n (the largest power of two <= n). */
const char *cigt__dnn_op_impl(const struct cigt__dnn_op *op, int n);

/* A stream with scratch_bytes of scratch (the largest cigt__dnn_op_scratch of its engine). */
struct cigt__dnn_stream *cigt__dnn_stream_new(size_t scratch_bytes);
void cigt__dnn_stream_free(struct cigt__dnn_stream *s);

/* Runs op on n rows, n a power of two it has a primitive for, on the threads it was made for:
 * in and out in the types its form says (fp32 unless src_low / dst_low), add (the form's
 * second input, fp32) or NULL. */
void cigt__dnn_run(const struct cigt__dnn_op *op, struct cigt__dnn_stream *s, int n,
		   const float *in, const float *add, float *out);

/* Whether oneDNN's kernels on this CPU have int8 dot products (VNNI) and bf16 ones. */
bool cigt__dnn_has_vnni(void);
bool cigt__dnn_has_bf16(void);
/* oneDNN's effective ISA, in its own words ("avx512_core_bf16", "avx2", ...). */
const char *cigt__dnn_isa(void);

#endif
