/* What the daemon says about its models: native model info, OIP model metadata, Triton's model
 * configuration and statistics extensions, and the per-version series of /metrics. Rendering
 * only: the loop thread calls these with holders it references (or the registry it owns). */
#include <stdio.h>
#include <string.h>

#include "srv.h"

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

void srv_api_model_info(const struct srv_model *m, struct srv_buf *b)
{
	const struct cigt_arch *a = m->m->arch;
	srv_buf_puts(b, "{\"name\": ");
	srv_buf_json_str(b, a->name);
	srv_buf_printf(b, ", \"version\": \"%lld\"", m->version);
	srv_buf_printf(b, ", \"input\": [%d, %d, %d], \"range\": [%g, %g], \"classes\": [",
		       a->input.c, a->input.h, a->input.w, (double)a->range_lo,
		       (double)a->range_hi);
	for (int k = 0; k < a->nclasses; k++) {
		if (k)
			srv_buf_puts(b, ", ");
		srv_buf_json_str(b, a->classes[k]);
	}
	srv_buf_puts(b, "], \"experts\": [");
	for (int l = 0; l < a->nlayers; l++)
		srv_buf_printf(b, "%s%d", l ? ", " : "", a->layers[l].experts);
	srv_buf_printf(b, "], \"path_macs\": %lld, \"dense_macs\": %lld, \"params\": %lld",
		       (long long)a->path_macs, (long long)a->dense_macs, (long long)a->params);
	srv_buf_printf(b, ", \"precision\": \"%s\", \"engine\": ",
		       cigt_precision_name(cigt_engine_opts_of(m->e).precision));
	srv_buf_json_str(b, cigt_engine_backend(m->e));
	/* The compute dial: the default point and every point, with what a budget needs. */
	srv_buf_puts(b, ", \"compute\": ");
	if (m->default_point >= 0)
		srv_buf_json_str(b, m->m->points[m->default_point].name);
	else
		srv_buf_puts(b, "null");
	srv_buf_puts(b, ", \"points\": [");
	for (int p = 0; p < m->m->npoints; p++) {
		const struct cigt_point *pt = &m->m->points[p];
		srv_buf_puts(b, p ? ", {\"name\": " : "{\"name\": ");
		srv_buf_json_str(b, pt->name);
		srv_buf_puts(b, ", \"thresholds\": [");
		for (int l = 0; l + 1 < a->nlayers; l++)
			srv_buf_printf(b, "%s%.7g", l ? ", " : "", (double)pt->tau[l]);
		srv_buf_printf(b, "], \"confidence\": %.7g, \"second\": ", (double)pt->confidence);
		if (pt->second[0])
			srv_buf_json_str(b, pt->second);
		else
			srv_buf_puts(b, "null");
		srv_buf_printf(b, ", \"val_accuracy\": %.6f, \"mean_macs\": %.0f, "
				  "\"worst_macs\": %lld}", pt->val_accuracy, pt->mean_macs,
			       (long long)cigt_engine_dial_worst_macs(m->e, &m->dials[p]));
	}
	srv_buf_puts(b, "]}\n");
}

void srv_api_v2_meta(const struct srv_registry *reg, const struct srv_model *m,
		     struct srv_buf *b)
{
	const struct cigt_arch *a = m->m->arch;
	srv_buf_puts(b, "{\"name\": ");
	srv_buf_json_str(b, m->name);
	srv_buf_puts(b, ", \"versions\": ");
	srv_registry_versions(reg, m->name, b);
	srv_buf_puts(b, ", \"platform\": \"cigt\", \"inputs\": [{\"name\": "
			"\"image\", \"datatype\": \"UINT8\", \"shape\": ");
	srv_buf_printf(b, "[-1, %d, %d, %d]}], \"outputs\": [", a->input.c, a->input.h,
		       a->input.w);
	srv_buf_printf(b, "{\"name\": \"probabilities\", \"datatype\": \"FP32\", \"shape\": [-1, "
			  "%d]}, ", a->nclasses);
	srv_buf_puts(b, "{\"name\": \"class\", \"datatype\": \"INT64\", \"shape\": [-1]}, ");
	srv_buf_printf(b, "{\"name\": \"route\", \"datatype\": \"INT32\", \"shape\": [-1, %d]}, ",
		       a->nlayers);
	srv_buf_puts(b, "{\"name\": \"macs\", \"datatype\": \"INT64\", \"shape\": [-1]}, ");
	int P = 1;
	for (int l = 0; l < a->nlayers; l++)
		P *= a->layers[l].experts;
	srv_buf_printf(b, "{\"name\": \"paths\", \"datatype\": \"BOOL\", \"shape\": [-1, %d]}, ",
		       P);
	srv_buf_puts(b, "{\"name\": \"escalated\", \"datatype\": \"BOOL\", \"shape\": [-1]}]}\n");
}

