/*
 * notify_sender — see notify_sender.h.
 *
 * Delivery states of one (notifier, notification) row:
 *
 *   adopt -> queued -> sending -> sent
 *                        |  ^
 *                 fails  v  | retry at next_attempt_at (backoff, 429 retry_after)
 *                       failed
 *   queued|sending|failed --(older than max_age)--> dropped
 *   queued|sending|failed --(rate limit)----------> folded  (into one summary row)
 *
 * Invariants:
 *  1. A notifier adopts the rows after its cursor (notifier_cursor) in id
 *     order and advances the cursor in the same transaction that inserts the
 *     delivery rows; a notifier new to the store starts at the newest id.
 *  2. Per notifier, deliveries go out in id order: the lowest pending row is
 *     the head and nothing behind it is sent before it (it may be folded).
 *  3. The attempt is recorded (state sending, attempts + 1) and committed
 *     BEFORE the request, and 'sent' after it: a crash in between leaves
 *     'sending', which the next start sends again (at most one duplicate).
 *     Telegram's progress (chats done) is committed after each chat.
 *  4. At most rate_limit_per_minute messages leave in any 60 s; when more
 *     are due than slots are free, the last free slot carries ONE summary
 *     (a new notifications row of kind notifications_folded with its own
 *     delivery row, written in the transaction that marks the rest folded).
 *  5. Only rows older than max_age are dropped.
 *  6. The thread owns its store connection, its HTTP client and the
 *     notifiers (with their secrets); the loop thread only starts, reloads
 *     and stops it.
 */
#include "notify_sender.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "notifiers.h"
#include "outbox.h"

#define LOGGER        "core.notify"
#define POLL_SEC      1.0 /* rows written by other processes are seen this fast */
#define ADOPT_BATCH   200
#define RETRY_HORIZON 3600.0 /* seconds; a later next_attempt_at is a clock step back */

typedef struct {
	notifier nf;
	notify_rate rate;
	int64_t cursor;
	bool broken; /* no cursor could be read: adopt nothing */
} nstate;

typedef struct {
	pthread_t thread;
	int wake_fd; /* written once by stop: also the HTTP cancel fd */
	atomic_bool stop;
	config *cfg;
	nstate *ns;
	size_t n;
	store *st;
	http_client *http;
} sender;

static sender *running; /* the loop thread's; NULL when no thread runs */

static void log_store_error(sender *s, const char *what, const char *name)
{
	log_error(LOGGER, "notify_store_failed", LOG_STR("notifier", name),
	          LOG_STR("operation", what), LOG_ERR(store_errmsg(s->st), "store"));
}

/* ---- start of a notifier: cursor and rate window ---- */

static int rate_note(void *ctx, double at)
{
	notify_rate_note(ctx, at);
	return 0;
}

/* Sends of the last minute count against the limit after a restart too. */
static void rate_restore(sender *s, nstate *ns, double now)
{
	outbox_sent_since(s->st, ns->nf.name, now - 60.0, rate_note, &ns->rate);
}

/* ---- adoption ---- */

typedef struct {
	sender *s;
	nstate *ns;
	int64_t last;
	int seen;
	double now;
} adopt_ctx;

static int adopt_row(void *ctx, const outbox_row *row)
{
	adopt_ctx *a = ctx;
	a->last = row->id;
	a->seen++;
	if (!notifier_wants(&a->ns->nf, row->kind, row->level))
		return 0;
	return outbox_delivery_add(a->s->st, a->ns->nf.name, row->id, a->now);
}

static int announce_one(void *ctx, const outbox_row *row)
{
	nstate *ns = ctx;
	log_info(LOGGER, "notification_queued", LOG_STR("notifier", ns->nf.name),
	         LOG_STR("kind", row->kind), LOG_INT("notification_id", row->id),
	         LOG_STR("correlation_id", row->correlation_id));
	return 0;
}

/* One batch: delivery rows and the cursor in one transaction. Returns the
 * rows seen, or -1. */
