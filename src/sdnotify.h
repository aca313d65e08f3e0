/*
 * sdnotify — the sd_notify protocol without libsystemd: datagrams to
 * $NOTIFY_SOCKET (a path, or an abstract socket when it starts with '@').
 * Without NOTIFY_SOCKET every call does nothing.
 */
#ifndef FK_SDNOTIFY_H
#define FK_SDNOTIFY_H

#include <stdint.h>

/* Send e.g. "READY=1", "STOPPING=1", "WATCHDOG=1". 0, or -1 on failure. */
int sdnotify_send(const char *state);
/* The watchdog interval asked for by systemd (WATCHDOG_USEC, for this pid
 * if WATCHDOG_PID is set), in milliseconds; 0 if none. */
int64_t sdnotify_watchdog_ms(void);

#endif