void srv_api_v2_config(const struct srv_registry *reg, const struct srv_model *m,
		       struct srv_buf *b)
{
	const struct cigt_arch *a = m->m->arch;
	const struct srv_model_cfg *mc = srv_registry_model_cfg(reg, m->name);
	srv_buf_puts(b, "{\"name\": ");
	srv_buf_json_str(b, m->name);
	srv_buf_puts(b, ", \"platform\": \"cigt\", \"backend\": \"cigt\", \"version_policy\": ");
	switch (mc->policy) {
	case SRV_POLICY_ALL:
		srv_buf_puts(b, "{\"all\": {}}");
		break;
	case SRV_POLICY_LATEST:
		srv_buf_printf(b, "{\"latest\": {\"num_versions\": %d}}", mc->latest);
		break;
	case SRV_POLICY_SPECIFIC:
		srv_buf_puts(b, "{\"specific\": {\"versions\": [");
		for (int i = 0; i < mc->nspecific; i++)
			srv_buf_printf(b, "%s%lld", i ? ", " : "", mc->specific[i]);
		srv_buf_puts(b, "]}}");
		break;
	}
	/* Dims leave out the batch dimension, as Triton's do when max_batch_size > 0. */
	srv_buf_printf(b, ", \"max_batch_size\": %d, \"input\": [{\"name\": \"image\", "
			  "\"data_type\": \"TYPE_UINT8\", \"format\": \"FORMAT_NCHW\", \"dims\": "
			  "[%d, %d, %d]}], \"output\": [",
		       m->bat.max_batch, a->input.c, a->input.h, a->input.w);
	srv_buf_printf(b, "{\"name\": \"probabilities\", \"data_type\": \"TYPE_FP32\", \"dims\": "
			  "[%d], \"label_filename\": \"\"}, ", a->nclasses);
	srv_buf_puts(b, "{\"name\": \"class\", \"data_type\": \"TYPE_INT64\", \"dims\": [1]}, ");
	srv_buf_printf(b, "{\"name\": \"route\", \"data_type\": \"TYPE_INT32\", \"dims\": [%d]}, ",
		       a->nlayers);
	srv_buf_puts(b, "{\"name\": \"macs\", \"data_type\": \"TYPE_INT64\", \"dims\": [1]}, ");
	int P = 1;
	for (int l = 0; l < a->nlayers; l++)
		P *= a->layers[l].experts;
	srv_buf_printf(b, "{\"name\": \"paths\", \"data_type\": \"TYPE_BOOL\", \"dims\": [%d]}, ",
		       P);
	srv_buf_puts(b, "{\"name\": \"escalated\", \"data_type\": \"TYPE_BOOL\", \"dims\": [1]}], ");
	srv_buf_printf(b, "\"dynamic_batching\": {\"max_queue_delay_microseconds\": %d, "
			  "\"default_queue_policy\": {\"max_queue_size\": %d, "
			  "\"default_timeout_microseconds\": %lld}}, ",
		       m->bat.max_delay_us, m->bat.queue_limit, (long long)m->bat.timeout_ms * 1000);
	srv_buf_puts(b, "\"instance_group\": [{\"kind\": \"KIND_CPU\", \"count\": 1}], ");
	/* Triton's ModelConfig.parameters (string values): what the engine runs on. */
	const struct cigt_engine_opts eo = cigt_engine_opts_of(m->e);
	srv_buf_printf(b, "\"parameters\": {\"backend\": {\"string_value\": \"%s\"}, "
			  "\"precision\": {\"string_value\": \"%s\"}, \"isa\": {\"string_value\": ",
		       cigt_backend_name(eo.backend), cigt_precision_name(eo.precision));
	srv_buf_json_str(b, cigt_engine_isa(m->e));
	srv_buf_puts(b, "}}}\n");
}

struct stats_ctx {
	struct srv_buf *b;
	const char *name;
	long long version;
	bool first;
};

