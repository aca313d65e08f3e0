/*
 * credentials — where tasks find their secrets: a file named by KEY_file or
 * an environment variable named by KEY_env in a configuration section.
 * Secrets are never read from the configuration itself.
 */
#ifndef FK_CREDENTIALS_H
#define FK_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* True if section sec names a readable file in <prefix>_file or a set,
 * non-empty variable in <prefix>_env (e.g. prefix "token"). */
bool credentials_available(const config_section *sec, const char *prefix);

#endif
