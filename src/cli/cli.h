/*
 * cli — the fleetkeeper command line (SPEC §1).
 *
 * Exit status: 0 success; 1 the work failed; 2 usage or configuration error,
 * with one line on stderr naming the file, line or argument at fault.
 */
#ifndef FK_CLI_H
#define FK_CLI_H

#include <stdbool.h>

#include "config.h"

struct cJSON;

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

typedef struct {
	const char *config_path;
	const char *command;
	int argc; /* arguments after the command */
	char **argv;
	bool json; /* --json given anywhere after the command */
} cli_ctx;

int cli_main(int argc, char **argv);

/* Shared by the commands. */
void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* `COMMAND NAME [--follow]`: *name and *follow from the arguments; -1 after
 * a usage error naming the argument at fault. */
int cli_parse_name_follow(const cli_ctx *ctx, const char *command, const char *what,
                          const char **name, bool *follow);
/* Load the configuration; prints every error as FILE:LINE: message. */
int cli_load_config(const cli_ctx *ctx, config **out);
/* For the read-only commands (status, runs, incidents, servers, trace): a
 * file with errors is not fatal. Its errors are printed on stderr as
 * warnings ("warning: FILE:LINE: message", then one line naming the state
 * directory used) and *out gets config_load_lenient's degraded config
 * (state_dir, control_socket and db_path as the file names them, else the
 * defaults; no tasks). EXIT_OK, or EXIT_USAGE when the file cannot be read
 * at all (missing, not a regular file): then nothing names a state
 * directory. */
int cli_load_config_lenient(const cli_ctx *ctx, config **out);
/* Who runs this command, for the operator's events and rows: $SUDO_USER,
 * else the login name of the real uid, else "unknown". Static storage. */
const char *cli_operator_name(void);
/* Configure the event log from [log] and the environment (which wins) and
 * emit logging_initialized. */
int cli_setup_logging(const config *cfg);
/* Every JSON the CLI prints goes through here (and so through cJSON, which
 * escapes): o as one line on stdout, then deleted. NULL (out of memory while
 * building it) prints nothing and returns -1. */
int cli_print_json(struct cJSON *o);

/* The commands (cli.c, cli_run.c, cli_query.c, cli_next.c). */
int cli_cmd_run(const cli_ctx *ctx);
int cli_cmd_once(const cli_ctx *ctx);
int cli_cmd_trigger(const cli_ctx *ctx);
int cli_cmd_status(const cli_ctx *ctx);
int cli_cmd_runs(const cli_ctx *ctx);
int cli_cmd_incidents(const cli_ctx *ctx);
int cli_incidents_ack(const cli_ctx *ctx);   /* cli_incidents.c: incidents ack */
int cli_incidents_close(const cli_ctx *ctx); /* cli_incidents.c: incidents close */
int cli_cmd_trace(const cli_ctx *ctx);
int cli_cmd_next(const cli_ctx *ctx);
int cli_cmd_ssh_test(const cli_ctx *ctx);    /* cli_ssh.c */
int cli_cmd_ansible(const cli_ctx *ctx);     /* cli_ansible.c */
int cli_cmd_services(const cli_ctx *ctx);    /* cli_services.c */
int cli_cmd_recover(const cli_ctx *ctx);     /* cli_recover.c */
int cli_cmd_notify(const cli_ctx *ctx);      /* cli_notify.c */
int cli_cmd_store(const cli_ctx *ctx);       /* cli_store.c */
int cli_cmd_servers(const cli_ctx *ctx);     /* cli_servers.c */
int cli_cmd_known_hosts(const cli_ctx *ctx); /* cli_known_hosts.c */

#endif
