/*
 * pool — see pool.h. Invariants: a work item is in exactly one of the
 * queue, a worker's hands, or the done list; outstanding counts all three
 * and only the loop thread changes it downwards (in pool_take_done).
 */
#include "pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct work {
	struct work *next;
	pool_work_fn fn;
	void *arg;
} work;

typedef struct {
	work *head;
	work **tail;
} work_list;

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	work_list queue;
	work_list done;
	bool stopping;
	size_t outstanding;
	int done_fd;
	char *db_path;
	unsigned nworkers;
	pthread_t *threads;
	unsigned started;
};

static void list_push(work_list *l, work *w)
{
	w->next = NULL;
	*l->tail = w;
	l->tail = &w->next;
}

static work *list_pop(work_list *l)
{
	work *w = l->head;
	if (w) {
		l->head = w->next;
		if (l->head == NULL)
			l->tail = &l->head;
	}
	return w;
}

static void *worker_main(void *arg)
{
	pool *p = arg;
	store *st = NULL;
	char err[256];

	/* Opened at the start, while the daemon has just opened the store
	 * itself: a connection opened lazily at the first run could meet a
	 * store gone read-only or full, and task code needs a connection to
	 * report even that (runs go ahead when the store refuses writes). */
	if (store_open(&st, p->db_path, err, sizeof err) != 0)
		st = NULL;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		work *w = list_pop(&p->queue);
		if (w == NULL) {
			if (p->stopping)
				break;
			pthread_cond_wait(&p->wake, &p->lock);
			continue;
		}
		pthread_mutex_unlock(&p->lock);
		w->fn(w->arg, st);
		pthread_mutex_lock(&p->lock);
		list_push(&p->done, w);
		uint64_t one = 1;
		ssize_t n = write(p->done_fd, &one, sizeof one);
		(void)n;
	}
	pthread_mutex_unlock(&p->lock);
	store_close(st);
	return NULL;
}

int pool_start(pool **out, unsigned nworkers, const char *db_path, char *err, size_t errlen)
{
	pool *p = calloc(1, sizeof *p);
	*out = NULL;
	if (p == NULL)
		goto fail;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	p->queue.tail = &p->queue.head;
	p->done.tail = &p->done.head;
	p->nworkers = nworkers ? nworkers : 1;
	p->db_path = db_path ? strdup(db_path) : NULL;
	p->threads = calloc(p->nworkers, sizeof *p->threads);
	p->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->threads == NULL || p->done_fd < 0 || (db_path && p->db_path == NULL))
		goto fail;
	for (; p->started < p->nworkers; p->started++)
		if (pthread_create(&p->threads[p->started], NULL, worker_main, p) != 0)
			goto fail;
	*out = p;
	return 0;
fail:
	snprintf(err, errlen, "cannot start %u worker threads", nworkers);
	pool_stop(p);
	return -1;
}

int pool_submit(pool *p, pool_work_fn fn, void *arg)
{
	work *w = malloc(sizeof *w);
	if (w == NULL)
		return -1;
	w->fn = fn;
	w->arg = arg;
	pthread_mutex_lock(&p->lock);
	list_push(&p->queue, w);
	p->outstanding++;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int pool_done_fd(const pool *p)
{
	return p->done_fd;
}

void *pool_take_done(pool *p)
{
	uint64_t counter;
	ssize_t n = read(p->done_fd, &counter, sizeof counter);
	(void)n;
	pthread_mutex_lock(&p->lock);
	work *w = list_pop(&p->done);
	if (w)
		p->outstanding--;
	if (p->done.head) { /* more waiting: keep the fd readable */
		uint64_t one = 1;
		n = write(p->done_fd, &one, sizeof one);
	}
	pthread_mutex_unlock(&p->lock);
	if (w == NULL)
		return NULL;
	void *arg = w->arg;
	free(w);
	return arg;
}

size_t pool_outstanding(const pool *p)
{
	return p->outstanding;
}

void pool_stop(pool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->started; i++)
		pthread_join(p->threads[i], NULL);
	work *w;
	while ((w = list_pop(&p->done)) != NULL)
		free(w);
	if (p->done_fd >= 0)
		close(p->done_fd);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	free(p->threads);
	free(p->db_path);
	free(p);
}
