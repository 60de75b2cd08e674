/* Kernel prototypes, included twice by nn.h: once with CIGT_NN_REAL = float, once = double.
 * No include guard on purpose. Shapes are channels-last; see nn.h for the conventions. */

/* --- conv.c ---
 * in [n, h, w, c]; weight packed [oc, kh, kw, c]; out [n, oh, ow, oc]. */
/* Writes rows [row0, row0 + nrows) of the im2col matrix of a batch (row = one output pixel of
 * one sample, n*oh*ow rows in all) to col (nrows x cols). Padding reads as 0. */
void CIGT_NN(im2col)(const struct cigt_geom *g, const CIGT_NN_REAL *in, int64_t row0,
		     int64_t nrows, CIGT_NN_REAL *col);
/* Adds col (nrows x cols) back into the input gradient (the adjoint of im2col). */
void CIGT_NN(col2im)(const struct cigt_geom *g, const CIGT_NN_REAL *col, int64_t row0,
		     int64_t nrows, CIGT_NN_REAL *dx);
/* [oc, c, kh, kw] (PyTorch order) <-> [oc, kh, kw, c] (this library's order). */
void CIGT_NN(conv_pack_weight)(const struct cigt_geom *g, const CIGT_NN_REAL *w,
			       CIGT_NN_REAL *packed);
void CIGT_NN(conv_unpack_weight)(const struct cigt_geom *g, const CIGT_NN_REAL *packed,
				 CIGT_NN_REAL *w);
/* out = im2col(in) . w^T + b (b may be NULL; relu fuses max(0, .)). col is scratch of
 * cigt_conv_chunk_rows(g) * cols values (unused when pointwise). ns_* accumulate time when
 * non-NULL. */
void CIGT_NN(conv_forward)(const struct cigt_geom *g, int n, const CIGT_NN_REAL *in,
			   const CIGT_NN_REAL *w, const CIGT_NN_REAL *b, bool relu,
			   CIGT_NN_REAL *out, CIGT_NN_REAL *col, uint64_t *ns_im2col,
			   uint64_t *ns_gemm);
/* Convolution (+ bias, + relu) followed by max pooling with kernel == stride and no padding
 * (pg: the pooling geometry on the conv output; the conv's output height and width must be
 * multiples of the pooling kernel), computed a band of pooled rows at a time so the conv output
 * never leaves the cache. col as above; tmp holds cigt_conv_chunk_rows(g) rounded up to a band,
 * times oc values (see cigt_conv_pool_tmp). out [n, pg.oh, pg.ow, oc]. */
void CIGT_NN(conv_pool_forward)(const struct cigt_geom *g, const struct cigt_geom *pg, int n,
				const CIGT_NN_REAL *in, const CIGT_NN_REAL *w,
				const CIGT_NN_REAL *b, bool relu, CIGT_NN_REAL *out,
				CIGT_NN_REAL *col, CIGT_NN_REAL *tmp, uint64_t *ns_im2col,
				uint64_t *ns_gemm, uint64_t *ns_pool);
/* dw (packed) += dout^T . im2col(in); db += column sums of dout (db may be NULL);
 * dx = col2im(dout . w) when dx != NULL. col and dcol are scratch like col above. */
void CIGT_NN(conv_backward)(const struct cigt_geom *g, int n, const CIGT_NN_REAL *in,
			    const CIGT_NN_REAL *w, const CIGT_NN_REAL *dout, CIGT_NN_REAL *dw,
			    CIGT_NN_REAL *db, CIGT_NN_REAL *dx, CIGT_NN_REAL *col,
			    CIGT_NN_REAL *dcol);

/* --- linear.c ---  in [n, fin], w [fout, fin], out [n, fout]. */
void CIGT_NN(linear_forward)(int n, int fin, int fout, const CIGT_NN_REAL *in,
			     const CIGT_NN_REAL *w, const CIGT_NN_REAL *b, bool relu,
			     CIGT_NN_REAL *out);
/* dw += dout^T . in; db += column sums (db may be NULL); dx = dout . w (if dx). */
void CIGT_NN(linear_backward)(int n, int fin, int fout, const CIGT_NN_REAL *in,
			      const CIGT_NN_REAL *w, const CIGT_NN_REAL *dout, CIGT_NN_REAL *dw,
			      CIGT_NN_REAL *db, CIGT_NN_REAL *dx);

/* --- pool.c ---  in [n, h, w, c] -> out [n, oh, ow, c]. */
void CIGT_NN(maxpool_forward)(const struct cigt_geom *g, int n, const CIGT_NN_REAL *in,
			      CIGT_NN_REAL *out);
/* Also records, per output value, the index into `in` of the winning input (for backward). */
void CIGT_NN(maxpool_forward_idx)(const struct cigt_geom *g, int n, const CIGT_NN_REAL *in,
				  CIGT_NN_REAL *out, int32_t *idx);
/* dx = scatter of dout to the recorded winners (dx is n * in_size). */
void CIGT_NN(maxpool_backward)(const struct cigt_geom *g, int n, const CIGT_NN_REAL *dout,
			       const int32_t *idx, CIGT_NN_REAL *dx);
/* The same through the ReLU before the pool in one pass: winners whose ReLU output y is not
 * positive get nothing. Equal, bit for bit, to maxpool_backward then relu_backward(y). */
void CIGT_NN(maxpool_relu_backward)(const struct cigt_geom *g, int n, const CIGT_NN_REAL *dout,
				    const int32_t *idx, const CIGT_NN_REAL *y, CIGT_NN_REAL *dx);
