/*
 * github_app — github_sync as a GitHub App: the app's JSON Web Token
 * (RS256, signed with its private key), the installation access token it
 * is exchanged for (POST /app/installations/{id}/access_tokens), the
 * installation found once for an account (GET /app/installations), and the
 * process-wide in-memory cache of that token.
 *
 * Layers: the pure parts (base64url, the JWT's signing input, the token,
 * time and installations responses, the cache's renewal rule) take time
 * as an argument and touch no network; the key and the signature
 * (libcrypto) are in src/net/github_app_sign.c behind the opaque
 * github_app_key, so this header exposes no OpenSSL type; the exchange
 * goes through http.h.
 *
 * Threads: github_app_token_get may be called from several worker threads
 * at once (two github_sync tasks sharing [github]); the token cache and
 * the installation found for an account are behind one mutex, which is
 * never held across a request (two runs renewing at once may each get a
 * token: GitHub allows that). Everything else keeps no state.
 *
 * Errors: 0 or a github_app_error; the message in err never holds a
 * secret (not the key's bytes, the JWT or a token), only paths, URLs,
 * statuses and GitHub's own "message". Nothing here logs: the caller logs
 * github_app_token_issued / github_app_token_failed once.
 *
 * Ownership: what comes back through out (tokens, the JWT, keys) is the
 * caller's, freed with the function named at each declaration; tokens and
 * JWTs are wiped when freed.
 */
#ifndef FK_GITHUB_APP_H
#define FK_GITHUB_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* An installation token is renewed this long before its expires_at. */
#define GITHUB_APP_RENEW_MARGIN 300
/* The JWT: iat this far in the past (clock skew), exp this far ahead, so
 * exp - iat is GitHub's maximum of 10 minutes. */
#define GITHUB_APP_JWT_BACKDATE 60
#define GITHUB_APP_JWT_AHEAD    540
/* The smallest RSA key accepted (GitHub's own keys are 2048 bits). */
#define GITHUB_APP_MIN_BITS 2048

typedef enum {
	GITHUB_APP_OK = 0,
	GITHUB_APP_ERR_KEY = -1, /* private_key_invalid: unreadable, not PEM, not RSA >= 2048 */
	GITHUB_APP_ERR_JWT_REJECTED = -2, /* jwt_rejected: 401 to the JWT (key, app id, clock) */
	GITHUB_APP_ERR_NOT_FOUND = -3,    /* installation_not_found: 404, or none for the account */
	GITHUB_APP_ERR_SERVER = -4,       /* http_5xx, after the retries */
	GITHUB_APP_ERR_NETWORK = -5,      /* network_error, after the retries */
	GITHUB_APP_ERR_RATE_LIMITED = -6, /* github_rate_limited */
	GITHUB_APP_ERR_HTTP = -7,         /* http_4xx: another final status (403: suspended...) */
	GITHUB_APP_ERR_RESPONSE = -8,     /* bad_response: no token or expires_at in the body */
	GITHUB_APP_ERR_CANCELLED = -9,    /* cancelled */
	GITHUB_APP_ERR_INTERNAL = -10,    /* internal: out of memory */
} github_app_error;

/* The error_type of rc ("jwt_rejected", ...); "internal" if unknown. */
const char *github_app_error_type(int rc);

/* ---- pure ---- */

/* base64url (RFC 4648 §5) of n bytes without padding, NUL-terminated into
 * out; the length written, or 0 if cap < GITHUB_B64URL_LEN(n) + 1. */
#define GITHUB_B64URL_LEN(n) (((n) / 3) * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))
size_t github_b64url(const void *in, size_t n, char *out, size_t cap);

/* True if id can be a JWT's iss: an App ID (digits) or a Client ID
 * ("Iv23li..."): 1 to 64 letters, digits, '.', '_' or '-'. */
bool github_app_id_ok(const char *id);

/* The JWT's signing input for app_id at now (unix seconds), malloc'd:
 *   b64url({"alg":"RS256","typ":"JWT"}) "." b64url({"iat":I,"exp":E,"iss":"APP_ID"})
 * with I = now - GITHUB_APP_JWT_BACKDATE and E = now + GITHUB_APP_JWT_AHEAD,
 * exactly in that order and without spaces. NULL if !github_app_id_ok. */
char *github_app_jwt_input(const char *app_id, int64_t now);