static int adopt_batch(sender *s, nstate *ns, double now)
{
	char err[256];
	adopt_ctx a = {.s = s, .ns = ns, .last = ns->cursor, .now = now};
	int rc = store_tx_begin(s->st);
	if (rc == STORE_OK)
		rc = outbox_list_after(s->st, ns->cursor, ADOPT_BATCH, adopt_row, &a, err,
		                       sizeof err);
	if (rc == STORE_OK && a.seen > 0)
		rc = outbox_cursor_set(s->st, ns->nf.name, a.last);
	if (rc == STORE_OK)
		rc = store_tx_commit(s->st);
	else
		store_tx_rollback(s->st);
	if (rc != STORE_OK)
		return -1;
	int64_t from = ns->cursor;
	ns->cursor = a.last;
	if (a.seen > 0)
		outbox_deliveries_between(s->st, ns->nf.name, from, a.last, announce_one, ns);
	return a.seen;
}

static void adopt(sender *s, nstate *ns, double now)
{
	int seen;
	while ((seen = adopt_batch(s, ns, now)) == ADOPT_BATCH && !atomic_load(&s->stop))
		;
	if (seen < 0)
		log_store_error(s, "adopt", ns->nf.name);
}

/* ---- dropping what is too old ---- */

typedef struct {
	nstate *ns;
	double now;
} drop_ctx;

static int log_dropped(void *ctx, const outbox_row *row)
{
	drop_ctx *d = ctx;
	log_warning(LOGGER, "notification_dropped", LOG_STR("notifier", d->ns->nf.name),
	            LOG_DBL("age_sec", d->now - row->created_at),
	            LOG_INT("notification_id", row->id), LOG_STR("kind", row->kind),
	            LOG_STR("correlation_id", row->correlation_id));
	return 0;
}

/* A store failure here shows again in the head query that follows, which
 * reports it. */
static void drop_expired(sender *s, nstate *ns, double now)
{
	drop_ctx d = {.ns = ns, .now = now};
	outbox_drop_older(s->st, ns->nf.name, now - ns->nf.max_age, now, log_dropped, &d);
}

/* ---- the pending rows ---- */

/* An outbox row with its strings owned. */
typedef struct {
	outbox_row r;
	bool found;
} row_copy;

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int row_copy_cb(void *ctx, const outbox_row *row)
{
	row_copy *c = ctx;
	c->r = *row;
	c->r.kind = dup_or_null(row->kind);
	c->r.title = dup_or_null(row->title);
	c->r.body = dup_or_null(row->body);
	c->r.correlation_id = dup_or_null(row->correlation_id);
	c->r.fields_json = dup_or_null(row->fields_json);
	c->found = true;
	return 0;
}

static void row_copy_free(outbox_row *r)
{
	free((char *)r->kind);
	free((char *)r->title);
	free((char *)r->body);
	free((char *)r->correlation_id);
	free((char *)r->fields_json);
	memset(r, 0, sizeof *r);
}

/* ---- folding ---- */

typedef struct {
	outbox_row *rows;
	size_t n, cap;
} row_list;

static int row_list_cb(void *ctx, const outbox_row *row)
{
	row_list *l = ctx;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		outbox_row *nr = realloc(l->rows, cap * sizeof *nr);
		if (nr == NULL)
			return -1;
		l->rows = nr;
		l->cap = cap;
	}
	row_copy c = {0};
	row_copy_cb(&c, row);
	l->rows[l->n++] = c.r;
	return 0;
}

static int pending_rows(sender *s, nstate *ns, row_list *l)
{
	return outbox_pending_list(s->st, ns->nf.name, row_list_cb, l);
}

