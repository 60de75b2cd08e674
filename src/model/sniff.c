/* What a file that is not a model is, for the model loader's errors: a JSON config, an image,
 * an empty file, a training checkpoint, a directory laid out as a model repository. Each
 * message names the command that takes such a file, so a mistyped argument points at its fix
 * instead of at the byte that broke the safetensors header. Only files that cannot be models
 * are named: a buffer whose 8-byte length is followed by a '{' is a safetensors file (maybe a
 * checkpoint, maybe truncated), and JSON text is recognised only when the length is impossible
 * (a real header is under 16 MiB, so bytes 3..7 of a model are zero; no text has them). */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cigt/error.h"
#include "model_internal.h"

#define MAX_HEADER (16u << 20) /* as safetensors.c */

static bool is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* A JSON object: which kind of config it is, by its keys. */
static int sniff_json(const uint8_t *p, size_t len, const char *name, char *err, size_t errlen)
{
	json_error_t je;
	json_t *v = json_loadb((const char *)p, len, 0, &je);
	int rc;
	if (!json_is_object(v)) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT,
			       "%s: a JSON text (%s), not a model file (safetensors, as `cigt train "
			       "--config CONFIG --out MODEL` writes)",
			       name, v ? "not an object" : "not even valid JSON");
	} else if (json_object_get(v, "layers") || json_object_get(v, "train")) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT,
			       "%s: a JSON config (%s), not a model file: train a model from it with "
			       "`cigt train --config %s --out MODEL`",
			       name, json_object_get(v, "train") ? "architecture and training settings"
								 : "an architecture", name);
	} else if (json_object_get(v, "version_policy") || json_object_get(v, "dynamic_batching") ||
		   json_object_get(v, "max_batch_size")) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT,
			       "%s: a model repository's config.json (DIR/<name>/config.json), not a "
			       "model file: `cigtd --model-repository DIR` reads it beside the "
			       "version folders",
			       name);
	} else if (json_object_get(v, "listen") || json_object_get(v, "workers") ||
		   json_object_get(v, "model") || json_object_get(v, "model_repository")) {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT,
			       "%s: a cigtd config file, not a model file: `cigtd --config %s` takes it",
			       name, name);
	} else {
		rc = cigt_fail(err, errlen, CIGT_EFORMAT,
			       "%s: a JSON object, not a model file (safetensors, as `cigt train "
			       "--config CONFIG --out MODEL` writes)",
			       name);
	}
	json_decref(v);
	return rc;
}

int cigt__model_sniff(const void *buf, size_t len, const char *name, bool checkpoint_ok,
		      char *err, size_t errlen)
{
	const uint8_t *p = buf;
	name = name ? name : "the file";
	if (len == 0)
		return cigt_fail(err, errlen, CIGT_EFORMAT,
				 "%s: the file is empty (0 bytes), not a model (an interrupted copy or "
				 "save?); `cigt train --config CONFIG --out MODEL` writes one",
				 name);
	uint64_t hlen = 0;
	for (int i = 7; i >= 0 && len >= 8; i--)
		hlen = (hlen << 8) | p[i];
	/* A plausible length field (bytes 3..7 zero in any real one), and a header after it. */
	bool length_like = len >= 8 && hlen >= 2 && hlen <= MAX_HEADER;
	if (length_like && len > 8 && p[8] == '{') {
		/* A safetensors file, maybe truncated: a checkpoint is one too. */
		if (checkpoint_ok || hlen > len - 8)
			return 0;
		json_t *h = json_loadb((const char *)p + 8, hlen, 0, NULL);
		json_t *meta = json_object_get(h, "__metadata__");
		bool ckpt = json_is_object(meta) && json_object_get(meta, "checkpoint");
		json_decref(h);
		if (ckpt)
			return cigt_fail(err, errlen, CIGT_EFORMAT,
					 "%s: a training checkpoint, not a model file: continue its run "
					 "with `cigt train --config CONFIG --out MODEL --resume %s`; "
					 "MODEL is the model",
					 name, name);
		return 0;
	}
	const char *image = NULL;
	if (len >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8))
		image = "a PNG image";
	else if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		image = "a JPEG image";
	else if (len >= 3 && p[0] == 'P' && (p[1] == '2' || p[1] == '5') && is_space(p[2]))
		image = "a PGM image";
	else if (len >= 3 && p[0] == 'P' && (p[1] == '3' || p[1] == '6') && is_space(p[2]))
		image = "a PPM image";
	if (image)
		return cigt_fail(err, errlen, CIGT_EFORMAT,
				 "%s: %s, not a model file: classify it with `cigt classify MODEL %s`",
				 name, image, name);
	if (len >= 2 && p[0] == 0x1f && p[1] == 0x8b)
		return cigt_fail(err, errlen, CIGT_EFORMAT,
				 "%s: gzip-compressed data (such as an IDX dataset file), not a model "
				 "file: cigt train and cigt eval read datasets with --data DIR",
				 name);
	if (length_like) /* text has no NUL in its first bytes */
		return 0;
	size_t i = len >= 3 && !memcmp(p, "\xef\xbb\xbf", 3) ? 3 : 0;
	while (i < len && is_space(p[i]))
		i++;
	if (i < len && (p[i] == '{' || p[i] == '['))
		return sniff_json(p + i, len - i, name, err, errlen);
	return 0;
}

