/*
 * daemon — `fleetkeeper run`: the scheduler daemon.
 *
 * One loop thread owns the timer wheel, the task slots and the control
 * socket; it sleeps in epoll_wait until the next timer is due (no periodic
 * wakeups), and reacts to signals (signalfd), finished runs (the pool's
 * eventfd), wall-clock changes (a CLOCK_REALTIME timerfd with
 * TFD_TIMER_CANCEL_ON_SET) and control clients. Runs execute on the worker
 * pool. See docs/architecture.md for the invariants.
 */
#ifndef FK_DAEMON_H
#define FK_DAEMON_H

#include "config.h"

/* Runs until SIGTERM/SIGINT; returns the process exit status. Takes its
 * own reference on cfg (a reload swaps it). */
int daemon_run(config *cfg);

#endif
