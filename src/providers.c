/*
 * providers — see providers.h.
 *
 * Invariants: a listing is parsed into a local list and handed over only
 * when every item is valid; ids must be positive integers (or digit
 * strings) so that handles are always vps-<digits>; the credentials file's
 * content never appears in an error.
 */
#include "providers.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sync_common.h"
#include "task.h"

void provider_list_free(provider_list *l)
{
	for (size_t i = 0; i < l->count; i++) {
		provider_server *s = &l->items[i];
		free(s->handle);
		free(s->provider_id);
		free(s->name);
		free(s->ip);
		free(s->ssh_user);
		free(s->labels);
	}
	free(l->items);
	*l = (provider_list){0};
}

provider_server *provider_list_add(provider_list *l)
{
	if (l->count == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		provider_server *n = realloc(l->items, cap * sizeof *n);
		if (n == NULL)
			return NULL;
		l->items = n;
		l->cap = cap;
	}
	provider_server *s = &l->items[l->count++];
	*s = (provider_server){.port = 22};
	return s;
}

static char *str_of(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) && v->valuestring && v->valuestring[0] ? strdup(v->valuestring)
	                                                                : NULL;
}

/* The id as digits into buf: 0, or -1 if absent or not a positive integer. */
static int id_of(const cJSON *o, char *buf, size_t cap)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "server_id");
	if (v == NULL)
		v = cJSON_GetObjectItemCaseSensitive(o, "id");
	if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble < 9007199254740992.0 &&
	    floor(v->valuedouble) == v->valuedouble) {
		snprintf(buf, cap, "%lld", (long long)v->valuedouble);
		return 0;
	}
	if (cJSON_IsString(v) && v->valuestring && v->valuestring[0] &&
	    strspn(v->valuestring, "0123456789") == strlen(v->valuestring) &&
	    strlen(v->valuestring) < 19) {
		snprintf(buf, cap, "%s", v->valuestring);
		return 0;
	}
	return -1;
}

static int t4v_item(const cJSON *it, provider_list *l, char *err, size_t errlen)
{
	char id[32], handle[40];
	if (!cJSON_IsObject(it) || id_of(it, id, sizeof id) != 0) {
		snprintf(err, errlen, "server list item without a valid server_id");
		return -1;
	}
	provider_server *s = provider_list_add(l);
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(handle, sizeof handle, "vps-%s", id);
	s->handle = strdup(handle);
	s->provider_id = strdup(id);
	s->name = str_of(it, "domain");
	s->ip = str_of(it, "ip");
	return 0;
}

int providers_time4vps_parse_list(const char *json, size_t len, provider_list *out, char *err,
                                  size_t errlen)
{
	provider_list l = {0};
	cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
	int rc = 0;

	if (!cJSON_IsArray(root)) {
		snprintf(err, errlen, "server list is not a JSON array");
		rc = -1;
	}
	const cJSON *it;
	if (rc == 0)
		cJSON_ArrayForEach(it, root)
		{
			if ((rc = t4v_item(it, &l, err, errlen)) != 0)
				break;
		}
	cJSON_Delete(root);
	if (rc != 0) {
		provider_list_free(&l);
		return -1;
	}
	provider_list_free(out);
	*out = l;
	return 0;
}

char *providers_time4vps_parse_details(const char *json, size_t len, double now, char *err,
                                       size_t errlen)
{
	cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		snprintf(err, errlen, "server details are not a JSON object");
		return NULL;
	}
	/* every copy: with a duplicate key left behind, the first one would be
	 * read back as the time of the fetch (found by fuzz_time4vps) */
	while (cJSON_GetObjectItemCaseSensitive(root, "fetched_at"))
		cJSON_DeleteItemFromObjectCaseSensitive(root, "fetched_at");
	cJSON_AddNumberToObject(root, "fetched_at", now);
	char *s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return s;
}

double providers_details_fetched_at(const char *details)
{
	cJSON *root = details ? cJSON_Parse(details) : NULL;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "fetched_at");
	double at = cJSON_IsNumber(v) ? v->valuedouble : 0;
	cJSON_Delete(root);
	return at;
}

static int get_json(http_client *c, const char *url, http_response *r, char *err, size_t errlen)
{
	int rc = http_get(c, url, NULL, r, err, errlen);
	if (rc == HTTP_OK && r->status != 200) {
		snprintf(err, errlen, "GET %s: HTTP %ld", url, r->status);
		rc = -1;
	}
	return rc == HTTP_OK ? 0 : -1;
}

