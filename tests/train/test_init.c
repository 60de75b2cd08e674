/* train.init (cigt_train_init_from): sparse upcycling copies a single-path network's op
 * slices into every expert bit for bit and leaves the routers alone, so the trellis computes
 * the source's function whatever the routes; a same-architecture source is copied whole; a
 * source whose ops, classes or input differ is refused with a message naming the problem; the
 * config keys are checked. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/arch.h"
#include "cigt/engine.h"
#include "cigt/error.h"
#include "cigt/model.h"
#include "cigt/train.h"
#include "helpers.h"

#define OPS0                                                                                   \
	"{\"type\": \"conv\", \"out\": 3, \"kernel\": 3, \"padding\": 1}, {\"type\": \"batchnorm\"}," \
	" {\"type\": \"relu\"}, {\"type\": \"maxpool\", \"kernel\": 2}"
#define OPS1                                                                                   \
	"{\"type\": \"conv\", \"out\": 4, \"kernel\": [2, 1]}, {\"type\": \"batchnorm\"},"     \
	" {\"type\": \"relu\"}, {\"type\": \"avgpool\", \"kernel\": 1}"
#define OPS2                                                                                   \
	"{\"type\": \"conv\", \"out\": 2, \"kernel\": 1}, {\"type\": \"flatten\"},"            \
	" {\"type\": \"linear\", \"out\": 5}, {\"type\": \"batchnorm\"}, {\"type\": \"relu\"},"  \
	" {\"type\": \"dropout\", \"p\": 0.3}, {\"type\": \"linear\", \"out\": 3}"
#define HEAD                                                                                   \
	"{\"name\": \"t\", \"input\": {\"channels\": 2, \"height\": 6, \"width\": 5},"          \
	" \"classes\": [\"a\", \"b\", \"c\"], \"layers\": ["

static const char *trellis_arch =
	HEAD "{\"experts\": 1, \"ops\": [" OPS0 "], \"router\": {\"pool\": [3, 1], \"hidden\": 4}},"
	     "{\"experts\": 2, \"ops\": [" OPS1 "], \"router\": {\"pool\": [1, 2], \"hidden\": 5}},"
	     "{\"experts\": 3, \"ops\": [" OPS2 "]}]}";
static const char *thin_arch = HEAD "{\"experts\": 1, \"ops\": [" OPS0 ", " OPS1 ", " OPS2 "]}]}";
/* The same but the second conv has 5 output channels (op 4 differs). */
static const char *bad_arch =
	HEAD "{\"experts\": 1, \"ops\": [" OPS0 ", "
	     "{\"type\": \"conv\", \"out\": 5, \"kernel\": [2, 1]}, {\"type\": \"batchnorm\"},"
	     " {\"type\": \"relu\"}, {\"type\": \"avgpool\", \"kernel\": 1}, " OPS2 "]}]}";
/* The thin network without its last op. */
static const char *short_arch =
	HEAD "{\"experts\": 1, \"ops\": [" OPS0 ", " OPS1 ", "
	     "{\"type\": \"conv\", \"out\": 2, \"kernel\": 1}, {\"type\": \"flatten\"},"
	     " {\"type\": \"linear\", \"out\": 3}]}]}";

static struct cigt_model *model(const char *json, uint64_t seed)
{
	char err[256];
	struct cigt_arch *a;
	struct cigt_model *m;
	cr_assert_eq(cigt_arch_parse(json, strlen(json), &a, err, sizeof err), 0, "%s", err);
	cr_assert_eq(cigt_model_new(a, &m), 0);
	cigt_model_init_random(m, seed, true);
	return m;
}

/* Logits of the engine on n random inputs (seeded). */
static float *logits_of(const struct cigt_model *m, const float *x, int n, int *routes1)
{
	struct cigt_engine *e;
	char err[256];
	cr_assert_eq(cigt_engine_new(m, &e, err, sizeof err), 0, "%s", err);
	struct cigt_workspace *ws = cigt_workspace_new(e, n);
	struct cigt_result *res = calloc((size_t)n, sizeof *res);
	float *z = malloc((size_t)n * 3 * sizeof *z);
	cr_assert_eq(cigt_engine_classify(e, ws, x, n, CIGT_EXEC_ROUTED, res, NULL, z), 0);
	for (int i = 0; i < n && routes1; i++)
		routes1[i] = res[i].route[2];
	free(res);
	cigt_workspace_free(ws);
	cigt_engine_free(e);
	return z;
}

