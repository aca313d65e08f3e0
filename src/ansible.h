/*
 * ansible — the Ansible runner: one ansible-playbook run against one host.
 *
 * A run gets a private directory (mkdtemp, 0700) holding the inventory
 * (inventory.json, 0600: host, port, user, key and — only there — the
 * password) and the extra variables (extra_vars.json, 0600, passed as
 * `-e @file`). ansible-playbook runs through proc_run in its own process
 * group with the ansible.posix.jsonl stdout callback; each line is parsed
 * with cJSON into per-task, per-host results. A timeout (or the caller's
 * cancel_fd) sends SIGTERM to the group and SIGKILL after the grace; the
 * run returns only once nothing of the group is left. The private
 * directory is removed before ansible_run returns.
 *
 * Artifacts (in the spirit of ansible-runner) go to
 * <state_dir>/artifacts/<run_id>/: stdout, stderr, rc, events.jsonl (the
 * parsed results) and command (argv and the added environment). Every
 * secret value — the password and every extra variable whose name is a
 * secret name (log_key_is_secret) — is replaced by "***" in all of them and
 * in every event. Directories older than the retention are pruned at the
 * start of each run.
 *
 * Every path handed to ansible-playbook is absolute (the run's cwd is the
 * private directory): known_hosts, key_file, a program with a '/' and
 * $TMPDIR are made absolute with config_path_absolute, i.e. they name the
 * file the daemon opens (a "~/" key file is left to ansible's expansion);
 * a known_hosts path ssh would split or expand is refused (bad_path). A
 * host whose key ssh refused gives error_type hostkey_mismatch (another key
 * is known) or hostkey_unknown (strict, no key).
 *
 * Events (logger "ansible"): ansible_playbook_start, ansible_task_result,
 * ansible_playbook_timeout, ansible_playbook_complete.
 *
 * Threads: any thread; no global state (proc_run's caveats apply).
 */
#ifndef FK_ANSIBLE_H
#define FK_ANSIBLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "ssh_options.h"
#include "servers.h"

#define ANSIBLE_LOGGER             "ansible"
#define ANSIBLE_DEFAULT_TIMEOUT_MS (30 * 60 * 1000)
#define ANSIBLE_MAX_SECRETS        32

/* Where playbooks live and what every run gets; from [ansible] when that
 * section exists, else from the first [task.X] of type provision, else
 * defaults (docs/ansible.md). Strings are borrowed from the config. */
typedef struct {
	const char *playbook_dir; /* default "playbooks" */
	const char *deploy_root;  /* default "/srv/fleetkeeper" */
	const char *vars_file;    /* JSON object merged into the extra vars; NULL none */
	const char *program;      /* default "ansible-playbook" */
	int64_t timeout_ms;       /* playbook_timeout, default 30 min */
	int64_t kill_grace_ms;    /* default 5 s */
	bool pipelining;          /* default false: see ansible_spec.pipelining */
} ansible_settings;

void ansible_settings_load(const config *cfg, ansible_settings *out);

/* One run. Every pointer is borrowed for the duration of ansible_run. */
typedef struct {
	const char *playbook; /* a path, or a name looked up in playbook_dir */
	const char *playbook_dir;
	const char *program;       /* NULL: ansible-playbook */
	const char *server_handle; /* the inventory host name */
	const char *host;          /* address */
	int port;                  /* 0: 22 */
	const char *user;          /* NULL: root */
	const char *key_file;      /* NULL: none */
	const char *password_file; /* NULL: key/agent auth */
	const char *known_hosts;   /* NULL: ~/.ssh/known_hosts */
	hostkey_policy policy;
	const cJSON *extra_vars;    /* object, may be NULL */
	const char *correlation_id; /* NULL: the bound one, if any */
	const char *state_dir;      /* artifacts go below; NULL: none kept */
	int retention_days;         /* artifacts older are pruned; <= 0: kept */
	int64_t timeout_ms;         /* <= 0: none */
	int64_t kill_grace_ms;      /* <= 0: 5000 */
	int cancel_fd;              /* -1: none */
	/* false (default): modules run on a remote terminal (ssh -tt), so a run
	 * killed at its timeout hangs up the terminal and the remote commands
	 * die with it. true: faster (one SSH session per module), but a
	 * remote command of a killed run keeps running until it ends. */
	bool pipelining;
} ansible_spec;

typedef struct {
	int exit_code; /* ansible-playbook's, 128+signal when killed, -1 not run */
	bool timed_out;
	bool cancelled;
	int ok, changed, failed, unreachable, skipped;
	double duration_sec;
	char run_id[96];
	char error[256]; /* "" on success; never holds a secret */
	char error_type[32];
} ansible_result;

/* 0 when ansible-playbook ran (whatever its exit status: see exit_code),
 * -1 when it could not be started (error, error_type set). */
int ansible_run(const ansible_spec *spec, ansible_result *out);

/* True when the run succeeded: exit 0, no failed or unreachable host. */
bool ansible_result_ok(const ansible_result *r);

/* The real path of spec->playbook (NAME and NAME.yml are looked up in
 * playbook_dir, a path with a '/' is taken as is) into out (at least
 * PATH_MAX); -1 if there is no such file. */
int ansible_playbook_resolve(const ansible_spec *spec, char *out, size_t cap);

/* The spec of a run against srv: address, port, user from the server
 * record, key/password/known_hosts/policy from [ssh] (known_hosts default
 * <state_dir>/known_hosts, written into kh), program, playbook_dir,
 * timeout, grace, state_dir and retention from settings and config.
 * playbook, extra_vars, correlation_id and cancel_fd are left to the
 * caller. 0, or -1 with a message. */
int ansible_spec_for_server(ansible_spec *spec, const config *cfg, const ansible_settings *set,
                            const server_row *srv, char *kh, size_t khcap, char *err,
                            size_t errlen);

/* The extra variables every run gets: the vars_file object (if set) and
 * deploy_root. NULL with a message if vars_file is unreadable or not a
 * JSON object. */
cJSON *ansible_base_vars(const ansible_settings *set, char *err, size_t errlen);

/* ---- pure parts, exposed for the unit tests ---- */

/* Stats of one run, accumulated from callback lines. */
typedef struct {
	int ok, changed, failed, unreachable, skipped;
	bool have_stats;
} ansible_stats;

typedef enum {
	ANSIBLE_LINE_OTHER = 0,  /* not a result (play start, ...) or not JSON */
	ANSIBLE_LINE_RESULT = 1, /* a per-host task result: cb called per host */
	ANSIBLE_LINE_STATS = 2,  /* v2_playbook_on_stats: stats filled */
} ansible_line_kind;

/* status: ok, changed, failed, skipped, unreachable; msg may be NULL. */
typedef void (*ansible_result_fn)(void *ctx, const char *task_name, const char *host,
                                  const char *status, const char *msg);

/* Parse one line of the jsonl callback. */
ansible_line_kind ansible_parse_line(const char *line, ansible_stats *stats, ansible_result_fn cb,
                                     void *ctx);

/* The inventory JSON for one host (malloc'd, to free), or NULL. */
char *ansible_inventory_render(const ansible_spec *spec, const char *password);

/* A copy of in with every occurrence of every secret (NULL-terminated
 * list; empty strings ignored) replaced by "***". malloc'd, or NULL. */
char *ansible_redact(const char *in, const char *const *secrets);

/* The secret values of an extra-vars object: string values whose key is a
 * secret name, at any depth. Borrowed from vars; returns how many. */
size_t ansible_secret_values(const cJSON *vars, const char **out, size_t cap);

#endif