static void duration(struct srv_buf *b, const char *key, uint64_t count, uint64_t ns, bool last)
{
	srv_buf_printf(b, "\"%s\": {\"count\": %llu, \"ns\": %llu}%s", key,
		       (unsigned long long)count, (unsigned long long)ns, last ? "" : ", ");
}

static void stats_one(void *ctx, const struct srv_model *m)
{
	struct stats_ctx *c = ctx;
	if ((c->name && strcmp(c->name, m->name)) || (c->version && c->version != m->version))
		return;
	struct srv_buf *b = c->b;
	const struct srv_vstats *s = &m->st;
	srv_buf_puts(b, c->first ? "{\"name\": " : ", {\"name\": ");
	c->first = false;
	srv_buf_json_str(b, m->name);
	uint64_t execs = LOAD(s->compute_count), infs = LOAD(s->inference_count);
	srv_buf_printf(b, ", \"version\": \"%lld\", \"last_inference\": %llu, "
			  "\"inference_count\": %llu, \"execution_count\": %llu, "
			  "\"inference_stats\": {",
		       m->version, (unsigned long long)LOAD(s->last_inference_ms),
		       (unsigned long long)infs, (unsigned long long)execs);
	duration(b, "success", LOAD(s->success_count), LOAD(s->success_ns), false);
	duration(b, "fail", LOAD(s->fail_count), LOAD(s->fail_ns), false);
	duration(b, "queue", LOAD(s->queue_count), LOAD(s->queue_ns), false);
	/* compute_input: requests decoded; compute_infer: engine calls; compute_output: answers
	 * encoded (struct srv_vstats says what each stage spans). */
	duration(b, "compute_input", LOAD(s->input_count), LOAD(s->input_ns), false);
	duration(b, "compute_infer", execs, LOAD(s->compute_ns), false);
	duration(b, "compute_output", LOAD(s->output_count), LOAD(s->output_ns), false);
	duration(b, "cache_hit", 0, 0, false);
	duration(b, "cache_miss", 0, 0, true);
	/* One entry per batch size executed, ascending, as Triton's: compute_infer is the engine
	 * time of those executions, compute_input/compute_output count them with 0 ns (requests,
	 * not batches, are decoded and encoded: their time is in inference_stats only). */
	srv_buf_puts(b, "}, \"batch_stats\": [");
	bool first = true;
	for (int k = 1; k < s->nbatch; k++) {
		uint64_t n = LOAD(s->batch[k].count);
		if (!n)
			continue;
		srv_buf_printf(b, "%s{\"batch_size\": %d, ", first ? "" : ", ", k);
		first = false;
		duration(b, "compute_input", n, 0, false);
		duration(b, "compute_infer", n, LOAD(s->batch[k].ns), false);
		duration(b, "compute_output", n, 0, true);
		srv_buf_puts(b, "}");
	}
	srv_buf_puts(b, "]}");
}

void srv_api_v2_stats(const struct srv_registry *reg, const char *name, long long version,
		      struct srv_buf *b)
{
	struct stats_ctx c = {b, name, version, true};
	srv_buf_puts(b, "{\"model_stats\": [");
	srv_registry_foreach(reg, stats_one, &c);
	srv_buf_puts(b, "]}\n");
}

void srv_api_observe(struct srv_model *m, int status, uint64_t ns)
{
	struct srv_vstats *s = &m->st;
	if (status == 200) {
		atomic_fetch_add_explicit(&s->success_count, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->success_ns, ns, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&s->fail_count, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->fail_ns, ns, memory_order_relaxed);
	}
	srv_hist_observe(&s->duration, ns);
}

/* One metric family per pass over the versions: the text format wants a family's samples
 * together. */
enum {
	MET_ENGINE,
	MET_REQUESTS,
	MET_DURATION,
	MET_SAMPLES,
	MET_MACS,
	MET_DENSE,
	MET_ROUTES,
	MET_POINTS,
	MET_PATHS,
	MET_ESCALATED,
	MET_STAGE_SECONDS,
	MET_STAGE_RUNS,
	MET_COUNT
};

/* The stages of an inference request in the order it goes through them, as
 * cigt_model_stage_*_total{stage} names them (struct srv_vstats says what each spans). */