Test(init, upcycling_copies_every_slice_bit_for_bit)
{
	struct cigt_model *src = model(thin_arch, 11), *dst = model(trellis_arch, 12);
	struct cigt_model *fresh = model(trellis_arch, 12);
	char err[256];
	cr_assert_eq(cigt_train_init_from(dst, src, 0, 1, err, sizeof err), 0, "%s", err);
	static const int first_op[3] = {0, 4, 8}; /* thin op index of each layer's op 0 */
	int copied = 0, routers = 0;
	for (int i = 0; i < dst->ntensors; i++) {
		const struct cigt_tensor_info *t = &dst->tensors[i];
		int l, e, k, n = 0;
		char rest[32];
		if (sscanf(t->name, "layers.%d.experts.%d.ops.%d.%31s%n", &l, &e, &k, rest, &n) == 4) {
			char sname[96];
			snprintf(sname, sizeof sname, "layers.0.experts.0.ops.%d.%s", first_op[l] + k,
				 rest);
			const struct cigt_tensor_info *s = cigt_model_tensor(src, sname);
			cr_assert(s, "no source tensor %s for %s", sname, t->name);
			cr_assert_eq(s->numel, t->numel);
			cr_expect(!memcmp(dst->blob + t->offset, src->blob + s->offset,
					  (size_t)t->numel * sizeof(float)),
				  "%s differs from %s", t->name, sname);
			copied++;
		} else {
			/* routers keep their random initialisation */
			cr_expect(!memcmp(dst->blob + t->offset, fresh->blob + t->offset,
					  (size_t)t->numel * sizeof(float)),
				  "%s was changed", t->name);
			routers++;
		}
	}
	/* layer 0: conv w+b, bn 4; layer 1 x2: conv w+b, bn 4; layer 2 x3: conv w+b, lin w+b, bn 4,
	 * lin w+b */
	cr_expect_eq(copied, 6 + 2 * 6 + 3 * 10);
	cr_expect_eq(routers, 2 * 8);
	cigt_model_free(src);
	cigt_model_free(dst);
	cigt_model_free(fresh);
}

Test(init, upcycled_trellis_computes_the_source_whatever_the_route)
{
	struct cigt_model *src = model(thin_arch, 21), *dst = model(trellis_arch, 22);
	char err[256];
	cr_assert_eq(cigt_train_init_from(dst, src, 0, 1, err, sizeof err), 0, "%s", err);
	enum { N = 64 };
	float *x = malloc((size_t)N * 60 * sizeof *x);
	for (int i = 0; i < N * 60; i++)
		x[i] = (float)((i * 7919) % 1000) / 1000.0f;
	int route[N], seen[3] = {0};
	float *zs = logits_of(src, x, N, NULL), *zt = logits_of(dst, x, N, route);
	for (int i = 0; i < N; i++)
		seen[route[i]]++;
	cr_expect(seen[0] + seen[1] + seen[2] == N);
	for (int i = 0; i < N * 3; i++)
		cr_expect(fabsf(zs[i] - zt[i]) <= 1e-5f * (1 + fabsf(zs[i])),
			  "logit %d: source %.9g, trellis %.9g", i, zs[i], zt[i]);
	free(x), free(zs), free(zt);
	cigt_model_free(src);
	cigt_model_free(dst);
}

Test(init, same_architecture_is_a_warm_start)
{
	struct cigt_model *src = model(trellis_arch, 31), *dst = model(trellis_arch, 32);
	char err[256];
	cr_assert_eq(cigt_train_init_from(dst, src, 0.5, 1, err, sizeof err), 0, "%s", err);
	cr_expect(!memcmp(dst->blob, src->blob, (size_t)src->blob_floats * sizeof(float)),
		  "every tensor, routers included, is copied (noise does not apply)");
	cigt_model_free(src);
	cigt_model_free(dst);
}