/* "YYYY-MM-DDTHH:MM:SS" with "Z" or "+00:00" (fractions ignored) in UTC
 * into unix seconds. 0, or -1 if s is not such a time. */
int github_app_parse_time(const char *s, int64_t *out);
/* The inverse, "YYYY-MM-DDTHH:MM:SSZ" into out (cap >= 21). */
void github_app_format_time(int64_t t, char *out, size_t cap);

/* The body of a 201 to POST .../access_tokens: *token (malloc'd, free
 * with github_app_secret_free) and *expires_at. 0, or -1 with err. */
int github_app_parse_token(const char *json, size_t len, char **token, int64_t *expires_at,
                           char *err, size_t errlen);

/* One page of GET /app/installations (a JSON array): *id the installation
 * whose account.login is account (any case), or 0 when none on this page.
 * 0, or -1 with err for anything but an array of objects. */
int github_app_parse_installations(const char *json, size_t len, const char *account, int64_t *id,
                                   char *err, size_t errlen);

/* The cache's rule: a token is used while now < expires_at - margin. */
bool github_app_token_fresh(int64_t expires_at, int64_t now);

/* Wipe and free a token or JWT; NULL is fine. */
void github_app_secret_free(char *secret);

/* ---- the key and the signature (src/net/github_app_sign.c) ---- */

typedef struct github_app_key github_app_key;

/* Read path: a readable file, PEM, an RSA private key (PKCS#1 "RSA
 * PRIVATE KEY", as GitHub hands it out, or PKCS#8 "PRIVATE KEY") of at
 * least GITHUB_APP_MIN_BITS, not encrypted. 0 with *out (free with
 * github_app_key_free), or GITHUB_APP_ERR_KEY with err naming path and
 * what is wrong. Never prompts for a passphrase. */
int github_app_key_load(const char *path, github_app_key **out, char *err, size_t errlen);
void github_app_key_free(github_app_key *k);

/* The RS256 signature (RSASSA-PKCS1-v1_5, SHA-256) of data, base64url
 * without padding, malloc'd into *sig. 0, or GITHUB_APP_ERR_KEY. */
int github_app_sign(const github_app_key *k, const char *data, size_t n, char **sig, char *err,
                    size_t errlen);

/* The whole JWT: github_app_jwt_input "." github_app_sign of it, malloc'd
 * into *jwt (free with github_app_secret_free). 0, or an error. */
int github_app_jwt(const github_app_key *k, const char *app_id, int64_t now, char **jwt, char *err,
                   size_t errlen);

/* ---- the installation token ---- */

typedef struct {
	const char *api_url;          /* required */
	const char *app_id;           /* required: the JWT's iss */
	const char *private_key_file; /* required */
	int64_t installation_id;      /* 0: found for account through GET /app/installations */
	const char *account;          /* org (or user) login; needed when installation_id is 0 */
	const char *user_agent;       /* required */
	int64_t timeout_ms;           /* per request; 0: 30 s */
	int cancel_fd;                /* readable: stop; -1: never */
} github_app_config;

typedef struct {
	char *token;             /* secret, malloc'd */
	int64_t expires_at;      /* unix seconds */
	int64_t installation_id; /* the one it is for */
	bool issued;             /* true: just issued by GitHub; false: from the cache */
} github_app_token;

/* Wipe and free t's token and clear it. */
void github_app_token_clear(github_app_token *t);

/* An installation token usable at now: the cached one while
 * github_app_token_fresh, else a new one (the key read from
 * private_key_file, a JWT signed, the installation found if needed, the
 * exchange, then cached). rejected: a token the API just answered 401 to,
 * or NULL; if it is the cached one it is dropped first, so a new one is
 * issued. Network errors and 5xx are retried twice (0.5 s, 1 s; a
 * readable cancel_fd stops the wait). 0 with *out filled (clear it with
 * github_app_token_clear), or an error with err. */
int github_app_token_get(const github_app_config *c, const char *rejected, int64_t now,
                         github_app_token *out, char *err, size_t errlen);

/* Forget every cached token and installation (tests, a changed key). */
void github_app_cache_reset(void);

/* ---- check-config ---- */

typedef void (*github_app_report_fn)(void *arg, int line, const char *message);

/* [github] private_key_file, when set, loads as github_app_key_load wants:
 * each problem reported with the line of the key ("[github]
 * private_key_file: PATH: ..."). The number of problems (0 or 1). */
size_t github_app_config_check(const config *cfg, github_app_report_fn fn, void *arg);

#endif
