/* events — see events.h. */
#include "events.h"

#include <stdio.h>

/* Events go in batches of BATCH rows per statement (one round trip to
 * PostgreSQL for each, fewer statement steps on SQLite); the rest one by
 * one. */
#define BATCH   32
#define COLS    9
#define COLUMNS "unix_time, timestamp, level, logger, event, correlation_id, task, run_id, line"

static const char insert_sql[] = "INSERT INTO events (" COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5,"
                                 " ?6, ?7, ?8, ?9)";
/* BATCH rows of COLS parameters */
static const char batch_sql[] = "INSERT INTO events (" COLUMNS ") VALUES "
                                "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                                ", (?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
                                ", (?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)"
                                ", (?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36)"
                                ", (?37, ?38, ?39, ?40, ?41, ?42, ?43, ?44, ?45)"
                                ", (?46, ?47, ?48, ?49, ?50, ?51, ?52, ?53, ?54)"
                                ", (?55, ?56, ?57, ?58, ?59, ?60, ?61, ?62, ?63)"
                                ", (?64, ?65, ?66, ?67, ?68, ?69, ?70, ?71, ?72)"
                                ", (?73, ?74, ?75, ?76, ?77, ?78, ?79, ?80, ?81)"
                                ", (?82, ?83, ?84, ?85, ?86, ?87, ?88, ?89, ?90)"
                                ", (?91, ?92, ?93, ?94, ?95, ?96, ?97, ?98, ?99)"
                                ", (?100, ?101, ?102, ?103, ?104, ?105, ?106, ?107, ?108)"
                                ", (?109, ?110, ?111, ?112, ?113, ?114, ?115, ?116, ?117)"
                                ", (?118, ?119, ?120, ?121, ?122, ?123, ?124, ?125, ?126)"
                                ", (?127, ?128, ?129, ?130, ?131, ?132, ?133, ?134, ?135)"
                                ", (?136, ?137, ?138, ?139, ?140, ?141, ?142, ?143, ?144)"
                                ", (?145, ?146, ?147, ?148, ?149, ?150, ?151, ?152, ?153)"
                                ", (?154, ?155, ?156, ?157, ?158, ?159, ?160, ?161, ?162)"
                                ", (?163, ?164, ?165, ?166, ?167, ?168, ?169, ?170, ?171)"
                                ", (?172, ?173, ?174, ?175, ?176, ?177, ?178, ?179, ?180)"
                                ", (?181, ?182, ?183, ?184, ?185, ?186, ?187, ?188, ?189)"
                                ", (?190, ?191, ?192, ?193, ?194, ?195, ?196, ?197, ?198)"
                                ", (?199, ?200, ?201, ?202, ?203, ?204, ?205, ?206, ?207)"
                                ", (?208, ?209, ?210, ?211, ?212, ?213, ?214, ?215, ?216)"
                                ", (?217, ?218, ?219, ?220, ?221, ?222, ?223, ?224, ?225)"
                                ", (?226, ?227, ?228, ?229, ?230, ?231, ?232, ?233, ?234)"
                                ", (?235, ?236, ?237, ?238, ?239, ?240, ?241, ?242, ?243)"
                                ", (?244, ?245, ?246, ?247, ?248, ?249, ?250, ?251, ?252)"
                                ", (?253, ?254, ?255, ?256, ?257, ?258, ?259, ?260, ?261)"
                                ", (?262, ?263, ?264, ?265, ?266, ?267, ?268, ?269, ?270)"
                                ", (?271, ?272, ?273, ?274, ?275, ?276, ?277, ?278, ?279)"
                                ", (?280, ?281, ?282, ?283, ?284, ?285, ?286, ?287, ?288)";

static void bind_row(store_stmt *st, int base, const event_record *e)
{
	store_bind_double(st, base + 1, e->unix_time);
	store_bind_text(st, base + 2, e->timestamp);
	store_bind_text(st, base + 3, e->level);
	store_bind_text(st, base + 4, e->logger);
	store_bind_text(st, base + 5, e->event);
	store_bind_text(st, base + 6, e->correlation_id);
	store_bind_text(st, base + 7, e->task);
	if (e->run_id != 0)
		store_bind_int64(st, base + 8, e->run_id);
	else
		store_bind_null(st, base + 8);
	store_bind_text(st, base + 9, e->json);
}

/* rows events (1 or BATCH) with the statement for that many. */
static int insert_rows(store *s, const event_record *events, size_t rows)
{
	store_stmt *st;
	int code = store_prepare(s, rows == 1 ? insert_sql : batch_sql, &st);
	for (size_t i = 0; code == STORE_OK && i < rows; i++)
		bind_row(st, (int)i * COLS, &events[i]);
	if (code == STORE_OK)
		code = store_step_done(st);
	store_stmt_done(st);
	return code;
}

int events_insert(store *s, const event_record *events, size_t n)
{
	if (n == 0)
		return STORE_OK;
	int code = store_tx_begin(s);
	size_t i = 0;
	for (; code == STORE_OK && i + BATCH <= n; i += BATCH)
		code = insert_rows(s, events + i, BATCH);
	for (; code == STORE_OK && i < n; i++)
		code = insert_rows(s, events + i, 1);
	if (code == STORE_OK && (code = store_tx_commit(s)) == STORE_OK)
		return STORE_OK;
	store_tx_rollback(s);
	char why[400];
	snprintf(why, sizeof why, "%s", store_errmsg(s));
	return store_set_error(s, code, "commit events: %s", why);
}

int events_trace(store *s, const char *correlation_id, int64_t after_id, event_line_cb cb,
                 void *ctx)
{
	static const char sql[] =
	        "SELECT id, line FROM events WHERE correlation_id = ?1 AND id > ?2 ORDER BY id";
	store_stmt *st;
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	store_bind_text(st, 1, correlation_id);
	store_bind_int64(st, 2, after_id);
	int ret = STORE_OK;
	while ((rc = store_step(st)) == STORE_ROW) {
		ret = cb(ctx, store_col_int64(st, 0), store_col_text(st, 1));
		if (ret != 0)
			break;
	}
	store_stmt_done(st);
	return rc < 0 ? rc : ret;
}

int events_prune(store *s, double cutoff, size_t max_rows, int64_t *deleted)
{
	/* The oldest first, by the events_time index; a subquery with LIMIT
	 * instead of DELETE ... LIMIT, which PostgreSQL lacks. */
	static const char sql[] = "DELETE FROM events WHERE id IN (SELECT id FROM events"
	                          " WHERE unix_time < ?1 ORDER BY unix_time LIMIT ?2)";
	store_stmt *st;
	*deleted = 0;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_double(st, 1, cutoff);
	store_bind_int64(st, 2, (int64_t)max_rows);
	code = store_step_done(st);
	store_stmt_done(st);
	if (code == STORE_OK)
		*deleted = store_changes(s);
	return code;
}
