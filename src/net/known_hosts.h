/*
 * known_hosts — host key verification against an OpenSSH known_hosts file.
 *
 * Entries are read with libssh2's own parser (libssh2_knownhost_readline), so
 * plain names, comma-separated name lists, hashed |1|salt|hash entries
 * (HMAC-SHA1) and [host]:port entries are understood as OpenSSH writes them.
 * A line libssh2 cannot parse (@cert-authority, @revoked, unknown key
 * types, comments) is skipped, not fatal. As in OpenSSH, a host on port 22
 * is looked up as "host" and on any other port as "[host]:port".
 *
 * New entries (accept-new) are appended as plain lines, one write per line,
 * under a process-wide mutex and an exclusive flock on the file; the file is
 * re-read under the lock, so two sessions (or two processes) accepting the
 * same host at once record it once, and a key recorded meanwhile by somebody
 * else is compared rather than overwritten.
 *
 * known_hosts_forget (`known-hosts forget`) is the one writer that removes:
 * it writes the file without the host's lines to a temporary file and
 * renames it over the original, under the same mutex and flock; an adder
 * that locked the old file notices the rename and locks the new one. Every
 * other line is kept byte for byte.
 *
 * Errors: functions return 0 or a negative code with a message in err;
 * nothing is logged here.
 */
#ifndef FK_KNOWN_HOSTS_H
#define FK_KNOWN_HOSTS_H

#include <stdbool.h>
#include <stddef.h>

#include <libssh2.h>

typedef enum {
	KNOWN_HOSTS_MATCH = 0,    /* an entry for the host holds this key */
	KNOWN_HOSTS_UNKNOWN = 1,  /* no entry for the host at all */
	KNOWN_HOSTS_MISMATCH = 2, /* the host is known with another key (of this
	                           * or another type) */
} known_hosts_status;

typedef enum {
	KNOWN_HOSTS_OK = 0,
	KNOWN_HOSTS_EIO = -1,      /* the file cannot be read or written */
	KNOWN_HOSTS_ECHANGED = -2, /* add: recorded meanwhile with another key */
	KNOWN_HOSTS_EINVAL = -3,   /* bad key type or host name */
} known_hosts_error;

/* The loaded entries of one file. Bound to the libssh2 session it was
 * loaded with (libssh2 keeps its allocator there): free it before the
 * session. */
typedef struct known_hosts known_hosts;

/* Load path; a missing file is an empty list. *skipped (may be NULL) gets
 * the number of lines that were neither entries nor blank/comments. */
int known_hosts_load(known_hosts **out, LIBSSH2_SESSION *session, const char *path, int *skipped,
                     char *err, size_t errlen);
void known_hosts_free(known_hosts *kh);

/* Check a raw host key (as libssh2_session_hostkey returns it; type is a
 * LIBSSH2_HOSTKEY_TYPE_*). */
known_hosts_status known_hosts_check(known_hosts *kh, const char *host, int port, const char *key,
                                     size_t keylen, int type);

/* The libssh2 host key method names of the key types known for host:port,
 * comma separated ("ssh-ed25519,ecdsa-sha2-nistp256"), for
 * libssh2_session_method_pref; "" if none. Returns the number of types. */
int known_hosts_types(known_hosts *kh, const char *host, int port, char *buf, size_t cap);

/* Record host:port with this key in path (created 0600, parent directory
 * created if missing). 0 if recorded or already recorded with the same
 * key; KNOWN_HOSTS_ECHANGED if recorded meanwhile with another key. */
int known_hosts_add(LIBSSH2_SESSION *session, const char *path, const char *host, int port,
                    const char *key, size_t keylen, int type, char *err, size_t errlen);

/* How OpenSSH names host:port in the file: "host" or "[host]:port". */
void known_hosts_name(char *buf, size_t cap, const char *host, int port);

/* The OpenSSH name of a LIBSSH2_HOSTKEY_TYPE_* ("ssh-ed25519", "ssh-rsa",
 * "ecdsa-sha2-nistp256" ...); "unknown" for any other. */
const char *known_hosts_key_type_name(int type);

/* The SHA256 fingerprint of a raw host key as `ssh-keygen -l` prints it:
 * "SHA256:" + base64 of the digest without padding (50 characters; cap
 * >= 51). "" if it cannot be computed. */
void known_hosts_fingerprint(const char *key, size_t keylen, char *buf, size_t cap);

/* Remove every entry for host:port (under the name known_hosts_name gives)
 * from path: plain entries whose name list holds that name (the whole line
 * goes, as with `ssh-keygen -R`) and hashed |1|salt|hash entries of it.
 * Wildcard and negated patterns, @cert-authority and @revoked lines,
 * comments and lines libssh2 cannot parse are kept. *removed gets the
 * number of lines removed; a missing file removes nothing. 0 or
 * KNOWN_HOSTS_EIO / KNOWN_HOSTS_EINVAL. */
int known_hosts_forget(const char *path, const char *host, int port, int *removed, char *err,
                       size_t errlen);

#endif