enum { STAGE_RECEIVE, STAGE_WAIT, STAGE_DECODE, STAGE_QUEUE, STAGE_ENGINE, STAGE_ENCODE,
       STAGE_COUNT };
static const char *const stage_names[STAGE_COUNT] = {"receive", "wait", "decode", "queue",
						     "engine", "encode"};

struct stage {
	uint64_t count, ns;
};

static struct stage stage_of(const struct srv_vstats *s, int k)
{
	switch (k) {
	case STAGE_RECEIVE:
		return (struct stage){LOAD(s->input_count), LOAD(s->receive_ns)};
	case STAGE_WAIT:
		return (struct stage){LOAD(s->input_count), LOAD(s->wait_ns)};
	case STAGE_DECODE:
		return (struct stage){LOAD(s->input_count), LOAD(s->input_ns)};
	case STAGE_QUEUE:
		return (struct stage){LOAD(s->queue_count), LOAD(s->queue_ns)};
	case STAGE_ENGINE:
		return (struct stage){LOAD(s->compute_count), LOAD(s->compute_ns)};
	default:
		return (struct stage){LOAD(s->output_count), LOAD(s->output_ns)};
	}
}

struct met_ctx {
	struct srv_buf *b;
	int which;
};

static void met_one(void *ctx, const struct srv_model *m)
{
	struct met_ctx *c = ctx;
	struct srv_buf *b = c->b;
	const struct srv_vstats *s = &m->st;
	char lab[160];
	snprintf(lab, sizeof lab, "model=\"%s\",version=\"%lld\"", m->name, m->version);
	switch (c->which) {
	case MET_ENGINE: {
		const struct cigt_engine_opts o = cigt_engine_opts_of(m->e);
		srv_buf_printf(b, "cigt_model_engine_info{%s,backend=\"%s\",precision=\"%s\","
				  "isa=\"%s\"} 1\n", lab, cigt_backend_name(o.backend),
			       cigt_precision_name(o.precision), cigt_engine_isa(m->e));
		break;
	}
	case MET_REQUESTS:
		srv_buf_printf(b, "cigt_model_requests_total{%s,result=\"success\"} %llu\n", lab,
			       (unsigned long long)LOAD(s->success_count));
		srv_buf_printf(b, "cigt_model_requests_total{%s,result=\"failure\"} %llu\n", lab,
			       (unsigned long long)LOAD(s->fail_count));
		break;
	case MET_DURATION: {
		uint64_t cum = 0;
		const struct srv_hist *h = &s->duration;
		for (int i = 0; i <= h->n; i++) {
			cum += LOAD(h->counts[i]);
			if (i < h->n)
				srv_buf_printf(b, "cigt_model_request_duration_seconds_bucket{%s,"
						  "le=\"%g\"} %llu\n", lab, h->bounds[i],
					       (unsigned long long)cum);
			else
				srv_buf_printf(b, "cigt_model_request_duration_seconds_bucket{%s,"
						  "le=\"+Inf\"} %llu\n", lab, (unsigned long long)cum);
		}
		srv_buf_printf(b, "cigt_model_request_duration_seconds_sum{%s} %.9g\n", lab,
			       (double)LOAD(h->sum) * h->scale);
		srv_buf_printf(b, "cigt_model_request_duration_seconds_count{%s} %llu\n", lab,
			       (unsigned long long)cum);
		break;
	}
	case MET_SAMPLES:
		srv_buf_printf(b, "cigt_model_samples_total{%s} %llu\n", lab,
			       (unsigned long long)LOAD(s->inference_count));
		break;
	case MET_MACS:
		srv_buf_printf(b, "cigt_model_macs_total{%s} %llu\n", lab,
			       (unsigned long long)LOAD(s->macs));
		break;
	case MET_DENSE:
		srv_buf_printf(b, "cigt_model_dense_macs_total{%s} %llu\n", lab,
			       (unsigned long long)LOAD(s->dense_macs));
		break;
	case MET_ROUTES: {
		const struct cigt_arch *a = m->m->arch;
		for (int l = 0; l < a->nlayers; l++)
			for (int e = 0; e < a->layers[l].experts; e++)
				srv_buf_printf(b, "cigt_model_route_samples_total{%s,layer=\"%d\","
						  "expert=\"%d\"} %llu\n", lab, l, e,
					       (unsigned long long)LOAD(s->route[l][e]));
		break;
	}
	case MET_POINTS:
		for (int p = 0; p < m->m->npoints; p++)
			srv_buf_printf(b, "cigt_model_point_samples_total{%s,point=\"%s\"} %llu\n",
				       lab, m->m->points[p].name,
				       (unsigned long long)LOAD(s->point[p]));
		srv_buf_printf(b, "cigt_model_point_samples_total{%s,point=\"(single)\"} %llu\n",
			       lab, (unsigned long long)LOAD(s->point[CIGT_MAX_POINTS]));
		break;
	case MET_PATHS: {
		int P = 1;
		for (int l = 0; l < m->m->arch->nlayers; l++)
			P *= m->m->arch->layers[l].experts;
		for (int k = 1; k <= P && k <= SRV_NPATHS_MAX; k++)
			srv_buf_printf(b, "cigt_model_paths_samples_total{%s,paths=\"%d\"} %llu\n",
				       lab, k, (unsigned long long)LOAD(s->npaths[k]));
		if (P > SRV_NPATHS_MAX)
			srv_buf_printf(b, "cigt_model_paths_samples_total{%s,paths=\"more\"} %llu\n",
				       lab, (unsigned long long)LOAD(s->npaths[0]));
		break;
	}
	case MET_ESCALATED:
		srv_buf_printf(b, "cigt_model_escalated_samples_total{%s} %llu\n", lab,
			       (unsigned long long)LOAD(s->escalated));
		break;
	case MET_STAGE_SECONDS:
	case MET_STAGE_RUNS:
		for (int k = 0; k < STAGE_COUNT; k++) {
			const struct stage st = stage_of(s, k);
			if (c->which == MET_STAGE_SECONDS)
				srv_buf_printf(b, "cigt_model_stage_seconds_total{%s,stage=\"%s\"} "
						  "%.9f\n", lab, stage_names[k], (double)st.ns * 1e-9);
			else
				srv_buf_printf(b, "cigt_model_stage_runs_total{%s,stage=\"%s\"} %llu\n",
					       lab, stage_names[k], (unsigned long long)st.count);
		}
		break;
	}
}

