/*
 * config — the INI configuration (SPEC §4), parsed with inih into a fresh
 * structure and validated as a whole. A config is immutable once loaded and
 * reference-counted: the daemon swaps in a new one on SIGHUP while runs still
 * hold the old one.
 *
 * Every error is one line "FILE:LINE: message"; all of them are collected
 * (config_load does not stop at the first).
 *
 * Sections not owned by this module's typed fields (ssh, github, provider.*,
 * notify.*, metrics) are validated against their known keys here and kept as
 * key/value lists; the modules that use them read them with config_get.
 *
 * Only a regular file (symlinks followed) of at most CONFIG_MAX_BYTES is
 * read: a FIFO, a device (/dev/zero) or a file that grows past the limit is
 * refused at once with "FILE: cannot read: ...", so a load is bounded in
 * time and memory (a SIGHUP reload runs on the daemon's loop thread).
 * Loading is linear in the size of the file (names are hashed).
 *
 * Secrets named by `*_env` keys (token_env = FK_TG_TOKEN): a successful load
 * reads each such variable, keeps its value in this module (config_env) and
 * removes it from the process environment (unsetenv, the bytes of the
 * original string wiped), so no child process and no /proc/PID/environ shows
 * it; a later load (SIGHUP) still finds the value kept. A successful load
 * also hands [daemon] pass_env to proc (proc_env_pass). These two effects
 * are the only process-wide state of this module.
 *
 * Threads: config_load from one thread at a time (it changes the process
 * environment); a loaded config and config_env from any thread.
 */
#ifndef FK_CONFIG_H
#define FK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "schedule.h"
#include "tz.h"

struct task_type;
struct config_index;

#define CONFIG_MAX_BYTES (16 * 1024 * 1024) /* the largest file config_load reads */
/* max_line_bytes ([daemon], command tasks): the most is the log's own line
 * budget (an event line holds about 64 KiB of strings, log.c). */
#define CONFIG_LINE_BYTES_MIN 256
#define CONFIG_LINE_BYTES_MAX 65536

typedef enum { OVERLAP_SKIP, OVERLAP_QUEUE } overlap_policy;

typedef struct {
	char *key;
	char *value;
	int line;
} config_entry;

typedef struct {
	char *name; /* "github", "provider.time4vps", "task.hello", ... */
	int line;
	config_entry *entries;
	size_t nentries;
} config_section;

typedef struct {
	char *name;                   /* "hello" for [task.hello] */
	const struct task_type *type; /* never NULL once loaded */
	int line;                     /* of the section header */
	bool enabled;
	char *schedule_expr; /* NULL: only run by hand */
	schedule sched;
	const tz *zone;     /* tz = ..., else the local zone */
	int64_t timeout_ms; /* 0: none */
	int64_t jitter_ms;
	overlap_policy overlap;
	bool persistent;
	bool run_on_start;
	int failure_alert_after;       /* 0: off */
	int retries;                   /* extra attempts after a failed or timed-out run */
	int64_t retry_backoff_ms;      /* delay before the first retry, doubled for each next */
	int64_t retry_backoff_max_ms;  /* cap on that delay */
	void *params;                  /* the type's own settings, owned */
	const config_section *section; /* raw keys, borrowed from the config */
} task_config;

/* [maintenance.NAME]: a recurring maintenance window (maintenance.h). */
typedef struct {
	char *name;     /* NAME */
	char **servers; /* fnmatch(3) patterns on server handles, NULL-terminated */
	size_t nservers;
	schedule when;    /* a cron schedule: the window opens at each fire time */
	const tz *zone;   /* tz =, default the local zone */
	int64_t duration; /* seconds the window stays open */
	char *reason;     /* NULL if none */
} maintenance_rule;

