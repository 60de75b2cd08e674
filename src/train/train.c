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
 * accuracy, the data's split and the whole config. */
static void set_provenance(struct cigt_model *m, const struct cigt_train_config *c, int epoch,
			   double vacc, int ntrain, int nval, const char *config_text)
{
	json_t *prov = json_pack("{ss ss sI si si sf s{si si} so}", "tool", "cigt train",
				 "version", CIGT_VERSION, "seed", (json_int_t)c->seed, "epoch",
				 epoch, "epochs", c->epochs, "validation_accuracy", vacc, "data",
				 "train", ntrain, "validation", nval, "config",
				 json_loads(config_text, 0, NULL));
	free(m->provenance);
	m->provenance = json_dumps(prov, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(prov);
}

int cigt_train_run(const struct cigt_train_options *o, char *err, size_t errlen)
{
	int rc = 0;
	json_t *root = NULL;
	char *config_text = NULL, *ckpt_path = NULL;
	struct cigt_arch *arch = NULL;
	struct cigt_model *m = NULL;
	struct cigt_trellis *tr = NULL;
	float *mom = NULL, *grads = NULL, *x = NULL, *bx = NULL, *aug_tmp = NULL;
	struct cigt__teacher *teacher = NULL;
	double *soft = NULL; /* the teacher's posteriors of a batch */
	uint8_t *y = NULL, *by = NULL;
	int *order = NULL;
	FILE *log = NULL;
	struct cigt_dataset d = {0};
	struct cigt_train_config c;
	struct cigt__train_state s = {0};
	FILE *out = o->progress ? o->progress : stdout;
	const bool tty = isatty(fileno(out));

	/* 1. Everything the user gave is checked before any work. */
	json_error_t je;
	if (!o->config || !o->out)
		return ERR("--config and --out are required");
	if (!(root = json_load_file(o->config, JSON_REJECT_DUPLICATES, &je))) {
		rc = je.line < 1 ? ERR("%s", je.text) /* "unable to open PATH: ..." */
				 : ERR("%s: %s (line %d column %d)", o->config, je.text, je.line,
				       je.column);
		goto out;
	}
	char e2[400];
	if ((rc = cigt_arch_from_json(root, &arch, e2, sizeof e2)) ||
	    (rc = cigt_train_config_parse(json_object_get(root, "train"), &c, e2, sizeof e2))) {
		rc = cigt_fail(err, errlen, rc, "%s: %s", o->config, e2);
		goto out;
	}
	if (o->epochs > 0)
		c.epochs = o->epochs;
	if (o->snapshots_from > c.epochs) {
		rc = ERR("--snapshots-from %d is beyond the run's %d epochs", o->snapshots_from,
			 c.epochs);
		goto out;
	}
	if (o->seed_set)
		c.seed = o->seed;
	if (o->validation >= 0)
		c.validation_samples = o->validation;
	json_t *tj = json_object_get(root, "train");
	json_object_set_new(tj, "epochs", json_integer(c.epochs));
	json_object_set_new(tj, "seed", json_integer((json_int_t)c.seed));
	json_object_set_new(tj, "validation_samples", json_integer(c.validation_samples));
	config_text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
	if ((o->checkpoint ? asprintf(&ckpt_path, "%s", o->checkpoint)
			   : asprintf(&ckpt_path, "%s.ckpt", o->out)) < 0) {
		ckpt_path = NULL;
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
		goto out;
	}
	const char *data = o->data_dir ? o->data_dir : CIGT_DEFAULT_DATA_DIR;
	struct cigt_folder_opts fo = {
		.channels = arch->input.c, .height = arch->input.h, .width = arch->input.w,
		.max_bytes = o->cache_bytes ? o->cache_bytes : CIGT_DATASET_CACHE_DEFAULT, .log = out};
	if ((rc = cigt_dataset_open(data, "train", &fo, &d, err, errlen)) ||
	    (rc = cigt_dataset_map_classes(&d, (const char *const *)arch->classes, arch->nclasses,
					   true, data, err, errlen)))
		goto out;
	if (d.h != arch->input.h || d.w != arch->input.w || d.c != arch->input.c) {
		rc = ERR("training images are %dx%dx%d but the architecture's input is %dx%dx%d",
			 d.c, d.h, d.w, arch->input.c, arch->input.h, arch->input.w);
		goto out;
	}
	for (int i = 0; i < d.n; i++)
		if (d.labels[i] >= arch->nclasses) {
			rc = ERR("training label %d of image %d is not below the %d classes",
				 d.labels[i], i, arch->nclasses);
			goto out;
		}
	const int nval = c.validation_samples;
	if (nval >= d.n) {
		rc = ERR("validation_samples %d leaves no training images (of %d)", nval, d.n);
		goto out;
	}
	int ntrain = d.n - nval;
	if (o->input_stats && !o->resume) { /* a resumed run keeps its checkpoint's input */
		double mean[CIGT_MAX_NORM_CHANNELS], std[CIGT_MAX_NORM_CHANNELS];
		if (arch->input.c > CIGT_MAX_NORM_CHANNELS ||
		    cigt_dataset_input_stats(&d, ntrain, mean, std) ||
		    cigt_arch_set_normalization(arch, mean, std)) {
			rc = ERR("--input-stats: the %d training images give no usable mean/std "
				 "(a channel without variation?)", ntrain);
			goto out;
		}
		fprintf(out, "input stats of %d training images: mean [", ntrain);
		for (int k = 0; k < arch->input.c; k++)
			fprintf(out, "%s%.4f", k ? ", " : "", mean[k]);
		fprintf(out, "], std [");
		for (int k = 0; k < arch->input.c; k++)
			fprintf(out, "%s%.4f", k ? ", " : "", std[k]);
		fprintf(out, "]\n");
	}
	if (o->train_samples > 0 && o->train_samples < ntrain)
		ntrain = o->train_samples;
	if (o->log && !(log = fopen(o->log, o->resume ? "a" : "w"))) {
		rc = cigt_fail(err, errlen, CIGT_EIO, "%s: %s", o->log, strerror(errno));
		goto out;
	}

	/* 2. Model and optimiser state: fresh, or from the checkpoint. */
	if (o->resume) {
		cigt_arch_free(arch);
		arch = NULL;
		if ((rc = cigt__checkpoint_load(o->resume, config_text, &m, &mom, &s, err, errlen)))
			goto out;
	} else {
		rc = cigt_model_new(arch, &m);
		arch = NULL;
		if (rc || !(mom = calloc((size_t)m->blob_floats, sizeof(float)))) {
			rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
			goto out;
		}
		cigt_model_init_random(m, c.seed, false);
		if (c.init_from[0] && (rc = init_from_file(o->config, &c, m, err, errlen)))
			goto out;
		cigt_rng_seed(&s.rng, c.seed ^ 0x5eed5eed5eedull);
		s.best_acc = -1;
	}
	const struct cigt_arch *a = m->arch;
	if (c.ens_share > 0 && (a->nlayers < 2 || a->layers[a->nlayers - 1].experts < 2)) {
		rc = ERR("train.ensemble: the last layer of %s has one expert: there is no second "
			 "path to ensemble",
			 a->name);
		goto out;
	}
	const int64_t isz = cigt_arch_input_size(a);
	const int B = c.batch_size, steps = (ntrain + B - 1) / B;
	grads = malloc((size_t)m->blob_floats * sizeof(float));
	x = malloc((size_t)d.n * (size_t)isz * sizeof(float));
	y = malloc((size_t)d.n);
	bx = malloc((size_t)B * (size_t)isz * sizeof(float));
	aug_tmp = malloc((size_t)isz * sizeof(float));
	by = malloc((size_t)B);
	order = malloc((size_t)ntrain * sizeof(int));
	tr = cigt_trellis_new(m, o->threads > 0 ? o->threads : 1);
	if (!grads || !x || !y || !bx || !aug_tmp || !by || !order || !tr) {
		rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
		goto out;
	}
	if (c.distill_teacher[0]) {
		char *tp = cigt__config_path(o->config, c.distill_teacher);
		rc = tp ? cigt__teacher_open(tp, a, B, &teacher, err, errlen)
			: cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
		free(tp);
		if (rc)
			goto out;
		if (!(soft = malloc((size_t)B * (size_t)a->nclasses * sizeof *soft))) {
			rc = cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
			goto out;
		}
	}
	for (int i = 0; i < d.n; i++) {
		cigt_model_preprocess_u8(a, d.px + (size_t)i * isz, x + (int64_t)i * isz);
		y[i] = d.labels[i];
	}
	const float *vx = x + (int64_t)(d.n - nval) * isz;
	const uint8_t *vy = y + (d.n - nval);
	cigt_blas_threads(1); /* parallelism comes from the trellis's own threads */

	struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	stop_requested = 0;

	fprintf(out, "training %s: %d train / %d validation images, %d epoch%s (%d warm-up), batch %d, "
		     "%d steps per epoch, seed %llu, %d thread%s%s%s",
		a->name, ntrain, nval, c.epochs, c.epochs == 1 ? "" : "s",
		CIGT_MIN(c.warmup_epochs, c.epochs), B, steps,
		(unsigned long long)c.seed, o->threads > 1 ? o->threads : 1, o->threads > 1 ? "s" : "",
		c.aug_flip ? ", random flips" : "", c.aug_shift ? ", random shifts" : "");
	if (c.init_from[0] && !o->resume)
		fprintf(out, ", initialised from %s", c.init_from);
	if (teacher)
		fprintf(out, ", distilled from %s (T %g, weight %g)", c.distill_teacher, c.distill_t,
			c.distill_weight);
	if (c.ens_share > 0)
		fprintf(out, ", %g of each batch on two leaves (weight %g)", c.ens_share,
			c.ens_weight);
	if (c.label_smoothing > 0)
		fprintf(out, ", label smoothing %g", c.label_smoothing);
	if (o->resume)
		fprintf(out, " (resumed at epoch %d, step %d of %d)", s.epoch + 1, s.step, steps);
	fputc('\n', out);
	fflush(out);

	/* 3. The epochs. */
	double run_start = (double)cigt_now_ns() * 1e-9, sps_avg = 0;
	for (; s.epoch < c.epochs;
	     s.epoch++, s.step = 0, s.part = (struct cigt__epoch_sums){0}) {
		const bool warmup = s.epoch < c.warmup_epochs;
		const double lr = cigt_train_lr(&c, s.epoch);
		epoch_order(c.seed, s.epoch, ntrain, order);
		/* Sums over the epoch's steps, including those before a resume. */
		double sum_loss = s.part.loss, sum_ce = s.part.ce, sum_ig[CIGT_MAX_LAYERS];
		double sum_kd = s.part.distill;
		memcpy(sum_ig, s.part.ig, sizeof sum_ig);
		int64_t rows = s.part.rows, correct = s.part.correct;
		int nsteps = s.part.steps, steps_run = 0; /* steps_run: in this process */
		double ep_start = (double)cigt_now_ns() * 1e-9, last_print = 0;
		struct cigt_trellis_stats st;
		for (; s.step < steps; s.step++) {
			int b0 = s.step * B, n = CIGT_MIN(B, ntrain - b0);
			/* Augmentation draws come from their own generator, a function of (seed,
			 * epoch, step), so they neither disturb the trellis's random stream nor
			 * depend on where a run was resumed. */
			struct cigt_rng ar;
			cigt_rng_seed(&ar, (c.seed ^ 0xa06e0a06e0ull) * 0x9e3779b97f4a7c15ull +
						   (uint64_t)s.epoch * 1000003u + (uint64_t)s.step);
			for (int i = 0; i < n; i++) {
				int k = order[b0 + i];
				float *xi = bx + (int64_t)i * isz;
				memcpy(xi, x + (int64_t)k * isz, (size_t)isz * sizeof(float));
				by[i] = y[k];
				if (c.aug_flip || c.aug_shift) {
					bool f = c.aug_flip && (cigt_rng_next(&ar) >> 63);
					int span = 2 * c.aug_shift + 1;
					int dx = (int)cigt_rng_below(&ar, (uint32_t)span) - c.aug_shift;
					int dy = (int)cigt_rng_below(&ar, (uint32_t)span) - c.aug_shift;
					/* Channel by channel: each fills with its own pixel 0. */
					const int64_t hw = (int64_t)a->input.h * a->input.w;
					for (int ch = 0; ch < a->input.c; ch++)
						cigt_train_augment(xi + ch * hw, aug_tmp, 1,
								   a->input.h, a->input.w, f, dx,
								   dy, cigt_arch_pixel_value(a, ch, 0));
				}
			}
			double T = cigt_train_temperature(&c, s.iteration);
			struct cigt_trellis_opts to = {.warmup = warmup, .temperature = T,
						       .ig_lambda = c.ig_lambda, .ig_beta = c.ig_beta,
						       .rho = c.rho, .dropout = true,
						       .label_smoothing = c.label_smoothing};
			if (teacher) {
				/* The teacher sees the batch the student sees, augmentation included. */
				if ((rc = cigt__teacher_posteriors(teacher, bx, n, c.distill_t, soft))) {
					rc = cigt_fail(err, errlen, rc, "the teacher failed on a batch");
					goto restore;
				}
				to.teacher = soft;
				to.kd_t = c.distill_t;
				to.kd_weight = c.distill_weight;
			}
			if (c.ens_share > 0 && s.epoch >= (c.ens_from >= 0 ? c.ens_from : 0) &&
			    (c.ens_to < 0 || s.epoch < c.ens_to)) {
				to.ens_share = c.ens_share; /* no effect in warm-up */
				to.ens_weight = c.ens_weight;
			}
			memset(grads, 0, (size_t)m->blob_floats * sizeof(float));
			if ((rc = cigt_trellis_step(tr, m->blob, grads, bx, by, n, &to, &s.rng, &st))) {
				rc = cigt_fail(err, errlen, rc, "out of memory in a training step");
				goto restore;
			}
			/* SGD with momentum (PyTorch form): v = mu v + g + wd w; w -= lr v. */
			for (int ti = 0; ti < m->ntensors; ti++) {
				const struct cigt_tensor_info *t = &m->tensors[ti];
				if (!t->trainable)
					continue;
				float *w = m->blob + t->offset, *v = mom + t->offset;
				const float *g = grads + t->offset;
				const float wd = (float)(strncmp(t->name, "routers.", 8)
								 ? c.weight_decay
								 : c.router_weight_decay);
				for (int64_t k = 0; k < t->numel; k++) {
					v[k] = (float)c.momentum * v[k] + g[k] + wd * w[k];
					w[k] -= (float)lr * v[k];
				}
			}
			s.iteration++;
			nsteps++;
			steps_run++;
			sum_loss += st.loss;
			sum_ce += st.ce;
			sum_kd += st.distill;
			for (int l = 0; l < a->nlayers; l++)
				sum_ig[l] += st.ig[l];
			rows += st.leaf_rows;
			correct += st.leaf_correct;
			if (!isfinite(st.loss)) {
				rc = cigt_fail(err, errlen, CIGT_ERANGE,
					       "loss became %g at epoch %d step %d (lr too high?)",
					       st.loss, s.epoch, s.step);
				goto restore;
			}
			double now = (double)cigt_now_ns() * 1e-9;
			double sps = (double)steps_run * B / (now - ep_start + 1e-9);
			if (tty && now - last_print > 0.5) {
				double igs = 0;
				for (int l = 0; l < a->nlayers; l++)
					igs += sum_ig[l];
				char eta[32];
				double left = (double)(c.epochs - s.epoch) * steps - s.step;
				fmt_duration(eta, sizeof eta, left * B / (sps_avg > 0 ? sps_avg : sps));
				fprintf(out,
					"\r\033[Kepoch %d/%d step %d/%d  loss %.4f (ce %.4f ig %.4f)  "
					"train %.2f%%  T %.3g  %.0f samples/s  ETA %s",
					s.epoch + 1, c.epochs, s.step + 1, steps, sum_loss / nsteps,
					sum_ce / nsteps, igs / nsteps, 100.0 * correct / rows, T, sps,
					eta);
				fflush(out);
				last_print = now;
			}
			if (stop_requested) {
				s.step++;
				s.part = (struct cigt__epoch_sums){.loss = sum_loss, .ce = sum_ce,
								   .rows = rows, .correct = correct,
								   .steps = nsteps, .distill = sum_kd};
				memcpy(s.part.ig, sum_ig, sizeof sum_ig);
				if (tty)
					fprintf(out, "\n");
				rc = cigt__checkpoint_save(ckpt_path, m, mom, &s, config_text, err,
							   errlen);
				if (!rc)
					rc = cigt_fail(err, errlen, CIGT_EINTR,
						       "interrupted at epoch %d step %d; checkpoint "
						       "saved to %s (continue with --resume %s)",
						       s.epoch + 1, s.step, ckpt_path, ckpt_path);
				goto restore;
			}
		}
		double secs = (double)cigt_now_ns() * 1e-9 - ep_start;
		double sps = steps_run ? (double)steps_run * B / secs : 0;
		sps_avg = sps_avg > 0 ? 0.7 * sps_avg + 0.3 * sps : sps;
		double vacc = validate(m, vx, vy, nval);
		bool best = nval > 0 && vacc > s.best_acc;
		const bool snap = o->snapshots_from > 0 && s.epoch + 1 >= o->snapshots_from;
		if (best || nval == 0 || snap)
			set_provenance(m, &c, s.epoch + 1, vacc, ntrain, nval, config_text);
		if (best || nval == 0) {
			s.best_acc = vacc;
			s.best_epoch = s.epoch + 1;
			if ((rc = cigt_model_save(m, o->out, err, errlen)))
				goto restore;
		}
		if (snap) {
			char *sp = cigt_train_snapshot_path(o->out, s.epoch + 1);
			rc = sp ? cigt_model_save(m, sp, err, errlen)
				: cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
			free(sp);
			if (rc)
				goto restore;
		}
		struct cigt__train_state next = s;
		next.epoch++;
		next.step = 0;
		next.part = (struct cigt__epoch_sums){0};
		if ((rc = cigt__checkpoint_save(ckpt_path, m, mom, &next, config_text, err,
						errlen)))
			goto restore;
		double igs = 0;
		json_t *igj = json_array();
		for (int l = 0; l < a->nlayers; l++)
			if (a->layers[l].has_router) {
				igs += sum_ig[l] / CIGT_MAX(nsteps, 1);
				json_array_append_new(igj, json_real(sum_ig[l] / CIGT_MAX(nsteps, 1)));
			}
		double tacc = rows ? (double)correct / rows : 0;
		double T = cigt_train_temperature(&c, s.iteration - 1);
		char el[32];
		fmt_duration(el, sizeof el, (double)cigt_now_ns() * 1e-9 - run_start);
		if (tty)
			fprintf(out, "\r\033[K");
		fprintf(out,
			"epoch %3d/%d  loss %.4f  ce %.4f  ig %.4f  train %.2f%%  val %.2f%%%s  "
			"lr %.4g  T %.3g  %.0f samples/s  %s\n",
			s.epoch + 1, c.epochs, nsteps ? sum_loss / nsteps : 0,
			nsteps ? sum_ce / nsteps : 0, igs, 100 * tacc, 100 * vacc, best ? " *" : "",
			lr, T, sps, el);
		fflush(out);
		if (log) {
			json_t *j = json_pack("{si ss si sf sf so sf sf sb sf sf sf sf}", "epoch",
					      s.epoch + 1, "phase", warmup ? "warmup" : "routed",
					      "steps", nsteps, "loss", nsteps ? sum_loss / nsteps : 0,
					      "ce", nsteps ? sum_ce / nsteps : 0, "ig", igj,
					      "train_accuracy", tacc, "validation_accuracy", vacc,
					      "best", best, "lr", lr, "temperature", T,
					      "samples_per_second", sps, "seconds", secs);
			if (teacher)
				json_object_set_new(j, "distill",
						    json_real(nsteps ? sum_kd / nsteps : 0));
			json_dumpf(j, log, JSON_COMPACT | JSON_PRESERVE_ORDER);
			fputc('\n', log);
			fflush(log);
			json_decref(j);
		} else {
			json_decref(igj);
		}
	}
	fprintf(out, "done: best validation accuracy %.2f%% at epoch %d, saved to %s\n",
		100 * s.best_acc, s.best_epoch, o->out);
restore:
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
out:
	if (log)
		fclose(log);
	json_decref(root);
	free(config_text);
	free(ckpt_path);
	cigt_arch_free(arch);
	cigt_trellis_free(tr);
	cigt__teacher_free(teacher);
	free(soft);
	cigt_model_free(m);
	free(mom);
	free(grads);
	free(x);
	free(y);
	free(bx);
	free(aug_tmp);
	free(by);
	free(order);
	cigt_dataset_destroy(&d);
	return rc;
}
