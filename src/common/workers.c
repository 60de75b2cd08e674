/* The worker pool of src/common/workers.h. The region's state (job, items, first failure)
 * lives in the pool under its mutex; a generation counter tells sleeping workers that a new
 * region began, and a counter of workers still inside it tells the caller when it ended. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "cigt/error.h"
#include "util.h"
#include "workers.h"

struct start {
	struct cigt__workers *w;
	int id;
};

struct cigt__workers {
	int nthreads;
	pthread_t *tids;       /* [nthreads]; 0 is the caller's slot */
	struct start *starts;  /* [nthreads] */
	int started;           /* threads 1..started-1 run */
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	uint64_t gen;          /* regions begun */
	int running;           /* workers still inside the current region */
	bool stop, busy;
	/* the current region */
	cigt__job_fn job;
	void *ctx;
	int nitems, next, rc;
};

/* Takes items until none are left; records the first failure. */
static void drain(struct cigt__workers *w, int id)
{
	for (;;) {
		pthread_mutex_lock(&w->mu);
		int item = w->next < w->nitems ? w->next++ : -1;
		pthread_mutex_unlock(&w->mu);
		if (item < 0)
			return;
		int rc = w->job(w->ctx, id, item);
		if (rc) {
			pthread_mutex_lock(&w->mu);
			if (!w->rc)
				w->rc = rc;
			pthread_mutex_unlock(&w->mu);
		}
	}
}

static void *worker_main(void *arg)
{
	struct start *s = arg;
	struct cigt__workers *w = s->w;
	uint64_t seen = 0;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stop && w->gen == seen)
			pthread_cond_wait(&w->go, &w->mu);
		if (w->stop)
			break;
		seen = w->gen;
		pthread_mutex_unlock(&w->mu);
		drain(w, s->id);
		pthread_mutex_lock(&w->mu);
		if (--w->running == 0)
			pthread_cond_signal(&w->done);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int cigt__workers_new(int nthreads, struct cigt__workers **out)
{
	*out = NULL;
	if (nthreads < 1 || nthreads > CIGT__WORKERS_MAX)
		return CIGT_EINVAL;
	struct cigt__workers *w = calloc(1, sizeof *w);
	if (!w)
		return CIGT_ENOMEM;
	w->nthreads = nthreads;
	w->started = 1;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->go, NULL);
	pthread_cond_init(&w->done, NULL);
	w->tids = calloc((size_t)nthreads, sizeof *w->tids);
	w->starts = calloc((size_t)nthreads, sizeof *w->starts);
	if (!w->tids || !w->starts)
		goto fail;
	for (int i = 1; i < nthreads; i++) {
		w->starts[i] = (struct start){w, i};
		if (pthread_create(&w->tids[i], NULL, worker_main, &w->starts[i]) != 0)
			goto fail;
		w->started = i + 1;
	}
	*out = w;
	return 0;
fail:
	cigt__workers_free(w);
	return CIGT_ENOMEM;
}

void cigt__workers_free(struct cigt__workers *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->go);
	pthread_mutex_unlock(&w->mu);
	for (int i = 1; i < w->started; i++)
		pthread_join(w->tids[i], NULL);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->go);
	pthread_cond_destroy(&w->done);
	free(w->tids);
	free(w->starts);
	free(w);
}

int cigt__workers_threads(const struct cigt__workers *w)
{
	return w->nthreads;
}

int cigt__workers_run(struct cigt__workers *w, cigt__job_fn job, void *ctx, int nitems)
{
	if (w->nthreads == 1 || nitems <= 1) {
		int rc = 0;
		for (int i = 0; i < nitems; i++) {
			int r = job(ctx, 0, i);
			if (r && !rc)
				rc = r;
		}
		return rc;
	}
	pthread_mutex_lock(&w->mu);
	CIGT_ASSERT(!w->busy);
	w->busy = true;
	w->job = job;
	w->ctx = ctx;
	w->nitems = nitems;
	w->next = 0;
	w->rc = 0;
	w->running = w->nthreads - 1;
	w->gen++;
	pthread_cond_broadcast(&w->go);
	pthread_mutex_unlock(&w->mu);
	drain(w, 0);
	pthread_mutex_lock(&w->mu);
	while (w->running > 0)
		pthread_cond_wait(&w->done, &w->mu);
	w->busy = false;
	int rc = w->rc;
	pthread_mutex_unlock(&w->mu);
	return rc;
}
