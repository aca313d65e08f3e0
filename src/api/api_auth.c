/*
 * api_auth — the API's bearer tokens and the limiter of failed
 * authentications (api_internal.h).
 *
 * A token file holds one token (surrounding whitespace trimmed, at most
 * API_TOKEN_MAX bytes, at least 16) and may not be readable by others. Only its SHA-256 is kept;
 * the text is wiped once hashed. A presented token is hashed and compared with every token's hash
 * without an early exit, so the time does not tell which token, or how much of one, matched.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "api_internal.h"

#define TOKEN_MIN 16

const char *api_scope_name(api_scope s)
{
	switch (s) {
	case SCOPE_READ:
		return "read";
	case SCOPE_OPERATE:
		return "operate";
	case SCOPE_ADMIN:
		return "admin";
	default:
		return "none";
	}
}

static api_scope scope_parse(const char *v)
{
	if (v == NULL || strcasecmp(v, "read") == 0)
		return SCOPE_READ;
	if (strcasecmp(v, "operate") == 0)
		return SCOPE_OPERATE;
	return strcasecmp(v, "admin") == 0 ? SCOPE_ADMIN : SCOPE_NONE;
}

static void wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;
	while (n--)
		*v++ = 0;
}

/* The token of path, hashed into t->hash. */
static int hash_file(const char *section, const char *path, api_token *t, char *err, size_t errlen)
{
	char buf[API_TOKEN_MAX + 2];
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		snprintf(err, errlen, "[%s] token_file %s: %s", section, path, strerror(errno));
		return -1;
	}
	struct stat sb;
	if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & S_IRWXO)) {
		fclose(f); /* as ssh refuses a private key others may read */
		snprintf(err, errlen, "[%s] token_file %s: readable by others (chmod 600 it)",
		         section, path);
		return -1;
	}
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	size_t start = strspn(buf, " \t\r\n"), end = n;
	while (end > start && strchr(" \t\r\n", buf[end - 1]))
		end--;
	size_t len = end - start;
	const char *why = NULL;
	if (n > API_TOKEN_MAX)
		why = "longer than 4096 bytes";
	else if (len < TOKEN_MIN)
		why = "a token needs at least 16 characters";
	else if (strcspn(buf + start, " \t\r\n") < len)
		why = "one token without blanks expected";
	else if (token_hash_sha256(buf + start, len, t->hash) != 0)
		why = "cannot hash it";
	if (why)
		snprintf(err, errlen, "[%s] token_file %s: %s", section, path, why);
	int rc = why ? -1 : 0;
	wipe(buf, sizeof buf);
	return rc;
}

int api_tokens_load(const config *cfg, api_token **out, size_t *n, char *err, size_t errlen)
{
	static const char prefix[] = "api.token.";
	*out = NULL;
	*n = 0;
	for (size_t i = 0; i < cfg->nsections; i++) {
		const config_section *sec = &cfg->sections[i];
		if (strncmp(sec->name, prefix, sizeof prefix - 1) != 0)
			continue;
		api_token *more = realloc(*out, (*n + 1) * sizeof **out);
		if (more == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		*out = more;
		api_token *t = &more[*n];
		memset(t, 0, sizeof *t);
		snprintf(t->name, sizeof t->name, "%s", sec->name + sizeof prefix - 1);
		t->scope = scope_parse(config_get(sec, "scope"));
		if (hash_file(sec->name, config_get(sec, "token_file"), t, err, errlen) != 0)
			goto fail;
		(*n)++;
	}
	return 0;
fail:
	free(*out);
	*out = NULL;
	*n = 0;
	return -1;
}

const api_token *api_tokens_match(const api_token *tokens, size_t n, const char *presented)
{
	uint8_t h[TOKEN_HASH_LEN];
	const api_token *found = NULL;
	size_t len = strlen(presented);
	if (len == 0 || len > API_TOKEN_MAX || token_hash_sha256(presented, len, h) != 0)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned diff = 0;
		for (size_t k = 0; k < TOKEN_HASH_LEN; k++)
			diff |= (unsigned)(tokens[i].hash[k] ^ h[k]);
		/* no branch on a secret-dependent value until every token is done */
		uintptr_t mask = (uintptr_t)0 - (uintptr_t)(diff == 0);
		found = (const api_token *)(((uintptr_t)&tokens[i] & mask) |
		                            ((uintptr_t)found & ~mask));
	}
	wipe(h, sizeof h);
	return found;
}

/* ---- the limiter ---- */

void api_limiter_init(api_limiter *l)
{
	memset(l->slots, 0, sizeof l->slots);
	pthread_mutex_init(&l->mu, NULL);
}

void api_limiter_destroy(api_limiter *l)
{
	pthread_mutex_destroy(&l->mu);
}

/* The address's slot; with create, a free or expired one (else the oldest).
 * Called with mu held. */
static api_limiter_slot *slot_of(api_limiter *l, const char *addr, double now, bool create)
{
	api_limiter_slot *oldest = &l->slots[0];
	for (size_t i = 0; i < API_LIMITER_SLOTS; i++) {
		api_limiter_slot *s = &l->slots[i];
		if (s->addr[0] && strcmp(s->addr, addr) == 0) {
			if (now - s->window_start >= API_AUTH_WINDOW_S) {
				s->window_start = now;
				s->fails = 0;
			}
			return s;
		}
		if (s->window_start < oldest->window_start)
			oldest = s;
	}
	if (!create)
		return NULL;
	snprintf(oldest->addr, sizeof oldest->addr, "%s", addr);
	oldest->window_start = now;
	oldest->fails = 0;
	return oldest;
}

bool api_limiter_blocked(api_limiter *l, const char *addr, double now, int *retry_after)
{
	pthread_mutex_lock(&l->mu);
	api_limiter_slot *s = slot_of(l, addr, now, false);
	bool blocked = s && s->fails >= API_AUTH_FAILS;
	if (blocked)
		*retry_after = (int)(s->window_start + API_AUTH_WINDOW_S - now) + 1;
	pthread_mutex_unlock(&l->mu);
	return blocked;
}

void api_limiter_fail(api_limiter *l, const char *addr, double now)
{
	pthread_mutex_lock(&l->mu);
	api_limiter_slot *s = slot_of(l, addr, now, true);
	s->fails++;
	pthread_mutex_unlock(&l->mu);
}
