/*
 * sync_common — small helpers shared by github_sync and server_sync:
 * secrets from files or the environment, typed section keys with defaults,
 * and the comparison of stored and listed values. The time of a sync comes
 * from clock_wall() (clock.h).
 *
 * Threads: any; nothing here keeps state. Errors: a NULL result or the
 * default value; nothing is logged. What comes back malloc'd is the
 * caller's, as each declaration says.
 */
#ifndef FK_SYNC_COMMON_H
#define FK_SYNC_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* The secret named by sec's <prefix>_file (its content, trailing
 * whitespace removed) or <prefix>_env; malloc'd, NULL if none. Free it with
 * sync_secret_free, which wipes it. */
char *sync_secret_read(const config_section *sec, const char *prefix);
void sync_secret_free(char *secret);

/* A whole file, malloc'd and NUL-terminated, at most max bytes; NULL on
 * error. */
char *sync_file_read(const char *path, size_t max, size_t *len);

/* Typed keys of sec (already validated by config.c), or the default. */
long sync_key_int(const config_section *sec, const char *key, long def);
int64_t sync_key_duration_ms(const config_section *sec, const char *key, int64_t def);
/* The value, or def when absent or empty. */
const char *sync_key_str(const config_section *sec, const char *key, const char *def);

/* True if name is one of the comma-separated entries of list. */
bool sync_list_contains(const char *list, const char *name);

/* Whether two strings differ, NULL being a value of its own (equal only
 * to NULL): what a sync compares a stored column with. */
bool sync_str_differs(const char *a, const char *b);

#endif