static int fold_write(sender *s, nstate *ns, const row_list *l, double now, int64_t *sum_id)
{
	char *title = NULL, *body = NULL, *fields = NULL, err[256];
	log_level level;
	notify_summary(l->rows, l->n, ns->nf.rate_per_minute, &title, &body, &level);
	if (asprintf(&fields,
	             "{\"notifier\": \"%s\", \"folded\": %zu, \"first_id\": %lld,"
	             " \"last_id\": %lld}",
	             ns->nf.name, l->n, (long long)l->rows[0].id,
	             (long long)l->rows[l->n - 1].id) < 0)
		fields = NULL;
	outbox_message m = {.kind = NOTIFY_KIND_FOLDED,
	                    .level = level,
	                    .title = title,
	                    .body = body,
	                    .fields_json = fields};
	/* The pending rows become folded and the summary gets its row and its
	 * delivery, all at once. */
	int rc = title && body && fields ? store_tx_begin(s->st) : -2;
	if (rc == STORE_OK)
		rc = outbox_fold_upto(s->st, ns->nf.name, l->rows[l->n - 1].id, now, NULL);
	if (rc == STORE_OK)
		rc = outbox_add(s->st, &m, now, sum_id, err, sizeof err);
	if (rc == STORE_OK)
		rc = outbox_delivery_add(s->st, ns->nf.name, *sum_id, now);
	if (rc == STORE_OK)
		rc = store_tx_commit(s->st);
	else
		store_tx_rollback(s->st);
	free(title);
	free(body);
	free(fields);
	return rc == 0 ? 0 : -1;
}

static int fold(sender *s, nstate *ns, double now)
{
	row_list l = {0};
	int64_t sum_id = 0;
	int rc = pending_rows(s, ns, &l);
	if (rc == 0 && l.n > 1)
		rc = fold_write(s, ns, &l, now, &sum_id);
	if (rc == 0 && l.n > 1)
		log_warning(LOGGER, "notifications_folded", LOG_STR("notifier", ns->nf.name),
		            LOG_INT("folded", (int64_t)l.n), LOG_INT("first_id", l.rows[0].id),
		            LOG_INT("last_id", l.rows[l.n - 1].id), LOG_INT("summary_id", sum_id),
		            LOG_INT("rate_limit_per_minute", ns->nf.rate_per_minute));
	for (size_t i = 0; i < l.n; i++)
		row_copy_free(&l.rows[i]);
	free(l.rows);
	return rc;
}

/* ---- one delivery ---- */

/* Send every remaining step; 0 sent, -1 failed (err, res), -2 stopping. */
static int send_steps(sender *s, nstate *ns, const outbox_row *row, const char *text, int progress,
                      notify_result *res, char *err, size_t errlen)
{
	size_t steps = notifier_steps(&ns->nf);
	for (size_t i = (size_t)progress; i < steps; i++) {
		if (notifier_send_step(&ns->nf, s->http, row, text, i, clock_wall(), res, err,
		                       errlen) != 0)
			return atomic_load(&s->stop) ? -2 : -1;
		if (outbox_mark_progress(s->st, ns->nf.name, row->id, (int)i + 1, clock_wall()) !=
		    0)
			log_store_error(s, "progress", ns->nf.name);
	}
	return 0;
}

static void delivery_failed(sender *s, nstate *ns, const outbox_row *row, int attempt,
                            const notify_result *res, const char *err, double *next)
{
	double now = clock_wall();
	double delay = res->retry_after >= 0 ? (double)res->retry_after : notify_backoff(attempt);
	if (delay < 1.0 && res->retry_after < 0)
		delay = 1.0;
	if (outbox_mark_failed(s->st, ns->nf.name, row->id, now + delay, err, now) != 0)
		log_store_error(s, "failed", ns->nf.name);
	if (now + delay < *next)
		*next = now + delay;
	log_warning(LOGGER, "notification_failed", LOG_STR("notifier", ns->nf.name),
	            LOG_INT("attempt", attempt), LOG_ERR(err, res->status ? "http" : "network"),
	            LOG_INT("http_status", res->status), LOG_INT("notification_id", row->id),
	            LOG_STR("kind", row->kind), LOG_DBL("retry_in_sec", delay),
	            LOG_STR("correlation_id", row->correlation_id));
}

