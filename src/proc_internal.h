/*
 * proc_internal — what proc.c (the daemon side) and proc_supervisor.c (the
 * supervisor process between the daemon and the command) share: the plan
 * built before fork and the messages on the supervisor socket. Not for use
 * outside these two files.
 */
#ifndef FK_PROC_INTERNAL_H
#define FK_PROC_INTERNAL_H

#include <signal.h>
#include <sys/types.h>

enum { STAGE_SETUP = 1, STAGE_CHDIR, STAGE_EXEC, STAGE_SUPERVISOR };

/* Supervisor -> daemon, one SOCK_SEQPACKET datagram each:
 * SUP_STARTED (a = command pid) or SUP_FAILED (a = stage, b = errno) first,
 * then SUP_EXITED (a = exit code, b = terminating signal or 0) once, and
 * after the daemon shut its end for writing (the run is over) SUP_CLEANED
 * (a = how many leftover processes it SIGKILLed) just before it exits. */
enum { SUP_STARTED = 1, SUP_FAILED, SUP_EXITED, SUP_CLEANED };

typedef struct {
	int kind;
	int a, b;
} sup_msg;

/* Everything the supervisor and the command use; built by the daemon before
 * fork (after fork only async-signal-safe calls are allowed). */
typedef struct {
	const char *path;
	char *const *argv;
	char *const *envp;
	const char *cwd;
	int devnull, out_w, err_w;
	int sup_fd;   /* the supervisor's end of the socket */
	int report_w; /* set in the supervisor: the command's exec report pipe */
	pid_t parent; /* set in the supervisor: its own pid */
	long max_fd;
	struct sigaction dfl;
	sigset_t empty;
} child_plan;

/* In the freshly forked supervisor (all signals blocked): start the command,
 * report, watch, and kill every descendant when the daemon goes away. */
void proc_supervise(const child_plan *plan) __attribute__((noreturn));

#endif
