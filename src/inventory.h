/*
 * inventory — servers from an Ansible inventory, read with
 * `ansible-inventory -i FILE --list --output TMP` (run through proc_run, so
 * it is cancellable) and parsed from its JSON: each host's ansible_host,
 * ansible_port and ansible_user; the groups a host is in (directly or
 * through child groups, "all" and "ungrouped" excepted) become its labels.
 * An unparsable inventory is an error, never an empty one
 * (ANSIBLE_INVENTORY_UNPARSED_FAILED is set).
 */
#ifndef FK_INVENTORY_H
#define FK_INVENTORY_H

#include <stddef.h>

#include "providers.h"

/* The JSON of ansible-inventory --list into out (handles sorted). */
int inventory_parse(const char *json, size_t len, provider_list *out, char *err, size_t errlen);

/* Run ansible-inventory on file. -1 with err if it is missing, fails, or
 * its output does not parse. */
int inventory_load(const char *file, int cancel_fd, provider_list *out, char *err, size_t errlen);

#endif
