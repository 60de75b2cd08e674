/* Architecture JSON (src/model/arch.c): MAC and parameter counts of the reference
 * architecture against the figures worked out by hand in DESIGN.md, single-path baselines, other
 * input geometries and class counts, and every kind of parse error, each message checked for the
 * words that name the problem. Test JSON is written with single quotes (turned into double). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cigt/arch.h"
#include "cigt/error.h"
#include "cigt/model.h"
#include "helpers.h"

/* Returns a static copy of s with ' replaced by ". */
static const char *q(const char *s)
{
	static char buf[8192];
	size_t n = strlen(s);
	cr_assert_lt(n, sizeof buf);
	for (size_t i = 0; i <= n; i++)
		buf[i] = s[i] == '\'' ? '"' : s[i];
	return buf;
}

/* A small valid trellis: 1x8x8 input, K = [1, 2], 3 classes. Tests substitute one part. */
#define HEAD "{'name':'t','input':{'channels':1,'height':8,'width':8},'classes':['a','b','c'],"
#define L0OPS "[{'type':'conv','out':4,'kernel':3,'padding':1},{'type':'relu'}]"
#define L0 "{'experts':1,'ops':" L0OPS ",'router':{'pool':4,'hidden':5}}"
#define L1OPS "[{'type':'flatten'},{'type':'linear','out':3}]"
#define L1 "{'experts':2,'ops':" L1OPS "}"

static void expect_error(const char *json_sq, const char *w1, const char *w2)
{
	char err[512];
	int rc = th_arch_error(q(json_sq), err, sizeof err);
	cr_assert_neq(rc, 0, "accepted an invalid architecture (expected a message with '%s')", w1);
	cr_assert_eq(rc, CIGT_EFORMAT, "rc %d (%s)", rc, err);
	cr_assert(strstr(err, w1), "message '%s' does not mention '%s'", err, w1);
	if (w2)
		cr_assert(strstr(err, w2), "message '%s' does not mention '%s'", err, w2);
	cr_assert_null(strchr(err, '\n'), "message '%s' is not one line", err);
}

static struct cigt_arch *load_reference(void)
{
	char err[512] = "";
	struct cigt_arch *a = NULL;
	int rc = cigt_arch_load(CIGT_REFERENCE_ARCH, &a, err, sizeof err);
	cr_assert_eq(rc, 0, "%s: %s", CIGT_REFERENCE_ARCH, err);
	return a;
}

/* ------------------------------------------------------------------ MAC counts */

Test(macs, reference_route_and_dense_totals)
{
	struct cigt_arch *a = load_reference();
	cr_assert_eq(a->path_macs, 5749632, "path %lld", (long long)a->path_macs);
	cr_assert_eq(a->dense_macs, 11054848, "dense %lld", (long long)a->dense_macs);
	cr_assert_eq(a->npaths, 8);
	cigt_arch_free(a);
}

Test(macs, reference_per_layer_and_router)
{
	struct cigt_arch *a = load_reference();
	cr_assert_eq(a->nlayers, 3);
	cr_assert_eq(a->layers[0].experts, 1);
	cr_assert_eq(a->layers[1].experts, 2);
	cr_assert_eq(a->layers[2].experts, 4);
	cr_assert_eq(a->layers[0].expert_macs, 627200);
	cr_assert_eq(a->layers[1].expert_macs, 5017600);
	cr_assert_eq(a->layers[2].expert_macs, 95872);
	cr_assert(a->layers[0].has_router && a->layers[1].has_router && !a->layers[2].has_router);
	cr_assert_eq(a->layers[0].router.macs, 4352);
	cr_assert_eq(a->layers[1].router.macs, 4608);
	/* The L2 expert op by op: conv1x1 7x7x32x32, maxpool (floor) to 3x3 -> 288, FC 128, 64, 10. */
	const struct cigt_layer_desc *L2 = &a->layers[2];
	cr_assert_eq(L2->ops[0].macs, 50176);
	cr_assert_eq(L2->ops[3].outshape.h, 3);
	cr_assert_eq(L2->ops[5].macs, 288 * 128);
	cr_assert_eq(L2->ops[8].macs, 128 * 64);
	cr_assert_eq(L2->ops[11].macs, 64 * 10);
	cigt_arch_free(a);
}

Test(macs, reference_parameter_count)
{
	/* Trainable: 896 + 2 * 25,696 + 4 * 47,018 + 4,738 + 4,996 = 250,094. Stored floats add
	 * the 960 batch-norm running statistics (the reference's make_model.py reports 251,054). */
	struct cigt_arch *a = load_reference();
	cr_assert_eq(a->params, 250094, "params %lld", (long long)a->params);
	struct cigt_model *m = NULL;
	cr_assert_eq(cigt_model_new(a, &m), 0);
	cr_assert_eq(m->blob_floats, 251054);
	cr_assert_eq(m->ntensors, 82);
	cigt_model_free(m);
}

