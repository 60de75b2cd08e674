/* The one rule for names that come from outside (proto/model-format.md): model names, and the
 * names of operating points. Every name is made of [A-Za-z0-9_.-] (so it is a safe file or
 * folder name: no '/', no space); each kind has its own length, and a name that cigt looks for
 * as a file or folder may not start with '.'. Internal (cigt__). */
#ifndef CIGT_NAME_H
#define CIGT_NAME_H

#include <stdbool.h>
#include <stddef.h>

#define CIGT__MODEL_NAME_LEN 63 /* arch.h's CIGT_NAME_MAX - 1 */
#define CIGT__POINT_NAME_LEN 31 /* model.h's CIGT_POINT_NAME_MAX - 1 */

/* A model name (the architecture's `name`): 1..63 bytes of [A-Za-z0-9_.-]. s holds n bytes
 * (a NUL among them fails). */
bool cigt__model_name_ok(const char *s, size_t n);
/* A model name that cigt looks for on disk: a second model (<name>.safetensors beside the
 * first) and a model folder of a repository. Also not starting with '.': those entries are
 * hidden (a repository's .staging folder), never models. */
bool cigt__model_file_name_ok(const char *s, size_t n);
/* An operating point's name: 1..31 bytes of [A-Za-z0-9_.-], not starting with '.'. */
bool cigt__point_name_ok(const char *s, size_t n);

#endif