/* The first <dir>/<version>/model.safetensors (version a positive integer) into file. */
static bool version_model(const char *dir, char *file, size_t len)
{
	DIR *d = opendir(dir);
	bool found = false;
	struct stat st;
	for (struct dirent *v; d && !found && (v = readdir(d));) {
		if (v->d_name[0] < '1' || v->d_name[0] > '9' ||
		    strspn(v->d_name, "0123456789") != strlen(v->d_name))
			continue;
		found = snprintf(file, len, "%s/%s/model.safetensors", dir, v->d_name) < (int)len &&
			stat(file, &st) == 0 && S_ISREG(st.st_mode);
	}
	if (d)
		closedir(d);
	return found;
}

/* A directory given as a model: a repository version folder (the file is inside), a model
 * folder (<version>/model.safetensors), a model repository (<name>/<version>/...), or none. */
int cigt__model_sniff_dir(const char *path, char *err, size_t errlen)
{
	char file[4096];
	struct stat st;
	if (snprintf(file, sizeof file, "%s/model.safetensors", path) < (int)sizeof file &&
	    stat(file, &st) == 0 && S_ISREG(st.st_mode))
		return cigt_fail(err, errlen, CIGT_EINVAL,
				 "%s: a directory (a model repository's version folder?), not a model "
				 "file: the model in it is %s",
				 path, file);
	if (version_model(path, file, sizeof file))
		return cigt_fail(err, errlen, CIGT_EINVAL,
				 "%s: a model's folder in a model repository (<version>/"
				 "model.safetensors), not a model file: one version is %s; `cigtd "
				 "--model-repository` on the folder above it serves them all",
				 path, file);
	DIR *d = opendir(path);
	bool found = false;
	for (struct dirent *e; d && !found && (e = readdir(d));) {
		char sub[4096];
		if (e->d_name[0] != '.' &&
		    snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) < (int)sizeof sub)
			found = version_model(sub, file, sizeof file);
	}
	if (d)
		closedir(d);
	if (found)
		return cigt_fail(err, errlen, CIGT_EINVAL,
				 "%s: a directory laid out as a model repository "
				 "(<name>/<version>/model.safetensors), not a model file: `cigtd "
				 "--model-repository %s` serves it; cigt commands take one model file, "
				 "e.g. %s",
				 path, path, file);
	return cigt_fail(err, errlen, CIGT_EINVAL,
			 "%s: a directory, not a model file (a model is one .safetensors file, as "
			 "`cigt train --config CONFIG --out MODEL` writes)",
			 path);
}
