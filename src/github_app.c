/*
 * github_app — see github_app.h.
 *
 * Invariants:
 *  - The cache holds at most one installation token (the last issued,
 *    with the api_url, app id and installation it is for) and one
 *    installation found for an account; a token is handed out only while
 *    github_app_token_fresh, and always as a copy, so a caller's renewal
 *    never frees what another thread uses.
 *  - A token is accepted from GitHub only if it is printable ASCII without
 *    spaces: it goes into an Authorization header and libgit2's
 *    credentials, where a CR or LF would be an injection.
 *  - The JWT lives only for one call of github_app_token_get: it is in the
 *    Authorization header of the installation lookup and of the exchange,
 *    and is wiped with the client's headers afterwards.
 */
#include "github_app.h"

#include <ctype.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "github.h"
#include "http.h"

#define MAX_ID          9007199254740992.0 /* 2^53: cJSON numbers are doubles */
#define MAX_INST_PAGES  100                /* of GET /app/installations, 100 each */
#define POST_RETRIES    2
#define POST_BACKOFF_MS 500

const char *github_app_error_type(int rc)
{
	switch (rc) {
	case GITHUB_APP_ERR_KEY:
		return "private_key_invalid";
	case GITHUB_APP_ERR_JWT_REJECTED:
		return "jwt_rejected";
	case GITHUB_APP_ERR_NOT_FOUND:
		return "installation_not_found";
	case GITHUB_APP_ERR_SERVER:
		return "http_5xx";
	case GITHUB_APP_ERR_NETWORK:
		return "network_error";
	case GITHUB_APP_ERR_RATE_LIMITED:
		return "github_rate_limited";
	case GITHUB_APP_ERR_HTTP:
		return "http_4xx";
	case GITHUB_APP_ERR_RESPONSE:
		return "bad_response";
	case GITHUB_APP_ERR_CANCELLED:
		return "cancelled";
	default:
		return "internal";
	}
}

/* ---- pure ---- */

size_t github_b64url(const void *in, size_t n, char *out, size_t cap)
{
	static const char abc[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *p = in;
	size_t o = 0;

	if (cap < GITHUB_B64URL_LEN(n) + 1)
		return 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t left = n - i;
		if (left > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (left > 2)
			v |= p[i + 2];
		out[o++] = abc[(v >> 18) & 63];
		out[o++] = abc[(v >> 12) & 63];
		if (left > 1)
			out[o++] = abc[(v >> 6) & 63];
		if (left > 2)
			out[o++] = abc[v & 63];
	}
	out[o] = '\0';
	return o;
}

bool github_app_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0 || n > 64)
		return false;
	for (const char *p = id; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
			return false;
	return true;
}

static char *b64url_dup(const char *s)
{
	size_t n = strlen(s), cap = GITHUB_B64URL_LEN(n) + 1;
	char *out = malloc(cap);
	if (out)
		github_b64url(s, n, out, cap);
	return out;
}

