/* cigt info MODEL [--json] */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* A recorded accuracy, or null (-1: not recorded). */
static json_t *acc_json(double a)
{
	return a >= 0 ? json_real(a) : json_null();
}

static const char usage[] =
	"usage: cigt info MODEL|CONFIG [--json]\n"
	"Shows the architecture, parameters, MACs per route and dense, and the\n"
	"operating points (cigt tune) with their validation accuracy and mean MACs.\n"
	"Given a JSON config (cigt train --config), shows its architecture alone.\n";

/* A JSON text (its first non-blank byte is '{'): a config rather than a model file. */
static bool looks_like_json(const char *path)
{
	FILE *f = fopen(path, "rb");
	int c = EOF;
	if (!f)
		return false;
	while ((c = fgetc(f)) == ' ' || c == '\t' || c == '\n' || c == '\r')
		;
	fclose(f);
	return c == '{';
}

/* The model file at path, or for a JSON config its architecture with zero weights. */
static int load_model_or_config(const char *path, struct cigt_model **m, bool *config)
{
	char err[512];
	*config = looks_like_json(path);
	if (!*config) {
		if (!cigt_model_load(path, m, err, sizeof err))
			return 0;
		fprintf(stderr, "cigt: %s\n", err);
		return 1;
	}
	struct cigt_arch *a;
	if (cigt_arch_load(path, &a, err, sizeof err)) {
		fprintf(stderr, "cigt: %s: %s\n", path, err);
		return 1;
	}
	if (cigt_model_new(a, m)) {
		fprintf(stderr, "cigt: out of memory\n");
		return 1;
	}
	return 0;
}

static void shape_str(char *buf, size_t n, struct cigt_shape s)
{
	if (s.h == 1 && s.w == 1)
		snprintf(buf, n, "%d", s.c);
	else
		snprintf(buf, n, "%dx%dx%d", s.c, s.h, s.w);
}

/* "a" when both values agree, "aXb" (height x width) when they differ. */
static const char *pair_str(char *buf, size_t n, int h, int w)
{
	if (h == w)
		snprintf(buf, n, "%d", h);
	else
		snprintf(buf, n, "%dx%d", h, w);
	return buf;
}

static void op_str(char *buf, size_t n, const struct cigt_op_desc *op)
{
	char st[24], pd[24];
	pair_str(st, sizeof st, op->sh, op->sw);
	pair_str(pd, sizeof pd, op->ph, op->pw);
	switch (op->kind) {
	case CIGT_OP_CONV:
		snprintf(buf, n, "conv %dx%d/%s pad %s, %d->%d%s", op->kh, op->kw, st, pd, op->in.c,
			 op->out, op->bias ? "" : " (no bias)");
		break;
	case CIGT_OP_LINEAR:
		snprintf(buf, n, "linear %lld->%d", (long long)cigt_shape_size(op->in), op->out);
		break;
	case CIGT_OP_MAXPOOL:
	case CIGT_OP_AVGPOOL:
		snprintf(buf, n, "%s %dx%d/%s pad %s", cigt_op_name(op->kind), op->kh, op->kw, st,
			 pd);
		break;
	case CIGT_OP_DROPOUT:
		snprintf(buf, n, "dropout %.3g", (double)op->p);
		break;
	case CIGT_OP_RESIDUAL:
		snprintf(buf, n, "residual%s", op->relu ? ", relu after the add" : "");
		break;
	default:
		snprintf(buf, n, "%s", cigt_op_name(op->kind));
	}
}

static void op_line(const char *indent, const struct cigt_op_desc *op, int64_t macs)
{
	char buf[128], line[160], sh[64];
	op_str(buf, sizeof buf, op);
	snprintf(line, sizeof line, "%s%s", indent, buf);
	shape_str(sh, sizeof sh, op->outshape);
	printf("%-40s -> %-10s %10lld MACs\n", line, sh, (long long)macs);
}

