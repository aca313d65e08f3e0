/*
 * api_internal — what the HTTP API's files share: api_server.c (the
 * listener, requests, auth, logging), api_auth.c (tokens and the failed-
 * authentication limiter), api_routes.c and api_ops.c (the endpoints);
 * the status page's files are embedded from src/api/page/.
 *
 * Threads: everything here runs on libmicrohttpd's connection threads;
 * what is shared between them is marked with its lock.
 * Errors: a handler always fills an api_resp (status and JSON body).
 * Ownership: an api_resp's body is malloc'd and freed by api_server.c.
 */
#ifndef FK_API_INTERNAL_H
#define FK_API_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "config.h"
#include "store.h"
#include "token_hash.h"

#define API_TOKEN_NAME_MAX 64
#define API_TOKEN_MAX      4096 /* bytes of a token file */
#define API_STORES         8    /* store connections shared by the requests */

typedef enum { SCOPE_NONE = 0, SCOPE_READ = 1, SCOPE_OPERATE = 2, SCOPE_ADMIN = 3 } api_scope;

const char *api_scope_name(api_scope s);

typedef struct {
	char name[API_TOKEN_NAME_MAX + 1];
	uint8_t hash[TOKEN_HASH_LEN];
	api_scope scope;
} api_token;

/* ---- api_auth.c ---- */

/* Every [api.token.NAME]: its file read, trimmed and hashed (the text is
 * wiped). 0, or -1 with err naming the section and the file's problem
 * (never its content). */
int api_tokens_load(const config *cfg, api_token **out, size_t *n, char *err, size_t errlen);
/* The token whose hash matches presented: every token is compared, in
 * constant time. NULL if none. */
const api_token *api_tokens_match(const api_token *tokens, size_t n, const char *presented);

/* Failed authentications per client address: API_AUTH_FAILS within
 * API_AUTH_WINDOW_S block the address for the rest of the window. */
#define API_AUTH_FAILS    10
#define API_AUTH_WINDOW_S 60
#define API_LIMITER_SLOTS 256

typedef struct {
	char addr[64];
	double window_start;
	int fails;
} api_limiter_slot;

typedef struct {
	pthread_mutex_t mu;
	api_limiter_slot slots[API_LIMITER_SLOTS]; /* guarded by mu */
} api_limiter;

void api_limiter_init(api_limiter *l);
void api_limiter_destroy(api_limiter *l);
/* Blocked now? *retry_after gets the seconds left. */
bool api_limiter_blocked(api_limiter *l, const char *addr, double now, int *retry_after);
void api_limiter_fail(api_limiter *l, const char *addr, double now);

/* ---- the server's state (api_server.c) ---- */

struct api {
	struct MHD_Daemon *mhd;
	config *cfg;
	int listen_fd;
	char address[300];
	bool tls, public_status, unix_socket;
	size_t max_body;
	char *tls_cert, *tls_key; /* PEM, kept for libmicrohttpd */
	api_token *tokens;
	size_t ntokens;
	api_limiter limiter;
	volatile int stopping; /* __atomic: streams end */

	pthread_mutex_t store_mu;
	pthread_cond_t store_cv;
	store *stores[API_STORES]; /* guarded by store_mu; NULL: not opened yet */
	bool store_busy[API_STORES];

	pthread_mutex_t ctl_mu; /* one control request at a time */
	char *status_cache;     /* guarded by ctl_mu */
	int64_t status_cache_ms;
};

/* A store connection for the request, given back with api_store_give. NULL
 * with err set when the store cannot be opened. */
store *api_store_take(api *a, char *err, size_t errlen);
void api_store_give(api *a, store *st);

/* One request to the daemon's control socket (serialised): the parsed
 * reply, or NULL with *http_status (503 no daemon) and err. */
cJSON *api_control(api *a, const char *request, unsigned *http_status, char *err, size_t errlen);
/* The control status reply, reused for API_STATUS_CACHE_MS. */
#define API_STATUS_CACHE_MS 250
cJSON *api_control_status(api *a, unsigned *http_status, char *err, size_t errlen);

/* ---- a request and its response ---- */

typedef struct {
	api *a;
	struct MHD_Connection *conn;
	const char *method;
	const char *path;
	const char *body; /* NUL-terminated; NULL when none */
	size_t body_len;
	const api_token *token; /* NULL: anonymous (public status page) */
	const char *given_cid;  /* a valid X-Correlation-ID, or NULL */
	const char *client;     /* the client's address, for the log */
} api_req;

typedef struct {
	unsigned status;
	char *body; /* malloc'd */
	const char *content_type;
	const char *route;        /* the route's template, static ("other" when none matched) */
	char correlation_id[128]; /* echoed in X-Correlation-ID when set */
	/* A stream (SSE): the run whose events follow. */
	bool stream;
	int64_t stream_run_id;
	char stream_cid[128];
	int64_t stream_after;
	const char *allow; /* 405: the Allow header */
	int retry_after;   /* 429 */
} api_resp;

/* api_routes.c: fill rs for rq (never NULL body unless stream). */
void api_route(api_req *rq, api_resp *rs);

/* Response helpers (api_routes.c). They take ownership of obj. */
void api_reply_json(api_resp *rs, unsigned status, cJSON *obj);
void api_reply_error(api_resp *rs, unsigned status, const char *error_type, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
const char *api_query(const api_req *rq, const char *key);

/* api_ops.c: the operations (scope operate). */
void api_op_trigger(api_req *rq, api_resp *rs, const char *task);
void api_op_recover(api_req *rq, api_resp *rs, const char *handle);
void api_op_maintenance(api_req *rq, api_resp *rs, const char *handle, bool start);
void api_op_incident(api_req *rq, api_resp *rs, int64_t id, bool close);
void api_op_service_put(api_req *rq, api_resp *rs, const char *handle, const char *name);
void api_op_service_rm(api_req *rq, api_resp *rs, const char *handle, const char *name);
/* The request's JSON body as an object (an empty body: an empty object);
 * NULL after filling rs with 400 when it is not one. */
cJSON *api_body_object(api_req *rq, api_resp *rs);

/* The status page's files (src/api/page/, embedded by scripts/embed-files.py). */
extern const char api_page_html[], api_page_js[], api_page_css[];
extern const size_t api_page_html_len, api_page_js_len, api_page_css_len;

#endif