int providers_time4vps_list(http_client *c, const char *api_url, provider_list *out, char *err,
                            size_t errlen)
{
	char url[1024];
	http_response r;
	snprintf(url, sizeof url, "%s/server", api_url);
	int rc = get_json(c, url, &r, err, errlen);
	if (rc == 0)
		rc = providers_time4vps_parse_list(r.body, r.len, out, err, errlen);
	http_response_free(&r);
	return rc;
}

static void details_of(const http_request *q, double now, t4v_details *it)
{
	if (q->rc != HTTP_OK)
		snprintf(it->err, sizeof it->err, "%s", q->err);
	else if (q->resp.status != 200)
		snprintf(it->err, sizeof it->err, "GET %s: HTTP %ld", q->url, q->resp.status);
	else
		it->details = providers_time4vps_parse_details(q->resp.body, q->resp.len, now,
		                                               it->err, sizeof it->err);
}

int providers_time4vps_details_many(http_client *c, const char *api_url, t4v_details *items,
                                    size_t n, double now)
{
	http_request *q = n ? calloc(n, sizeof *q) : NULL;
	int rc = n && q == NULL ? -1 : 0;
	char *url;

	for (size_t i = 0; i < n; i++) {
		items[i].details = NULL;
		snprintf(items[i].err, sizeof items[i].err, "out of memory");
		if (rc == 0 && asprintf(&url, "%s/server/%s", api_url, items[i].id) >= 0)
			q[i].url = url;
		else
			rc = -1;
	}
	bool sent = rc == 0;
	if (sent && http_get_many(c, q, n, T4V_DETAILS_PARALLEL) != HTTP_OK)
		rc = -1;
	for (size_t i = 0; q && i < n; i++) {
		if (sent) {
			items[i].err[0] = '\0';
			details_of(&q[i], now, &items[i]);
		}
		http_response_free(&q[i].resp);
		free((char *)q[i].url);
	}
	free(q);
	return rc;
}

int providers_read_credentials(const char *path, char **user, char **pass, char *err, size_t errlen)
{
	size_t len = 0;
	char *text = path ? sync_file_read(path, 65536, &len) : NULL;
	*user = *pass = NULL;
	if (text == NULL) {
		snprintf(err, errlen, "cannot read credentials_file %s", path ? path : "(unset)");
		return -1;
	}
	cJSON *root = cJSON_ParseWithLength(text, len);
	explicit_bzero(text, len);
	free(text);
	if (cJSON_IsObject(root)) {
		*user = str_of(root, "username");
		*pass = str_of(root, "password");
	}
	const cJSON *pw = cJSON_GetObjectItemCaseSensitive(root, "password");
	if (cJSON_IsString(pw) && pw->valuestring)
		explicit_bzero(pw->valuestring, strlen(pw->valuestring));
	cJSON_Delete(root);
	if (*user == NULL || *pass == NULL) {
		sync_secret_free(*pass);
		free(*user);
		*user = *pass = NULL;
		snprintf(err, errlen,
		         "credentials_file %s: expected {\"username\": ..., \"password\": ...}",
		         path);
		return -1;
	}
	return 0;
}

/* ---- how new servers enter ---- */

static const char *const provider_names[] = {"time4vps", "inventory", NULL};

const char *providers_initial_status(const config_section *sec, const char *provider)
{
	const char *v = sec ? config_get(sec, "initial_status") : NULL;
	if (v && strcmp(v, "ready") == 0)
		return "ready";
	if (v && strcmp(v, "pending_setup") == 0)
		return "pending_setup";
	return strcmp(provider, "inventory") == 0 ? "ready" : "pending_setup";
}

bool providers_provisioning_configured(const config *cfg)
{
	for (size_t i = 0; cfg && i < cfg->ntasks; i++)
		if (cfg->tasks[i].enabled && cfg->tasks[i].type &&
		    strcmp(cfg->tasks[i].type->name, "provision") == 0)
			return true;
	return false;
}

size_t providers_config_warnings(const config *cfg, providers_warn_fn fn, void *ctx)
{
	size_t n = 0;
	char name[64], msg[512];

	if (providers_provisioning_configured(cfg))
		return 0;
	for (size_t i = 0; provider_names[i]; i++) {
		snprintf(name, sizeof name, "provider.%s", provider_names[i]);
		const config_section *sec = config_section_find(cfg, name);
		if (sec == NULL ||
		    strcmp(providers_initial_status(sec, provider_names[i]), "pending_setup") != 0)
			continue;
		const config_entry *e = config_entry_find(sec, "initial_status");
		snprintf(msg, sizeof msg,
		         "[%s] new servers enter pending_setup%s, but no provision task is"
		         " configured: they would wait there, never health-checked; add a"
		         " [task.X] with type = provision, or set initial_status = ready",
		         name, e ? "" : " (the default of this provider)");
		fn(ctx, e ? e->line : sec->line, msg);
		n++;
	}
	return n;
}
