/* Internal: the optional levers of the "train" section (levers.c) and their use by the
 * training run. */
#ifndef CIGT_TRAIN_LEVERS_H
#define CIGT_TRAIN_LEVERS_H

#include <stddef.h>

struct json_t;
struct cigt_train_config;

/* Reads the optional lever objects of a "train" section into c (already holding the rest);
 * any wrong key or value fails with a one-line message naming it. */
int cigt__train_levers_parse(const struct json_t *t, struct cigt_train_config *c, char *err,
			     size_t errlen);

#endif
