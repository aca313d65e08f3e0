/*
 * services — the record of what runs where (the services table of
 * store.c): name, server, git repository, ref, port, start command and an
 * environment (a JSON object of strings). Recovery redeploys them. (The
 * server lookup by handle is servers_find, servers.h.)
 *
 * Threads: any thread, with its own store handle.
 *
 * Errors: 0 or a negative store_error (STORE_FULL, STORE_READONLY, ... as
 * the store maps them); err gets "<what>: <message>"; nothing is logged
 * here. Lists coming back through *out belong to the caller
 * (service_list_free).
 */
#ifndef FK_SERVICES_H
#define FK_SERVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct {
	int64_t id;
	char *server_handle;
	char *name;
	char *git_repo;
	char *ref; /* NULL: the repository's default branch */
	int port;  /* 0: none */
	char *start_command;
	char *env; /* JSON object text, NULL: none */
} service_row;

typedef struct {
	service_row *rows;
	size_t count;
} service_list;

void service_list_free(service_list *list);

/* Insert, or update the service of that name on that server.
 * STORE_NOTFOUND if no server has that handle. */
int services_add(store *s, const service_row *svc, char *err, size_t errlen);
/* server_handle NULL: every service. Ordered by server, then name. */
int services_list(store *s, const char *server_handle, service_list *out, char *err, size_t errlen);
/* STORE_NOTFOUND if there was no such service. */
int services_remove(store *s, const char *server_handle, const char *name, char *err,
                    size_t errlen);

#endif
