/*
 * netmod — finds and loads the network module (net_api.h) once, on first
 * use, from the directory of the running executable, else from the
 * install directory (FK_NET_MODULE_DIR). Thread-safe.
 */
#ifndef FK_NETMOD_H
#define FK_NETMOD_H

#include <stdbool.h>

#include "net_api.h"

/* The module's table, or NULL when it cannot be loaded: then the reason is
 * logged once (network_module_failed) and netmod_error() returns it. */
const fk_net_api *netmod_get(void);
const char *netmod_error(void);

/* True once the module has been loaded in this process. */
bool netmod_loaded(void);

#endif
