/*
 * http_cache — the http_cache table (http.h): the ETag of each URL and the
 * body it stood for. Plain SQLite, so it is part of the core, not of the
 * network module.
 */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "http.h"

static char *column_dup(sqlite3_stmt *st, int col)
{
	const unsigned char *v = sqlite3_column_text(st, col);
	return v ? strdup((const char *)v) : NULL;
}

int http_cache_get(store *s, const char *url, char **etag, char **body)
{
	sqlite3_stmt *st = NULL;
	*etag = *body = NULL;
	if (sqlite3_prepare_v2(store_db(s), "SELECT etag, body FROM http_cache WHERE url = ?", -1,
	                       &st, NULL) != SQLITE_OK)
		return STORE_ERROR;
	sqlite3_bind_text(st, 1, url, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*etag = column_dup(st, 0);
		*body = column_dup(st, 1);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? STORE_OK : STORE_ERROR;
}

int http_cache_put(store *s, const char *url, const char *etag, const char *last_modified,
                   const char *body)
{
	sqlite3_stmt *st = NULL;
	const char *sql =
	        "INSERT OR REPLACE INTO http_cache(url, etag, last_modified, body, updated_at)"
	        " VALUES (?, ?, ?, ?, (julianday('now') - 2440587.5) * 86400.0)";
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
		return STORE_ERROR;
	sqlite3_bind_text(st, 1, url, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, etag, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, last_modified, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, body, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? STORE_OK : STORE_ERROR;
}
