/*
 * net_module — the entry point of fleetkeeper-net.so (net_api.h). Built
 * with -fvisibility=hidden: the module's functions bind to each other, and
 * only fk_net_api_get is visible to the daemon.
 */
#include "net_api.h"

static const fk_net_api api = {
        .version = FK_VERSION,
        .size = sizeof(fk_net_api),
        .ssh_run_many = ssh_run_many,
        .ssh_test = ssh_test,
        .mirror_init = mirror_init,
        .mirror_shutdown = mirror_shutdown,
        .mirror_name_ok = mirror_name_ok,
        .mirror_sync = mirror_sync,
        .mirror_result_free = mirror_result_free,
        .notify_sign = notify_sign,
        .http_client_new = http_client_new,
        .http_client_free = http_client_free,
        .http_client_stats = http_client_stats,
        .http_get = http_get,
        .http_get_many = http_get_many,
        .http_response_free = http_response_free,
        .http_post = http_post,
};

__attribute__((visibility("default"))) const fk_net_api *fk_net_api_get(void)
{
	return &api;
}
