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
 */
#ifndef FK_CONFIG_H
#define FK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "schedule.h"

struct task_type;

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
	void *params;                  /* the type's own settings, owned */
	const config_section *section; /* raw keys, borrowed from the config */
} task_config;

typedef struct config {
	char *path;
	/* [daemon] */
	char *state_dir;
	char *control_socket;
	char *db_path; /* state_dir/state.db */
	int max_concurrent_tasks;
	int64_t shutdown_grace_ms;
	int retention_days;
	/* [log] (the environment wins over these; NULL if not set) */
	char *log_level;
	char *log_format;
	char *service_name;
	/* every section, in file order */
	config_section *sections;
	size_t nsections;
	task_config *tasks;
	size_t ntasks;
	int refs; /* atomic */
} config;

/* Diagnostics collected while loading. */
typedef struct {
	char **lines; /* "FILE:LINE: message" */
	size_t count;
} config_errors;

void config_errors_free(config_errors *errs);

/* Load and validate path. On success *out holds a config with one
 * reference. On failure *out is NULL and errs has at least one line.
 * Relative paths in the file (state_dir, ...) are kept as written: they are
 * relative to the working directory, like the shipped defaults. */
int config_load(config **out, const char *path, config_errors *errs);

config *config_ref(config *cfg);
void config_unref(config *cfg);

const task_config *config_task(const config *cfg, const char *name);
const config_section *config_section_find(const config *cfg, const char *name);
/* The value of key in section, or NULL. Borrowed from the config. */
const char *config_get(const config_section *sec, const char *key);
const config_entry *config_entry_find(const config_section *sec, const char *key);

/* Helpers for task types validating their own keys. */
int config_parse_bool(const char *value, bool *out);
int config_parse_int(const char *value, long min, long max, long *out);

#endif