char *github_app_jwt_input(const char *app_id, int64_t now)
{
	char claims[160];
	char *h = NULL, *c = NULL, *out = NULL;

	if (!github_app_id_ok(app_id))
		return NULL;
	snprintf(claims, sizeof claims, "{\"iat\":%lld,\"exp\":%lld,\"iss\":\"%s\"}",
	         (long long)(now - GITHUB_APP_JWT_BACKDATE),
	         (long long)(now + GITHUB_APP_JWT_AHEAD), app_id);
	h = b64url_dup("{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
	c = b64url_dup(claims);
	if (h && c && asprintf(&out, "%s.%s", h, c) < 0)
		out = NULL;
	free(h);
	free(c);
	return out;
}

/* n decimal digits at *p into *out, advancing *p. */
static bool digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool sep(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's). */
static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int month_days(int y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : days[m - 1];
}

/* "Z", "+HH:MM" or "-HH:MM" at the end of s: the offset in seconds. */
static bool utc_offset(const char *p, int *off)
{
	int hh, mm;
	if (p[0] == 'Z' && p[1] == '\0') {
		*off = 0;
		return true;
	}
	if (p[0] != '+' && p[0] != '-')
		return false;
	const char *q = p + 1;
	if (!digits(&q, 2, &hh) || !sep(&q, ':') || !digits(&q, 2, &mm) || *q || hh > 23 || mm > 59)
		return false;
	*off = (p[0] == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
	return true;
}

int github_app_parse_time(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, sec, off;
	const char *p = s;

	if (s == NULL || !digits(&p, 4, &y) || !sep(&p, '-') || !digits(&p, 2, &mo) ||
	    !sep(&p, '-') || !digits(&p, 2, &d) || !sep(&p, 'T') || !digits(&p, 2, &h) ||
	    !sep(&p, ':') || !digits(&p, 2, &mi) || !sep(&p, ':') || !digits(&p, 2, &sec))
		return -1;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -1;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (!utc_offset(p, &off) || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 ||
	    mi > 59 || sec > 60)
		return -1;
	*out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
	return 0;
}

void github_app_format_time(int64_t t, char *out, size_t cap)
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (cap == 0)
		return;
	out[0] = '\0';
	if (gmtime_r(&tt, &tm))
		strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A token we can put into a header: printable ASCII, no spaces. */
static bool token_ok(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > 4096)
		return false;
	for (; *t; t++)
		if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
			return false;
	return true;
}

int github_app_parse_token(const char *json, size_t len, char **token, int64_t *expires_at,
                           char *err, size_t errlen)
{
	cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "token");
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "expires_at");
	int rc = -1;

	*token = NULL;
	if (!cJSON_IsObject(root))
		snprintf(err, errlen, "the token response is not a JSON object");
	else if (!cJSON_IsString(t) || !token_ok(t->valuestring))
		snprintf(err, errlen, "the token response has no usable token");
	else if (!cJSON_IsString(e) || github_app_parse_time(e->valuestring, expires_at) != 0)
		snprintf(err, errlen, "the token response has no usable expires_at");
	else if ((*token = strdup(t->valuestring)) == NULL)
		snprintf(err, errlen, "out of memory");
	else
		rc = 0;
	if (cJSON_IsString(t))
		explicit_bzero(t->valuestring, strlen(t->valuestring));
	cJSON_Delete(root);
	return rc;
}

static int64_t installation_of(const cJSON *it, const char *account)
{
	const cJSON *acc = cJSON_GetObjectItemCaseSensitive(it, "account");
	const cJSON *login = cJSON_GetObjectItemCaseSensitive(acc, "login");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
	if (!cJSON_IsString(login) || strcasecmp(login->valuestring, account) != 0 ||
	    !cJSON_IsNumber(id) || id->valuedouble < 1 || id->valuedouble > MAX_ID ||
	    (double)(int64_t)id->valuedouble != id->valuedouble)
		return 0;
	return (int64_t)id->valuedouble;
}

int github_app_parse_installations(const char *json, size_t len, const char *account, int64_t *id,
                                   char *err, size_t errlen)
{
	cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
	const cJSON *it;
	int rc = 0;

	*id = 0;
	if (!cJSON_IsArray(root)) {
		snprintf(err, errlen, "expected a JSON array of installations");
		cJSON_Delete(root);
		return -1;
	}
	cJSON_ArrayForEach(it, root)
	{
		if (!cJSON_IsObject(it)) {
			snprintf(err, errlen, "an installation is not an object");
			rc = -1;
			break;
		}
		if (*id == 0)
			*id = installation_of(it, account);
	}
	if (rc != 0)
		*id = 0;
	cJSON_Delete(root);
	return rc;
}

bool github_app_token_fresh(int64_t expires_at, int64_t now)
{
	return now < expires_at - GITHUB_APP_RENEW_MARGIN;
}

void github_app_secret_free(char *secret)
{
	if (secret == NULL)
		return;
	explicit_bzero(secret, strlen(secret));
	free(secret);
}

void github_app_token_clear(github_app_token *t)
{
	github_app_secret_free(t->token);
	*t = (github_app_token){0};
}

int github_app_jwt(const github_app_key *k, const char *app_id, int64_t now, char **jwt, char *err,
                   size_t errlen)
{
	char *input = github_app_jwt_input(app_id, now), *sig = NULL;
	int rc;

	*jwt = NULL;
	if (input == NULL) {
		snprintf(err, errlen, "app_id '%s' cannot be a JWT issuer", app_id ? app_id : "");
		return GITHUB_APP_ERR_INTERNAL;
	}
	rc = github_app_sign(k, input, strlen(input), &sig, err, errlen);
	if (rc == GITHUB_APP_OK && asprintf(jwt, "%s.%s", input, sig) < 0) {
		*jwt = NULL;
		snprintf(err, errlen, "out of memory");
		rc = GITHUB_APP_ERR_INTERNAL;
	}
	free(input);
	free(sig);
	return rc;
}

/* ---- the cache ---- */