/* Deliver the head. 0 sent, -1 not sent (retry later: *next updated). */
static int deliver(sender *s, nstate *ns, const outbox_head *h, double *next)
{
	char err[512] = "";
	row_copy c = {0};
	notify_result res = {.retry_after = -1};
	if (outbox_get(s->st, h->id, row_copy_cb, &c, err, sizeof err) != 0 || !c.found) {
		log_store_error(s, "read", ns->nf.name);
		return -1;
	}
	char *text = notify_text(&c.r);
	int attempt = h->attempts + 1;
	int rc = text ? 0 : -1;
	if (rc == 0 && outbox_mark_attempt(s->st, ns->nf.name, h->id, clock_wall()) != 0) {
		log_store_error(s, "attempt", ns->nf.name);
		rc = -1;
	}
	if (rc == 0)
		rc = send_steps(s, ns, &c.r, text, h->progress, &res, err, sizeof err);
	if (rc == 0) {
		notify_rate_note(&ns->rate, clock_wall());
		if (outbox_mark_sent(s->st, ns->nf.name, h->id, clock_wall()) != 0)
			log_store_error(s, "sent", ns->nf.name);
		log_info(LOGGER, "notification_sent", LOG_STR("notifier", ns->nf.name),
		         LOG_INT("attempt", attempt), LOG_INT("notification_id", h->id),
		         LOG_STR("kind", c.r.kind), LOG_STR("correlation_id", c.r.correlation_id));
	} else if (rc == -1 && text) {
		delivery_failed(s, ns, &c.r, attempt, &res, err, next);
	}
	free(text);
	row_copy_free(&c.r);
	return rc == 0 ? 0 : -1;
}

/* Everything due for one notifier; *next: when to look again at the latest. */
static void deliver_due(sender *s, nstate *ns, double *next)
{
	while (!atomic_load(&s->stop)) {
		double now = clock_wall();
		outbox_head h;
		drop_expired(s, ns, now);
		int rc = outbox_pending_head(s->st, ns->nf.name, &h);
		if (rc != STORE_OK) {
			if (rc != STORE_NOTFOUND)
				log_store_error(s, "pending", ns->nf.name);
			return;
		}
		/* Further away than any backoff or sane retry_after: the wall
		 * clock was set back; try now. */
		if (h.next_attempt_at > now + RETRY_HORIZON)
			h.next_attempt_at = now;
		if (h.next_attempt_at > now) {
			if (h.next_attempt_at < *next)
				*next = h.next_attempt_at;
			return;
		}
		int decision =
		        notify_fold_decision(h.pending, notify_rate_free_slots(&ns->rate, now));
		if (decision < 0) {
			double t = notify_rate_next_free(&ns->rate, now);
			if (t < *next)
				*next = t;
			return;
		}
		if (decision > 1 ? fold(s, ns, now) != 0 : deliver(s, ns, &h, next) != 0)
			return;
	}
}

/* ---- the thread ---- */

static void wait_until(sender *s, double next)
{
	double ms = (next - clock_wall()) * 1000.0;
	if (ms <= 0)
		return;
	struct pollfd p = {.fd = s->wake_fd, .events = POLLIN};
	poll(&p, 1, ms > 60000 ? 60000 : (int)ms + 1);
}

static void *sender_main(void *arg)
{
	sender *s = arg;
	double now = clock_wall();
	for (size_t i = 0; i < s->n; i++) {
		nstate *ns = &s->ns[i];
		if (outbox_cursor_init(s->st, ns->nf.name, &ns->cursor) != STORE_OK) {
			log_store_error(s, "cursor", ns->nf.name);
			ns->broken = true;
		}
		rate_restore(s, ns, now);
		log_info(LOGGER, "notifier_started", LOG_STR("notifier", ns->nf.name),
		         LOG_STR("type", notifier_type_name(ns->nf.type)),
		         LOG_INT("cursor", ns->cursor),
		         LOG_INT("rate_limit_per_minute", ns->nf.rate_per_minute));
	}
	while (!atomic_load(&s->stop)) {
		double next = clock_wall() + POLL_SEC;
		for (size_t i = 0; i < s->n && !atomic_load(&s->stop); i++) {
			if (!s->ns[i].broken)
				adopt(s, &s->ns[i], clock_wall());
			deliver_due(s, &s->ns[i], &next);
		}
		wait_until(s, next);
	}
	return NULL;
}

