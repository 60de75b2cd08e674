/* cigt average -o MODEL SOURCE... */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
	"usage: cigt average -o MODEL SOURCE SOURCE...\n"
	"Writes the element-wise mean of models of one architecture: weight averaging of the\n"
	"snapshots a run saved with `cigt train --snapshots-from N` (the last epochs of a run\n"
	"at a small learning rate), or of runs fine-tuned from one model. Weights, biases and\n"
	"batch-norm parameters and running statistics are all averaged. MODEL gets no\n"
	"operating points (tune it afresh: cigt tune); its provenance keeps what the\n"
	"sources' provenances agree on (seed, config, data split) and lists each source's\n"
	"file and epoch.\n";

/* The sources' provenances combined: "tool", "version", the fields every source has with one
 * value (seed, epochs, data, config, ...; a per-source "epoch" or "validation_accuracy" drops
 * out), and "averaged": [{"file", "epoch"?}, ...]. */
static char *average_provenance(struct cigt_model *const *src, char *const *files, int n)
{
	json_t **p = calloc((size_t)n, sizeof *p), *out = json_object(), *list = json_array();
	for (int i = 0; i < n; i++)
		p[i] = src[i]->provenance ? json_loads(src[i]->provenance, 0, NULL) : NULL;
	json_object_set_new(out, "tool", json_string("cigt average"));
	json_object_set_new(out, "version", json_string(CIGT_VERSION));
	const char *key;
	json_t *v;
	if (json_is_object(p[0]))
		json_object_foreach(p[0], key, v) {
			if (!strcmp(key, "tool") || !strcmp(key, "version"))
				continue;
			bool all = true;
			for (int i = 1; i < n && all; i++)
				all = json_is_object(p[i]) && json_equal(v, json_object_get(p[i], key));
			if (all)
				json_object_set(out, key, v);
		}
	for (int i = 0; i < n; i++) {
		json_t *e = json_pack("{ss}", "file", files[i]);
		json_t *ep = json_is_object(p[i]) ? json_object_get(p[i], "epoch") : NULL;
		if (json_is_integer(ep))
			json_object_set(e, "epoch", ep);
		json_array_append_new(list, e);
		json_decref(p[i]);
	}
	json_object_set_new(out, "averaged", list);
	free(p);
	char *text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(out);
	return text;
}

int cmd_average(int argc, char **argv)
{
	const char *out = NULL;
	const struct cigt_opt opts[] = {
		CIGT_OPT_BIND(cli_opt_out, out),
		{0},
	};
	const struct cli_cmd cmd = {usage, 18, 2, -1, opts};
	int status, first = cli_parse(&cmd, argc, argv, &status);
	if (first < 0)
		return status;
	const int n = argc - first;
	struct cigt_model **src = calloc((size_t)n, sizeof *src), *m = NULL;
	char err[600];
	int rc = src ? 0 : 1;
	if (!src)
		fprintf(stderr, "cigt: out of memory\n");
	for (int i = 0; i < n && !rc; i++)
		if ((rc = cigt_model_load(argv[first + i], &src[i], err, sizeof err)))
			fprintf(stderr, "cigt: %s\n", err);
	if (!rc && (rc = cigt_model_average((const struct cigt_model *const *)src,
					    (const char *const *)argv + first, n, &m, err,
					    sizeof err)))
		fprintf(stderr, "cigt: %s\n", err);
	if (!rc) {
		m->provenance = average_provenance(src, argv + first, n);
		if ((rc = cigt_model_save(m, out, err, sizeof err)))
			fprintf(stderr, "cigt: %s\n", err);
		else
			printf("wrote %s: the mean of %d models of %s\n", out, n, m->arch->name);
	}
	for (int i = 0; src && i < n; i++)
		cigt_model_free(src[i]);
	free(src);
	cigt_model_free(m);
	return rc ? 1 : 0;
}