typedef struct {
	char *api_url, *app_id, *account; /* account: only for the found installation */
	int64_t installation_id;
	char *token; /* only for the token */
	int64_t expires_at;
} cache_entry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cache_entry cached_token; /* the last token issued */
static cache_entry found;        /* the installation found for an account */

static void entry_clear(cache_entry *e)
{
	free(e->api_url);
	free(e->app_id);
	free(e->account);
	github_app_secret_free(e->token);
	*e = (cache_entry){0};
}

static bool entry_for(const cache_entry *e, const github_app_config *c)
{
	return e->api_url && strcmp(e->api_url, c->api_url) == 0 &&
	       strcmp(e->app_id, c->app_id) == 0;
}

void github_app_cache_reset(void)
{
	pthread_mutex_lock(&cache_lock);
	entry_clear(&cached_token);
	entry_clear(&found);
	pthread_mutex_unlock(&cache_lock);
}

/* Under cache_lock: the installation found earlier for c's account, or 0. */
static int64_t found_id(const github_app_config *c)
{
	if (c->account && entry_for(&found, c) && strcasecmp(found.account, c->account) == 0)
		return found.installation_id;
	return 0;
}

static void found_set(const github_app_config *c, int64_t id)
{
	pthread_mutex_lock(&cache_lock);
	entry_clear(&found);
	found = (cache_entry){.api_url = strdup(c->api_url),
	                      .app_id = strdup(c->app_id),
	                      .account = strdup(c->account),
	                      .installation_id = id};
	if (!found.api_url || !found.app_id || !found.account)
		entry_clear(&found);
	pthread_mutex_unlock(&cache_lock);
}

static void found_forget(const github_app_config *c)
{
	pthread_mutex_lock(&cache_lock);
	if (found_id(c))
		entry_clear(&found);
	pthread_mutex_unlock(&cache_lock);
}

static void token_cache_set(const github_app_config *c, const github_app_token *t)
{
	pthread_mutex_lock(&cache_lock);
	entry_clear(&cached_token);
	cached_token = (cache_entry){.api_url = strdup(c->api_url),
	                             .app_id = strdup(c->app_id),
	                             .installation_id = t->installation_id,
	                             .token = strdup(t->token),
	                             .expires_at = t->expires_at};
	if (!cached_token.api_url || !cached_token.app_id || !cached_token.token)
		entry_clear(&cached_token);
	pthread_mutex_unlock(&cache_lock);
}

/* Under cache_lock: a copy of the cached token for installation id if it is
 * fresh at now. */
static bool token_cache_take(const github_app_config *c, int64_t id, int64_t now,
                             github_app_token *out)
{
	const cache_entry *e = &cached_token;
	if (id == 0 || !entry_for(e, c) || e->installation_id != id ||
	    !github_app_token_fresh(e->expires_at, now))
		return false;
	out->token = strdup(e->token);
	out->expires_at = e->expires_at;
	out->installation_id = id;
	out->issued = false;
	return out->token != NULL;
}

/* ---- the exchange ---- */

/* GitHub's "message" of an error body, for err (not a secret), or "". */
static void gh_message(const http_response *r, char *out, size_t cap)
{
	char *m = r->body ? github_json_string(r->body, "message") : NULL;
	snprintf(out, cap, "%s%.200s", m ? ": " : "", m ? m : "");
	free(m);
}

/* A final non-success status of a JWT request as an error. */
static int status_error(const http_response *r, const char *what, int64_t now, char *err,
                        size_t errlen)
{
	char m[220];
	int rc = GITHUB_APP_ERR_HTTP;
	gh_message(r, m, sizeof m);
	if (r->status == 401)
		rc = GITHUB_APP_ERR_JWT_REJECTED;
	else if (r->status == 404)
		rc = GITHUB_APP_ERR_NOT_FOUND;
	else if (r->status >= 500)
		rc = GITHUB_APP_ERR_SERVER;
	else if (http_rate_limit_wait_ms(r, now) >= 0)
		rc = GITHUB_APP_ERR_RATE_LIMITED;
	snprintf(err, errlen, "%s: HTTP %ld%s", what, r->status, m);
	return rc;
}

static int http_code(int rc)
{
	switch (rc) {
	case HTTP_ERR_SERVER:
		return GITHUB_APP_ERR_SERVER;
	case HTTP_ERR_RATE_LIMITED:
		return GITHUB_APP_ERR_RATE_LIMITED;
	case HTTP_ERR_CANCELLED:
		return GITHUB_APP_ERR_CANCELLED;
	case HTTP_ERR_INTERNAL:
		return GITHUB_APP_ERR_INTERNAL;
	default:
		return GITHUB_APP_ERR_NETWORK;
	}
}

