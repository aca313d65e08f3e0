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

#include <sqlite3.h>

#include "clock.h"
#include "log.h"
#include "notifiers.h"
#include "outbox.h"

#define LOGGER        "core.notify"
#define POLL_SEC      1.0 /* rows written by other processes are seen this fast */
#define ADOPT_BATCH   200
#define RETRY_HORIZON 3600.0 /* seconds; a later next_attempt_at is a clock step back */
#define PENDING_STATE "('queued','sending','failed')"

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

/* ---- small SQL helpers ---- */

static int exec_sql(store *st, const char *sql)
{
	return sqlite3_exec(store_db(st), sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static sqlite3_stmt *prep(store *st, const char *sql)
{
	sqlite3_stmt *q = NULL;
	if (sqlite3_prepare_v2(store_db(st), sql, -1, &q, NULL) != SQLITE_OK) {
		sqlite3_finalize(q);
		return NULL;
	}
	return q;
}

/* Step a statement that returns no rows, and finalize it. 0 or -1. */
static int step_done(sqlite3_stmt *q)
{
	int rc = q ? sqlite3_step(q) : SQLITE_ERROR;
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : -1;
}

static void log_store_error(sender *s, const char *what, const char *name)
{
	log_error(LOGGER, "notify_store_failed", LOG_STR("notifier", name),
	          LOG_STR("operation", what), LOG_ERR(sqlite3_errmsg(store_db(s->st)), "store"));
}

/* ---- start of a notifier: cursor and rate window ---- */

static int cursor_init(sender *s, nstate *ns)
{
	sqlite3_stmt *q = prep(s->st, "INSERT OR IGNORE INTO notifier_cursor (notifier, last_id)"
	                              " SELECT ?, coalesce(max(id), 0) FROM notifications");
	if (q)
		sqlite3_bind_text(q, 1, ns->nf.name, -1, SQLITE_STATIC);
	if (step_done(q) != 0)
		return -1;
	q = prep(s->st, "SELECT last_id FROM notifier_cursor WHERE notifier = ?");
	if (q == NULL)
		return -1;
	sqlite3_bind_text(q, 1, ns->nf.name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		ns->cursor = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return rc == SQLITE_ROW ? 0 : -1;
}

/* Sends of the last minute count against the limit after a restart too. */
static void rate_restore(sender *s, nstate *ns, double now)
{
	sqlite3_stmt *q = prep(s->st, "SELECT updated_at FROM notification_deliveries"
	                              " WHERE notifier = ? AND state = 'sent' AND updated_at > ?"
	                              " ORDER BY updated_at");
	if (q == NULL)
		return;
	sqlite3_bind_text(q, 1, ns->nf.name, -1, SQLITE_STATIC);
	sqlite3_bind_double(q, 2, now - 60.0);
	while (sqlite3_step(q) == SQLITE_ROW)
		notify_rate_note(&ns->rate, sqlite3_column_double(q, 0));
	sqlite3_finalize(q);
}

/* ---- adoption ---- */

typedef struct {
	sender *s;
	nstate *ns;
	sqlite3_stmt *ins;
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
	sqlite3_reset(a->ins);
	sqlite3_bind_int64(a->ins, 2, row->id);
	return sqlite3_step(a->ins) == SQLITE_DONE ? 0 : -1;
}

static void announce_queued(sender *s, nstate *ns, int64_t from, int64_t to)
{
	sqlite3_stmt *q = prep(s->st, "SELECT n.id, n.kind, n.correlation_id FROM"
	                              " notification_deliveries d JOIN notifications n"
	                              " ON n.id = d.notification_id WHERE d.notifier = ?"
	                              " AND d.notification_id > ? AND d.notification_id <= ?"
	                              " ORDER BY n.id");
	if (q == NULL)
		return;
	sqlite3_bind_text(q, 1, ns->nf.name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, from);
	sqlite3_bind_int64(q, 3, to);
	while (sqlite3_step(q) == SQLITE_ROW)
		log_info(LOGGER, "notification_queued", LOG_STR("notifier", ns->nf.name),
		         LOG_STR("kind", (const char *)sqlite3_column_text(q, 1)),
		         LOG_INT("notification_id", sqlite3_column_int64(q, 0)),
		         LOG_STR("correlation_id", (const char *)sqlite3_column_text(q, 2)));
	sqlite3_finalize(q);
}

/* One batch: delivery rows and the cursor in one transaction. Returns the
 * rows seen, or -1. */
static int adopt_batch(sender *s, nstate *ns, double now)
{
	char err[256];
	adopt_ctx a = {.s = s, .ns = ns, .last = ns->cursor, .now = now};
	if (exec_sql(s->st, "BEGIN IMMEDIATE") != 0)
		return -1;
	a.ins = prep(s->st, "INSERT OR IGNORE INTO notification_deliveries (notifier,"
	                    " notification_id, state, updated_at) VALUES (?, ?, 'queued', ?)");
	sqlite3_stmt *cur =
	        prep(s->st, "UPDATE notifier_cursor SET last_id = ? WHERE notifier = ?");
	int rc = a.ins && cur ? 0 : -1;
	if (rc == 0) {
		sqlite3_bind_text(a.ins, 1, ns->nf.name, -1, SQLITE_STATIC);
		sqlite3_bind_double(a.ins, 3, now);
		rc = outbox_list_after(s->st, ns->cursor, ADOPT_BATCH, adopt_row, &a, err,
		                       sizeof err);
	}
	if (rc == 0 && a.seen > 0) {
		sqlite3_bind_int64(cur, 1, a.last);
		sqlite3_bind_text(cur, 2, ns->nf.name, -1, SQLITE_STATIC);
		rc = sqlite3_step(cur) == SQLITE_DONE ? 0 : -1;
	}
	sqlite3_finalize(a.ins);
	sqlite3_finalize(cur);
	if (rc != 0 || exec_sql(s->st, "COMMIT") != 0) {
		exec_sql(s->st, "ROLLBACK");
		return -1;
	}
	int64_t from = ns->cursor;
	ns->cursor = a.last;
	if (a.seen > 0)
		announce_queued(s, ns, from, a.last);
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

static void drop_expired(sender *s, nstate *ns, double now)
{
	sqlite3_stmt *q = prep(s->st, "SELECT n.id, n.created_at, n.kind, n.correlation_id FROM"
	                              " notification_deliveries d JOIN notifications n"
	                              " ON n.id = d.notification_id WHERE d.notifier = ?"
	                              " AND d.state IN " PENDING_STATE " AND n.created_at < ?"
	                              " ORDER BY n.id");
	sqlite3_stmt *u = prep(s->st, "UPDATE notification_deliveries SET state = 'dropped',"
	                              " updated_at = ? WHERE notifier = ? AND notification_id = ?");
	if (q == NULL || u == NULL)
		goto out;
	sqlite3_bind_text(q, 1, ns->nf.name, -1, SQLITE_STATIC);
	sqlite3_bind_double(q, 2, now - ns->nf.max_age);
	sqlite3_bind_double(u, 1, now);
	sqlite3_bind_text(u, 2, ns->nf.name, -1, SQLITE_STATIC);
	while (sqlite3_step(q) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(q, 0);
		sqlite3_reset(u);
		sqlite3_bind_int64(u, 3, id);
		if (sqlite3_step(u) != SQLITE_DONE)
			break;
		log_warning(LOGGER, "notification_dropped", LOG_STR("notifier", ns->nf.name),
		            LOG_DBL("age_sec", now - sqlite3_column_double(q, 1)),
		            LOG_INT("notification_id", id),
		            LOG_STR("kind", (const char *)sqlite3_column_text(q, 2)),
		            LOG_STR("correlation_id", (const char *)sqlite3_column_text(q, 3)));
	}
out:
	sqlite3_finalize(q);
	sqlite3_finalize(u);
}

/* ---- the pending rows ---- */

typedef struct {
	int64_t id;
	int attempts;
	int progress;
	double next_attempt_at;
} head_row;

/* The head (lowest pending) and how many are pending: 1 found, 0 none, -1. */
static int pending_head(sender *s, nstate *ns, head_row *h, int *count)
{
	sqlite3_stmt *q =
	        prep(s->st, "SELECT notification_id, attempts, progress, next_attempt_at,"
	                    " (SELECT count(*) FROM notification_deliveries WHERE"
	                    " notifier = ?1 AND state IN " PENDING_STATE ")"
	                    " FROM notification_deliveries WHERE notifier = ?1"
	                    " AND state IN " PENDING_STATE " ORDER BY notification_id LIMIT 1");
	if (q == NULL)
		return -1;
	sqlite3_bind_text(q, 1, ns->nf.name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		h->id = sqlite3_column_int64(q, 0);
		h->attempts = sqlite3_column_int(q, 1);
		h->progress = sqlite3_column_int(q, 2);
		h->next_attempt_at = sqlite3_column_double(q, 3);
		*count = sqlite3_column_int(q, 4);
	}
	sqlite3_finalize(q);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

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
	sqlite3_stmt *q = prep(s->st, "SELECT notification_id FROM notification_deliveries"
	                              " WHERE notifier = ? AND state IN " PENDING_STATE
	                              " ORDER BY notification_id");
	char err[256];
	int rc = q ? 0 : -1;
	if (q)
		sqlite3_bind_text(q, 1, ns->nf.name, -1, SQLITE_STATIC);
	while (rc == 0 && sqlite3_step(q) == SQLITE_ROW)
		rc = outbox_get(s->st, sqlite3_column_int64(q, 0), row_list_cb, l, err, sizeof err);
	sqlite3_finalize(q);
	return rc;
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
	sqlite3_stmt *u = NULL, *ins = NULL;
	int rc = title && body && fields && exec_sql(s->st, "BEGIN IMMEDIATE") == 0 ? 0 : -2;
	if (rc == 0) {
		u = prep(s->st,
		         "UPDATE notification_deliveries SET state = 'folded', updated_at = ?"
		         " WHERE notifier = ? AND state IN " PENDING_STATE
		         " AND notification_id <= ?");
		ins = prep(s->st, "INSERT INTO notification_deliveries (notifier, notification_id,"
		                  " state, updated_at) VALUES (?, ?, 'queued', ?)");
		rc = u && ins ? 0 : -1;
	}
	if (rc == 0) {
		sqlite3_bind_double(u, 1, now);
		sqlite3_bind_text(u, 2, ns->nf.name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(u, 3, l->rows[l->n - 1].id);
		rc = sqlite3_step(u) == SQLITE_DONE ? 0 : -1;
	}
	if (rc == 0)
		rc = outbox_add(s->st, &m, now, sum_id, err, sizeof err);
	if (rc == 0) {
		sqlite3_bind_text(ins, 1, ns->nf.name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 2, *sum_id);
		sqlite3_bind_double(ins, 3, now);
		rc = sqlite3_step(ins) == SQLITE_DONE ? 0 : -1;
	}
	sqlite3_finalize(u);
	sqlite3_finalize(ins);
	if (rc == 0 && exec_sql(s->st, "COMMIT") != 0)
		rc = -1;
	if (rc == -1)
		exec_sql(s->st, "ROLLBACK");
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

static int mark(sender *s, nstate *ns, int64_t id, const char *sql, double a, const char *text)
{
	sqlite3_stmt *q = prep(s->st, sql);
	if (q == NULL)
		return -1;
	sqlite3_bind_text(q, 1, ns->nf.name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, id);
	sqlite3_bind_double(q, 3, clock_wall());
	/* Statements without ?4 or ?5 just refuse those binds (SQLITE_RANGE). */
	sqlite3_bind_double(q, 4, a);
	sqlite3_bind_text(q, 5, text, -1, SQLITE_STATIC);
	return step_done(q);
}

#define WHERE_ROW " WHERE notifier = ?1 AND notification_id = ?2"
#define SQL_ATTEMPT                                                                                \
	"UPDATE notification_deliveries SET state = 'sending', attempts = attempts + 1,"           \
	" updated_at = ?3" WHERE_ROW
#define SQL_PROGRESS "UPDATE notification_deliveries SET progress = ?4, updated_at = ?3" WHERE_ROW
#define SQL_SENT                                                                                   \
	"UPDATE notification_deliveries SET state = 'sent', last_error = NULL,"                    \
	" updated_at = ?3" WHERE_ROW
#define SQL_FAILED                                                                                 \
	"UPDATE notification_deliveries SET state = 'failed', next_attempt_at = ?4,"               \
	" last_error = ?5, updated_at = ?3" WHERE_ROW

/* Send every remaining step; 0 sent, -1 failed (err, res), -2 stopping. */
static int send_steps(sender *s, nstate *ns, const outbox_row *row, const char *text, int progress,
                      notify_result *res, char *err, size_t errlen)
{
	size_t steps = notifier_steps(&ns->nf);
	for (size_t i = (size_t)progress; i < steps; i++) {
		if (notifier_send_step(&ns->nf, s->http, row, text, i, clock_wall(), res, err,
		                       errlen) != 0)
			return atomic_load(&s->stop) ? -2 : -1;
		if (mark(s, ns, row->id, SQL_PROGRESS, (double)(i + 1), NULL) != 0)
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
	if (mark(s, ns, row->id, SQL_FAILED, now + delay, err) != 0)
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
static int deliver(sender *s, nstate *ns, const head_row *h, double *next)
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
	if (rc == 0 && mark(s, ns, h->id, SQL_ATTEMPT, 0, NULL) != 0) {
		log_store_error(s, "attempt", ns->nf.name);
		rc = -1;
	}
	if (rc == 0)
		rc = send_steps(s, ns, &c.r, text, h->progress, &res, err, sizeof err);
	if (rc == 0) {
		notify_rate_note(&ns->rate, clock_wall());
		if (mark(s, ns, h->id, SQL_SENT, 0, NULL) != 0)
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
		head_row h;
		int pending = 0;
		drop_expired(s, ns, now);
		int found = pending_head(s, ns, &h, &pending);
		if (found <= 0) {
			if (found < 0)
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
		        notify_fold_decision(pending, notify_rate_free_slots(&ns->rate, now));
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
		if (cursor_init(s, ns) != 0) {
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

/* ---- retention ---- */

int notify_prune(store *s, double cutoff, int64_t *deleted, char *err, size_t errlen)
{
	sqlite3_stmt *q = prep(s, "DELETE FROM notifications WHERE created_at < ?"
	                          " AND id < (SELECT max(id) FROM notifications)");
	int rc = SQLITE_ERROR;
	if (q) {
		sqlite3_bind_double(q, 1, cutoff);
		rc = sqlite3_step(q);
	}
	if (deleted)
		*deleted = rc == SQLITE_DONE ? sqlite3_changes(store_db(s)) : 0;
	if (rc != SQLITE_DONE)
		snprintf(err, errlen, "notifications prune: %s", sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? STORE_OK : STORE_ERROR;
}
