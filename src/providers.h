/*
 * providers — where servers come from: the record every provider yields,
 * and the Time4VPS API (GET {api_url}/server, GET {api_url}/server/{id},
 * basic auth from a JSON credentials file {"username": ..., "password": ...}).
 * The details of several servers are fetched concurrently
 * (T4V_DETAILS_PARALLEL in flight, http_get_many).
 *
 * Parsing is all or nothing: a listing with one malformed item is an error
 * (an incomplete listing must never make servers look vanished).
 *
 * How a provider's new servers enter (docs/servers.md): `initial_status`
 * of its [provider.X] section, ready (the default of [provider.inventory]:
 * those servers exist and are set up) or pending_setup (the default of
 * providers that create servers, [provider.time4vps]), which only means
 * something when a provision task consumes it.
 */
#ifndef FK_PROVIDERS_H
#define FK_PROVIDERS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "http.h"

typedef struct {
	char *handle;      /* vps-<id>, or the inventory hostname */
	char *provider_id; /* the provider's id, NULL if none */
	char *name;        /* the provider's name for it (domain), NULL if none */
	char *ip;          /* NULL if unknown */
	int port;          /* 22 unless known */
	char *ssh_user;    /* NULL: the [ssh] user */
	char *labels;      /* JSON array of strings, NULL if none */
} provider_server;

typedef struct {
	provider_server *items;
	size_t count, cap;
} provider_list;

void provider_list_free(provider_list *l);
/* A new zeroed item (port 22), or NULL when out of memory. */
provider_server *provider_list_add(provider_list *l);

/* A Time4VPS server list (JSON array of {server_id|id, domain, ip, status}). */
int providers_time4vps_parse_list(const char *json, size_t len, provider_list *out, char *err,
                                  size_t errlen);
/* Details object -> malloc'd JSON object with "fetched_at": now added. */
char *providers_time4vps_parse_details(const char *json, size_t len, double now, char *err,
                                       size_t errlen);
/* The "fetched_at" of a stored details JSON, 0 if none. */
double providers_details_fetched_at(const char *details);

int providers_time4vps_list(http_client *c, const char *api_url, provider_list *out, char *err,
                            size_t errlen);

/* Time4VPS detail requests in flight at once: a few, to stay polite to the
 * provider's API while a fleet's details do not take n round trips. */
#define T4V_DETAILS_PARALLEL 4

/* One server of providers_time4vps_details_many. The caller owns id and
 * must free details. */
typedef struct {
	const char *id; /* in: the provider id (digits) */
	char *details;  /* out: as providers_time4vps_parse_details, NULL on failure */
	char err[512];  /* out: why details is NULL */
} t4v_details;

/* GET {api_url}/server/{id} for every item, T4V_DETAILS_PARALLEL at a time,
 * each with http_get's retries and rate-limit rules; a non-200 status or a
 * body that is no JSON object fails that item only. 0, or -1 when the run
 * was cancelled or memory ran out (unanswered items have err set). */
int providers_time4vps_details_many(http_client *c, const char *api_url, t4v_details *items,
                                    size_t n, double now);

/* ---- how new servers enter ---- */

/* The status a new server of provider ("time4vps", "inventory") gets:
 * sec's initial_status, else the provider's default. Static string. */
const char *providers_initial_status(const config_section *sec, const char *provider);

/* True if cfg has an enabled task of type provision: something consumes
 * pending_setup servers (and the triggers server_sync publishes). */
bool providers_provisioning_configured(const config *cfg);

/* check-config's warnings about providers: a provider whose new servers
 * enter pending_setup while no provision task is configured. fn(ctx,
 * line, message) for each (line: of the section or its initial_status
 * key); returns how many. */
typedef void (*providers_warn_fn)(void *ctx, int line, const char *message);
size_t providers_config_warnings(const config *cfg, providers_warn_fn fn, void *ctx);

/* {"username": ..., "password": ...} from path; both malloc'd (wipe the
 * password when done). 0, or -1 with err (never the content). */
int providers_read_credentials(const char *path, char **user, char **pass, char *err,
                               size_t errlen);

#endif
