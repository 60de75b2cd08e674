/* A trellis model: its architecture plus every tensor, stored in one contiguous float blob in
 * the canonical tensor order of proto/model-format.md. Loaded from and saved to safetensors files.
 * Batch norm is kept unfolded here (as trained); the engine folds it. A loaded model is read-only
 * and may be shared by any number of threads. */
#ifndef CIGT_MODEL_H
#define CIGT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cigt/arch.h"

#define CIGT_TENSOR_NAME_MAX 96
#define CIGT_MODEL_FORMAT "cigt-1"

/* Parameters of one op (pointers into the model blob; NULL where the op has none). */
struct cigt_op_params {
	float *w, *b;                           /* conv [out,in,kh,kw] / linear [out,in], bias [out] */
	float *gamma, *beta, *mean, *var;       /* batchnorm [C] each */
	float in_min, in_max; /* an expert's conv or linear: its input's range on the calibration
			       * images (__metadata__.quantization; meaningful when the model's
			       * quant_samples > 0) */
};

struct cigt_router_params {
	struct cigt_op_params *ops;             /* the router's op chain (arch router.nops) */
	float *fc1_w, *fc1_b;                   /* [hidden, pooled], [hidden] */
	float *gamma, *beta, *mean, *var;       /* [hidden] */
	float *fc2_w, *fc2_b;                   /* [out, hidden], [out] */
};

enum cigt_tensor_role {
	CIGT_T_WEIGHT,   /* conv or linear weight */
	CIGT_T_BIAS,     /* conv or linear bias */
	CIGT_T_BN_GAMMA,
	CIGT_T_BN_BETA,
	CIGT_T_BN_MEAN,
	CIGT_T_BN_VAR,
};

struct cigt_tensor_info {
	char name[CIGT_TENSOR_NAME_MAX];
	enum cigt_tensor_role role;
	int64_t fan_in;  /* weights and biases: inputs per output */
	int ndim;
	int64_t shape[4];
	int64_t numel;
	int64_t offset;  /* in floats, into the blob */
	bool trainable;  /* false for batch-norm running statistics */
	float **slot;    /* where the model keeps its pointer */
};

#define CIGT_MAX_POINTS 32
#define CIGT_POINT_NAME_MAX 32
#define CIGT_METADATA_POINTS "operating_points"

/* A named compute setting chosen on validation (proto/model-format.md, "Operating points"). */
struct cigt_point {
	char name[CIGT_POINT_NAME_MAX];     /* [A-Za-z0-9_.-], 1..31 characters, unique */
	float tau[CIGT_MAX_LAYERS];         /* per router (nlayers - 1 used), in [0, 1] */
	float confidence;                   /* in [0, 1]; 0 = no escalation */
	char second[CIGT_NAME_MAX];         /* second model's name ("" = none): <name>.safetensors */
	char second_sha256[65];             /* lowercase hex sha256 of that file */
	double val_accuracy;                /* on the validation split, in [0, 1] */
	double mean_macs;                   /* per sample on the validation split, > 0 */
};

struct cigt_model {
	struct cigt_arch *arch;
	float *blob;
	int64_t blob_floats;
	int ntensors;
	struct cigt_tensor_info *tensors;
	/* ops[l][e * layers[l].nops + i] */
	struct cigt_op_params *ops[CIGT_MAX_LAYERS];
	struct cigt_router_params routers[CIGT_MAX_LAYERS];
	char *provenance; /* JSON text or NULL */
	int npoints;      /* operating points (metadata key operating_points), 0..CIGT_MAX_POINTS */
	struct cigt_point points[CIGT_MAX_POINTS];
	/* int8 calibration (metadata key quantization; proto/model-format.md section 7): the images
	 * the input ranges were measured on (0: none, the model runs fp32 and bf16 only), and the
	 * split they came from ("validation", or a folder's path). */
	int quant_samples;
	char quant_split[256];
	/* Accuracy on those images in fp32, bf16 and int8 (cigt quantize measures them; -1: not
	 * recorded): what --precision auto reads. */
	double quant_acc[3];
};

/* Allocates a model for arch with every tensor zeroed; takes ownership of arch. */
int cigt_model_new(struct cigt_arch *arch, struct cigt_model **out);
void cigt_model_free(struct cigt_model *m);

/* PyTorch-default initialisation (uniform +-1/sqrt(fan_in) for weights and biases, BN gamma 1,
 * beta 0, running mean 0, var 1), deterministic for a seed. With random_bn, BN parameters and
 * running statistics are drawn at random instead (tests use it so folding is exercised). */
void cigt_model_init_random(struct cigt_model *m, uint64_t seed, bool random_bn);

