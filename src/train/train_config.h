/* Internal: the option table of a training config's "train" section (train_config.c), for
 * `cigt train`'s flags that override its keys and for `cigt options --json`. */
#ifndef CIGT_TRAIN_CONFIG_H
#define CIGT_TRAIN_CONFIG_H

#include "../common/options.h"

/* The section's rows (targets: struct cigt_train_config). */
extern const struct cigt_opt cigt__train_rows[];
/* "epochs" and "seed", also set by `cigt train --epochs / --seed`. */
extern const struct cigt_opt cigt__train_opt_epochs, cigt__train_opt_seed;

#endif
