/*
 * notify_sender — the daemon's notification sender: one thread with its own
 * store connection that delivers the outbox (outbox.h) to every configured
 * notifier (notifiers.h). See docs/notifications.md for the states.
 *
 * start/reload/stop are called by the daemon's loop thread only (the
 * sender's handle is module state, like the recoveries'). With no notifier
 * configured there is no thread and nothing wakes up.
 */
#ifndef FK_NOTIFY_SENDER_H
#define FK_NOTIFY_SENDER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

/* Start the thread if cfg has notifiers (a notifier whose secrets cannot be
 * read is left out with a notifier_disabled event). 0, or -1 (logged). */
int notify_sender_start(config *cfg);
/* After a SIGHUP: restart the thread with cfg's notifiers (secrets read
 * again); a no-op if cfg is the configuration it runs with. */
void notify_sender_reload(config *cfg);
/* Abort an HTTP request in flight (its delivery stays 'sending' and is sent
 * again by the next start) and join the thread. */
void notify_sender_stop(void);

#endif