static char *reference_with_experts(int k1, int k2)
{
	json_error_t je;
	json_t *j = json_load_file(CIGT_REFERENCE_ARCH, 0, &je);
	cr_assert_not_null(j, "%s", je.text);
	json_t *layers = json_object_get(j, "layers");
	json_object_set_new(json_array_get(layers, 1), "experts", json_integer(k1));
	json_object_set_new(json_array_get(layers, 2), "experts", json_integer(k2));
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

Test(macs, single_path_baseline_path_equals_dense)
{
	char *s = reference_with_experts(1, 1);
	struct cigt_arch *a = th_arch(s);
	/* Routers with one output: 32*128 + 128*1 = 4,224 each. */
	cr_assert_eq(a->npaths, 1);
	cr_assert_eq(a->path_macs, a->dense_macs);
	cr_assert_eq(a->path_macs, 627200 + 5017600 + 95872 + 4224 + 4224, "path %lld",
		     (long long)a->path_macs);
	cigt_arch_free(a);
	free(s);
}

static struct cigt_arch *load_models_file(const char *name)
{
	char path[1024], err[512] = "";
	snprintf(path, sizeof path, "%s/models/%s", CIGT_SOURCE_ROOT, name);
	struct cigt_arch *a = NULL;
	int rc = cigt_arch_load(path, &a, err, sizeof err);
	cr_assert_eq(rc, 0, "%s: %s", path, err);
	return a;
}

/* The baselines of models/README.md's table: one layer, one expert, so path = dense. */
static void check_baseline(const char *file, int64_t macs, int64_t params)
{
	struct cigt_arch *a = load_models_file(file);
	cr_assert_eq(a->npaths, 1, "%s", file);
	cr_assert_eq(a->path_macs, macs, "%s: path %lld", file, (long long)a->path_macs);
	cr_assert_eq(a->dense_macs, macs, "%s: dense %lld", file, (long long)a->dense_macs);
	cr_assert_eq(a->params, params, "%s: params %lld", file, (long long)a->params);
	cigt_arch_free(a);
}

/* Worked out by hand: conv 5x5 pad 2 on 28x28 -> max pool -> 14x14 -> conv 5x5 pad 2 -> pool ->
 * 7x7 -> conv 1x1 -> pool -> 3x3 -> flatten -> linear 128 -> 64 -> 10. Batch norm carries 2
 * parameters per channel and no MACs. */
Test(macs, thin_baseline_config)
{
	/* MACs 784*32*25 + 196*32*(25*32) + 49*32*32 + 288*128 + 128*64 + 64*10; parameters
	 * conv (32*25+32) + bn 64, conv (32*800+32) + bn 64, conv (32*32+32) + bn 64,
	 * linear (288*128+128), (128*64+64), (64*10+10). */
	check_baseline("thin.json", 627200 + 5017600 + 50176 + 36864 + 8192 + 640,
		       832 + 64 + 25632 + 64 + 1056 + 64 + 36992 + 8256 + 650);
}

Test(macs, thick_baseline_config)
{
	/* MACs 784*32*25 + 196*64*(25*32) + 49*64*64 + 576*128 + 128*64 + 64*10 ("about 11M"). */
	check_baseline("thick.json", 627200 + 10035200 + 200704 + 73728 + 8192 + 640,
		       832 + 64 + 51264 + 128 + 4160 + 128 + 73856 + 8256 + 650);
}

Test(macs, other_experts_per_layer)
{
	/* K = [1, 3, 5]: dense = L0 + 3 L1 + 5 L2 + routers (32*128 + 128*3, 32*128 + 128*5). */
	char *s = reference_with_experts(3, 5);
	struct cigt_arch *a = th_arch(s);
	int64_t r0 = 4096 + 384, r1 = 4096 + 640;
	cr_assert_eq(a->npaths, 15);
	cr_assert_eq(a->path_macs, 627200 + 5017600 + 95872 + r0 + r1);
	cr_assert_eq(a->dense_macs, 627200 + 3 * 5017600 + 5 * 95872 + r0 + r1);
	cigt_arch_free(a);
	free(s);
}

Test(macs, non_square_strided_padded_by_hand)
{
	/* 3x11x9 input; conv 6 out, kernel [3,2], stride [2,1], padding [1,0] -> 6x6x8;
	 * avgpool 2 pad 1 -> 6x4x5; router pool [2,3] -> 6x2x1 = 12 -> 7 -> 2;
	 * L1: linear 120 -> 5 (x2 experts). */
	const char *s = "{'name':'ns','input':{'channels':3,'height':11,'width':9},"
			"'classes':['a','b','c','d','e'],'layers':["
			"{'experts':1,'ops':[{'type':'conv','out':6,'kernel':[3,2],'stride':[2,1],"
			"'padding':[1,0]},{'type':'avgpool','kernel':2,'padding':1}],"
			"'router':{'pool':[2,3],'hidden':7}},"
			"{'experts':2,'ops':[{'type':'linear','out':5}]}]}";
	struct cigt_arch *a = th_arch(q(s));
	const struct cigt_op_desc *c = &a->layers[0].ops[0];
	cr_assert_eq(c->outshape.c, 6);
	cr_assert_eq(c->outshape.h, 6);
	cr_assert_eq(c->outshape.w, 8);
	cr_assert_eq(c->macs, 6 * 8 * 6 * 3 * 3 * 2);
	cr_assert_eq(a->layers[0].out.h, 4);
	cr_assert_eq(a->layers[0].out.w, 5);
	cr_assert_eq(a->layers[0].router.pooled.h, 2);
	cr_assert_eq(a->layers[0].router.pooled.w, 1);
	cr_assert_eq(a->layers[0].router.macs, 12 * 7 + 7 * 2);
	cr_assert_eq(a->layers[1].expert_macs, 120 * 5);
	cr_assert_eq(a->path_macs, 5184 + 98 + 600);
	cr_assert_eq(a->dense_macs, 5184 + 98 + 2 * 600);
	cigt_arch_free(a);
}

/* ------------------------------------------------------------------ accepted variants */

Test(arch, reference_file_parses_with_train_member)
{
	struct cigt_arch *a = load_reference();
	cr_assert_str_eq(a->name, "fashion_mnist");
	cr_assert_eq(a->nclasses, 10);
	cr_assert_str_eq(a->classes[9], "Ankle boot");
	cr_assert_eq(a->input.c, 1);
	cr_assert_eq(a->input.h, 28);
	cr_assert_eq(a->range_lo, 0.0f);
	cr_assert_eq(a->range_hi, 1.0f);
	cr_assert_eq(a->layers[2].ops[7].kind, CIGT_OP_DROPOUT);
	cr_assert_float_eq(a->layers[2].ops[7].p, 0.185f, 1e-7);
	cigt_arch_free(a);
}

Test(arch, accepts_rgb_non_square_five_classes)
{
	const char *s = "{'name':'rgb-5.x','input':{'channels':3,'height':20,'width':33,"
			"'range':[-1,1]},'classes':['a','b','c','d','e'],'layers':["
			"{'experts':1,'ops':[{'type':'conv','out':8,'kernel':5,'stride':2},"
			"{'type':'batchnorm','eps':0.001},{'type':'relu'},"
			"{'type':'maxpool','kernel':[2,3]}],'router':{'pool':[4,5],'hidden':16}},"
			"{'experts':3,'ops':[{'type':'conv','out':4,'kernel':1,'bias':false},"
			"{'type':'batchnorm'},{'type':'relu'}],'router':{'pool':4,'hidden':8}},"
			"{'experts':2,'ops':[{'type':'flatten'},{'type':'dropout','p':0.3},"
			"{'type':'linear','out':5}]}]}";
	struct cigt_arch *a = th_arch(q(s));
	cr_assert_eq(a->input.c, 3);
	cr_assert_eq(a->input.h, 20);
	cr_assert_eq(a->input.w, 33);
	cr_assert_eq(a->range_lo, -1.0f);
	cr_assert_eq(a->nclasses, 5);
	/* conv: (20-5)/2+1 = 8, (33-5)/2+1 = 15; maxpool [2,3]: 4x5 */
	cr_assert_eq(a->layers[0].out.c, 8);
	cr_assert_eq(a->layers[0].out.h, 4);
	cr_assert_eq(a->layers[0].out.w, 5);
	cr_assert_float_eq(a->layers[0].ops[1].eps, 1e-3f, 1e-9);
	cr_assert_eq(a->layers[0].router.out, 3);
	cr_assert_eq(a->layers[1].router.out, 2);
	cr_assert(!a->layers[1].ops[0].bias);
	cr_assert_eq(a->layers[2].out.c, 5);
	cr_assert_eq(a->npaths, 6);
	cigt_arch_free(a);
}

Test(arch, accepts_single_layer_model)
{
	const char *s = "{'name':'lin','input':{'channels':1,'height':1,'width':1},"
			"'classes':['only'],'layers':[{'experts':1,'ops':[{'type':'linear','out':1}]}]}";
	struct cigt_arch *a = th_arch(q(s));
	cr_assert_eq(a->nlayers, 1);
	cr_assert_eq(a->path_macs, 1);
	cr_assert_eq(a->dense_macs, 1);
	cigt_arch_free(a);
}

Test(arch, canonical_json_round_trip)
{
	struct cigt_arch *a = load_reference();
	char *s = cigt_arch_to_json(a);
	cr_assert_not_null(s);
	struct cigt_arch *b = th_arch(s);
	char *s2 = cigt_arch_to_json(b);
	cr_assert_str_eq(s, s2);
	cr_assert_eq(b->path_macs, a->path_macs);
	cr_assert_eq(b->dense_macs, a->dense_macs);
	cr_assert_eq(b->params, a->params);
	cr_assert_float_eq(b->layers[2].ops[7].p, 0.185f, 1e-7);
	free(s), free(s2);
	cigt_arch_free(a), cigt_arch_free(b);
}

Test(arch, base_of_error_tests_is_valid)
{
	struct cigt_arch *a = th_arch(q(HEAD "'layers':[" L0 "," L1 "]}"));
	cr_assert_eq(a->layers[1].experts, 2);
	cigt_arch_free(a);
}

/* ------------------------------------------------------------------ parse errors */

Test(arch_error, unknown_op_key_named_with_path)
{
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'conv','out':3,'kernal':3},"
			  "{'type':'flatten'},{'type':'linear','out':3}]}]}",
		     "'kernal'", "layers[1].ops[0]");
}

