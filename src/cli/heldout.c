/* The held-out images a command may tune or calibrate on (cigt tune, cigt quantize): the checks
 * that a model's provenance allows them (the last data.validation images of the training split
 * of the data it names, or a folder of images it was not trained on), and their loading. Each
 * check prints a one-line reason and returns -1 when it fails. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

/* A model's provenance against the images a command takes without --validation-data (the last
 * ones of dir's training split): it must record a held-out split, and of dir when it names
 * one.
 * `what` names the model in the messages. */
int cli_check_split(const char *dir, const char *what, const struct cli_trained_on *p)
{
	if (p->validation < 1) {
		fprintf(stderr, "cigt: %s records no held-out validation split in its provenance "
			"(data.validation), so it may have trained on any image of %s; give "
			"--validation-data DIR, an image folder or IDX directory it was not trained "
			"on\n", what, dir);
		return -1;
	}
	if (p->dir[0] && !cli_trained_on_dir(p, dir)) {
		fprintf(stderr, "cigt: %s was trained on %s, not on --data %s: its held-out split "
			"is the last %d images there; give --data %s, or --validation-data DIR with "
			"images it was not trained on\n", what, p->dir, dir, p->validation,
			p->dir);
		return -1;
	}
	return 0;
}

/* --validation-data DIR: a folder of held-out images, not the data either model records. */
int cli_check_heldout(const char *heldout, const char *what, const struct cli_trained_on *p)
{
	if (cli_trained_on_dir(p, heldout)) {
		fprintf(stderr, "cigt: --validation-data %s: %s was trained on it (its provenance's "
			"data); give a folder of images it was not trained on\n", heldout, what);
		return -1;
	}
	return 0;
}

/* The images held out by --validation-data: no more than --validation N asks, and not the
 * training data of a model whose provenance gives its size but no folder to compare. */
int cli_check_heldout_images(const char *heldout, const char *what,
			     const struct cli_trained_on *p, int total)
{
	if (!p->dir[0] && p->images == total) {
		fprintf(stderr, "cigt: --validation-data %s holds %d images, as many as %s was trained "
			"and validated on, and its provenance names no folder to tell them apart: it "
			"may be that data; give a folder of images it was not trained on\n",
			heldout, total, what);
		return -1;
	}
	return 0;
}

/* dir's training split against the size a model's provenance records. */
int cli_check_images(const char *dir, const char *what, const struct cli_trained_on *p,
		     int total)
{
	if (p->images >= 0 && total != p->images) {
		fprintf(stderr, "cigt: %s's training split has %d images but %s was trained and "
			"validated on one of %lld: its last %d are not the split it held out; give "
			"the data it was trained on, or --validation-data DIR with images it was not "
			"trained on\n", dir, total, what, p->images, p->validation);
		return -1;
	}
	return 0;
}


int cli_heldout_load(const char *path, const struct cigt_model *m, const char *dir,
		     const char *heldout, int limit, float **x, uint8_t **labels, int *n)
{
	struct cli_trained_on p;
	cli_trained_on(m, &p);
	*x = NULL;
	*labels = NULL;
	int want = limit, total = 0;
	if (heldout) {
		if (cli_has_subdir(heldout, "train")) {
			fprintf(stderr, "cigt: --validation-data %s has a train/ folder: give the "
				"held-out images themselves (an image folder DIR/<class>/... or an IDX "
				"directory)\n", heldout);
			return -1;
		}
		if (cli_check_heldout(heldout, path, &p) ||
		    cli_load_tail(heldout, "train", m->arch, &want, true, x, labels, &total))
			return -1;
		if (cli_check_heldout_images(heldout, path, &p, total))
			goto fail;
		*n = want;
		return 0;
	}
	if (cli_check_split(dir, path, &p))
		return -1;
	if (limit > p.validation) {
		fprintf(stderr, "cigt: --limit %d: %s was validated on the last %d training images; "
			"more would take in images it was trained on\n", limit, path, p.validation);
		return -1;
	}
	want = limit ? limit : p.validation;
	if (cli_load_tail(dir, "train", m->arch, &want, true, x, labels, &total))
		return -1;
	if (cli_check_images(dir, path, &p, total))
		goto fail;
	*n = want;
	return 0;
fail:
	free(*x);
	free(*labels);
	*x = NULL;
	*labels = NULL;
	return -1;
}
