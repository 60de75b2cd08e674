/* The config keys of train.ensemble (paths that ensemble), train.label_smoothing and
 * train.router_weight_decay: defaults and refusals. The losses and their gradients are checked
 * in test_trellis_grad.c, router_weight_decay end to end in levers.sh. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/train.h"

static int parse(const char *train_extra, char *err, size_t n, struct cigt_train_config *c)
{
	char text[1024];
	snprintf(text, sizeof text,
		 "{\"epochs\": 1, \"warmup_epochs\": 0, \"batch_size\": 8, \"lr\": 0.1, "
		 "\"lr_schedule\": [[0, 1]], \"momentum\": 0.9, \"weight_decay\": 0, "
		 "\"information_gain_weight\": 1, \"information_gain_beta\": 1, "
		 "\"temperature\": {\"initial\": 1, \"decay\": 1, \"min\": 1}, "
		 "\"routing_randomization\": 0, \"validation_samples\": 0, \"seed\": 1%s}",
		 train_extra);
	json_t *j = json_loads(text, 0, NULL);
	cr_assert(j, "%s", text);
	int rc = cigt_train_config_parse(j, c, err, n);
	json_decref(j);
	return rc;
}

Test(ensemble, config_keys)
{
	struct cigt_train_config c;
	char err[256];
	cr_assert_eq(parse("", err, sizeof err, &c), 0, "%s", err);
	cr_expect_eq(c.ens_share, 0, "absent: off");
	cr_assert_eq(parse(", \"ensemble\": {}", err, sizeof err, &c), 0, "%s", err);
	cr_expect_eq(c.ens_share, 0.5);
	cr_expect_eq(c.ens_weight, 1);
	cr_expect_eq(c.ens_from, -1, "from the first routed epoch");
	cr_expect_eq(c.ens_to, -1, "to the end");
	cr_assert_eq(parse(", \"ensemble\": {\"share\": 1, \"weight\": 0.25, \"from_epoch\": 60,"
			   " \"to_epoch\": 150}",
			   err, sizeof err, &c),
		     0, "%s", err);
	cr_expect_eq(c.ens_share, 1);
	cr_expect_eq(c.ens_weight, 0.25);
	cr_expect_eq(c.ens_from, 60);
	cr_expect_eq(c.ens_to, 150);
	static const struct {
		const char *extra, *words;
	} bad[] = {
		{", \"ensemble\": 0.5", "train.ensemble: expected {"},
		{", \"ensemble\": {\"share\": 0}", "train.ensemble.share: expected a number in [0.001, 1]"},
		{", \"ensemble\": {\"weight\": -1}", "train.ensemble.weight: expected a number in [0, 1]"},
		{", \"ensemble\": {\"from_epoch\": 2.5}", "from_epoch and to_epoch must be whole epochs"},
		{", \"ensemble\": {\"from_epoch\": 5, \"to_epoch\": 5}", "to_epoch must be above from_epoch"},
		{", \"ensemble\": {\"top\": 2}", "train.ensemble: unknown key 'top'"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		err[0] = 0;
		cr_expect_eq(parse(bad[i].extra, err, sizeof err, &c), CIGT_EINVAL, "%s", bad[i].extra);
		cr_expect(strstr(err, bad[i].words), "'%s' gives '%s', expected '%s'", bad[i].extra,
			  err, bad[i].words);
	}
}

Test(ensemble, label_smoothing_and_router_weight_decay)
{
	struct cigt_train_config c;
	char err[256];
	cr_assert_eq(parse("", err, sizeof err, &c), 0, "%s", err);
	cr_expect_eq(c.label_smoothing, 0, "absent: off");
	cr_expect_eq(c.router_weight_decay, c.weight_decay, "absent: the experts' weight decay");
	cr_assert_eq(parse(", \"label_smoothing\": 0.1, \"router_weight_decay\": 0.001", err,
			   sizeof err, &c),
		     0, "%s", err);
	cr_expect_eq(c.label_smoothing, 0.1);
	cr_expect_eq(c.router_weight_decay, 0.001);
	cr_expect_eq(parse(", \"label_smoothing\": 0.6", err, sizeof err, &c), CIGT_EINVAL);
	cr_expect(strstr(err, "train.label_smoothing: expected a number in [0, 0.5]"), "%s", err);
	cr_expect_eq(parse(", \"router_weight_decay\": \"1e-3\"", err, sizeof err, &c),
		     CIGT_EINVAL);
	cr_expect(strstr(err, "train.router_weight_decay: expected a number in [0, 1]"), "%s", err);
}