Test(arch_error, unknown_top_level_and_input_keys)
{
	expect_error(HEAD "'layers':[" L0 "," L1 "],'lr':0.1}", "unknown key", "'lr'");
	expect_error("{'name':'t','input':{'channels':1,'height':8,'width':8,'colour':true},"
		     "'classes':['a','b','c'],'layers':[" L0 "," L1 "]}",
		     "input", "'colour'");
	expect_error(HEAD "'layers':[{'experts':1,'ops':" L0OPS ",'router':{'pool':4,'hiden':5}},"
			  L1 "]}",
		     "'hiden'", NULL);
}

Test(arch_error, missing_required_keys)
{
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'linear'}]}]}",
		     "missing key 'out'", "layers[1].ops[0]");
	expect_error(HEAD "'layers':[" L0 ",{'ops':" L1OPS "}]}", "missing key 'experts'",
		     "layers[1]");
	expect_error(HEAD "'layers':[{'experts':1,'ops':" L0OPS ",'router':{'hidden':5}}," L1 "]}",
		     "missing key 'pool'", NULL);
	expect_error("{'name':'t','input':{'channels':1,'width':8},'classes':['a','b','c'],"
		     "'layers':[" L0 "," L1 "]}",
		     "missing key 'height'", NULL);
	expect_error("{'name':'t','classes':['a','b','c'],'layers':[" L0 "," L1 "]}", "input",
		     NULL);
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'out':3}]}]}", "'type'", NULL);
}

