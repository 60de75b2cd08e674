/* The training run: config, data split, the epoch loop (SGD with momentum on the trellis step),
 * validation with the inference engine, model selection, checkpoints (their file: checkpoint.c)
 * and progress output. The config's "train" section is read by train_config.c.
 * Determinism: the shuffle of an epoch is a function of (seed, epoch) and every other random
 * draw comes from one generator saved in the checkpoint, so the same seed and thread count give
 * a bit-identical model, whether or not the run was interrupted and resumed. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cigt/dataset.h"
#include "cigt/engine.h"
#include "cigt/error.h"
#include "cigt/pool.h"
#include "cigt/train.h"
#include "checkpoint.h"
#include "levers.h"
#include "trellis.h"
#include "../model/model_internal.h"

#define ERR(...) cigt_fail(err, errlen, CIGT_EINVAL, __VA_ARGS__)

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Fisher-Yates shuffle of 0..n-1 from a generator seeded by (seed, epoch). */
static void epoch_order(uint64_t seed, int epoch, int n, int *order)
{
	struct cigt_rng r;
	cigt_rng_seed(&r, seed * 0x9e3779b97f4a7c15ull + (uint64_t)epoch + 1);
	for (int i = 0; i < n; i++)
		order[i] = i;
	for (int i = n - 1; i > 0; i--) {
		int j = (int)cigt_rng_below(&r, (uint32_t)(i + 1));
		int t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
}

static double validate(const struct cigt_model *m, const float *x, const uint8_t *y, int n)
{
	if (n <= 0)
		return 0;
	struct cigt_engine *e;
	if (cigt_engine_new(m, &e, NULL, 0))
		return -1;
	struct cigt_workspace *ws = cigt_workspace_new(e, 500);
	struct cigt_result *res = malloc((size_t)n * sizeof *res);
	double acc = -1;
	if (ws && res) {
		cigt_engine_classify(e, ws, x, n, CIGT_EXEC_ROUTED, res, NULL, NULL);
		int ok = 0;
		for (int i = 0; i < n; i++)
			ok += res[i].cls == y[i];
		acc = (double)ok / n;
	}
	free(res);
	cigt_workspace_free(ws);
	cigt_engine_free(e);
	return acc;
}

/* train.init: loads the source model and copies its weights into m. */
static int init_from_file(const char *config, const struct cigt_train_config *c,
			  struct cigt_model *m, char *err, size_t errlen)
{
	char *path = cigt__config_path(config, c->init_from), e2[400];
	struct cigt_model *src = NULL;
	if (!path)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	int rc = cigt_model_load(path, &src, e2, sizeof e2); /* e2 names the path */
	if (rc)
		rc = cigt_fail(err, errlen, rc, "train.init.from: %s", e2);
	else if ((rc = cigt_train_init_from(m, src, c->init_noise, c->seed, e2, sizeof e2)))
		rc = cigt_fail(err, errlen, rc, "train.init.from: %s: %s", path, e2);
	cigt_model_free(src);
	free(path);
	return rc;
}

static void fmt_duration(char *buf, size_t n, double s)
{
	long t = s > 0 && s < 1e8 ? (long)s : 0;
	snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

char *cigt_train_snapshot_path(const char *out, int epoch)
{
	static const char ext[] = ".safetensors";
	size_t n = strlen(out), k = sizeof ext - 1;
	int stem = (int)(n >= k && strcmp(out + n - k, ext) == 0 ? n - k : n);
	char *p;
	return asprintf(&p, "%.*s.e%03d%s", stem, out, epoch, ext) < 0 ? NULL : p;
}

/* Stamps the model with where it came from: the tool, the seed, this epoch and its validation
 * accuracy, the data (its split: the first ntrain of the images trained, the last nval were
 * held out; the split's size and the directory, resolved) and the whole config. */
static void set_provenance(struct cigt_model *m, const struct cigt_train_config *c, int epoch,
			   double vacc, int ntrain, int nval, int images, const char *dir,
			   const char *config_text)
{
	json_t *prov = json_pack("{ss ss sI si si sf s{si si si ss} so}", "tool", "cigt train",
				 "version", CIGT_VERSION, "seed", (json_int_t)c->seed, "epoch",
				 epoch, "epochs", c->epochs, "validation_accuracy", vacc, "data",
				 "train", ntrain, "validation", nval, "images", images, "dir", dir,
				 "config", json_loads(config_text, 0, NULL));
	free(m->provenance);
	m->provenance = json_dumps(prov, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(prov);
}

/* One training run: what cigt_train_run's phases share. The arrays are owned here and freed by
 * run_destroy; m->arch is the architecture once the model exists (arch is then NULL). */
struct run {
	const struct cigt_train_options *o;
	struct cigt_train_config c;
	json_t *root;
	char *config_text, *ckpt_path;
	struct cigt_arch *arch; /* until the model takes it */
	struct cigt_model *m;
	struct cigt_trellis *tr;
	float *mom, *grads, *x, *bx, *aug_tmp; /* x: every image, preprocessed; bx: a batch */
	uint8_t *y, *by;
	int *order; /* the epoch's shuffle of 0..ntrain-1 */
	struct cigt__teacher *teacher;
	double *soft; /* the teacher's posteriors of a batch */
	FILE *log, *out;
	bool tty;
	struct cigt_dataset d;
	struct cigt__train_state s;
	const char *data;       /* the data directory read */
	char *data_dir;         /* the same, resolved (for the provenance) */
	int ntrain, nval;       /* the first ntrain images train, the last nval validate */
	int B, steps;           /* batch size, steps per epoch */
	int64_t isz;            /* floats per input */
	const float *vx;        /* the validation split, preprocessed */
	const uint8_t *vy;
	double run_start, sps_avg; /* seconds; samples/s, smoothed over epochs (for the ETA) */
};

/* What one epoch adds up (sum: from step 0, including steps before a resume). */
struct epoch {
	bool warmup;
	double lr;
	struct cigt__epoch_sums sum;
	int steps_run;  /* in this process */
	double start, last_print;
};

static void run_destroy(struct run *r)
{
	if (r->log)
		fclose(r->log);
	json_decref(r->root);
	free(r->config_text);
	free(r->ckpt_path);
	free(r->data_dir);
	cigt_arch_free(r->arch);
	cigt_trellis_free(r->tr);
	cigt__teacher_free(r->teacher);
	free(r->soft);
	cigt_model_free(r->m);
	free(r->mom);
	free(r->grads);
	free(r->x);
	free(r->y);
	free(r->bx);
	free(r->aug_tmp);
	free(r->by);
	free(r->order);
	cigt_dataset_destroy(&r->d);
}

/* Setup 1: the config file, with the command line's overrides written into it (config_text is
 * what the checkpoint and the provenance keep), and the checkpoint's path. */
static int run_read_config(struct run *r, char *err, size_t errlen)
{
	const struct cigt_train_options *o = r->o;
	json_error_t je;
	if (!o->config || !o->out)
		return ERR("--config and --out are required");
	if (!(r->root = json_load_file(o->config, JSON_REJECT_DUPLICATES, &je)))
		return je.line < 1 ? ERR("%s", je.text) /* "unable to open PATH: ..." */
				   : ERR("%s: %s (line %d column %d)", o->config, je.text, je.line,
					 je.column);
	char e2[400];
	int rc;
	if ((rc = cigt_arch_from_json(r->root, &r->arch, e2, sizeof e2)) ||
	    (rc = cigt_train_config_parse(json_object_get(r->root, "train"), &r->c, e2,
					  sizeof e2)))
		return cigt_fail(err, errlen, rc, "%s: %s", o->config, e2);
	struct cigt_train_config *c = &r->c;
	if (o->epochs > 0)
		c->epochs = o->epochs;
	if (o->snapshots_from > c->epochs)
		return ERR("--snapshots-from %d is beyond the run's %d epochs", o->snapshots_from,
			   c->epochs);
	if (o->seed_set)
		c->seed = o->seed;
	if (o->validation >= 0)
		c->validation_samples = o->validation;
	json_t *tj = json_object_get(r->root, "train");
	json_object_set_new(tj, "epochs", json_integer(c->epochs));
	json_object_set_new(tj, "seed", json_integer((json_int_t)c->seed));
	json_object_set_new(tj, "validation_samples", json_integer(c->validation_samples));
	r->config_text = json_dumps(r->root, JSON_COMPACT | JSON_SORT_KEYS);
	if ((o->checkpoint ? asprintf(&r->ckpt_path, "%s", o->checkpoint)
			   : asprintf(&r->ckpt_path, "%s.ckpt", o->out)) < 0) {
		r->ckpt_path = NULL;
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	}
	return 0;
}

/* --input-stats: the architecture's input normalisation from the first ntrain images. */
static int run_input_stats(struct run *r, char *err, size_t errlen)
{
	struct cigt_arch *arch = r->arch;
	double mean[CIGT_MAX_NORM_CHANNELS], std[CIGT_MAX_NORM_CHANNELS];
	if (arch->input.c > CIGT_MAX_NORM_CHANNELS ||
	    cigt_dataset_input_stats(&r->d, r->ntrain, mean, std) ||
	    cigt_arch_set_normalization(arch, mean, std))
		return ERR("--input-stats: the %d training images give no usable mean/std "
			   "(a channel without variation?)", r->ntrain);
	fprintf(r->out, "input stats of %d training images: mean [", r->ntrain);
	for (int k = 0; k < arch->input.c; k++)
		fprintf(r->out, "%s%.4f", k ? ", " : "", mean[k]);
	fprintf(r->out, "], std [");
	for (int k = 0; k < arch->input.c; k++)
		fprintf(r->out, "%s%.4f", k ? ", " : "", std[k]);
	fprintf(r->out, "]\n");
	return 0;
}

/* Setup 2: the training images, checked against the architecture, the split (validation: the
 * last nval images), and the log file. */
static int run_open_data(struct run *r, char *err, size_t errlen)
{
	const struct cigt_train_options *o = r->o;
	const struct cigt_arch *arch = r->arch;
	struct cigt_dataset *d = &r->d;
	int rc;
	r->data = o->data_dir ? o->data_dir : CIGT_DEFAULT_DATA_DIR;
	if (!(r->data_dir = realpath(r->data, NULL)) && !(r->data_dir = strdup(r->data)))
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	struct cigt_folder_opts fo = {
		.channels = arch->input.c, .height = arch->input.h, .width = arch->input.w,
		.max_bytes = o->cache_bytes ? o->cache_bytes : CIGT_DATASET_CACHE_DEFAULT,
		.log = r->out};
	if ((rc = cigt_dataset_open(r->data, "train", &fo, d, err, errlen)) ||
	    (rc = cigt_dataset_map_classes(d, (const char *const *)arch->classes, arch->nclasses,
					   true, r->data, err, errlen)))
		return rc;
	if (d->h != arch->input.h || d->w != arch->input.w || d->c != arch->input.c)
		return ERR("training images are %dx%dx%d but the architecture's input is %dx%dx%d",
			   d->c, d->h, d->w, arch->input.c, arch->input.h, arch->input.w);
	for (int i = 0; i < d->n; i++)
		if (d->labels[i] >= arch->nclasses)
			return ERR("training label %d of image %d is not below the %d classes",
				   d->labels[i], i, arch->nclasses);
	r->nval = r->c.validation_samples;
	if (r->nval >= d->n)
		return ERR("validation_samples %d leaves no training images (of %d)", r->nval,
			   d->n);
	r->ntrain = d->n - r->nval;
	/* A resumed run keeps its checkpoint's input. */
	if (o->input_stats && !o->resume && (rc = run_input_stats(r, err, errlen)))
		return rc;
	if (o->train_samples > 0 && o->train_samples < r->ntrain)
		r->ntrain = o->train_samples;
	if (o->log && !(r->log = fopen(o->log, o->resume ? "a" : "w")))
		return cigt_fail(err, errlen, CIGT_EIO, "%s: %s", o->log, strerror(errno));
	return 0;
}

/* Setup 3: the model and optimiser state (fresh, or from the checkpoint), the teacher, the
 * work arrays and every image preprocessed once. */
static int run_init_model(struct run *r, char *err, size_t errlen)
{
	const struct cigt_train_options *o = r->o;
	const struct cigt_train_config *c = &r->c;
	int rc;
	if (o->resume) {
		cigt_arch_free(r->arch);
		r->arch = NULL;
		if ((rc = cigt__checkpoint_load(o->resume, r->config_text, &r->m, &r->mom, &r->s,
						err, errlen)))
			return rc;
	} else {
		rc = cigt_model_new(r->arch, &r->m);
		r->arch = NULL;
		if (rc || !(r->mom = calloc((size_t)r->m->blob_floats, sizeof(float))))
			return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
		cigt_model_init_random(r->m, c->seed, false);
		if (c->init_from[0] && (rc = init_from_file(o->config, c, r->m, err, errlen)))
			return rc;
		cigt_rng_seed(&r->s.rng, c->seed ^ 0x5eed5eed5eedull);
		r->s.best_acc = -1;
	}
	const struct cigt_model *m = r->m;
	const struct cigt_arch *a = m->arch;
	const int n = r->d.n;
	if (c->ens_share > 0 && (a->nlayers < 2 || a->layers[a->nlayers - 1].experts < 2))
		return ERR("train.ensemble: the last layer of %s has one expert: there is no second "
			   "path to ensemble",
			   a->name);
	if (!cigt_trellis_supported(a, err, errlen))
		return CIGT_EINVAL;
	r->isz = cigt_arch_input_size(a);
	r->B = c->batch_size;
	r->steps = (r->ntrain + r->B - 1) / r->B;
	r->grads = malloc((size_t)m->blob_floats * sizeof(float));
	r->x = malloc((size_t)n * (size_t)r->isz * sizeof(float));
	r->y = malloc((size_t)n);
	r->bx = malloc((size_t)r->B * (size_t)r->isz * sizeof(float));
	r->aug_tmp = malloc((size_t)r->isz * sizeof(float));
	r->by = malloc((size_t)r->B);
	r->order = malloc((size_t)r->ntrain * sizeof(int));
	r->tr = cigt_trellis_new(m, o->threads > 0 ? o->threads : 1);
	if (!r->grads || !r->x || !r->y || !r->bx || !r->aug_tmp || !r->by || !r->order || !r->tr)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	if (c->distill_teacher[0]) {
		char *tp = cigt__config_path(o->config, c->distill_teacher);
		rc = tp ? cigt__teacher_open(tp, a, r->B, &r->teacher, err, errlen)
			: cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
		free(tp);
		if (rc)
			return rc;
		if (!(r->soft = malloc((size_t)r->B * (size_t)a->nclasses * sizeof *r->soft)))
			return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	}
	for (int i = 0; i < n; i++) {
		cigt_model_preprocess_u8(a, r->d.px + (size_t)i * r->isz, r->x + (int64_t)i * r->isz);
		r->y[i] = r->d.labels[i];
	}
	r->vx = r->x + (int64_t)(n - r->nval) * r->isz;
	r->vy = r->y + (n - r->nval);
	return 0;
}

/* The run's first line: data, schedule and levers. */
static void print_banner(const struct run *r)
{
	const struct cigt_train_config *c = &r->c;
	const struct cigt_train_options *o = r->o;
	FILE *out = r->out;
	fprintf(out, "training %s: %d train / %d validation images, %d epoch%s (%d warm-up), batch %d, "
		     "%d steps per epoch, seed %llu, %d thread%s%s%s",
		r->m->arch->name, r->ntrain, r->nval, c->epochs, c->epochs == 1 ? "" : "s",
		CIGT_MIN(c->warmup_epochs, c->epochs), r->B, r->steps,
		(unsigned long long)c->seed, o->threads > 1 ? o->threads : 1, o->threads > 1 ? "s" : "",
		c->aug_flip ? ", random flips" : "", c->aug_shift ? ", random shifts" : "");
	if (c->init_from[0] && !o->resume)
		fprintf(out, ", initialised from %s", c->init_from);
	if (r->teacher)
		fprintf(out, ", distilled from %s (T %g, weight %g)", c->distill_teacher, c->distill_t,
			c->distill_weight);
	if (c->ens_share > 0)
		fprintf(out, ", %g of each batch on two leaves (weight %g)", c->ens_share,
			c->ens_weight);
	if (c->label_smoothing > 0)
		fprintf(out, ", label smoothing %g", c->label_smoothing);
	if (o->resume)
		fprintf(out, " (resumed at epoch %d, step %d of %d)", r->s.epoch + 1, r->s.step,
			r->steps);
	fputc('\n', out);
	fflush(out);
}

/* Copies the step's n images into the batch, augmented. The augmentation draws come from their
 * own generator, a function of (seed, epoch, step), so they neither disturb the trellis's
 * random stream nor depend on where a run was resumed. */
static void fill_batch(struct run *r, int b0, int n)
{
	const struct cigt_train_config *c = &r->c;
	const struct cigt_arch *a = r->m->arch;
	const int64_t isz = r->isz;
	struct cigt_rng ar;
	cigt_rng_seed(&ar, (c->seed ^ 0xa06e0a06e0ull) * 0x9e3779b97f4a7c15ull +
				   (uint64_t)r->s.epoch * 1000003u + (uint64_t)r->s.step);
	for (int i = 0; i < n; i++) {
		int k = r->order[b0 + i];
		float *xi = r->bx + (int64_t)i * isz;
		memcpy(xi, r->x + (int64_t)k * isz, (size_t)isz * sizeof(float));
		r->by[i] = r->y[k];
		if (c->aug_flip || c->aug_shift) {
			bool f = c->aug_flip && (cigt_rng_next(&ar) >> 63);
			int span = 2 * c->aug_shift + 1;
			int dx = (int)cigt_rng_below(&ar, (uint32_t)span) - c->aug_shift;
			int dy = (int)cigt_rng_below(&ar, (uint32_t)span) - c->aug_shift;
			/* Channel by channel: each fills with its own pixel 0. */
			const int64_t hw = (int64_t)a->input.h * a->input.w;
			for (int ch = 0; ch < a->input.c; ch++)
				cigt_train_augment(xi + ch * hw, r->aug_tmp, 1, a->input.h,
						   a->input.w, f, dx, dy,
						   cigt_arch_pixel_value(a, ch, 0));
		}
	}
}

/* SGD with momentum (PyTorch form): v = mu v + g + wd w; w -= lr v. */
static void sgd_update(struct run *r, double lr)
{
	const struct cigt_train_config *c = &r->c;
	struct cigt_model *m = r->m;
	for (int ti = 0; ti < m->ntensors; ti++) {
		const struct cigt_tensor_info *t = &m->tensors[ti];
		if (!t->trainable)
			continue;
		float *w = m->blob + t->offset, *v = r->mom + t->offset;
		const float *g = r->grads + t->offset;
		const float wd = (float)(strncmp(t->name, "routers.", 8) ? c->weight_decay
									  : c->router_weight_decay);
		for (int64_t k = 0; k < t->numel; k++) {
			v[k] = (float)c->momentum * v[k] + g[k] + wd * w[k];
			w[k] -= (float)lr * v[k];
		}
	}
}

/* One step: the batch, the trellis's forward and backward, the update and the epoch's sums.
 * *T receives the step's temperature. */
static int train_step(struct run *r, struct epoch *e, double *T, char *err, size_t errlen)
{
	const struct cigt_train_config *c = &r->c;
	struct cigt__train_state *s = &r->s;
	const int b0 = s->step * r->B, n = CIGT_MIN(r->B, r->ntrain - b0);
	int rc;
	fill_batch(r, b0, n);
	*T = cigt_train_temperature(c, s->iteration);
	struct cigt_trellis_opts to = {.warmup = e->warmup, .temperature = *T,
				       .ig_lambda = c->ig_lambda, .ig_beta = c->ig_beta,
				       .rho = c->rho, .dropout = true,
				       .label_smoothing = c->label_smoothing};
	if (r->teacher) {
		/* The teacher sees the batch the student sees, augmentation included. */
		if ((rc = cigt__teacher_posteriors(r->teacher, r->bx, n, c->distill_t, r->soft)))
			return cigt_fail(err, errlen, rc, "the teacher failed on a batch");
		to.teacher = r->soft;
		to.kd_t = c->distill_t;
		to.kd_weight = c->distill_weight;
	}
	if (c->ens_share > 0 && s->epoch >= (c->ens_from >= 0 ? c->ens_from : 0) &&
	    (c->ens_to < 0 || s->epoch < c->ens_to)) {
		to.ens_share = c->ens_share; /* no effect in warm-up */
		to.ens_weight = c->ens_weight;
	}
	struct cigt_trellis_stats st;
	memset(r->grads, 0, (size_t)r->m->blob_floats * sizeof(float));
	if ((rc = cigt_trellis_step(r->tr, r->m->blob, r->grads, r->bx, r->by, n, &to, &s->rng,
				    &st)))
		return cigt_fail(err, errlen, rc, "out of memory in a training step");
	sgd_update(r, e->lr);
	s->iteration++;
	e->sum.steps++;
	e->steps_run++;
	e->sum.loss += st.loss;
	e->sum.ce += st.ce;
	e->sum.distill += st.distill;
	for (int l = 0; l < r->m->arch->nlayers; l++)
		e->sum.ig[l] += st.ig[l];
	e->sum.rows += st.leaf_rows;
	e->sum.correct += st.leaf_correct;
	if (!isfinite(st.loss))
		return cigt_fail(err, errlen, CIGT_ERANGE,
				 "loss became %g at epoch %d step %d (lr too high?)", st.loss,
				 s->epoch, s->step);
	return 0;
}

/* The live line on a terminal, at most twice a second. */
static void print_progress(struct run *r, struct epoch *e, double T)
{
	const struct cigt__train_state *s = &r->s;
	const struct cigt__epoch_sums *sum = &e->sum;
	double now = (double)cigt_now_ns() * 1e-9;
	double sps = (double)e->steps_run * r->B / (now - e->start + 1e-9);
	if (!r->tty || now - e->last_print <= 0.5)
		return;
	double igs = 0;
	for (int l = 0; l < r->m->arch->nlayers; l++)
		igs += sum->ig[l];
	char eta[32];
	double left = (double)(r->c.epochs - s->epoch) * r->steps - s->step;
	fmt_duration(eta, sizeof eta, left * r->B / (r->sps_avg > 0 ? r->sps_avg : sps));
	fprintf(r->out,
		"\r\033[Kepoch %d/%d step %d/%d  loss %.4f (ce %.4f ig %.4f)  "
		"train %.2f%%  T %.3g  %.0f samples/s  ETA %s",
		s->epoch + 1, r->c.epochs, s->step + 1, r->steps, sum->loss / sum->steps,
		sum->ce / sum->steps, igs / sum->steps, 100.0 * sum->correct / sum->rows, T, sps,
		eta);
	fflush(r->out);
	e->last_print = now;
}

/* SIGINT or SIGTERM after a step: the checkpoint of the position after it, then CIGT_EINTR
 * with the hint to resume. */
static int save_interrupted(struct run *r, const struct epoch *e, char *err, size_t errlen)
{
	struct cigt__train_state *s = &r->s;
	s->step++;
	s->part = e->sum;
	if (r->tty)
		fprintf(r->out, "\n");
	int rc = cigt__checkpoint_save(r->ckpt_path, r->m, r->mom, s, r->config_text, err,
				       errlen);
	if (!rc)
		rc = cigt_fail(err, errlen, CIGT_EINTR,
			       "interrupted at epoch %d step %d; checkpoint saved to %s "
			       "(continue with --resume %s)",
			       s->epoch + 1, s->step, r->ckpt_path, r->ckpt_path);
	return rc;
}

/* After an epoch: validation, the best model, the snapshot and the checkpoint of the start of
 * the next epoch. *vacc and *best receive the validation accuracy and whether it is the best. */
static int end_epoch(struct run *r, double *vacc, bool *best, char *err, size_t errlen)
{
	const struct cigt_train_options *o = r->o;
	struct cigt__train_state *s = &r->s;
	int rc;
	*vacc = validate(r->m, r->vx, r->vy, r->nval);
	*best = r->nval > 0 && *vacc > s->best_acc;
	const bool snap = o->snapshots_from > 0 && s->epoch + 1 >= o->snapshots_from;
	if (*best || r->nval == 0 || snap)
		set_provenance(r->m, &r->c, s->epoch + 1, *vacc, r->ntrain, r->nval, r->d.n,
			       r->data_dir, r->config_text);
	if (*best || r->nval == 0) {
		s->best_acc = *vacc;
		s->best_epoch = s->epoch + 1;
		if ((rc = cigt_model_save(r->m, o->out, err, errlen)))
			return rc;
	}
	if (snap) {
		char *sp = cigt_train_snapshot_path(o->out, s->epoch + 1);
		rc = sp ? cigt_model_save(r->m, sp, err, errlen)
			: cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
		free(sp);
		if (rc)
			return rc;
	}
	struct cigt__train_state next = *s;
	next.epoch++;
	next.step = 0;
	next.part = (struct cigt__epoch_sums){0};
	return cigt__checkpoint_save(r->ckpt_path, r->m, r->mom, &next, r->config_text, err,
				     errlen);
}

/* The epoch's line on the progress output and its object in the log. */
static void report_epoch(struct run *r, const struct epoch *e, double secs, double sps,
			 double vacc, bool best)
{
	const struct cigt_arch *a = r->m->arch;
	const struct cigt__train_state *s = &r->s;
	const struct cigt__epoch_sums *sum = &e->sum;
	const int nsteps = sum->steps;
	double igs = 0;
	json_t *igj = json_array();
	for (int l = 0; l < a->nlayers; l++)
		if (a->layers[l].has_router) {
			igs += sum->ig[l] / CIGT_MAX(nsteps, 1);
			json_array_append_new(igj, json_real(sum->ig[l] / CIGT_MAX(nsteps, 1)));
		}
	double tacc = sum->rows ? (double)sum->correct / sum->rows : 0;
	double T = cigt_train_temperature(&r->c, s->iteration - 1);
	char el[32];
	fmt_duration(el, sizeof el, (double)cigt_now_ns() * 1e-9 - r->run_start);
	if (r->tty)
		fprintf(r->out, "\r\033[K");
	fprintf(r->out,
		"epoch %3d/%d  loss %.4f  ce %.4f  ig %.4f  train %.2f%%  val %.2f%%%s  "
		"lr %.4g  T %.3g  %.0f samples/s  %s\n",
		s->epoch + 1, r->c.epochs, nsteps ? sum->loss / nsteps : 0,
		nsteps ? sum->ce / nsteps : 0, igs, 100 * tacc, 100 * vacc, best ? " *" : "",
		e->lr, T, sps, el);
	fflush(r->out);
	if (!r->log) {
		json_decref(igj);
		return;
	}
	json_t *j = json_pack("{si ss si sf sf so sf sf sb sf sf sf sf}", "epoch", s->epoch + 1,
			      "phase", e->warmup ? "warmup" : "routed", "steps", nsteps, "loss",
			      nsteps ? sum->loss / nsteps : 0, "ce", nsteps ? sum->ce / nsteps : 0,
			      "ig", igj, "train_accuracy", tacc, "validation_accuracy", vacc,
			      "best", best, "lr", e->lr, "temperature", T, "samples_per_second",
			      sps, "seconds", secs);
	if (r->teacher)
		json_object_set_new(j, "distill", json_real(nsteps ? sum->distill / nsteps : 0));
	json_dumpf(j, r->log, JSON_COMPACT | JSON_PRESERVE_ORDER);
	fputc('\n', r->log);
	fflush(r->log);
	json_decref(j);
}

/* One epoch from the run's position (s.step, s.part: where a resumed run left it) to its end,
 * validated, saved and reported. */
static int run_epoch(struct run *r, char *err, size_t errlen)
{
	struct cigt__train_state *s = &r->s;
	struct epoch e = {.warmup = s->epoch < r->c.warmup_epochs,
			  .lr = cigt_train_lr(&r->c, s->epoch), .sum = s->part};
	int rc;
	epoch_order(r->c.seed, s->epoch, r->ntrain, r->order);
	e.start = (double)cigt_now_ns() * 1e-9;
	for (; s->step < r->steps; s->step++) {
		double T;
		if ((rc = train_step(r, &e, &T, err, errlen)))
			return rc;
		print_progress(r, &e, T);
		if (stop_requested)
			return save_interrupted(r, &e, err, errlen);
	}
	double secs = (double)cigt_now_ns() * 1e-9 - e.start;
	double sps = e.steps_run ? (double)e.steps_run * r->B / secs : 0;
	r->sps_avg = r->sps_avg > 0 ? 0.7 * r->sps_avg + 0.3 * sps : sps;
	double vacc;
	bool best;
	if ((rc = end_epoch(r, &vacc, &best, err, errlen)))
		return rc;
	report_epoch(r, &e, secs, sps, vacc, best);
	return 0;
}

int cigt_train_run(const struct cigt_train_options *o, char *err, size_t errlen)
{
	struct run r = {.o = o, .out = o->progress ? o->progress : stdout};
	r.tty = isatty(fileno(r.out));
	/* Everything the user gave is checked before any work. */
	int rc = run_read_config(&r, err, errlen);
	if (!rc)
		rc = run_open_data(&r, err, errlen);
	if (!rc)
		rc = run_init_model(&r, err, errlen);
	if (rc) {
		run_destroy(&r);
		return rc;
	}
	cigt_blas_threads(1); /* parallelism comes from the trellis's own threads */

	struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	stop_requested = 0;
	print_banner(&r);
	r.run_start = (double)cigt_now_ns() * 1e-9;
	for (; r.s.epoch < r.c.epochs;
	     r.s.epoch++, r.s.step = 0, r.s.part = (struct cigt__epoch_sums){0})
		if ((rc = run_epoch(&r, err, errlen)))
			break;
	if (!rc)
		fprintf(r.out, "done: best validation accuracy %.2f%% at epoch %d, saved to %s\n",
			100 * r.s.best_acc, r.s.best_epoch, o->out);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	run_destroy(&r);
	return rc;
}
