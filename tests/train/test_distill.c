/* train.distill: the config keys (defaults are the authors' T = 6, weight 0.5), the teacher's
 * checks (classes, input geometry and range must match the student's) and its posteriors
 * (softmax of the engine's logits at temperature T). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cigt/arch.h"
#include "cigt/engine.h"
#include "cigt/error.h"
#include "cigt/model.h"
#include "cigt/train.h"
#include "helpers.h"
#include "../../src/train/levers.h"

#define ARCH(CH, CLASSES)                                                                     \
	"{\"name\": \"t\", \"input\": {\"channels\": " CH ", \"height\": 4, \"width\": 4},"   \
	" \"classes\": [" CLASSES "], \"layers\": [{\"experts\": 1, \"ops\": ["                \
	"{\"type\": \"flatten\"}, {\"type\": \"linear\", \"out\": 3}]}]}"

static struct cigt_arch *arch(const char *json)
{
	char err[256];
	struct cigt_arch *a;
	cr_assert_eq(cigt_arch_parse(json, strlen(json), &a, err, sizeof err), 0, "%s", err);
	return a;
}

/* Saves a random model of the architecture to a temporary file; returns its path. */
static char *save_model(const char *json)
{
	struct cigt_model *m;
	char err[256];
	cr_assert_eq(cigt_model_new(arch(json), &m), 0);
	cigt_model_init_random(m, 5, false);
	char *path = strdup("/tmp/cigt-distill-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	close(fd);
	cr_assert_eq(cigt_model_save(m, path, err, sizeof err), 0, "%s", err);
	cigt_model_free(m);
	return path;
}

Test(distill, teacher_must_match_the_student)
{
	char *path = save_model(ARCH("1", "\"a\", \"b\", \"c\""));
	char err[512];
	struct cigt__teacher *t;
	struct cigt_arch *same = arch(ARCH("1", "\"x\", \"y\", \"z\"")),
			 *classes = arch("{\"name\": \"t\", \"input\": {\"channels\": 1, \"height\": 4,"
					 " \"width\": 4}, \"classes\": [\"a\", \"b\"], \"layers\":"
					 " [{\"experts\": 1, \"ops\": [{\"type\": \"flatten\"},"
					 " {\"type\": \"linear\", \"out\": 2}]}]}"),
			 *geometry = arch(ARCH("2", "\"a\", \"b\", \"c\""));
	cr_expect_eq(cigt__teacher_open(path, same, 4, &t, err, sizeof err), 0, "%s", err);
	cigt__teacher_free(t);
	cr_expect_eq(cigt__teacher_open(path, classes, 4, &t, err, sizeof err), CIGT_ESHAPE);
	cr_expect(strstr(err, "has 3 classes, the student 2"), "%s", err);
	cr_expect_null(t);
	cr_expect_eq(cigt__teacher_open(path, geometry, 4, &t, err, sizeof err), CIGT_ESHAPE);
	cr_expect(strstr(err, "takes 1x4x4 inputs in [0, 1], the student 2x4x4"), "%s", err);
	cr_expect_eq(cigt__teacher_open("/nonexistent/t.safetensors", same, 4, &t, err, sizeof err),
		     CIGT_EIO);
	cr_expect(strstr(err, "train.distill.teacher: /nonexistent/t.safetensors"), "%s", err);
	unlink(path);
	free(path);
	cigt_arch_free(same), cigt_arch_free(classes), cigt_arch_free(geometry);
}

Test(distill, posteriors_are_the_engine_softmax_at_T)
{
	char *path = save_model(ARCH("1", "\"a\", \"b\", \"c\""));
	char err[512];
	struct cigt__teacher *t;
	struct cigt_arch *a = arch(ARCH("1", "\"a\", \"b\", \"c\""));
	cr_assert_eq(cigt__teacher_open(path, a, 4, &t, err, sizeof err), 0, "%s", err);
	float x[3 * 16];
	for (int i = 0; i < 3 * 16; i++)
		x[i] = (float)((i * 37) % 17) / 17.0f;
	double q[3 * 3];
	cr_assert_eq(cigt__teacher_posteriors(t, x, 3, 6.0, q), 0);
	cr_expect_eq(cigt__teacher_posteriors(t, x, 5, 6.0, q), CIGT_EINVAL, "above max_batch");
	/* The same model through the engine directly. */
	struct cigt_model *m;
	struct cigt_engine *e;
	cr_assert_eq(cigt_model_load(path, &m, err, sizeof err), 0);
	cr_assert_eq(cigt_engine_new(m, &e, err, sizeof err), 0);
	struct cigt_workspace *ws = cigt_workspace_new(e, 4);
	struct cigt_result res[3];
	float z[9];
	cr_assert_eq(cigt_engine_classify(e, ws, x, 3, CIGT_EXEC_ROUTED, res, NULL, z), 0);
	for (int i = 0; i < 3; i++) {
		double s = 0;
		for (int j = 0; j < 3; j++)
			s += exp(z[i * 3 + j] / 6.0);
		for (int j = 0; j < 3; j++)
			cr_expect_float_eq(q[i * 3 + j], exp(z[i * 3 + j] / 6.0) / s, 1e-12);
	}
	cigt_workspace_free(ws);
	cigt_engine_free(e);
	cigt_model_free(m);
	cigt__teacher_free(t);
	cigt_arch_free(a);
	unlink(path);
	free(path);
}

Test(distill, config_keys)
{
	struct cigt_train_config c;
	char err[256];
	cr_assert_eq(th_train("", err, sizeof err, &c), 0, "%s", err);
	cr_expect_eq(c.distill_teacher[0], 0, "absent: off");
	cr_assert_eq(th_train(", \"distill\": {\"teacher\": \"thick.safetensors\"}", err,
			      sizeof err, &c),
		     0, "%s", err);
	cr_expect_str_eq(c.distill_teacher, "thick.safetensors");
	cr_expect_eq(c.distill_t, 6, "the authors' temperature by default");
	cr_expect_eq(c.distill_weight, 0.5, "the authors' weight by default");
	cr_assert_eq(th_train(", \"distill\": {\"teacher\": \"t\", \"temperature\": 4, "
			      "\"weight\": 1}",
			      err, sizeof err, &c),
		     0, "%s", err);
	cr_expect_eq(c.distill_t, 4);
	cr_expect_eq(c.distill_weight, 1);
	static const struct {
		const char *extra, *words;
	} bad[] = {
		{", \"distill\": true", "train.distill: expected {"},
		{", \"distill\": {\"temperature\": 6}", "train.distill.teacher: missing"},
		{", \"distill\": {\"teacher\": \"t\", \"temperature\": 0}",
		 "train.distill.temperature: expected a number in [0.01, 100]"},
		{", \"distill\": {\"teacher\": \"t\", \"weight\": 1.5}",
		 "train.distill.weight: expected a number in [0, 1]"},
		{", \"distill\": {\"teacher\": \"t\", \"alpha\": 0.5}",
		 "train.distill: unknown key 'alpha'"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		err[0] = 0;
		cr_expect_eq(th_train(bad[i].extra, err, sizeof err, &c), CIGT_EINVAL, "%s",
			     bad[i].extra);
		cr_expect(strstr(err, bad[i].words), "'%s' gives '%s', expected '%s'", bad[i].extra,
			  err, bad[i].words);
	}
}