Test(arch_error, kernel_larger_than_input)
{
	expect_error(HEAD "'layers':[{'experts':1,'ops':[{'type':'conv','out':4,'kernel':9}],"
			  "'router':{'pool':1,'hidden':5}}," L1 "]}",
		     "does not fit", "layers[0].ops[0]");
	expect_error(HEAD "'layers':[{'experts':1,'ops':[{'type':'maxpool','kernel':[2,9]}],"
			  "'router':{'pool':1,'hidden':5}}," L1 "]}",
		     "does not fit", NULL);
}

Test(arch_error, router_pool_larger_than_layer_output)
{
	expect_error(HEAD "'layers':[{'experts':1,'ops':" L0OPS ",'router':{'pool':9,'hidden':5}},"
			  L1 "]}",
		     "pool", "larger than");
}

Test(arch_error, last_layer_must_end_in_class_count)
{
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'flatten'},"
			  "{'type':'linear','out':4}]}]}",
		     "3 classes", NULL);
	/* A feature map (not flat) with the right channel count is not logits either. */
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'conv','out':3,"
			  "'kernel':1}]}]}",
		     "classes", NULL);
}

Test(arch_error, router_forbidden_on_last_layer)
{
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':" L1OPS ",'router':{'pool':1,"
			  "'hidden':2}}]}",
		     "last layer", "router");
}

Test(arch_error, router_required_on_inner_layers)
{
	expect_error(HEAD "'layers':[{'experts':1,'ops':" L0OPS "}," L1 "]}", "layers[0].router",
		     "missing");
}

Test(arch_error, first_layer_with_two_experts)
{
	expect_error(HEAD "'layers':[{'experts':2,'ops':" L0OPS ",'router':{'pool':4,'hidden':5}},"
			  L1 "]}",
		     "layers[0].experts", "1 expert");
}

Test(arch_error, wrong_types_named)
{
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'linear','out':'3'}]}]}",
		     "layers[1].ops[0].out", "integer");
	expect_error(HEAD "'layers':[" L0 ",{'experts':1.5,'ops':" L1OPS "}]}", "experts",
		     "integer");
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'flatten'},"
			  "{'type':'linear','out':3,'bias':1}]}]}",
		     "bias", "true or false");
	expect_error(HEAD "'layers':[{'experts':1,'ops':[{'type':'conv','out':4,'kernel':[3]}],"
			  "'router':{'pool':4,'hidden':5}}," L1 "]}",
		     "kernel", "[h, w]");
	expect_error(HEAD "'layers':[{'experts':1,'ops':[{'type':'batchnorm','eps':'small'}],"
			  "'router':{'pool':4,'hidden':5}}," L1 "]}",
		     "eps", "number");
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':{'type':'linear','out':3}}]}",
		     "layers[1].ops", "array");
	expect_error("{'name':'t','input':{'channels':1,'height':8,'width':8},'classes':'abc',"
		     "'layers':[" L0 "," L1 "]}",
		     "classes", NULL);
	expect_error("{'name':7,'input':{'channels':1,'height':8,'width':8},"
		     "'classes':['a','b','c'],'layers':[" L0 "," L1 "]}",
		     "name", NULL);
	expect_error("[1, 2]", "object", NULL);
}