static bool same_prefix(const char *url, const char *api_url)
{
	return url && strncmp(url, api_url, strlen(api_url)) == 0;
}

/* One page of GET /app/installations: *id if found, *next (malloc'd) or NULL. */
static int installations_page(const github_app_config *c, http_client *h, const char *url,
                              int64_t now, int64_t *id, char **next, char *err, size_t errlen)
{
	http_response r;
	char why[256];
	int rc = http_get(h, url, NULL, &r, err, errlen);

	*next = NULL;
	if (rc != HTTP_OK)
		rc = http_code(rc);
	else if (r.status != 200)
		rc = status_error(&r, "GET /app/installations", now, err, errlen);
	else if (github_app_parse_installations(r.body, r.len, c->account, id, why, sizeof why) !=
	         0) {
		snprintf(err, errlen, "GET /app/installations: %s", why);
		rc = GITHUB_APP_ERR_RESPONSE;
	} else if (r.next_url && !same_prefix(r.next_url, c->api_url)) {
		snprintf(err, errlen, "GET /app/installations: a next page off the API host");
		rc = GITHUB_APP_ERR_RESPONSE;
	} else {
		*next = r.next_url;
		r.next_url = NULL;
	}
	http_response_free(&r);
	return rc;
}

/* The installation of the app for c->account, through every page of GET
 * /app/installations. */
static int installation_find(const github_app_config *c, http_client *h, int64_t now, int64_t *id,
                             char *err, size_t errlen)
{
	char *url = NULL;
	int rc = GITHUB_APP_OK;

	*id = 0;
	if (c->account == NULL || *c->account == '\0') {
		snprintf(err, errlen, "no installation_id, and no org or user to find it for");
		return GITHUB_APP_ERR_NOT_FOUND;
	}
	if (asprintf(&url, "%s/app/installations?per_page=100", c->api_url) < 0)
		return GITHUB_APP_ERR_INTERNAL;
	for (int pages = 0; url && *id == 0 && rc == GITHUB_APP_OK && pages < MAX_INST_PAGES;
	     pages++) {
		char *next = NULL;
		rc = installations_page(c, h, url, now, id, &next, err, errlen);
		free(url);
		url = next;
	}
	free(url);
	if (rc == GITHUB_APP_OK && *id == 0) {
		snprintf(err, errlen, "app %s has no installation for account '%s'", c->app_id,
		         c->account);
		rc = GITHUB_APP_ERR_NOT_FOUND;
	}
	return rc;
}

/* Wait ms, or less if cancel_fd fires: 0, or -1 when cancelled. */
static int backoff_wait(int cancel_fd, int ms)
{
	struct pollfd p = {.fd = cancel_fd, .events = POLLIN};
	return poll(&p, cancel_fd >= 0 ? 1 : 0, ms) > 0 ? -1 : 0;
}

/* POST url once per attempt: network errors and 5xx retried. */
static int post_retried(const github_app_config *c, http_client *h, const char *url,
                        const char *const *headers, http_response *r, char *err, size_t errlen)
{
	for (int attempt = 0;; attempt++) {
		char why[256];
		int rc = http_post(h, url, headers, "{}", r, why, sizeof why);
		bool again = rc == HTTP_ERR_NETWORK || (rc == HTTP_OK && r->status >= 500);
		if (rc == HTTP_ERR_CANCELLED) {
			snprintf(err, errlen, "POST %s: cancelled", url);
			return GITHUB_APP_ERR_CANCELLED;
		}
		if (!again || attempt == POST_RETRIES) {
			if (rc != HTTP_OK)
				snprintf(err, errlen, "POST %s: %s", url,
				         why + (strncmp(why, "POST: ", 6) ? 0 : 6));
			return rc == HTTP_OK ? GITHUB_APP_OK : GITHUB_APP_ERR_NETWORK;
		}
		http_response_free(r);
		if (backoff_wait(c->cancel_fd, POST_BACKOFF_MS << attempt) != 0) {
			snprintf(err, errlen, "POST %s: cancelled", url);
			return GITHUB_APP_ERR_CANCELLED;
		}
	}
}

