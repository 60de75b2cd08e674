/* cigt classify MODEL FILE... [--json] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/file.h"
#include "cigt/image.h"
#include "cigt/pool.h"
#include "cli.h"

#define MAX_IMAGE_FILE (64u << 20)

static const char usage[] =
	"usage: cigt classify MODEL FILE... [--dense] [--backend B] [--precision P]\n"
	"Classifies PNG, JPEG, PGM or PPM images (gray or colour, any size: converted\n"
	"and resized to the model's input). One line per file: file, label,\n"
	"probability, route, MACs.\n";

int cmd_classify(int argc, char **argv)
{
	bool dense = false;
	const struct cigt_opt opts[] = {
		{.like = &cli_opt_dense, CIGT_OPT_VAR(dense),
		 .help = "run every expert (same answer, shows the dense MACs)"},
		CIGT_OPT_BIND(cli_opt_backend, cli_backend),
		CIGT_OPT_BIND(cli_opt_precision, cli_precision),
		{0},
	};
	const struct cli_cmd cmd = {usage, 10, 2, -1, opts};
	int status, operand = cli_parse(&cmd, argc, argv, &status);
	if (operand < 0)
		return status;
	struct cigt_model *m;
	struct cigt_engine *e;
	if (cli_load(argv[operand], &m, &e))
		return 1;
	const struct cigt_arch *a = m->arch;
	struct cigt_workspace *ws = cigt_workspace_new(e, 1);
	const int64_t isz = cigt_arch_input_size(a);
	size_t npx = (size_t)a->input.h * a->input.w * a->input.c;
	float *x = malloc((size_t)isz * sizeof(float));
	float *probs = malloc((size_t)a->nclasses * sizeof(float));
	uint8_t *px = malloc(npx);
	int failed = 0;
	if (!ws || !x || !probs || !px) {
		fprintf(stderr, "cigt: out of memory\n");
		failed = 1;
		goto out;
	}
	for (int i = operand + 1; i < argc; i++) {
		const char *path = argv[i];
		void *buf;
		size_t len;
		char err[512];
		struct cigt_image img;
		if (cigt_file_read(path, MAX_IMAGE_FILE, &buf, &len, err, sizeof err)) {
			fprintf(stderr, "cigt: %s\n", err);
			failed++;
			continue;
		}
		int rc = cigt_image_decode(buf, len, &img, err, sizeof err);
		free(buf);
		if (rc) {
			fprintf(stderr, "cigt: %s: %s\n", path, err);
			failed++;
			continue;
		}
		cigt_image_to_input(&img, a->input.c, a->input.w, a->input.h, px);
		cigt_image_destroy(&img);
		cigt_model_preprocess_u8(a, px, x);
		struct cigt_result r;
		cigt_engine_classify(e, ws, x, 1, dense ? CIGT_EXEC_DENSE : CIGT_EXEC_ROUTED, &r,
				     probs, NULL);
		printf("%s\t%s\t%.4f\t", path, a->classes[r.cls], (double)probs[r.cls]);
		for (int l = 0; l < a->nlayers; l++)
			printf("%s%d", l ? "-" : "", r.route[l]);
		printf("\t%lld\n", (long long)r.macs);
	}
out:
	free(x);
	free(probs);
	free(px);
	cigt_workspace_free(ws);
	cigt_engine_free(e);
	cigt_model_free(m);
	return failed ? 1 : 0;
}