Test(arch_error, values_out_of_range)
{
	expect_error(HEAD "'layers':[" L0 ",{'experts':65,'ops':" L1OPS "}]}", "experts",
		     "out of range");
	expect_error(HEAD "'layers':[{'experts':1,'ops':[{'type':'conv','out':4,'kernel':3,"
			  "'stride':0}],'router':{'pool':4,'hidden':5}}," L1 "]}",
		     "stride", "out of range");
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'dropout','p':1.5},"
			  "{'type':'flatten'},{'type':'linear','out':3}]}]}",
		     "p", "out of range");
	expect_error("{'name':'t','input':{'channels':0,'height':8,'width':8},"
		     "'classes':['a','b','c'],'layers':[" L0 "," L1 "]}",
		     "channels", "out of range");
	expect_error(HEAD "'layers':[]}", "layers", NULL);
}

Test(arch_error, unknown_op_type)
{
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'conv3d','out':3}]}]}",
		     "unknown op", "'conv3d'");
}

Test(arch_error, invalid_name)
{
	expect_error("{'name':'has space','input':{'channels':1,'height':8,'width':8},"
		     "'classes':['a','b','c'],'layers':[" L0 "," L1 "]}",
		     "name", "'has space'");
}

Test(arch_error, malformed_json_and_duplicate_keys)
{
	expect_error("{'name':'t',", "JSON", NULL);
	expect_error(HEAD "'name':'u','layers':[" L0 "," L1 "]}", "JSON", "duplicate");
}

Test(arch_error, two_batchnorms_in_a_row)
{
	expect_error(HEAD "'layers':[{'experts':1,'ops':[{'type':'conv','out':4,'kernel':3},"
			  "{'type':'batchnorm'},{'type':'batchnorm'}],'router':{'pool':2,'hidden':5}},"
			  L1 "]}",
		     "batchnorm", NULL);
}

Test(arch_error, load_missing_file_names_path)
{
	char err[512] = "";
	struct cigt_arch *a = (struct cigt_arch *)1;
	int rc = cigt_arch_load("/nonexistent/cigt/arch.json", &a, err, sizeof err);
	cr_assert_neq(rc, 0);
	cr_assert_null(a);
	cr_assert(strstr(err, "/nonexistent/cigt/arch.json"), "message '%s'", err);
}

/* ------------------------------------------------------ second models: same input, same classes */

static struct cigt_arch *parse_sq(const char *json_sq)
{
	char err[512] = "";
	struct cigt_arch *a = NULL;
	const char *t = q(json_sq);
	cr_assert_eq(cigt_arch_parse(t, strlen(t), &a, err, sizeof err), 0, "%s", err);
	return a;
}

/* An escalating point's second model must take the same input and answer the same classes:
 * every difference below is one the points' reader and cigt tune must refuse. */
Test(arch, same_io_compares_input_scaling_and_classes)
{
#define REST "'layers':[" L0 "," L1 "]}"
	struct cigt_arch *a = parse_sq(HEAD REST);
	struct cigt_arch *same = parse_sq(HEAD REST);
	/* Other widths inside (the thick baseline's case): still the same input and classes. */
	struct cigt_arch *wider = parse_sq(HEAD "'layers':[{'experts':1,'ops':[{'type':'conv',"
					   "'out':9,'kernel':3,'padding':1},{'type':'relu'}],'router':"
					   "{'pool':4,'hidden':5}}," L1 "]}");
	cr_assert(cigt_arch_same_io(a, same) && cigt_arch_same_io(a, wider));
	const char *differ[] = {
		/* a class renamed, reordered, one more */
		"{'name':'t','input':{'channels':1,'height':8,'width':8},'classes':['a','B','c']," REST,
		"{'name':'t','input':{'channels':1,'height':8,'width':8},'classes':['b','a','c']," REST,
		"{'name':'t','input':{'channels':1,'height':8,'width':8},'classes':['a','b','c','d'],"
		"'layers':[" L0 ",{'experts':2,'ops':[{'type':'flatten'},{'type':'linear','out':4}]}]}",
		/* geometry, range, mean/std */
		"{'name':'t','input':{'channels':1,'height':8,'width':9},'classes':['a','b','c']," REST,
		"{'name':'t','input':{'channels':1,'height':8,'width':8,'range':[-1,1]},"
		"'classes':['a','b','c']," REST,
		"{'name':'t','input':{'channels':1,'height':8,'width':8,'mean':[0.5],'std':[0.25]},"
		"'classes':['a','b','c']," REST,
	};
	struct cigt_arch *norm = parse_sq(differ[5]);
	struct cigt_arch *norm2 = parse_sq("{'name':'t','input':{'channels':1,'height':8,'width':8,"
					   "'mean':[0.5],'std':[0.5]},'classes':['a','b','c']," REST);
	for (size_t i = 0; i < sizeof differ / sizeof differ[0]; i++) {
		struct cigt_arch *b = parse_sq(differ[i]);
		cr_assert(!cigt_arch_same_io(a, b) && !cigt_arch_same_io(b, a), "case %zu", i);
		cigt_arch_free(b);
	}
	/* Mean/std scaling: the same values match, other values do not. */
	struct cigt_arch *norm_same = parse_sq(differ[5]);
	cr_assert(cigt_arch_same_io(norm, norm_same));
	cr_assert(!cigt_arch_same_io(norm, norm2));
#undef REST
	cigt_arch_free(a);
	cigt_arch_free(same);
	cigt_arch_free(wider);
	cigt_arch_free(norm);
	cigt_arch_free(norm2);
	cigt_arch_free(norm_same);
}