void srv_api_metrics(const struct srv_registry *reg, struct srv_buf *b)
{
	static const char *const heads[MET_COUNT][3] = {
		{"cigt_model_engine_info", "gauge",
		 "Where a version's convs and linears run: backend, precision and the ISA of its "
		 "kernels (1 per loaded version)."},
		{"cigt_model_requests_total", "counter",
		 "Inference requests answered, by model, version and result."},
		{"cigt_model_request_duration_seconds", "histogram",
		 "Time from an inference request's arrival to its answer, by model and version."},
		{"cigt_model_samples_total", "counter", "Samples classified, by model and version."},
		{"cigt_model_macs_total", "counter",
		 "Multiply-accumulates executed (routed), by model and version."},
		{"cigt_model_dense_macs_total", "counter",
		 "Multiply-accumulates with every expert run, by model and version."},
		{"cigt_model_route_samples_total", "counter",
		 "Expert runs (one per sample on the single path, one per opened copy with several "
		 "paths), by model and version."},
		{"cigt_model_point_samples_total", "counter",
		 "Samples by the operating point they ran at ((single): no point), by model and "
		 "version."},
		{"cigt_model_paths_samples_total", "counter",
		 "Samples by the number of paths whose leaf ran for them, by model and version."},
		{"cigt_model_escalated_samples_total", "counter",
		 "Samples the second model of an escalating point also classified, by model and "
		 "version."},
		{"cigt_model_stage_seconds_total", "counter",
		 "Time inference requests spent in each stage, by model and version: receive "
		 "(arrival to submission to the workers), wait (for a worker to decode it), decode "
		 "(parsing the body, decoding its images, converting them to model input), queue "
		 "(each sample's wait for its batch), engine (engine calls) and encode (the "
		 "answers)."},
		{"cigt_model_stage_runs_total", "counter",
		 "Runs of each stage, by model and version: receive, wait and decode per request "
		 "decoded, queue per sample computed, engine per engine call, encode per answer "
		 "encoded."},
	};
	for (int k = 0; k < MET_COUNT; k++) {
		srv_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", heads[k][0], heads[k][2],
			       heads[k][0], heads[k][1]);
		struct met_ctx c = {b, k};
		srv_registry_foreach(reg, met_one, &c);
	}
	srv_registry_render_loads(reg, b);
}