/* An expanded op chain: a residual block as one line with its branches indented under it. */
static void print_chain(const char *indent, const struct cigt_op_desc *ops, int n)
{
	char in2[32];
	for (int i = 0; i < n; i++) {
		const struct cigt_op_desc *op = &ops[i];
		if (op->kind != CIGT_OP_RESIDUAL) {
			op_line(indent, op, op->macs);
			continue;
		}
		int64_t macs = 0;
		for (int k = 1; k <= op->nmain + op->nshort + 1; k++)
			macs += op[k].macs;
		struct cigt_op_desc blk = *op;
		op_line(indent, &blk, macs);
		snprintf(in2, sizeof in2, "%s  | ", indent);
		for (int k = 1; k <= op->nmain; k++)
			op_line(in2, &op[k], op[k].macs);
		snprintf(in2, sizeof in2, "%s  + ", indent);
		if (!op->nshort)
			printf("%sidentity shortcut\n", in2);
		for (int k = 0; k < op->nshort; k++)
			op_line(in2, &op[op->nmain + 2 + k], op[op->nmain + 2 + k].macs);
		i += op->nmain + op->nshort + 2;
	}
}

static json_t *info_json(const struct cigt_model *m)
{
	const struct cigt_arch *a = m->arch;
	json_t *layers = json_array();
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		json_t *jl = json_pack("{si sI sI s[iii]}", "experts", L->experts, "expert_macs",
				       (json_int_t)L->expert_macs, "expert_params",
				       (json_int_t)L->expert_params, "output", L->out.c, L->out.h,
				       L->out.w);
		if (L->has_router)
			json_object_set_new(jl, "router",
					    json_pack("{sI sI si}", "macs",
						      (json_int_t)L->router.macs, "params",
						      (json_int_t)L->router.params, "outputs",
						      L->router.out));
		json_array_append_new(layers, jl);
	}
	json_t *j = json_pack("{ss sI si sI sI sf so}", "name", a->name, "parameters",
			      (json_int_t)a->params, "paths", a->npaths, "path_macs",
			      (json_int_t)a->path_macs, "dense_macs", (json_int_t)a->dense_macs,
			      "compute_saved", 1.0 - (double)a->path_macs / (double)a->dense_macs,
			      "layers", layers);
	json_object_set_new(j, "architecture", cigt_arch_json(a));
	json_t *pts = json_array();
	for (int i = 0; i < m->npoints; i++) {
		const struct cigt_point *p = &m->points[i];
		json_t *t = json_array();
		for (int l = 0; l + 1 < a->nlayers; l++)
			json_array_append_new(t, json_real(p->tau[l]));
		json_t *o = json_pack("{ss so sf sf sf}", "name", p->name, "thresholds", t,
				      "confidence", (double)p->confidence, "val_accuracy",
				      p->val_accuracy, "mean_macs", p->mean_macs);
		if (p->second[0]) {
			json_object_set_new(o, "second", json_string(p->second));
			json_object_set_new(o, "second_sha256", json_string(p->second_sha256));
		}
		json_array_append_new(pts, o);
	}
	json_object_set_new(j, "operating_points", pts);
	/* The int8 calibration (proto/model-format.md section 7), when the file has one. */
	json_object_set_new(j, "quantization",
			    m->quant_samples > 0
				    ? json_pack("{si ss s{so so so}}", "samples", m->quant_samples,
						"split", m->quant_split, "accuracy", "fp32",
						acc_json(m->quant_acc[0]), "bf16",
						acc_json(m->quant_acc[1]), "int8",
						acc_json(m->quant_acc[2]))
				    : json_null());
	if (m->provenance) {
		json_t *p = json_loads(m->provenance, 0, NULL);
		json_object_set_new(j, "provenance", p ? p : json_string(m->provenance));
	}
	return j;
}

