/* The config keys of train.ensemble (paths that ensemble), train.label_smoothing and
 * train.router_weight_decay: defaults and refusals. The losses and their gradients are checked
 * in test_trellis_grad.c, router_weight_decay end to end in levers.sh. */
#include <criterion/criterion.h>
#include <string.h>

#include "cigt/error.h"
#include "cigt/train.h"
#include "helpers.h"

Test(ensemble, config_keys)
{
	struct cigt_train_config c;
	char err[256];
	cr_assert_eq(th_train("", err, sizeof err, &c), 0, "%s", err);
	cr_expect_eq(c.ens_share, 0, "absent: off");
	cr_assert_eq(th_train(", \"ensemble\": {}", err, sizeof err, &c), 0, "%s", err);
	cr_expect_eq(c.ens_share, 0.5);
	cr_expect_eq(c.ens_weight, 1);
	cr_expect_eq(c.ens_from, -1, "from the first routed epoch");
	cr_expect_eq(c.ens_to, -1, "to the end");
	cr_assert_eq(th_train(", \"ensemble\": {\"share\": 1, \"weight\": 0.25, \"from_epoch\": 60,"
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
		cr_expect_eq(th_train(bad[i].extra, err, sizeof err, &c), CIGT_EINVAL, "%s",
			     bad[i].extra);
		cr_expect(strstr(err, bad[i].words), "'%s' gives '%s', expected '%s'", bad[i].extra,
			  err, bad[i].words);
	}
}

Test(ensemble, label_smoothing_and_router_weight_decay)
{
	struct cigt_train_config c;
	char err[256];
	cr_assert_eq(th_train("", err, sizeof err, &c), 0, "%s", err);
	cr_expect_eq(c.label_smoothing, 0, "absent: off");
	cr_expect_eq(c.router_weight_decay, c.weight_decay, "absent: the experts' weight decay");
	cr_assert_eq(th_train(", \"label_smoothing\": 0.1, \"router_weight_decay\": 0.001", err,
			   sizeof err, &c),
		     0, "%s", err);
	cr_expect_eq(c.label_smoothing, 0.1);
	cr_expect_eq(c.router_weight_decay, 0.001);
	cr_expect_eq(th_train(", \"label_smoothing\": 0.6", err, sizeof err, &c), CIGT_EINVAL);
	cr_expect(strstr(err, "train.label_smoothing: expected a number in [0, 0.5]"), "%s", err);
	cr_expect_eq(th_train(", \"router_weight_decay\": \"1e-3\"", err, sizeof err, &c),
		     CIGT_EINVAL);
	cr_expect(strstr(err, "train.router_weight_decay: expected a number in [0, 1]"), "%s", err);
}
