/*
 * net_api — the table of entry points of the network module
 * (fleetkeeper-net.so): the functions of ssh.c, mirror.c, http.c,
 * http_multi.c and notify_sign.c, the only code that needs libssh2,
 * libgit2, libcurl and libcrypto. The daemon loads the module the first time one of them is
 * called (netmod.h), so a daemon that has not run a network task yet never
 * maps those libraries (bench/idle.sh).
 *
 * Each member has the type of the function of the same name; a module
 * built from other sources than the daemon is refused (version).
 */
#ifndef FK_NET_API_H
#define FK_NET_API_H

#include "http.h"
#include "mirror.h"
#include "notifiers.h"
#include "ssh.h"

#define FK_NET_API_SYMBOL "fk_net_api_get"

typedef struct {
	const char *version; /* FK_VERSION of the build */
	size_t size;         /* sizeof(fk_net_api) of the build */
	__typeof__(ssh_run_many) *ssh_run_many;
	__typeof__(ssh_test) *ssh_test;
	__typeof__(mirror_init) *mirror_init;
	__typeof__(mirror_shutdown) *mirror_shutdown;
	__typeof__(mirror_name_ok) *mirror_name_ok;
	__typeof__(mirror_sync) *mirror_sync;
	__typeof__(mirror_result_free) *mirror_result_free;
	__typeof__(notify_sign) *notify_sign;
	__typeof__(http_client_new) *http_client_new;
	__typeof__(http_client_free) *http_client_free;
	__typeof__(http_client_stats) *http_client_stats;
	__typeof__(http_get) *http_get;
	__typeof__(http_get_many) *http_get_many;
	__typeof__(http_response_free) *http_response_free;
	__typeof__(http_post) *http_post;
} fk_net_api;

/* Defined by the module (its only exported symbol). */
const fk_net_api *fk_net_api_get(void);

#endif