/* ------------------------------------------------------------------ residual blocks */

/* A residual trellis on the 1x8x8 base: a stem, an identity block, a projection block with
 * stride 2 (4x8x8 -> 6x4x4), global pooling and a linear head in layer 1; the router runs a
 * conv and a block of its own. MACs worked out by hand below. */
#define RBLK_ID "{'type':'residual','main':[{'type':'conv','out':4,'kernel':3,'padding':1,'bias':false},{'type':'batchnorm'},{'type':'relu'},{'type':'conv','out':4,'kernel':3,'padding':1,'bias':false},{'type':'batchnorm'}]}"
#define RBLK_PROJ "{'type':'residual','main':[{'type':'conv','out':6,'kernel':3,'stride':2,'padding':1,'bias':false},{'type':'batchnorm'}],'shortcut':[{'type':'conv','out':6,'kernel':1,'stride':2,'bias':false},{'type':'batchnorm'}],'relu':false}"
#define RL0 "{'experts':1,'ops':[{'type':'conv','out':4,'kernel':3,'padding':1}," RBLK_ID "],'router':{'ops':[{'type':'conv','out':2,'kernel':3,'stride':2,'padding':1},{'type':'residual','main':[{'type':'relu'}]}],'pool':2,'hidden':5}}"
#define RL1 "{'experts':2,'ops':[" RBLK_PROJ ",{'type':'globalavgpool'},{'type':'linear','out':3}]}"

Test(residual, shapes_macs_and_expansion)
{
	struct cigt_arch *a = th_arch(q(HEAD "'layers':[" RL0 "," RL1 "]}"));
	const struct cigt_layer_desc *Y0 = &a->layers[0], *Y1 = &a->layers[1];
	/* layer 0: conv, RESIDUAL, 5 main ops, SHORTCUT, ADD */
	cr_assert_eq(Y0->nops, 9);
	cr_assert_eq(Y0->ops[1].kind, CIGT_OP_RESIDUAL);
	cr_assert_eq(Y0->ops[1].nmain, 5);
	cr_assert_eq(Y0->ops[1].nshort, 0);
	cr_assert(Y0->ops[1].relu);
	cr_assert_eq(Y0->ops[7].kind, CIGT_OP_SHORTCUT);
	cr_assert_eq(Y0->ops[8].kind, CIGT_OP_ADD);
	cr_assert_eq(Y0->ops[4].branch, CIGT_BRANCH_MAIN);
	cr_assert_eq(Y0->ops[4].top, 1);
	cr_assert_eq(Y0->ops[4].sub, 2);
	/* stem 64*4*9 = 2304, block 2 x 64*4*4*9 = 9216 */
	cr_assert_eq(Y0->expert_macs, 2304 + 2 * 9216);
	/* router: conv 4->2 3x3 stride 2 -> 2x4x4: 16*2*4*9 = 1152; pool 2 -> 2x2x2 = 8;
	 * 8*5 + 5*2 */
	cr_assert_eq(Y0->router.nops, 5);
	cr_assert_eq(Y0->router.chain_out.c, 2);
	cr_assert_eq(Y0->router.chain_out.h, 4);
	cr_assert_eq(Y0->router.pooled.h, 2);
	cr_assert_eq(Y0->router.macs, 1152 + 40 + 10);
	/* layer 1: RESIDUAL, conv, bn, SHORTCUT, conv, bn, ADD, gap, linear */
	cr_assert_eq(Y1->nops, 9);
	cr_assert_eq(Y1->ops[0].nshort, 2);
	cr_assert_not(Y1->ops[6].relu);
	cr_assert_eq(Y1->ops[4].branch, CIGT_BRANCH_SHORTCUT);
	cr_assert_eq(Y1->ops[7].kind, CIGT_OP_GLOBALAVGPOOL);
	cr_assert_eq(Y1->ops[7].outshape.c, 6);
	cr_assert_eq(Y1->ops[7].outshape.h, 1);
	/* main conv 16*6*4*9 = 3456, shortcut 16*6*4 = 384, linear 6*3 = 18 */
	cr_assert_eq(Y1->expert_macs, 3456 + 384 + 18);
	cr_assert_eq(a->path_macs, 2304 + 2 * 9216 + 1202 + 3858);
	cr_assert_eq(a->dense_macs, 2304 + 2 * 9216 + 1202 + 2 * 3858);
	cigt_arch_free(a);
}