Test(init, noise_perturbs_multi_expert_layers_only)
{
	struct cigt_model *src = model(thin_arch, 41), *dst = model(trellis_arch, 42);
	char err[256];
	cr_assert_eq(cigt_train_init_from(dst, src, 0.1, 7, err, sizeof err), 0, "%s", err);
	const struct cigt_tensor_info *l0 = cigt_model_tensor(dst, "layers.0.experts.0.ops.0.weight");
	const struct cigt_tensor_info *a = cigt_model_tensor(dst, "layers.1.experts.0.ops.0.weight");
	const struct cigt_tensor_info *b = cigt_model_tensor(dst, "layers.1.experts.1.ops.0.weight");
	const struct cigt_tensor_info *s = cigt_model_tensor(src, "layers.0.experts.0.ops.4.weight");
	const struct cigt_tensor_info *s0 = cigt_model_tensor(src, "layers.0.experts.0.ops.0.weight");
	cr_expect(!memcmp(dst->blob + l0->offset, src->blob + s0->offset, l0->numel * 4),
		  "a one-expert layer is copied exactly");
	int differ = 0;
	for (int64_t k = 0; k < a->numel; k++) {
		float w = src->blob[s->offset + k], wa = dst->blob[a->offset + k];
		cr_expect(fabsf(wa - w) <= 0.1f * fabsf(w) + 1e-7f);
		differ += wa != dst->blob[b->offset + k];
	}
	cr_expect_gt(differ, a->numel / 2, "the two experts differ");
	cigt_model_free(src);
	cigt_model_free(dst);
}

static void expect_refused(const char *src_json, const char *words)
{
	struct cigt_model *src = model(src_json, 51), *dst = model(trellis_arch, 52);
	char err[256] = "";
	cr_expect_eq(cigt_train_init_from(dst, src, 0, 1, err, sizeof err), CIGT_ESHAPE);
	cr_expect(strstr(err, words), "message '%s' lacks '%s'", err, words);
	cigt_model_free(src);
	cigt_model_free(dst);
}

Test(init, mismatching_sources_are_refused)
{
	expect_refused(bad_arch, "op 4 does not match: layer 1 op 0 is conv 3x3x2 -> 4x2x2, the "
				 "source's is conv 3x3x2 -> 5x2x2");
	expect_refused(short_arch, "op 10 does not match");
	char *other = strdup(thin_arch);
	char *c = strstr(other, "\"channels\": 2");
	c[12] = '1';
	expect_refused(other, "the source model's input is 1x6x5");
	free(other);
	/* A 2-expert source of another architecture. */
	expect_refused(HEAD "{\"experts\": 1, \"ops\": [" OPS0 "], \"router\": {\"pool\": [3, 1],"
			    " \"hidden\": 4}}, {\"experts\": 2, \"ops\": [" OPS1 ", " OPS2 "]}]}",
		       "neither single-path (its layer 1 has 2 experts) nor of the same architecture");
}

Test(init, config_keys)
{
	struct cigt_train_config c;
	char err[256];
	cr_assert_eq(th_train("", err, sizeof err, &c), 0, "%s", err);
	cr_expect_eq(c.init_from[0], 0, "absent: random initialisation");
	cr_assert_eq(th_train(", \"init\": {\"from\": \"thin.safetensors\"}", err, sizeof err,
			      &c),
		     0, "%s", err);
	cr_expect_str_eq(c.init_from, "thin.safetensors");
	cr_expect_eq(c.init_noise, 0);
	cr_assert_eq(th_train(", \"init\": {\"from\": \"/m/a\", \"noise\": 0.01}", err,
			      sizeof err, &c),
		     0, "%s", err);
	cr_expect_eq(c.init_noise, 0.01);
	static const struct {
		const char *extra, *words;
	} bad[] = {
		{", \"init\": \"thin.safetensors\"", "train.init: expected {"},
		{", \"init\": {}", "train.init.from: missing"},
		{", \"init\": {\"from\": \"\"}", "train.init.from: expected a file path"},
		{", \"init\": {\"from\": 3}", "train.init.from: expected a file path"},
		{", \"init\": {\"from\": \"a\", \"noise\": 2}", "train.init.noise: expected a number in [0, 1]"},
		{", \"init\": {\"from\": \"a\", \"nois\": 0}", "train.init: unknown key 'nois'"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		err[0] = 0;
		cr_expect_eq(th_train(bad[i].extra, err, sizeof err, &c), CIGT_EINVAL, "%s",
			     bad[i].extra);
		cr_expect(strstr(err, bad[i].words), "'%s' gives '%s', expected '%s'", bad[i].extra,
			  err, bad[i].words);
	}
}