/* POST /app/installations/{id}/access_tokens with the JWT. */
static int exchange(const github_app_config *c, http_client *h, const char *jwt, int64_t id,
                    int64_t now, github_app_token *out, char *err, size_t errlen)
{
	char *url = NULL, *auth = NULL, what[96], why[256];
	http_response r = {0};
	int rc = GITHUB_APP_ERR_INTERNAL;

	if (asprintf(&url, "%s/app/installations/%lld/access_tokens", c->api_url, (long long)id) <
	            0 ||
	    asprintf(&auth, "Authorization: Bearer %s", jwt) < 0) {
		free(url);
		return rc;
	}
	const char *const headers[] = {auth, "Accept: application/vnd.github+json", NULL};
	snprintf(what, sizeof what, "POST /app/installations/%lld/access_tokens", (long long)id);
	rc = post_retried(c, h, url, headers, &r, err, errlen);
	if (rc == GITHUB_APP_OK && r.status != 201 && r.status != 200)
		rc = status_error(&r, what, now, err, errlen);
	else if (rc == GITHUB_APP_OK &&
	         github_app_parse_token(r.body, r.len, &out->token, &out->expires_at, why,
	                                sizeof why) != 0) {
		snprintf(err, errlen, "%s: %s", what, why);
		rc = GITHUB_APP_ERR_RESPONSE;
	}
	if (r.body)
		explicit_bzero(r.body, r.len);
	http_response_free(&r);
	github_app_secret_free(auth);
	free(url);
	return rc;
}

static http_client *jwt_client(const github_app_config *c, const char *jwt)
{
	http_options o = {
	        .user_agent = c->user_agent,
	        .timeout_ms = c->timeout_ms,
	        .max_retries = POST_RETRIES,
	        .cancel_fd = c->cancel_fd,
	        .bearer_token = jwt,
	        .accept = "application/vnd.github+json",
	};
	return http_client_new(&o);
}

/* A new token: key, JWT, installation (found if needed), exchange, cache. */
static int token_issue(const github_app_config *c, int64_t id, int64_t now, github_app_token *out,
                       char *err, size_t errlen)
{
	github_app_key *key = NULL;
	char *jwt = NULL;
	http_client *h = NULL;
	int rc = github_app_key_load(c->private_key_file, &key, err, errlen);

	if (rc == GITHUB_APP_OK)
		rc = github_app_jwt(key, c->app_id, now, &jwt, err, errlen);
	github_app_key_free(key);
	if (rc == GITHUB_APP_OK && (h = jwt_client(c, jwt)) == NULL)
		rc = GITHUB_APP_ERR_INTERNAL;
	if (rc == GITHUB_APP_OK && id == 0) {
		rc = installation_find(c, h, now, &id, err, errlen);
		if (rc == GITHUB_APP_OK)
			found_set(c, id);
	}
	if (rc == GITHUB_APP_OK)
		rc = exchange(c, h, jwt, id, now, out, err, errlen);
	if (rc == GITHUB_APP_ERR_NOT_FOUND && c->installation_id == 0)
		found_forget(c); /* uninstalled, or installed again under a new id */
	if (rc == GITHUB_APP_OK) {
		out->installation_id = id;
		out->issued = true;
		token_cache_set(c, out);
	} else {
		github_app_token_clear(out);
	}
	http_client_free(h);
	github_app_secret_free(jwt);
	return rc;
}

int github_app_token_get(const github_app_config *c, const char *rejected, int64_t now,
                         github_app_token *out, char *err, size_t errlen)
{
	int64_t id = c->installation_id;
	bool have;

	*out = (github_app_token){0};
	pthread_mutex_lock(&cache_lock);
	if (rejected && cached_token.token && strcmp(cached_token.token, rejected) == 0)
		entry_clear(&cached_token);
	if (id == 0)
		id = found_id(c);
	have = token_cache_take(c, id, now, out);
	pthread_mutex_unlock(&cache_lock);
	if (have)
		return GITHUB_APP_OK;
	github_app_token_clear(out);
	return token_issue(c, id, now, out, err, errlen);
}

/* ---- check-config ---- */

size_t github_app_config_check(const config *cfg, github_app_report_fn fn, void *arg)
{
	const config_section *gh = config_section_find(cfg, "github");
	const config_entry *e = gh ? config_entry_find(gh, "private_key_file") : NULL;
	github_app_key *key = NULL;
	char err[768], msg[1024];

	if (e == NULL || e->value[0] == '\0')
		return 0;
	if (github_app_key_load(e->value, &key, err, sizeof err) == GITHUB_APP_OK) {
		github_app_key_free(key);
		return 0;
	}
	snprintf(msg, sizeof msg, "[github] private_key_file: %s", err);
	fn(arg, e->line, msg);
	return 1;
}