/* ---- start, reload, stop ---- */

static void sender_free(sender *s)
{
	for (size_t i = 0; i < s->n; i++) {
		notifier_clear(&s->ns[i].nf);
		notify_rate_free(&s->ns[i].rate);
	}
	free(s->ns);
	http_client_free(s->http);
	store_close(s->st);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	config_unref(s->cfg);
	free(s);
}

/* The notifiers of cfg into s->ns; skipped ones are logged. */
static int sender_notifiers(sender *s)
{
	notifier *v = NULL;
	size_t n = 0;
	char *skipped = NULL;
	if (notifiers_load(s->cfg, &v, &n, &skipped) != 0)
		return -1;
	for (char *line = skipped ? strtok(skipped, "\n") : NULL; line; line = strtok(NULL, "\n"))
		log_error(LOGGER, "notifier_disabled", LOG_ERR(line, "config"));
	free(skipped);
	s->ns = calloc(n ? n : 1, sizeof *s->ns);
	for (size_t i = 0; s->ns && i < n; i++) {
		s->ns[i].nf = v[i];
		notify_rate_init(&s->ns[i].rate, v[i].rate_per_minute);
	}
	s->n = s->ns ? n : 0;
	if (s->ns == NULL)
		notifiers_free(v, n);
	else
		free(v); /* the structs were moved */
	return s->ns ? 0 : -1;
}

static int sender_open(sender *s, char *err, size_t errlen)
{
	char ua[64];
	snprintf(ua, sizeof ua, "fleetkeeper/%s", FK_VERSION);
	http_options o = {.user_agent = ua,
	                  .connect_timeout_ms = 5000,
	                  .timeout_ms = 15000,
	                  .cancel_fd = s->wake_fd};
	if (store_open(&s->st, s->cfg->db_path, err, errlen) != 0)
		return -1;
	s->http = http_client_new(&o);
	if (s->http == NULL) {
		snprintf(err, errlen, "cannot create the HTTP client");
		return -1;
	}
	return 0;
}

static bool has_notifiers(const config *cfg)
{
	for (size_t i = 0; i < cfg->nsections; i++)
		if (strncmp(cfg->sections[i].name, "notify.", 7) == 0)
			return true;
	return false;
}

int notify_sender_start(config *cfg)
{
	char err[512] = "";
	if (running || !has_notifiers(cfg))
		return 0;
	sender *s = calloc(1, sizeof *s);
	if (s == NULL)
		return -1;
	s->cfg = config_ref(cfg);
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int rc = s->wake_fd >= 0 && sender_notifiers(s) == 0 ? 0 : -1;
	if (rc != 0)
		snprintf(err, sizeof err, "cannot set up the notifiers: %s", strerror(errno));
	if (rc == 0 && s->n > 0)
		rc = sender_open(s, err, sizeof err);
	if (rc == 0 && s->n > 0 && pthread_create(&s->thread, NULL, sender_main, s) != 0) {
		snprintf(err, sizeof err, "cannot start the sender thread");
		rc = -1;
	}
	if (rc != 0)
		log_error(LOGGER, "notify_sender_failed", LOG_ERR(err, "startup"));
	if (rc != 0 || s->n == 0) {
		sender_free(s);
		return rc;
	}
	running = s;
	return 0;
}

void notify_sender_stop(void)
{
	sender *s = running;
	if (s == NULL)
		return;
	running = NULL;
	atomic_store(&s->stop, true);
	uint64_t one = 1;
	if (write(s->wake_fd, &one, sizeof one) < 0)
		(void)errno; /* the flag alone stops it within a poll */
	pthread_join(s->thread, NULL);
	sender_free(s);
}

void notify_sender_reload(config *cfg)
{
	/* Always restart when the configuration changed: the secret files
	 * may have been rotated. A request in flight is aborted and sent
	 * again by the new thread. */
	if (running && running->cfg == cfg)
		return;
	if (!running && !has_notifiers(cfg))
		return;
	notify_sender_stop();
	notify_sender_start(cfg);
}