Test(residual, canonical_json_round_trip_and_tensor_names)
{
	struct cigt_arch *a = th_arch(q(HEAD "'layers':[" RL0 "," RL1 "]}"));
	char *s = cigt_arch_to_json(a);
	char err[512];
	struct cigt_arch *b = NULL;
	cr_assert_eq(cigt_arch_parse(s, strlen(s), &b, err, sizeof err), 0, "%s", err);
	char *t = cigt_arch_to_json(b);
	cr_assert_str_eq(s, t);
	cr_assert(strstr(s, "\"type\":\"residual\""));
	cr_assert(strstr(s, "\"type\":\"globalavgpool\""));
	cr_assert_null(strstr(s, "\"shortcut\":{"));
	cr_assert_null(strstr(s, "\"add\""));
	free(s);
	free(t);
	cigt_arch_free(b);
	struct cigt_model *m = NULL;
	cr_assert_eq(cigt_model_new(a, &m), 0);
	const char *want[] = {"layers.0.experts.0.ops.1.main.0.weight",
			      "layers.0.experts.0.ops.1.main.4.running_var",
			      "routers.0.ops.0.weight", "routers.0.ops.0.bias",
			      "layers.1.experts.1.ops.0.shortcut.0.weight",
			      "layers.1.experts.1.ops.0.shortcut.1.running_mean",
			      "layers.1.experts.1.ops.2.weight"};
	for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
		bool found = false;
		for (int i = 0; i < m->ntensors; i++)
			found |= strcmp(m->tensors[i].name, want[w]) == 0;
		cr_assert(found, "no tensor %s", want[w]);
	}
	/* the router chain's tensors come before fc1, the shortcut's after the main branch */
	int rc0 = -1, fc1 = -1, m4 = -1, s0 = -1;
	for (int i = 0; i < m->ntensors; i++) {
		const char *n = m->tensors[i].name;
		rc0 = strcmp(n, "routers.0.ops.0.weight") ? rc0 : i;
		fc1 = strcmp(n, "routers.0.fc1.weight") ? fc1 : i;
		m4 = strcmp(n, "layers.1.experts.0.ops.0.main.1.weight") ? m4 : i;
		s0 = strcmp(n, "layers.1.experts.0.ops.0.shortcut.0.weight") ? s0 : i;
	}
	cr_assert(rc0 >= 0 && rc0 < fc1 && m4 >= 0 && m4 < s0);
	cigt_model_free(m);
}

Test(residual, cifar_resnet110_trellis_figures)
{
	char err[512];
	struct cigt_arch *a = NULL;
	int rc = cigt_arch_load(CIGT_SOURCE_ROOT "/models/cifar10_resnet110_trellis.json", &a, err,
				sizeof err);
	cr_assert_eq(rc, 0, "%s", err);
	/* 54 BasicBlocks, 3x3 convs: per block 2 * H*W * C_out * C_in * 9 plus 1x1 projections.
	 * One path = the thin ResNet (9@16, 9@12, 18@16 at 32x32, stride 2 at blocks 18, 36). */
	int64_t macs = 32 * 32 * 16 * 3 * 9; /* stem */
	macs += 9 * 2 * (int64_t)32 * 32 * 16 * 16 * 9;
	macs += (int64_t)32 * 32 * 9 * (12 * 16 + 12 * 12) + 32 * 32 * 12 * 16; /* 1st @12 */
	macs += 8 * 2 * (int64_t)32 * 32 * 12 * 12 * 9;
	macs += (int64_t)16 * 16 * 9 * (16 * 12 + 16 * 16) + 16 * 16 * 16 * 12; /* 18: s2, 12->16 */
	macs += 17 * 2 * (int64_t)16 * 16 * 16 * 16 * 9;
	macs += (int64_t)8 * 8 * 9 * (16 * 16 * 2) + 8 * 8 * 16 * 16; /* block 36: stride 2 */
	macs += 17 * 2 * (int64_t)8 * 8 * 16 * 16 * 9;
	macs += 16 * 10;
	cr_assert_eq(macs, 93896864);
	int64_t r0 = 16 * 16 * 16 * 16 * 9 + 1024 * 128 + 128 * 2;
	int64_t r1 = 16 * 16 * 16 * 16 * 9 + 1024 * 128 + 128 * 4;
	cr_assert_eq(a->path_macs, macs + r0 + r1);
	cr_assert_eq(a->npaths, 8);
	cigt_arch_free(a);
}

