/*
 * sync_common — see sync_common.h. Secrets read here are only ever handed
 * to the HTTP or git layers; they are wiped on free.
 */
#include "sync_common.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"

char *sync_file_read(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n + 1 >= cap) {
			if (cap > max) {
				free(buf);
				buf = NULL;
				break;
			}
			char *nb = realloc(buf, cap * 2);
			if (nb == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	if (buf == NULL || n > max) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

char *sync_secret_read(const config_section *sec, const char *prefix)
{
	char key[64];
	const char *v;
	char *secret = NULL;

	if (sec == NULL)
		return NULL;
	snprintf(key, sizeof key, "%s_file", prefix);
	v = config_get(sec, key);
	if (v && *v)
		secret = sync_file_read(v, 65536, NULL);
	if (secret == NULL) {
		snprintf(key, sizeof key, "%s_env", prefix);
		v = config_get(sec, key);
		const char *val = v && *v ? config_env(v) : NULL; /* taken out of environ */
		secret = val ? strdup(val) : NULL;
	}
	if (secret) {
		size_t n = strlen(secret);
		while (n && isspace((unsigned char)secret[n - 1]))
			secret[--n] = '\0';
		if (n == 0) {
			free(secret);
			secret = NULL;
		}
	}
	return secret;
}

void sync_secret_free(char *secret)
{
	if (secret == NULL)
		return;
	explicit_bzero(secret, strlen(secret));
	free(secret);
}

long sync_key_int(const config_section *sec, const char *key, long def)
{
	const char *v = sec ? config_get(sec, key) : NULL;
	long out;
	if (v && *v && config_parse_int(v, -2147483647L, 2147483647L, &out) == 0)
		return out;
	return def;
}

int64_t sync_key_duration_ms(const config_section *sec, const char *key, int64_t def)
{
	const char *v = sec ? config_get(sec, key) : NULL;
	int64_t ms;
	char err[128];
	if (v && *v && duration_parse(v, &ms, err, sizeof err) == 0)
		return ms;
	return def;
}

const char *sync_key_str(const config_section *sec, const char *key, const char *def)
{
	const char *v = sec ? config_get(sec, key) : NULL;
	return v && *v ? v : def;
}

bool sync_list_contains(const char *list, const char *name)
{
	size_t n = strlen(name);
	const char *p = list;
	while (p && *p) {
		while (*p == ',' || isspace((unsigned char)*p))
			p++;
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		while (len && isspace((unsigned char)p[len - 1]))
			len--;
		if (len == n && n > 0 && strncmp(p, name, n) == 0)
			return true;
		p = end;
	}
	return false;
}

bool sync_str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}
