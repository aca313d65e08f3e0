/*
 * ssh_options — the pure half of the SSH tester (ssh.h), which core modules
 * (ansible, recovery, health checks, the CLI) use without libssh2: host key
 * policies, stages and error kinds with their names, one attempt's options
 * and result, and the options from [ssh]. Implemented in src/ssh_options.c.
 *
 * Host key failures (hostkey_unknown, hostkey_mismatch) name the command
 * that fixes them: ssh_hostkey_hint (docs/ssh.md, "host_key_policy =
 * strict").
 *
 * Threads: every function is pure or reads only its arguments (and
 * $SSH_AUTH_SOCK); safe from any thread.
 * Errors: 0, or -1 with a message in err. Ownership: options borrow their
 * strings (from the config or the caller); nothing here allocates.
 */
#ifndef FK_SSH_OPTIONS_H
#define FK_SSH_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef enum {
	HOSTKEY_POLICY_STRICT,     /* unknown and changed keys fail */
	HOSTKEY_POLICY_ACCEPT_NEW, /* unknown keys are recorded, changed keys fail */
	HOSTKEY_POLICY_OFF,        /* no check at all */
} hostkey_policy;

/* "strict", "accept-new", "off"; 0 or -1. */
int hostkey_policy_parse(const char *name, hostkey_policy *out);
const char *hostkey_policy_name(hostkey_policy p);

typedef enum {
	SSH_STAGE_RESOLVE,
	SSH_STAGE_CONNECT,
	SSH_STAGE_HANDSHAKE,
	SSH_STAGE_HOSTKEY,
	SSH_STAGE_AUTH,
	SSH_STAGE_EXEC,
} ssh_stage;

/* Stable error kinds (error_type in events). */
typedef enum {
	SSH_OK = 0,
	SSH_ERR_RESOLVE,          /* resolve_failed */
	SSH_ERR_CONNECT_REFUSED,  /* connect_refused */
	SSH_ERR_CONNECT_TIMEOUT,  /* connect_timeout: the deadline passed in connect */
	SSH_ERR_CONNECT,          /* connect_failed: unreachable, reset, ... */
	SSH_ERR_TIMEOUT,          /* timeout: the deadline passed after connect */
	SSH_ERR_HANDSHAKE,        /* handshake_failed */
	SSH_ERR_HOSTKEY_UNKNOWN,  /* hostkey_unknown (strict) */
	SSH_ERR_HOSTKEY_MISMATCH, /* hostkey_mismatch */
	SSH_ERR_KNOWN_HOSTS,      /* known_hosts_failed: unreadable or unwritable */
	SSH_ERR_CREDENTIALS,      /* credentials_unreadable: key/passphrase/password file */
	SSH_ERR_AUTH,             /* auth_failed */
	SSH_ERR_EXEC,             /* exec_failed: channel or exec refused, I/O error */
	SSH_ERR_COMMAND,          /* command_failed: exit status not 0 */
	SSH_ERR_CANCELLED,        /* cancelled */
	SSH_ERR_INTERNAL,         /* internal: out of memory, socket() failed */
} ssh_error;

const char *ssh_stage_name(ssh_stage stage);
const char *ssh_error_name(ssh_error err);

#define SSH_DEFAULT_TIMEOUT_MS           10000
#define SSH_DEFAULT_CONNECT_TIMEOUT_MS   5000
#define SSH_DEFAULT_HANDSHAKE_TIMEOUT_MS 5000
#define SSH_DEFAULT_COMMAND              "true"

/* One attempt's settings. Every pointer is borrowed and must stay valid
 * until the attempt has finished. */
typedef struct {
	const char *host;            /* name or address */
	int port;                    /* 0: 22 */
	const char *user;            /* NULL: "root" */
	const char *key_file;        /* private key; "~/" is $HOME; NULL: none */
	const char *passphrase_file; /* NULL: key not encrypted */
	const char *password_file;   /* NULL: no password auth */
	bool use_agent;              /* try the keys of $SSH_AUTH_SOCK */
	const char *known_hosts;     /* NULL only with policy off */
	hostkey_policy policy;
	int64_t timeout_ms; /* the whole attempt; <= 0: default */
	/* Stage deadlines, each cut to the whole attempt's: TCP connect (from
	 * the first connect()), and the SSH handshake up to the host key (from
	 * the TCP connection). <= 0: the default (5 s). */
	int64_t connect_timeout_ms;
	int64_t handshake_timeout_ms;
	const char *command; /* NULL: "true" */
	bool hostkey_only;   /* end after the host key stage, with success if
	                      * the key matched (or was recorded): no auth, no
	                      * exec (`known-hosts scan`) */
} ssh_options;

typedef struct {
	bool success;    /* reached exec and the command exited 0 */
	ssh_stage stage; /* the stage reached (failed in, or exec) */
	ssh_error error;
	int exit_status;      /* -1 if the command did not finish */
	int64_t duration_ms;  /* the server's time: without gate_wait_ms */
	int64_t gate_wait_ms; /* waited for a place in the handshake gate (ssh.h) */
	bool hostkey_added;   /* accept-new recorded the host */
	char message[256];    /* "" on success; never holds a secret */
	char output[256];     /* first line of the command's stdout */
	/* The host key the server offered, once the handshake got it ("" before):
	 * its type as OpenSSH names it ("ssh-ed25519") and its SHA256
	 * fingerprint as `ssh-keygen -l` prints it ("SHA256:" + base64 without
	 * padding). */
	char key_type[32];
	char fingerprint[64];
} ssh_result;

/* Defaults: port 22, user root, policy accept-new, 10 s (connect 5 s,
 * handshake 5 s), "true". */
void ssh_options_default(ssh_options *opt);

/* Apply [ssh] (user, port, key_file, passphrase_file, password_file,
 * use_agent, known_hosts, host_key_policy, timeout, connect_timeout,
 * handshake_timeout) on top of opt; sec may
 * be NULL. Strings are borrowed from the config. use_agent defaults to true
 * when neither key_file nor password_file is set and $SSH_AUTH_SOCK is.
 * 0, or -1 with a message. */
int ssh_options_from_config(ssh_options *opt, const config_section *sec, char *err, size_t errlen);

/* The known_hosts the daemon uses: [ssh] known_hosts if opt has one, else
 * <state_dir>/known_hosts written into buf and set in opt. */
void ssh_options_known_hosts(ssh_options *opt, const char *state_dir, char *buf, size_t cap);

/* true for hostkey_unknown and hostkey_mismatch. */
bool ssh_error_is_hostkey(ssh_error err);

/* The command that fixes a host key failure of target (a server handle, or
 * HOST:PORT as `known-hosts scan` takes it) into buf: for hostkey_unknown
 * "fleetkeeper known-hosts scan T --accept", for hostkey_mismatch "if the
 * server was rebuilt: fleetkeeper known-hosts forget T, then fleetkeeper
 * known-hosts scan T --accept". "" (and false) for any other error. */
bool ssh_hostkey_hint(ssh_error err, const char *target, char *buf, size_t cap);

/* HOST:PORT of host and port as `known-hosts scan` takes it: "[v6]:PORT"
 * when host holds a ':', port 22 when port <= 0. */
void ssh_target_address(char *buf, size_t cap, const char *host, int port);

#endif