Test(residual_error, shapes_that_do_not_add)
{
	/* identity shortcut with a width change */
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'residual','main':"
			  "[{'type':'conv','out':5,'kernel':1}]}," "{'type':'flatten'},{'type':'linear','out':3}]}]}",
		     "layers[1].ops[0]: the main branch outputs 5x8x8 but the identity shortcut",
		     "4x8x8");
	/* a shortcut that gives another shape */
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'residual','main':"
			  "[{'type':'conv','out':4,'kernel':3,'stride':2,'padding':1}],'shortcut':"
			  "[{'type':'conv','out':4,'kernel':1}]},{'type':'flatten'},"
			  "{'type':'linear','out':3}]}]}",
		     "the main branch outputs 4x4x4 but the shortcut 4x8x8", NULL);
}

Test(residual_error, ops_out_of_place)
{
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'residual','main':"
			  "[{'type':'linear','out':3}]}]}]}",
		     "layers[1].ops[0].main[0].type: 'linear' cannot go here", "residual branch");
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'residual','main':"
			  "[{'type':'residual','main':[{'type':'relu'}]}]}]}]}",
		     "main[0].type: 'residual' cannot go here", NULL);
	expect_error(HEAD "'layers':[{'experts':1,'ops':" L0OPS ",'router':{'ops':[{'type':"
			  "'dropout'}],'pool':4,'hidden':5}}," L1 "]}",
		     "layers[0].router.ops[0].type: 'dropout' cannot go here", "router's chain");
	expect_error(HEAD "'layers':[{'experts':1,'ops':" L0OPS ",'router':{'ops':[{'type':"
			  "'globalavgpool'}],'pool':4,'hidden':5}}," L1 "]}",
		     "'globalavgpool' cannot go here", NULL);
}

Test(residual_error, keys_and_lengths)
{
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'residual'}]}]}",
		     "layers[1].ops[0]: missing key 'main'", NULL);
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'residual','main':[]}]}]}",
		     "layers[1].ops[0].main: expected an array of 1 to 16 ops", NULL);
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'residual','main':"
			  "[{'type':'relu'}],'shortcut':{}}]}]}",
		     "layers[1].ops[0].shortcut: expected an array of 0 to 16 ops", NULL);
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'residual','main':"
			  "[{'type':'relu'}],'relu':1}]}]}",
		     "layers[1].ops[0].relu: expected true or false", NULL);
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'residual','main':"
			  "[{'type':'relu'}],'skip':[]}]}]}",
		     "layers[1].ops[0]: unknown key 'skip'", NULL);
	expect_error(HEAD "'layers':[" L0 ",{'experts':2,'ops':[{'type':'globalavgpool',"
			  "'kernel':2}]}]}",
		     "unknown key 'kernel'", NULL);
	expect_error(HEAD "'layers':[{'experts':1,'ops':" L0OPS ",'router':{'ops':[],'pool':4,"
			  "'hidden':5}}," L1 "]}",
		     "layers[0].router.ops: expected an array of 1 to 16 ops", NULL);
	/* the pool must fit what the router's chain outputs */
	expect_error(HEAD "'layers':[{'experts':1,'ops':" L0OPS ",'router':{'ops':[{'type':"
			  "'maxpool','kernel':4}],'pool':4,'hidden':5}}," L1 "]}",
		     "layers[0].router.pool: 4x4 is larger than the router chain's output 2x2",
		     NULL);
}

/* 256 entries of 16-op blocks expand past 2,048 ops: refused by name, not truncated. */
Test(residual_error, too_many_ops_once_expanded)
{
	size_t cap = 1 << 20, n = 0;
	char *s = malloc(cap);
	cr_assert_not_null(s);
	n += (size_t)snprintf(s + n, cap - n,
			      "{\"name\":\"t\",\"input\":{\"channels\":1,\"height\":8,\"width\":8},"
			      "\"classes\":[\"a\",\"b\",\"c\"],\"layers\":[{\"experts\":1,\"ops\":[");
	for (int b = 0; b < 150; b++) {
		n += (size_t)snprintf(s + n, cap - n, "%s{\"type\":\"residual\",\"main\":[", b ? "," : "");
		for (int k = 0; k < 16; k++)
			n += (size_t)snprintf(s + n, cap - n, "%s{\"type\":\"relu\"}", k ? "," : "");
		n += (size_t)snprintf(s + n, cap - n, "]}");
	}
	n += (size_t)snprintf(s + n, cap - n, ",{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":3}]}]}");
	char err[512];
	struct cigt_arch *a = NULL;
	int rc = cigt_arch_parse(s, n, &a, err, sizeof err);
	cr_assert_eq(rc, CIGT_EFORMAT);
	cr_assert(strstr(err, "more than 2048 ops once residual blocks are expanded"), "%s", err);
	free(s);
}
