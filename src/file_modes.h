/*
 * file_modes — the modes of the files the daemon creates in its state and
 * runtime directories (docs/packaging.md, "Operators"): private to the
 * daemon's user, unless the directory they are in lets its group in (group
 * read and search, as the package's /var/lib/fleetkeeper and
 * /run/fleetkeeper, 0750), in which case members of that group (operators)
 * may read the state store and use the control socket. So access is decided
 * by the directory's mode alone; the build directory's ./var (0700) stays
 * private.
 *
 * Pure apart from one stat(2) of the directory; any thread. No errors: a
 * directory that cannot be read gives the private mode.
 */
#ifndef FK_FILE_MODES_H
#define FK_FILE_MODES_H

#include <stdbool.h>
#include <sys/types.h>

/* Whether the directory holding path grants its group read and search. */
bool file_dir_admits_group(const char *path);

/* A state file (the store, its -wal and -shm): 0640 when the directory
 * admits its group, else 0600. */
mode_t file_mode_state(const char *path);

/* The control socket: 0660 when the directory admits its group, else 0600. */
mode_t file_mode_socket(const char *path);

/* For a "Permission denied" on path: who may, from its directory's owner,
 * group and mode, as " (only user U and members of group G may use DIR)"
 * or " (only user U may use DIR)"; "" if the directory cannot be read. */
void file_access_hint(const char *path, char *out, size_t cap);

/* The same for a file one may not read, from the file's own owner, group
 * and mode: " (only user U and members of group G may read it)". */
void file_read_hint(const char *path, char *out, size_t cap);

#endif