/* Reads and validates a safetensors model file. Any defect (truncation, bad header length, bad
 * JSON, dtype, shape, offsets out of bounds or overlapping, non-finite value, architecture error,
 * missing or unexpected tensor) fails with a one-line message naming it, and nothing is
 * allocated. A file that is not a model at all (a JSON config, a PNG/JPEG/PGM/PPM image, an
 * empty file, gzip data, a training checkpoint, a directory such as a model repository) fails
 * with CIGT_EFORMAT or CIGT_EINVAL and a message naming what it is and the command that takes
 * it ("x.json: a JSON config ...: train a model from it with `cigt train --config x.json ...`"). */
int cigt_model_load(const char *path, struct cigt_model **out, char *err, size_t errlen);
/* Same, from a memory buffer (borrowed). Pure function of the bytes (the fuzz target). */
int cigt_model_load_buffer(const void *buf, size_t len, struct cigt_model **out, char *err,
			   size_t errlen);
/* Writes a safetensors file atomically (temporary file, fsync, rename). provenance may be NULL
 * (then m->provenance is used). */
int cigt_model_save(const struct cigt_model *m, const char *path, char *err, size_t errlen);
/* Serialises to a malloc'd buffer. */
int cigt_model_serialize(const struct cigt_model *m, void **buf, size_t *len);

/* The element-wise mean of n >= 1 models of one architecture (the same cigt_arch_to_json text:
 * geometry, scaling, classes, every op and router): weights, biases and batch-norm parameters
 * and running statistics alike, summed in double. The result has no provenance and no operating
 * points. A model of another architecture fails with a message naming it (names[i], or
 * "model i" when names is NULL). */
int cigt_model_average(const struct cigt_model *const *src, const char *const *names, int n,
		       struct cigt_model **out, char *err, size_t errlen);

/* Index of the operating point named `name`, or -1. */
int cigt_model_point(const struct cigt_model *m, const char *name);

/* Parses and fully validates an operating-point table (the JSON text of
 * __metadata__.operating_points) against arch: unknown keys, names, thresholds outside [0, 1],
 * a threshold count other than nlayers - 1, confidence outside [0, 1], a second model without
 * its sha256 or the reverse, accuracy outside [0, 1], non-positive MACs, duplicates. */
int cigt_points_parse(const char *json, size_t len, const struct cigt_arch *arch,
		      struct cigt_point *points, int *npoints, char *err, size_t errlen);
/* Serialises a table (malloc'd JSON text; NULL on ENOMEM). */
char *cigt_points_to_json(const struct cigt_arch *arch, const struct cigt_point *points,
			  int npoints);

#define CIGT_METADATA_QUANT "quantization"
/* The prefix of an expert op's tensors, e.g. "layers.1.experts.0.ops.3.main.0" (section 4). */
void cigt_op_tensor_prefix(char *buf, size_t len, int layer, int expert,
			   const struct cigt_op_desc *op);
/* Parses and fully validates a quantization table (the JSON text of __metadata__.quantization)
 * into m: format, method, samples, split, and an input range [min, max] (finite, min <= max)
 * for exactly every conv and linear of every expert, keyed by tensor prefix; anything missing,
 * unknown or malformed is an error naming it. m is unchanged on failure. */
int cigt_quant_parse(const char *json, size_t len, struct cigt_model *m, char *err,
		     size_t errlen);
/* Serialises m's table (malloc'd JSON text; NULL on ENOMEM or when m has none). */
char *cigt_quant_to_json(const struct cigt_model *m);

/* Loads the second model of operating point p of m (m was read from model_path): the file
 * <dir of model_path>/<p->second>.safetensors, whose sha256 must be p->second_sha256, with the
 * same classes (count and names), input geometry and input range. Any mismatch is an error
 * naming it. */
int cigt_model_load_second(const char *model_path, const struct cigt_model *m, int point,
			   struct cigt_model **out, char *err, size_t errlen);

/* sha256 of a file as 64 lowercase hex digits plus NUL. */
int cigt_file_sha256(const char *path, char hex[65], char *err, size_t errlen);

/* Finds a tensor by name; NULL if absent. */
const struct cigt_tensor_info *cigt_model_tensor(const struct cigt_model *m, const char *name);

/* Converts HWC 8-bit pixels (one image at the model's input geometry) to the model's NCHW float
 * input, applying the architecture's input scaling (range, or per-channel mean/std). */
void cigt_model_preprocess_u8(const struct cigt_arch *a, const uint8_t *hwc, float *chw);
/* The same scaling in place on n floats holding pixel values 0..255 already channels-first
 * (whole samples of C x H x W, so the channel of x[i] is i / (H*W) % C). */
void cigt_model_preprocess_chw(const struct cigt_arch *a, float *x, size_t n);

#endif
