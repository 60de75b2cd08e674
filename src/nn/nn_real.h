/* Selects the element type a kernel source file is compiled for: float by default, double when
 * CIGT_NN_DOUBLE is defined (meson builds every file of src/nn/ both ways). */
#ifndef CIGT_NN_REAL_H
#define CIGT_NN_REAL_H

#include <cblas.h>

#ifdef CIGT_NN_DOUBLE
typedef double real_t;
#define NN(name) cigt_##name##_d
#define NN_GEMM cblas_dgemm
#define NN_LOWEST (-1.7976931348623157e308)
#else
typedef float real_t;
#define NN(name) cigt_##name
#define NN_GEMM cblas_sgemm
#define NN_LOWEST (-3.402823466e38f)
#endif

#endif
