/*
 * http_cache — the http_cache table; see http_cache.h. Plain store
 * statements, so it is part of the core, not of src/net.
 */
#include "http_cache.h"

static const char SQL_GET[] = "SELECT etag, body FROM http_cache WHERE url = ?1";
static const char SQL_PUT[] =
        "INSERT INTO http_cache(url, etag, last_modified, body, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(url) DO UPDATE SET etag = excluded.etag,"
        " last_modified = excluded.last_modified, body = excluded.body,"
        " updated_at = excluded.updated_at";

int http_cache_get(store *s, const char *url, char **etag, char **body)
{
	store_stmt *st;
	*etag = *body = NULL;
	int rc = store_prepare(s, SQL_GET, &st);
	if (rc == STORE_OK) {
		store_bind_text(st, 1, url);
		rc = store_step(st);
	}
	if (rc == STORE_ROW) {
		*etag = store_col_dup(st, 0);
		*body = store_col_dup(st, 1);
	}
	store_stmt_done(st);
	return rc == STORE_ROW || rc == STORE_DONE ? STORE_OK : rc;
}

int http_cache_put(store *s, const char *url, const char *etag, const char *last_modified,
                   const char *body, double now)
{
	store_stmt *st;
	int rc = store_prepare(s, SQL_PUT, &st);
	if (rc == STORE_OK) {
		store_bind_text(st, 1, url);
		store_bind_text(st, 2, etag);
		store_bind_text(st, 3, last_modified);
		store_bind_text(st, 4, body);
		store_bind_double(st, 5, now);
		rc = store_step_done(st);
	}
	store_stmt_done(st);
	return rc;
}
