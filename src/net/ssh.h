/*
 * ssh — the SSH tester: resolve, connect, handshake, verify the host key,
 * authenticate, run one command, read its exit status and the first line of
 * its output.
 *
 * Everything after name resolution is non-blocking (libssh2 with
 * libssh2_session_set_blocking(0)): one thread drives many attempts through
 * one epoll set of their sockets, each in the direction libssh2 asks for
 * (libssh2_session_block_directions); a round costs O(ready sockets). Each
 * attempt is a small state machine with a deadline for the whole attempt
 * (timeout_ms, from the start of its resolve to the exit status) and
 * shorter ones for the TCP connect and the SSH handshake
 * (connect_timeout_ms, handshake_timeout_ms, cut to the whole one): a host
 * that accepts TCP and then says nothing, or stalls in the middle of the
 * handshake, fails at the deadline, never later. At most
 * ssh_concurrency_limit() attempts are in flight; an attempt that finds no
 * descriptor (EMFILE) waits for another to end instead of failing. The
 * handshake gate lets at most `handshakes` of them past the server's banner
 * at once, first come first served; the wait for a place is not counted
 * against the server (ssh_result.gate_wait_ms, docs/ssh.md).
 * Resolution uses getaddrinfo, which blocks; IP addresses resolve at once,
 * a slow DNS server can delay the start of later attempts (documented in
 * docs/ssh.md).
 *
 * Secrets (passphrase, password) are read from files when the auth stage
 * begins, wiped when the attempt ends, and never copied into a result,
 * message or log.
 *
 * An attempt with hostkey_only ends after the host key stage (known-hosts
 * scan): with policy strict it reports an unknown key, with accept-new it
 * records it; a mismatch is never overwritten. Every attempt that got
 * through the handshake carries the offered key's type and SHA256
 * fingerprint in its result.
 *
 * Nothing is logged here: callers log the result (ssh_connection_test,
 * server_health_check).
 */
#ifndef FK_SSH_H
#define FK_SSH_H

#include <stddef.h>

#include "ssh_options.h" /* options, result, stages and error kinds */

/* Run n attempts, at most concurrency at once and at most handshakes of
 * them past their TCP connect (the handshake gate; 0: ssh_handshake_limit()),
 * from this thread. results[i] is the outcome of opts[i]. Returns 0, or
 * SSH_ERR_CANCELLED if cancel_fd (-1: none) became readable: the attempts
 * then running or not yet started end with error cancelled. */
int ssh_run_many(const ssh_options *opts, size_t n, size_t concurrency, size_t handshakes,
                 int cancel_fd, ssh_result *results);

/* `handshake_concurrency = auto`: SSH_HANDSHAKES_PER_CPU per online CPU,
 * at least SSH_HANDSHAKES_MIN. A check costs this side about 1.2 ms of CPU,
 * so a core keeps up with far more handshakes in flight over a WAN; on a
 * saturated machine (sshd on the same host, or this process's thread at
 * 100%) the gate serves the answering servers first come first served. */
#define SSH_HANDSHAKES_PER_CPU 128
#define SSH_HANDSHAKES_MIN     32
size_t ssh_handshake_limit(void);

/* How many attempts ssh_run_many can keep in flight at once with the
 * process's descriptor limit (RLIMIT_NOFILE, less a reserve for the rest of
 * the daemon): `concurrency = auto` of health_check. At least 1. */
size_t ssh_concurrency_limit(void);

/* One attempt; same as ssh_run_many with n = 1. */
int ssh_test(const ssh_options *opt, int cancel_fd, ssh_result *result);

/* `known-hosts forget`: remove host:port's entries from the known_hosts
 * file at path (known_hosts_forget in known_hosts.h, for callers without
 * libssh2's header). *removed gets the number of lines removed. 0, or -1
 * with a message in err. */
int ssh_known_hosts_forget(const char *path, const char *host, int port, int *removed, char *err,
                           size_t errlen);

#endif