void CIGT_NN(avgpool_forward)(const struct cigt_geom *g, int n, const CIGT_NN_REAL *in,
			      CIGT_NN_REAL *out);
void CIGT_NN(avgpool_backward)(const struct cigt_geom *g, int n, const CIGT_NN_REAL *dout,
			       CIGT_NN_REAL *dx);

/* --- batchnorm.c ---  rows of c channels (n*h*w rows for a feature map, n for a vector). */
/* Training mode: normalises with the batch's mean and biased variance, saves them for the
 * backward pass, and updates the running statistics (unbiased variance, PyTorch's momentum
 * convention). With fewer than 2 rows the running statistics are used and left unchanged. */
void CIGT_NN(batchnorm_train_forward)(int64_t rows, int c, const CIGT_NN_REAL *x,
				      const CIGT_NN_REAL *gamma, const CIGT_NN_REAL *beta,
				      double eps, double momentum, CIGT_NN_REAL *run_mean,
				      CIGT_NN_REAL *run_var, CIGT_NN_REAL *y,
				      CIGT_NN_REAL *save_mean, CIGT_NN_REAL *save_invstd);
/* The pieces of the two functions here, for callers that split the rows across threads:
 * sums (x, or (x - mean)^2 when mean != NULL) accumulated per channel into acc; the statistics
 * from the sums of all rows; and the parameter-gradient sums (accumulated into sdy and sdyx,
 * sdyx = sum dy * (x - mean)) and the input gradient from them. */
void CIGT_NN(batchnorm_sums)(int64_t rows, int c, const CIGT_NN_REAL *x, const double *mean,
			     double *acc);
void CIGT_NN(batchnorm_stats)(int64_t rows, int c, const double *sum, const double *sqdev,
			      double eps, double momentum, CIGT_NN_REAL *run_mean,
			      CIGT_NN_REAL *run_var, CIGT_NN_REAL *save_mean,
			      CIGT_NN_REAL *save_invstd);
void CIGT_NN(batchnorm_apply)(int64_t rows, int c, const CIGT_NN_REAL *x,
			      const CIGT_NN_REAL *gamma, const CIGT_NN_REAL *beta,
			      const CIGT_NN_REAL *save_mean, const CIGT_NN_REAL *save_invstd,
			      CIGT_NN_REAL *y);
void CIGT_NN(batchnorm_grad_sums)(int64_t rows, int c, const CIGT_NN_REAL *x,
				  const CIGT_NN_REAL *dy, const CIGT_NN_REAL *save_mean,
				  double *sdy, double *sdyx);
/* dgamma += sdyx * invstd, dbeta += sdy; dx for `rows` rows of a batch of `total` rows. */
void CIGT_NN(batchnorm_grad_apply)(int64_t rows, int64_t total, int c, const CIGT_NN_REAL *x,
				   const CIGT_NN_REAL *dy, const CIGT_NN_REAL *gamma,
				   const CIGT_NN_REAL *save_mean, const CIGT_NN_REAL *save_invstd,
				   const double *sdy, const double *sdyx, CIGT_NN_REAL *dgamma,
				   CIGT_NN_REAL *dbeta, CIGT_NN_REAL *dx);
/* Gradients of the training-mode forward (x is its input). dgamma, dbeta +=; dx = (if dx).
 * When the forward used the running statistics (rows < 2) it is the gradient of the affine. */
void CIGT_NN(batchnorm_backward)(int64_t rows, int c, const CIGT_NN_REAL *x,
				 const CIGT_NN_REAL *dy, const CIGT_NN_REAL *gamma,
				 const CIGT_NN_REAL *save_mean, const CIGT_NN_REAL *save_invstd,
				 CIGT_NN_REAL *dgamma, CIGT_NN_REAL *dbeta, CIGT_NN_REAL *dx);

/* --- act.c --- */
/* y = x * scale[c] + shift[c] over rows of c channels (in place allowed), relu optional. */
void CIGT_NN(affine_forward)(int64_t rows, int c, const CIGT_NN_REAL *x,
			     const CIGT_NN_REAL *scale, const CIGT_NN_REAL *shift, bool relu,
			     CIGT_NN_REAL *y);
void CIGT_NN(relu_forward)(int64_t n, const CIGT_NN_REAL *x, CIGT_NN_REAL *y);
/* y = a + b (a residual add), relu optional; y may be a or b. */
void CIGT_NN(add_forward)(int64_t n, const CIGT_NN_REAL *a, const CIGT_NN_REAL *b, bool relu,
			  CIGT_NN_REAL *y);
/* dx = dy where y > 0, else 0 (in place allowed: dx may be dy). */
void CIGT_NN(relu_backward)(int64_t n, const CIGT_NN_REAL *y, const CIGT_NN_REAL *dy,
			    CIGT_NN_REAL *dx);
/* y = x * mask, mask holding 0 or 1/(1-p); the backward is the same product on gradients. */
void CIGT_NN(dropout_apply)(int64_t n, const CIGT_NN_REAL *x, const CIGT_NN_REAL *mask,
			    CIGT_NN_REAL *y);
/* HWC <-> CHW order for each of n samples (the channels-first flatten and its inverse). */
void CIGT_NN(hwc_to_chw)(int n, int h, int w, int c, const CIGT_NN_REAL *in, CIGT_NN_REAL *out);
void CIGT_NN(chw_to_hwc)(int n, int h, int w, int c, const CIGT_NN_REAL *in, CIGT_NN_REAL *out);
/* Index of the largest of x[0..k), lowest index on a tie. */
int CIGT_NN(argmax)(const CIGT_NN_REAL *x, int k);
