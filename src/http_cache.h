/*
 * http_cache — the http_cache table (store.c, docs/state-store.md): the
 * ETag of each URL, its Last-Modified, and the body it stood for, so that a
 * conditional GET (http.h) answered 304 can be replayed from the store. A
 * caller sends If-None-Match only when it holds a cached body to fall back
 * on.
 *
 * Threads: any, with its own store connection. Errors: 0 or a negative
 * store_error, the message in store_errmsg(s); nothing is logged. Strings
 * passed in are borrowed for the call; what comes back through ** is the
 * caller's to free.
 */
#ifndef FK_HTTP_CACHE_H
#define FK_HTTP_CACHE_H

#include "store.h"

/* etag and body (malloc'd; both NULL if url has no row) of url. */
int http_cache_get(store *s, const char *url, char **etag, char **body);
/* The row of url becomes etag, last_modified (NULL: none) and body, as of
 * now (unix seconds). */
int http_cache_put(store *s, const char *url, const char *etag, const char *last_modified,
                   const char *body, double now);

#endif