typedef struct config {
	char *path;
	/* [daemon] */
	char *state_dir;
	char *control_socket;
	char *db_path; /* state_dir/state.db, or "postgresql:<dsn>" (store.h) */
	/* [store] */
	bool store_postgresql; /* backend = postgresql: the cluster (cluster.h) runs */
	/* [cluster] */
	char *cluster_instance; /* instance =, default the host name */
	int64_t failover_timeout_ms;
	int max_concurrent_tasks;
	int64_t shutdown_grace_ms;
	int retention_days;          /* events, runs, notifications */
	int check_history_days;      /* health_history rows (hourly after the raw window) */
	int check_history_raw_hours; /* health_history keeps each check this long */
	int64_t spread_ms;           /* [daemon] spread: fleet-wide fires spread over it */
	char **pass_env;             /* NULL-terminated, never NULL: names children inherit */
	int max_line_bytes;          /* command output lines are cut here (a task may override) */
	int64_t output_drain_ms;     /* wait for leftover output after a command exits */
	/* [log] (the environment wins over these; NULL if not set) */
	char *log_level;
	char *log_format;
	char *service_name;
	/* every section, in file order */
	config_section *sections;
	size_t nsections;
	task_config *tasks;
	size_t ntasks;
	maintenance_rule *maintenance; /* [maintenance.*], in file order */
	size_t nmaintenance;
	struct config_index *index; /* private: sections and tasks by name */
	int refs;                   /* atomic */
	/* config_load_lenient of a file with errors: only [daemon] (state_dir,
	 * control_socket, db_path, ...) and [log] are set, no sections, no
	 * tasks. Never true for a config from config_load. */
	bool degraded;
} config;

/* Diagnostics collected while loading. */
typedef struct {
	char **lines; /* "FILE:LINE: message" */
	size_t count;
} config_errors;

void config_errors_free(config_errors *errs);

/* Load and validate path. On success *out holds a config with one
 * reference (and the environment effects above are applied). On failure
 * *out is NULL, the environment is untouched and errs has at least one line.
 * Relative paths in the file (state_dir, ...) are kept as written: they are
 * relative to the working directory, like the shipped defaults. */
int config_load(config **out, const char *path, config_errors *errs);

/* For the read-only commands (status, runs, incidents, servers, trace),
 * which must answer while the file is being fixed: like config_load, but
 * when the file was read and has errors, *out still gets a config with
 * degraded set, built from the file's [daemon] and [log] keys as read (a
 * key whose line is broken, or an empty value, gives the default), so it
 * names the state directory and control socket the file names. 0 valid,
 * 1 degraded (errs has the errors), -1 the file cannot be read at all
 * (*out NULL). The environment effects only happen for a valid file. */
int config_load_lenient(config **out, const char *path, config_errors *errs);

/* The absolute form of a path from the configuration, naming the file the
 * daemon itself opens (so it can be handed to a child with another working
 * directory): absolute as is, else the working directory joined with it
 * (leading "./" dropped). 0, or -1 if it does not fit in cap or getcwd
 * fails. Any thread. */
int config_path_absolute(const char *path, char *out, size_t cap);

config *config_ref(config *cfg);
void config_unref(config *cfg);

const task_config *config_task(const config *cfg, const char *name);
const config_section *config_section_find(const config *cfg, const char *name);
/* The value of key in section, or NULL. Borrowed from the config. */
const char *config_get(const config_section *sec, const char *key);
const config_entry *config_entry_find(const config_section *sec, const char *key);

/* The value the variable `name` had when a config naming it in a `*_env`
 * key was loaded (it is no longer in the environment), else getenv(name).
 * Borrowed, valid for the life of the process; NULL if unset. */
const char *config_env(const char *name);

/* One key a task type takes, for documentation and `check-config
 * --list-keys` (task_type.keys); def is its default as
 * docs/configuration.md states it ("30s", "none", "required"). */
typedef struct {
	const char *name;
	const char *def;
} config_key_doc;

/* Every key every section takes, from the tables config_load validates
 * with (and the task types' keys tables), in documentation order: fn gets
 * the section as docs/configuration.md heads it ("daemon",
 * "provider.inventory", "notify.NAME", "task.NAME", "task.NAME
 * type=command"), the key and its documented default ("" if the table has
 * none). tests/integration/test_config_docs.py compares it with the docs. */
typedef void (*config_key_fn)(void *arg, const char *section, const char *key, const char *def);
void config_keys_foreach(config_key_fn fn, void *arg);

/* Helpers for task types validating their own keys. */
int config_parse_bool(const char *value, bool *out);
int config_parse_int(const char *value, long min, long max, long *out);

#endif