int cmd_info(int argc, char **argv)
{
	bool as_json = false;
	const struct cigt_opt opts[] = {
		CIGT_OPT_BIND(cli_opt_json, as_json),
		{0},
	};
	const struct cli_cmd cmd = {usage, 9, 1, 1, opts};
	int status, operand = cli_parse(&cmd, argc, argv, &status);
	if (operand < 0)
		return status;
	struct cigt_model *m;
	bool config;
	if (load_model_or_config(argv[operand], &m, &config))
		return 1;
	const struct cigt_arch *a = m->arch;
	if (as_json) {
		json_t *j = info_json(m);
		json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(j);
		cigt_model_free(m);
		return 0;
	}
	char buf[128];
	printf("%s      %s\n", config ? "config" : "model ", a->name);
	if (a->normalized) {
		printf("input       %dx%dx%d, (pixel/255 - mean) / std, mean [", a->input.c,
		       a->input.h, a->input.w);
		for (int k = 0; k < a->input.c; k++)
			printf("%s%.4g", k ? ", " : "", (double)a->mean[k]);
		printf("], std [");
		for (int k = 0; k < a->input.c; k++)
			printf("%s%.4g", k ? ", " : "", (double)a->std[k]);
		printf("]\n");
	} else {
		printf("input       %dx%dx%d, pixels 0..255 -> [%g, %g]\n", a->input.c, a->input.h,
		       a->input.w, (double)a->range_lo, (double)a->range_hi);
	}
	printf("classes     %d:", a->nclasses);
	for (int i = 0; i < a->nclasses; i++)
		printf("%s %s", i ? "," : "", a->classes[i]);
	printf("\n\n");
	for (int l = 0; l < a->nlayers; l++) {
		const struct cigt_layer_desc *L = &a->layers[l];
		printf("layer %d: %d expert%s, each %lld MACs, %lld params\n", l, L->experts,
		       L->experts == 1 ? "" : "s", (long long)L->expert_macs,
		       (long long)L->expert_params);
		print_chain("    ", L->ops, L->nops);
		if (L->has_router) {
			if (L->router.nops) {
				printf("  router %d's own ops:\n", l);
				print_chain("    ", L->router.ops, L->router.nops);
			}
			shape_str(buf, sizeof buf, L->router.pooled);
			char pl[24];
			printf("  router %d: avgpool %s -> %s -> linear %lld->%d -> batchnorm -> "
			       "linear %d->%d: %lld MACs\n",
			       l, pair_str(pl, sizeof pl, L->router.pool_h, L->router.pool_w), buf,
			       (long long)cigt_shape_size(L->router.pooled),
			       L->router.hidden, L->router.hidden, L->router.out,
			       (long long)L->router.macs);
		}
	}
	printf("\nparameters  %lld\n", (long long)a->params);
	printf("paths       %d\n", a->npaths);
	int64_t rmacs = 0;
	for (int l = 0; l + 1 < a->nlayers; l++)
		rmacs += a->layers[l].router.macs;
	printf("MACs/route  %lld (routers included: %lld in experts, %lld in routers)\n",
	       (long long)a->path_macs, (long long)(a->path_macs - rmacs), (long long)rmacs);
	printf("MACs dense  %lld (every expert)\n", (long long)a->dense_macs);
	printf("saved       %.2f%%\n", 100.0 * (1.0 - (double)a->path_macs / (double)a->dense_macs));
	if (m->npoints) {
		printf("\noperating points (validation accuracy, mean MACs per sample)\n");
		for (int i = 0; i < m->npoints; i++) {
			const struct cigt_point *p = &m->points[i];
			printf("  %-22s thresholds ", p->name);
			for (int l = 0; l + 1 < a->nlayers; l++)
				printf("%s%g", l ? "," : "", (double)p->tau[l]);
			printf("  %.2f%%  %.0f (%.3fx a path)", 100 * p->val_accuracy, p->mean_macs,
			       p->mean_macs / (double)a->path_macs);
			if (p->second[0])
				printf("  escalates below %g to %s (sha256 %.12s...)",
				       (double)p->confidence, p->second, p->second_sha256);
			printf("\n");
		}
		printf("\n");
	}
	if (m->quant_samples > 0)
		printf("int8        calibrated on %d images of %s (--precision int8)\n",
		       m->quant_samples, m->quant_split);
	if (m->provenance)
		printf("provenance  %s\n", m->provenance);
	cigt_model_free(m);
	return 0;
}
