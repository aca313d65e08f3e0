/*
 * config — see config.h. Loading happens in two passes over one loader:
 *
 * 1. Reading. inih splits "key = value" lines and strips comments; our own
 *    reader (config_read_line) hands it one physical line at a time, so
 *    loader.lineno is the line of the key inih reports next. The reader
 *    also owns everything inih does not tell us: section headers (with
 *    their line, even when empty, and without inih's 50-byte name limit),
 *    NUL and control bytes, lines longer than inih's buffer and lines that
 *    are neither a comment, a header nor a key. Lines the reader rejects
 *    are handed to inih as blank lines, so each problem is reported once.
 *    Leading whitespace is stripped, so inih never sees continuation lines.
 *    The result is the raw structure: every section in file order, every
 *    entry with its trimmed value and line. Duplicate keys keep the first.
 *
 * 2. Validation. Each section is checked against its schema (key_spec
 *    tables below); [daemon] and [log] fill the typed fields, [task.X]
 *    sections become task_config entries, handing the keys the runner does
 *    not know to the task type.
 *
 * Invariants: every problem is one error with the line it is about (0 for
 * the file as a whole); a config is only returned when there are none; a
 * returned config is never modified again, so it may be read from any
 * thread while it holds a reference. Out of memory aborts (xmalloc style).
 *
 * Bounds: only a regular file is opened (checked before and after open,
 * which is non-blocking so a FIFO swapped in cannot block it) and at most
 * CONFIG_MAX_BYTES are read. Every lookup made per line or per section is a
 * hash lookup (name_index) or a binary search, so loading is linear: the
 * arrays grow by doubling (grow_pow2).
 *
 * Environment (see config.h): a successful load moves the values of the
 * variables named by `*_env` keys into `kept` and out of environ.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "duration.h"
#include "file_modes.h"
#include "github_app.h"
#include "log.h"
#include "proc.h"
#include "store.h"
#include "task.h"
#include "tz.h"
#include "utf8.h"

extern char **environ;

#define CONFIG_MAX_ERRORS 100
#define CONFIG_LINE_CAP   4096 /* bytes of one physical line that are kept */
#define CONFIG_NAME_MAX   64   /* task and notifier names */
#define SECTION_NONE      (-1) /* no header seen yet */
#define SECTION_SKIP      (-2) /* inside a duplicate section: keys ignored */

typedef struct {
	int line;
	size_t seq;
	char *msg;
} load_error;

/* name -> value, open addressing with linear probing. The names are
 * borrowed from the config (malloc'd strings that never move). */
typedef struct {
	const char *name; /* NULL: a free slot */
	size_t value;
} name_slot;

typedef struct {
	name_slot *slots;
	size_t cap; /* 0 or a power of two; at most half full */
	size_t count;
} name_index;

#define NAME_INDEX_MIN 16

struct config_index {
	name_index sections; /* name -> index into cfg->sections */
	name_index tasks;    /* name -> index into cfg->tasks */
};

typedef struct {
	const char *path;
	FILE *fp;
	int lineno;
	long cur; /* index into cfg->sections, or SECTION_NONE / SECTION_SKIP */
	config *cfg;
	load_error *errs;
	size_t nerrs;
	int *headers; /* the line of every "[...]" line, valid or not; ascending */
	size_t nheaders;
	name_index keys; /* the current section's: key -> entry index */
	size_t bytes;    /* read so far */
	bool too_big;    /* more than CONFIG_MAX_BYTES */
	bool too_many;
	char buf[CONFIG_LINE_CAP];
} loader;

typedef enum {
	KV_STRING,
	KV_INT,
	KV_DURATION,
	KV_BOOL,
	KV_ENUM,       /* choices: "a|b|c", any case */
	KV_LEVEL,      /* log_level_parse */
	KV_LOG_FORMAT, /* log_format_parse */
	KV_URL,        /* http:// or https:// */
	KV_LISTEN,     /* host:port */
	KV_LISTEN_ANY, /* host:port or an absolute unix socket path */
	KV_INT_LIST,   /* "1, -2, 3" */
	KV_ENV_LIST,   /* "NAME, PREFIX_*" */
} key_kind;

typedef struct {
	const char *name;
	key_kind kind;
	long min, max;       /* KV_INT */
	const char *choices; /* KV_ENUM */
	bool empty_ok;       /* an empty value means "off" */
	const char *def;     /* the default as docs/configuration.md states it */
} key_spec;

/* ---- schemas ---- */

static const key_spec daemon_keys[] = {
        {.name = "state_dir", .kind = KV_STRING, .def = "./var"},
        {.name = "control_socket", .kind = KV_STRING, .def = "<state_dir>/fleetkeeper.sock"},
        {.name = "max_concurrent_tasks", .kind = KV_INT, .min = 1, .max = 1024, .def = "4"},
        {.name = "shutdown_grace", .kind = KV_DURATION, .def = "30s"},
        {.name = "retention_days", .kind = KV_INT, .min = 1, .max = 36500, .def = "30"},
        {.name = "check_history_days", .kind = KV_INT, .min = 1, .max = 36500, .def = "30"},
        {.name = "check_history_raw_hours", .kind = KV_INT, .min = 1, .max = 8760, .def = "48"},
        {.name = "spread", .kind = KV_DURATION, .def = "0"},
        {.name = "pass_env", .kind = KV_ENV_LIST, .empty_ok = true, .def = "none"},
        {.name = "max_line_bytes",
         .kind = KV_INT,
         .min = CONFIG_LINE_BYTES_MIN,
         .max = CONFIG_LINE_BYTES_MAX,
         .def = "65536"},
        {.name = "output_drain", .kind = KV_DURATION, .def = "5s"},
        {.name = NULL},
};

static const key_spec log_keys[] = {
        {.name = "level", .kind = KV_LEVEL, .def = "info"},
        {.name = "format", .kind = KV_LOG_FORMAT, .def = "json"},
        {.name = "service", .kind = KV_STRING, .def = "scheduler"},
        {.name = NULL},
};

static const key_spec metrics_keys[] = {
        {.name = "listen", .kind = KV_LISTEN, .empty_ok = true, .def = "127.0.0.1:9464"},
        {.name = NULL},
};

static const key_spec ssh_keys[] = {
        {.name = "user", .kind = KV_STRING, .def = "root"},
        {.name = "key_file", .kind = KV_STRING, .def = "none"},
        {.name = "passphrase_file", .kind = KV_STRING, .def = "none"},
        {.name = "password_file", .kind = KV_STRING, .def = "none"},
        {.name = "known_hosts", .kind = KV_STRING, .def = "<state_dir>/known_hosts"},
        {.name = "host_key_policy",
         .kind = KV_ENUM,
         .choices = "strict|accept-new|off",
         .def = "accept-new"},
        {.name = "timeout", .kind = KV_DURATION, .def = "10s"},
        {.name = "connect_timeout", .kind = KV_DURATION, .def = "5s"},
        {.name = "handshake_timeout", .kind = KV_DURATION, .def = "5s"},
        {.name = "port", .kind = KV_INT, .min = 1, .max = 65535, .def = "22"},
        {.name = "use_agent", .kind = KV_BOOL, .def = "true when SSH_AUTH_SOCK is set"},
        {.name = NULL},
};

static const key_spec github_keys[] = {
        {.name = "api_url", .kind = KV_URL, .def = "https://api.github.com"},
        {.name = "org", .kind = KV_STRING, .def = "none"},
        {.name = "user", .kind = KV_STRING, .def = "none"},
        {.name = "token_file", .kind = KV_STRING, .def = "none"},
        {.name = "token_env", .kind = KV_STRING, .def = "none"},
        {.name = "app_id", .kind = KV_STRING, .def = "none"},
        {.name = "private_key_file", .kind = KV_STRING, .def = "none"},
        {.name = "installation_id", .kind = KV_INT, .min = 1, .max = LONG_MAX, .def = "none"},
        {.name = "mirror_dir", .kind = KV_STRING, .empty_ok = true, .def = "empty"},
        {.name = "missing_threshold", .kind = KV_INT, .min = 1, .max = 1000000, .def = "3"},
        {.name = "per_page", .kind = KV_INT, .min = 1, .max = 100, .def = "100"},
        {.name = "timeout", .kind = KV_DURATION, .def = "30s"},
        {.name = "user_agent", .kind = KV_STRING, .def = "fleetkeeper/VERSION"},
        {.name = NULL},
};

static const key_spec time4vps_keys[] = {
        {.name = "api_url", .kind = KV_URL, .def = "https://billing.time4vps.com/api"},
        {.name = "credentials_file", .kind = KV_STRING, .def = "none"},
        {.name = "details_interval", .kind = KV_DURATION, .def = "6h"},
        {.name = "ghost_servers", .kind = KV_STRING, .empty_ok = true, .def = "empty"},
        {.name = "initial_status",
         .kind = KV_ENUM,
         .choices = "ready|pending_setup",
         .def = "pending_setup"},
        {.name = "timeout", .kind = KV_DURATION, .def = "30s"},
        {.name = NULL},
};

static const key_spec inventory_keys[] = {
        {.name = "file", .kind = KV_STRING, .def = "none"},
        {.name = "ghost_servers", .kind = KV_STRING, .empty_ok = true, .def = "empty"},
        {.name = "initial_status",
         .kind = KV_ENUM,
         .choices = "ready|pending_setup",
         .def = "ready"},
        {.name = NULL},
};

static const key_spec notify_keys[] = {
        {.name = "type", .kind = KV_ENUM, .choices = "telegram|slack|webhook", .def = "required"},
        {.name = "api_url", .kind = KV_URL, .def = "per type"},
        {.name = "url_file", .kind = KV_STRING, .def = "none"},
        {.name = "token_file", .kind = KV_STRING, .def = "none"},
        {.name = "token_env", .kind = KV_STRING, .def = "none"},
        {.name = "secret_file", .kind = KV_STRING, .def = "none"},
        {.name = "chat_ids", .kind = KV_INT_LIST, .def = "none"},
        {.name = "min_level", .kind = KV_LEVEL, .def = "info"},
        {.name = "events", .kind = KV_STRING, .def = "all"},
        {.name = "rate_limit_per_minute", .kind = KV_INT, .min = 0, .max = 100000, .def = "10"},
        {.name = "max_age", .kind = KV_DURATION, .def = "24h"},
        {.name = NULL},
};

/* The keys of every [task.X]; the rest go to the task type. */
static const key_spec task_keys[] = {
        {.name = "type", .kind = KV_STRING, .def = "NAME"},
        {.name = "enabled", .kind = KV_BOOL, .def = "true"},
        {.name = "schedule", .kind = KV_STRING, .def = "none"},
        {.name = "tz", .kind = KV_STRING, .def = "the local zone"},
        {.name = "timeout", .kind = KV_DURATION, .def = "0"},
        {.name = "jitter", .kind = KV_DURATION, .def = "0"},
        {.name = "overlap", .kind = KV_ENUM, .choices = "skip|queue", .def = "skip"},
        {.name = "persistent", .kind = KV_BOOL, .def = "false"},
        {.name = "run_on_start", .kind = KV_BOOL, .def = "false"},
        {.name = "failure_alert_after", .kind = KV_INT, .min = 0, .max = 1000, .def = "0"},
        {.name = "retries", .kind = KV_INT, .min = 0, .max = 100, .def = "0"},
        {.name = "retry_backoff", .kind = KV_DURATION, .def = "30s"},
        {.name = "retry_backoff_max", .kind = KV_DURATION, .def = "10m"},
        {.name = "description", .kind = KV_STRING, .empty_ok = true, .def = "none"},
        {.name = NULL},
};

typedef struct {
	const char *name;
	const key_spec *keys;
} section_schema;

static const key_spec maintenance_keys[] = {
        {.name = "servers", .kind = KV_STRING, .def = "required"},
        {.name = "schedule", .kind = KV_STRING, .def = "required"},
        {.name = "duration", .kind = KV_DURATION, .def = "required"},
        {.name = "tz", .kind = KV_STRING, .def = "the local zone"},
        {.name = "reason", .kind = KV_STRING, .empty_ok = true, .def = "none"},
        {.name = NULL},
};

static const key_spec ansible_keys[] = {
        {.name = "playbook_dir", .kind = KV_STRING, .def = "playbooks"},
        {.name = "deploy_root", .kind = KV_STRING, .def = "/srv/fleetkeeper"},
        {.name = "vars_file", .kind = KV_STRING, .def = "none"},
        {.name = "playbook_timeout", .kind = KV_DURATION, .def = "30m"},
        {.name = "kill_grace", .kind = KV_DURATION, .def = "5s"},
        {.name = "ansible_playbook", .kind = KV_STRING, .def = "ansible-playbook"},
        {.name = "pipelining", .kind = KV_BOOL, .def = "false"},
        {.name = NULL},
};

/* [api]: the HTTP API and status page (api.c, docs/api.md). */
static const key_spec api_keys[] = {
        {.name = "listen", .kind = KV_LISTEN_ANY, .empty_ok = true, .def = "127.0.0.1:9465"},
        {.name = "public_status", .kind = KV_BOOL, .def = "false"},
        {.name = "tls_cert_file", .kind = KV_STRING, .def = "none"},
        {.name = "tls_key_file", .kind = KV_STRING, .def = "none"},
        {.name = "max_body_bytes", .kind = KV_INT, .min = 1024, .max = 1048576, .def = "65536"},
        {.name = NULL},
};

/* [api.token.NAME]: one bearer token (api_auth.c). */
static const key_spec api_token_keys[] = {
        {.name = "token_file", .kind = KV_STRING, .def = "required"},
        {.name = "scope", .kind = KV_ENUM, .choices = "read|operate|admin", .def = "read"},
        {.name = NULL},
};

/* [store]: where the state lives (store.h, docs/state-store.md). */
static const key_spec store_keys[] = {
        {.name = "backend", .kind = KV_ENUM, .choices = "sqlite|postgresql", .def = "sqlite"},
        {.name = "dsn", .kind = KV_STRING, .def = "none"},
        {.name = NULL},
};

/* [cluster]: several daemons on one PostgreSQL (cluster.c, docs/cluster.md). */
static const key_spec cluster_keys[] = {
        {.name = "instance", .kind = KV_STRING, .def = "the host name"},
        {.name = "failover_timeout", .kind = KV_DURATION, .def = "15s"},
        {.name = NULL},
};

/* [recovery]: what `recover` may do besides redeploying (recovery.c). */
static const key_spec recovery_keys[] = {
        {.name = "reprovision", .kind = KV_BOOL, .def = "false"},
        {.name = NULL},
};

static const section_schema plain_sections[] = {
        {"daemon", daemon_keys},
        {"log", log_keys},
        {"metrics", metrics_keys},
        {"ssh", ssh_keys},
        {"github", github_keys},
        {"ansible", ansible_keys},
        {"recovery", recovery_keys},
        {"api", api_keys},
        {"store", store_keys},
        {"cluster", cluster_keys},
        {NULL, NULL},
};

static const section_schema providers[] = {
        {"time4vps", time4vps_keys},
        {"inventory", inventory_keys},
        {NULL, NULL},
};

static const char *const secret_keys[] = {"token",   "password",   "secret",
                                          "api_key", "passphrase", NULL};

/* ---- the key tables, for check-config --list-keys ----
 * Every table above must be reached from here (a new plain section is, by
 * plain_sections; a new [prefix.NAME] needs its line), or its keys count as
 * undocumented nowhere. */

static void keys_list(config_key_fn fn, void *arg, const char *section, const key_spec *keys)
{
	for (; keys->name; keys++)
		fn(arg, section, keys->name, keys->def ? keys->def : "");
}

static void type_keys_list(config_key_fn fn, void *arg, const task_type *type)
{
	char section[96];
	snprintf(section, sizeof section, "task.NAME type=%s", type->name);
	for (const config_key_doc *k = type->keys; k && k->name; k++)
		fn(arg, section, k->name, k->def ? k->def : "");
}

void config_keys_foreach(config_key_fn fn, void *arg)
{
	char section[96], names[256];
	for (const section_schema *p = plain_sections; p->name; p++)
		keys_list(fn, arg, p->name, p->keys);
	for (const section_schema *p = providers; p->name; p++) {
		snprintf(section, sizeof section, "provider.%s", p->name);
		keys_list(fn, arg, section, p->keys);
	}
	keys_list(fn, arg, "notify.NAME", notify_keys);
	keys_list(fn, arg, "maintenance.NAME", maintenance_keys);
	keys_list(fn, arg, "api.token.NAME", api_token_keys);
	keys_list(fn, arg, "task.NAME", task_keys);
	snprintf(names, sizeof names, "%s", task_type_names());
	for (char *save = NULL, *n = strtok_r(names, ", ", &save); n;
	     n = strtok_r(NULL, ", ", &save))
		if (task_type_find(n))
			type_keys_list(fn, arg, task_type_find(n));
}

/* ---- memory ---- */

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		abort();
	return q;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xrealloc(NULL, n), s, n);
}

/* Room for element n of an array of n elements whose capacity is implied:
 * 4, then the next power of two; so appending is amortised O(1). */
static void *grow_pow2(void *p, size_t n, size_t size)
{
	if (n == 0)
		return xrealloc(p, 4 * size);
	if (n >= 4 && (n & (n - 1)) == 0)
		return xrealloc(p, 2 * n * size);
	return p;
}

/* ---- name index ---- */

/* FNV-1a, then a full avalanche (FNV's low bits alone cluster under
 * linear probing). */
static size_t name_hash(const char *name)
{
	uint64_t h = 14695981039346656037ULL;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return (size_t)h;
}

static void name_slot_insert(name_index *ix, name_slot slot)
{
	size_t mask = ix->cap - 1;
	size_t i = name_hash(slot.name) & mask;
	while (ix->slots[i].name)
		i = (i + 1) & mask;
	ix->slots[i] = slot;
	ix->count++;
}

/* Add a name that is not in ix yet. */
static void name_index_put(name_index *ix, const char *name, size_t value)
{
	if ((ix->count + 1) * 2 > ix->cap) {
		name_index bigger = {.cap = ix->cap ? ix->cap * 2 : NAME_INDEX_MIN};
		bigger.slots = xrealloc(NULL, bigger.cap * sizeof *bigger.slots);
		memset(bigger.slots, 0, bigger.cap * sizeof *bigger.slots);
		for (size_t i = 0; i < ix->cap; i++)
			if (ix->slots[i].name)
				name_slot_insert(&bigger, ix->slots[i]);
		free(ix->slots);
		*ix = bigger;
	}
	name_slot_insert(ix, (name_slot){.name = name, .value = value});
}

static bool name_index_get(const name_index *ix, const char *name, size_t *value)
{
	if (ix->cap == 0)
		return false;
	size_t mask = ix->cap - 1;
	for (size_t i = name_hash(name) & mask; ix->slots[i].name; i = (i + 1) & mask) {
		const name_slot *s = &ix->slots[i];
		if (strcmp(s->name, name) == 0) {
			*value = s->value;
			return true;
		}
	}
	return false;
}

static void name_index_free(name_index *ix)
{
	free(ix->slots);
	*ix = (name_index){0};
}

/* Empty, in O(the size it grew to since the last reset): a big table is
 * dropped, a small one wiped. */
static void name_index_reset(name_index *ix)
{
	if (ix->cap > NAME_INDEX_MIN)
		name_index_free(ix);
	else if (ix->count > 0)
		memset(ix->slots, 0, ix->cap * sizeof *ix->slots);
	ix->count = 0;
}

static void names_free(char **names)
{
	for (size_t i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
}

/* ---- errors ---- */

static void load_error_add(loader *ld, int line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Messages echo what the file says: keep them one printable UTF-8 line. */
static void message_sanitize(char *msg)
{
	unsigned char *p = (unsigned char *)msg;
	while (*p) {
		if (*p < 0x80) {
			if (*p < 0x20 || *p == 0x7f)
				*p = '?';
			p++;
			continue;
		}
		int n = utf8_seq(p);
		if (n < 0)
			*p++ = '?';
		else
			p += n;
	}
}

static void load_error_add(loader *ld, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (ld->nerrs >= CONFIG_MAX_ERRORS) {
		ld->too_many = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	message_sanitize(msg);
	ld->errs = xrealloc(ld->errs, (ld->nerrs + 1) * sizeof *ld->errs);
	ld->errs[ld->nerrs] = (load_error){.line = line, .seq = ld->nerrs, .msg = xstrdup(msg)};
	ld->nerrs++;
}

static bool load_error_at(const loader *ld, int line)
{
	for (size_t i = 0; i < ld->nerrs; i++)
		if (ld->errs[i].line == line)
			return true;
	return false;
}

static int load_error_cmp(const void *a, const void *b)
{
	const load_error *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void errors_push(config_errors *errs, char *line)
{
	errs->lines = xrealloc(errs->lines, (errs->count + 1) * sizeof *errs->lines);
	errs->lines[errs->count++] = line;
}

static char *format_line(const char *path, int line, const char *msg)
{
	int n = line > 0 ? snprintf(NULL, 0, "%s:%d: %s", path, line, msg)
	                 : snprintf(NULL, 0, "%s: %s", path, msg);
	char *s = xrealloc(NULL, (size_t)n + 1);
	if (line > 0)
		snprintf(s, (size_t)n + 1, "%s:%d: %s", path, line, msg);
	else
		snprintf(s, (size_t)n + 1, "%s: %s", path, msg);
	return s;
}

/* Move the collected errors, in line order, into errs (which may be NULL). */
static void load_errors_flush(loader *ld, config_errors *errs)
{
	if (ld->nerrs > 1)
		qsort(ld->errs, ld->nerrs, sizeof *ld->errs, load_error_cmp);
	for (size_t i = 0; i < ld->nerrs; i++) {
		if (errs)
			errors_push(errs, format_line(ld->path, ld->errs[i].line, ld->errs[i].msg));
		free(ld->errs[i].msg);
	}
	if (errs && ld->too_many)
		errors_push(errs, format_line(ld->path, 0, "too many errors; stopped after 100"));
	free(ld->errs);
	ld->errs = NULL;
	ld->nerrs = 0;
}

void config_errors_free(config_errors *errs)
{
	if (errs == NULL)
		return;
	for (size_t i = 0; i < errs->count; i++)
		free(errs->lines[i]);
	free(errs->lines);
	errs->lines = NULL;
	errs->count = 0;
}

/* ---- small parsers ---- */

int config_parse_bool(const char *value, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1", NULL};
	static const char *const no[] = {"false", "no", "off", "0", NULL};

	if (value == NULL)
		return -1;
	for (size_t i = 0; yes[i]; i++) {
		if (strcasecmp(value, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(value, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

int config_parse_int(const char *value, long min, long max, long *out)
{
	char *end;
	long v;

	if (value == NULL || !(isdigit((unsigned char)*value) || *value == '-' || *value == '+'))
		return -1;
	errno = 0;
	v = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Levenshtein distance, ignoring case; both strings are short (one line). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t *row = xrealloc(NULL, (lb + 1) * sizeof *row);

	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost = tolower((unsigned char)a[i - 1]) !=
			              tolower((unsigned char)b[j - 1]);
			size_t best = diag + cost;
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	size_t d = row[lb];
	free(row);
	return d;
}

/* The candidate closest to word, if it is a plausible typo of it. */
static const char *suggest(const char *word, const char *const *cands, size_t n)
{
	const char *best = NULL;
	size_t best_d = 3;

	for (size_t i = 0; i < n; i++) {
		size_t d = edit_distance(word, cands[i]);
		if (d < best_d && d * 3 <= strlen(word)) {
			best = cands[i];
			best_d = d;
		}
	}
	return best;
}

static const char *suggest_key(const char *word, const key_spec *keys)
{
	const char *names[32];
	size_t n = 0;

	for (; keys->name && n < 32; keys++)
		names[n++] = keys->name;
	return suggest(word, names, n);
}

static bool name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > CONFIG_NAME_MAX)
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
	       n;
}

static bool choice_match(const char *choices, const char *value)
{
	size_t vlen = strlen(value);
	for (const char *p = choices; *p;) {
		size_t len = strcspn(p, "|");
		if (len == vlen && strncasecmp(p, value, len) == 0)
			return true;
		p += len + (p[len] == '|');
	}
	return false;
}

static bool url_valid(const char *v)
{
	if (strncmp(v, "https://", 8) == 0)
		return v[8] != '\0';
	if (strncmp(v, "http://", 7) == 0)
		return v[7] != '\0';
	return false;
}

/* host:port, host may be [ipv6]. */
static bool listen_valid(const char *v)
{
	const char *colon = strrchr(v, ':');
	long port;

	if (colon == NULL || colon == v)
		return false;
	if (v[0] == '[' && colon[-1] != ']')
		return false;
	return config_parse_int(colon + 1, 1, 65535, &port) == 0;
}

static bool int_list_valid(const char *v)
{
	char item[64];
	long n;

	for (const char *p = v;; p++) {
		size_t len = strcspn(p, ",");
		while (len && isspace((unsigned char)*p)) {
			p++;
			len--;
		}
		while (len && isspace((unsigned char)p[len - 1]))
			len--;
		if (len == 0 || len >= sizeof item)
			return false;
		memcpy(item, p, len);
		item[len] = '\0';
		if (config_parse_int(item, -0x7fffffffffffffffL, 0x7fffffffffffffffL, &n) != 0)
			return false;
		p = strchr(p, ',');
		if (p == NULL)
			return true;
	}
}

/* A variable name; with prefix_ok also "PREFIX*" (and "*"). */
static bool env_name_valid(const char *s, size_t len, bool prefix_ok)
{
	if (prefix_ok && len > 0 && s[len - 1] == '*')
		len--;
	else if (len == 0)
		return false;
	if (len > 0 && isdigit((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

/* "A, B_*" (commas and/or blanks) into a NULL-terminated array; NULL if an
 * item is not a name. */
static char **env_list_parse(const char *v)
{
	size_t n = 0;
	char **out = xrealloc(NULL, sizeof *out);

	for (const char *p = v; *p;) {
		size_t len = strcspn(p, ", \t");
		if (len == 0) {
			p++;
			continue;
		}
		if (!env_name_valid(p, len, true)) {
			out[n] = NULL;
			names_free(out);
			return NULL;
		}
		out = xrealloc(out, (n + 2) * sizeof *out);
		out[n] = xrealloc(NULL, len + 1);
		memcpy(out[n], p, len);
		out[n++][len] = '\0';
		p += len;
	}
	out[n] = NULL;
	return out;
}

/* ---- pass 1: reading ---- */

static config_section *section_cur(loader *ld)
{
	return ld->cur >= 0 ? &ld->cfg->sections[ld->cur] : NULL;
}

static void section_open(loader *ld, const char *name)
{
	config *cfg = ld->cfg;
	const config_section *prev = config_section_find(cfg, name);

	if (prev) {
		load_error_add(ld, ld->lineno, "duplicate section [%s] (first at line %d)", name,
		               prev->line);
		ld->cur = SECTION_SKIP;
		return;
	}
	cfg->sections = grow_pow2(cfg->sections, cfg->nsections, sizeof *cfg->sections);
	cfg->sections[cfg->nsections] = (config_section){.name = xstrdup(name), .line = ld->lineno};
	name_index_put(&cfg->index->sections, cfg->sections[cfg->nsections].name, cfg->nsections);
	ld->cur = (long)cfg->nsections++;
}

/* A "[name]" line (start points at '['); rejects what inih would accept
 * silently (text after the ']'). */
static void header_parse(loader *ld, char *start)
{
	char *end = strchr(start, ']');
	char *rest, *name = start + 1;

	ld->headers = grow_pow2(ld->headers, ld->nheaders, sizeof *ld->headers);
	ld->headers[ld->nheaders++] = ld->lineno;
	name_index_reset(&ld->keys); /* a section's keys all come before the next header */
	if (end == NULL) {
		load_error_add(ld, ld->lineno, "syntax error: section header without ']'");
		ld->cur = SECTION_SKIP;
		return;
	}
	rest = end + 1;
	rest += strspn(rest, " \t");
	if (*rest != '\0' && *rest != ';' && *rest != '#') {
		load_error_add(ld, ld->lineno, "syntax error: unexpected text after ']'");
		ld->cur = SECTION_SKIP;
		return;
	}
	*end = '\0';
	name += strspn(name, " \t");
	while (end > name && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (*name == '\0') {
		load_error_add(ld, ld->lineno, "syntax error: empty section name");
		ld->cur = SECTION_SKIP;
		return;
	}
	section_open(ld, name);
}

/* inih's rule: a key line has '=' or ':' before any inline comment (a ';'
 * after whitespace). */
static bool key_line(const char *s)
{
	bool was_space = false;
	for (; *s; s++) {
		if (*s == '=' || *s == ':')
			return true;
		if (was_space && *s == ';')
			return false;
		was_space = isspace((unsigned char)*s);
	}
	return false;
}

/* Read one physical line into ld->buf (at most CONFIG_LINE_CAP - 1 bytes
 * kept, the rest counted in *len). 0, or -1 at end of file or on error. */
static int line_fetch(loader *ld, size_t *len, size_t *bad_at)
{
	size_t n = 0;
	int c;

	*bad_at = (size_t)-1;
	while ((c = getc(ld->fp)) != EOF && c != '\n') {
		if (++ld->bytes > CONFIG_MAX_BYTES) {
			ld->too_big = true; /* it grew after the size check */
			return -1;
		}
		if (n < CONFIG_LINE_CAP - 1) {
			ld->buf[n] = (char)c;
			if (*bad_at == (size_t)-1 && ((c < 0x20 && c != '\t') || c == 0x7f))
				*bad_at = n;
		}
		n++;
	}
	if (c == '\n' && ++ld->bytes > CONFIG_MAX_BYTES) {
		ld->too_big = true;
		return -1;
	}
	if (c == EOF && n == 0)
		return -1;
	if (n > 0 && n < CONFIG_LINE_CAP && ld->buf[n - 1] == '\r') {
		n--;
		if (*bad_at == n)
			*bad_at = (size_t)-1;
	}
	ld->buf[n < CONFIG_LINE_CAP ? n : CONFIG_LINE_CAP - 1] = '\0';
	*len = n;
	return 0;
}

/* Checks the line in ld->buf; returns where the text inih should see starts,
 * or NULL if the line was reported (or is a header, a comment, blank). */
static char *line_check(loader *ld, size_t len, size_t bad_at, int max)
{
	char *start = ld->buf;

	if (bad_at != (size_t)-1) {
		unsigned char c = (unsigned char)ld->buf[bad_at];
		load_error_add(ld, ld->lineno,
		               c ? "control character 0x%02x in column %zu (is this a text file?)"
		                 : "NUL byte (0x%02x) in column %zu (is this a text file?)",
		               c, bad_at + 1);
		return NULL;
	}
	if (len > (size_t)max) {
		load_error_add(ld, ld->lineno, "line too long (%zu characters; at most %d)", len,
		               max);
		return NULL;
	}
	if (ld->lineno == 1 && strncmp(start, "\xef\xbb\xbf", 3) == 0)
		start += 3;
	start += strspn(start, " \t");
	if (*start == '\0' || *start == ';' || *start == '#')
		return NULL;
	if (*start == '[') {
		header_parse(ld, start);
		return NULL;
	}
	if (!key_line(start)) {
		load_error_add(ld, ld->lineno,
		               "syntax error: expected 'key = value', '[section]' or a comment");
		return NULL;
	}
	return start;
}

/* The ini_reader: one physical line per call, so inih's line numbers and
 * ours agree; rejected lines become blank lines. */
static char *config_read_line(char *str, int num, void *stream)
{
	loader *ld = stream;
	size_t len, bad_at;
	char *start;

	if (num < 2)
		return NULL;
	if (ld->nerrs >= CONFIG_MAX_ERRORS) {
		int c = getc(ld->fp);
		ld->too_many = c != EOF;
		return NULL;
	}
	if (line_fetch(ld, &len, &bad_at) != 0)
		return NULL;
	ld->lineno++;
	start = line_check(ld, len, bad_at, num - 1);
	if (start == NULL) {
		str[0] = '\0';
		return str;
	}
	memcpy(str, start, strlen(start) + 1);
	return str;
}

static int config_handle_key(void *user, const char *section, const char *name, const char *value)
{
	loader *ld = user;
	config_section *sec = section_cur(ld);
	size_t prev;

	(void)section; /* inih's copy is truncated at 50 bytes; ours is not */
	if (ld->cur == SECTION_SKIP)
		return 1;
	if (sec == NULL) {
		load_error_add(ld, ld->lineno, "key '%s' outside of any section", name);
		return 1;
	}
	if (*name == '\0') {
		load_error_add(ld, ld->lineno, "[%s] syntax error: empty key name", sec->name);
		return 1;
	}
	if (name_index_get(&ld->keys, name, &prev)) {
		load_error_add(ld, ld->lineno, "[%s] duplicate key '%s' (first at line %d)",
		               sec->name, name, sec->entries[prev].line);
		return 1;
	}
	sec->entries = grow_pow2(sec->entries, sec->nentries, sizeof *sec->entries);
	sec->entries[sec->nentries] =
	        (config_entry){.key = xstrdup(name), .value = xstrdup(value), .line = ld->lineno};
	name_index_put(&ld->keys, sec->entries[sec->nentries].key, sec->nentries);
	sec->nentries++;
	return 1;
}

static void config_read(loader *ld)
{
	int rc = ini_parse_stream(config_read_line, ld, config_handle_key, ld);

	if (ld->too_big)
		load_error_add(ld, 0, "cannot read: the file grew past %d MiB while being read",
		               CONFIG_MAX_BYTES >> 20);
	else if (ferror(ld->fp))
		load_error_add(ld, 0, "cannot read: %s", strerror(errno));
	else if (rc > 0 && !load_error_at(ld, rc))
		load_error_add(ld, rc, "syntax error");
	else if (rc < 0)
		load_error_add(ld, 0, "cannot parse (inih error %d)", rc);
	if (ld->cfg->nsections == 0 && ld->nerrs == 0)
		load_error_add(ld, 0, "no sections found (an empty file?)");
}

/* ---- pass 2: validation ---- */

static bool key_is_secret(const char *key)
{
	for (size_t i = 0; secret_keys[i]; i++)
		if (strcasecmp(key, secret_keys[i]) == 0)
			return true;
	return false;
}

static const key_spec *spec_find(const key_spec *keys, const char *name)
{
	for (; keys->name; keys++)
		if (strcmp(keys->name, name) == 0)
			return keys;
	return NULL;
}

/* Does the section take key: one of keys, or of its task type's (more)? */
static bool section_takes(const key_spec *keys, const config_key_doc *more, const char *key)
{
	if (spec_find(keys, key))
		return true;
	for (; more && more->name; more++)
		if (strcmp(more->name, key) == 0)
			return true;
	return false;
}

/* A secret in the file: the message names only the keys the section really
 * takes (KEY_file, KEY_env), never one it would refuse as unknown. */
static void secret_error(loader *ld, const config_section *sec, const config_entry *e,
                         const key_spec *keys, const config_key_doc *more)
{
	char file[96], env[96];
	snprintf(file, sizeof file, "%s_file", e->key);
	snprintf(env, sizeof env, "%s_env", e->key);
	bool has_file = section_takes(keys, more, file), has_env = section_takes(keys, more, env);
	if (has_file && has_env)
		load_error_add(
		        ld, e->line,
		        "[%s] %s: put secrets in a file (%s) or the environment (%s), not in "
		        "the configuration",
		        sec->name, e->key, file, env);
	else if (has_file || has_env)
		load_error_add(ld, e->line,
		               "[%s] %s: put secrets in %s (%s), not in the configuration",
		               sec->name, e->key, has_file ? "a file" : "the environment",
		               has_file ? file : env);
	else
		load_error_add(
		        ld, e->line,
		        "[%s] %s: put secrets in a file, not in the configuration ([%s] takes "
		        "no %s or %s; see docs/configuration.md for the keys it takes)",
		        sec->name, e->key, sec->name, file, env);
}

static void unknown_key_error(loader *ld, const config_section *sec, const config_entry *e,
                              const key_spec *keys)
{
	const char *s = suggest_key(e->key, keys);
	if (s)
		load_error_add(ld, e->line, "[%s] unknown key '%s'; did you mean '%s'?", sec->name,
		               e->key, s);
	else
		load_error_add(ld, e->line, "[%s] unknown key '%s'", sec->name, e->key);
}

/* Why v is not a valid value of kind, in why; 0 if it is. */
static int value_check(const key_spec *spec, const char *v, char *why, size_t whylen)
{
	char err[256];
	long n;
	int64_t ms;
	bool b;
	log_level lvl;
	log_format fmt;

	switch (spec->kind) {
	case KV_STRING:
		return 0;
	case KV_INT:
		if (config_parse_int(v, spec->min, spec->max, &n) == 0)
			return 0;
		snprintf(why, whylen, "expected an integer from %ld to %ld, got '%s'", spec->min,
		         spec->max, v);
		return -1;
	case KV_DURATION:
		if (duration_parse(v, &ms, err, sizeof err) == 0)
			return 0;
		snprintf(why, whylen, "%s", err); /* names the value */
		return -1;
	case KV_BOOL:
		if (config_parse_bool(v, &b) == 0)
			return 0;
		snprintf(why, whylen, "expected true/false, yes/no, on/off or 1/0, got '%s'", v);
		return -1;
	case KV_ENUM:
		if (choice_match(spec->choices, v))
			return 0;
		snprintf(why, whylen, "expected one of %s, got '%s'", spec->choices, v);
		return -1;
	case KV_LEVEL:
		if (log_level_parse(v, &lvl) == 0)
			return 0;
		snprintf(why, whylen, "expected one of debug|info|warning|error|critical, got '%s'",
		         v);
		return -1;
	case KV_LOG_FORMAT:
		if (log_format_parse(v, &fmt) == 0)
			return 0;
		snprintf(why, whylen, "expected one of json|console, got '%s'", v);
		return -1;
	case KV_URL:
		if (url_valid(v))
			return 0;
		snprintf(why, whylen, "expected an http:// or https:// URL, got '%s'", v);
		return -1;
	case KV_LISTEN:
		if (listen_valid(v))
			return 0;
		snprintf(why, whylen, "expected host:port (port 1-65535), got '%s'", v);
		return -1;
	case KV_LISTEN_ANY:
		if (v[0] == '/' || listen_valid(v))
			return 0;
		snprintf(why, whylen,
		         "expected host:port (port 1-65535) or a socket path, got '%s'", v);
		return -1;
	case KV_INT_LIST:
		if (int_list_valid(v))
			return 0;
		snprintf(why, whylen, "expected a comma-separated list of integers, got '%s'", v);
		return -1;
	case KV_ENV_LIST: {
		char **names = env_list_parse(v);
		names_free(names);
		if (names)
			return 0;
		snprintf(why, whylen,
		         "expected a comma-separated list of variable names (NAME or PREFIX*), "
		         "got '%s'",
		         v);
		return -1;
	}
	}
	return 0;
}

/* Check one entry against its spec; 0, or -1 after reporting. */
static int entry_check(loader *ld, const config_section *sec, const config_entry *e,
                       const key_spec *spec)
{
	char why[512];

	if (e->value[0] == '\0') {
		if (spec->empty_ok)
			return 0;
		load_error_add(ld, e->line, "[%s] %s: value is empty", sec->name, e->key);
		return -1;
	}
	if (value_check(spec, e->value, why, sizeof why) == 0)
		return 0;
	load_error_add(ld, e->line, "[%s] %s: %s", sec->name, e->key, why);
	return -1;
}

static void section_check(loader *ld, const config_section *sec, const key_spec *keys)
{
	for (size_t i = 0; i < sec->nentries; i++) {
		const config_entry *e = &sec->entries[i];
		const key_spec *spec = spec_find(keys, e->key);

		if (key_is_secret(e->key))
			secret_error(ld, sec, e, keys, NULL);
		else if (spec == NULL)
			unknown_key_error(ld, sec, e, keys);
		else
			entry_check(ld, sec, e, spec);
	}
}

static char *path_join(const char *dir, const char *file)
{
	size_t n = strlen(dir);
	const char *sep = n > 0 && dir[n - 1] == '/' ? "" : "/";
	size_t len = n + strlen(sep) + strlen(file) + 1;
	char *s = xrealloc(NULL, len);
	snprintf(s, len, "%s%s%s", dir, sep, file);
	return s;
}

int config_path_absolute(const char *path, char *out, size_t cap)
{
	char cwd[4096];
	int n;
	if (path[0] == '\0')
		return -1;
	if (path[0] == '/') {
		n = snprintf(out, cap, "%s", path);
	} else {
		if (getcwd(cwd, sizeof cwd) == NULL)
			return -1;
		while (path[0] == '.' && path[1] == '/')
			path += 2 + strspn(path + 2, "/");
		n = snprintf(out, cap, "%s%s%s", cwd, strcmp(cwd, "/") && *path ? "/" : "", path);
	}
	return n >= 0 && (size_t)n < cap ? 0 : -1;
}

static void string_set(char **field, const config_section *sec, const char *key)
{
	const char *v = config_get(sec, key);
	if (v) {
		free(*field);
		*field = xstrdup(v);
	}
}

/* [daemon] into the typed fields; values were checked already (a bad one is
 * skipped, the load fails anyway). */
static void daemon_apply(config *cfg, const config_section *sec)
{
	long n;
	int64_t ms;
	char err[128];

	string_set(&cfg->state_dir, sec, "state_dir");
	string_set(&cfg->control_socket, sec, "control_socket");
	if (config_parse_int(config_get(sec, "max_concurrent_tasks"), 1, 1024, &n) == 0)
		cfg->max_concurrent_tasks = (int)n;
	if (config_parse_int(config_get(sec, "retention_days"), 1, 36500, &n) == 0)
		cfg->retention_days = (int)n;
	if (config_parse_int(config_get(sec, "check_history_days"), 1, 36500, &n) == 0)
		cfg->check_history_days = (int)n;
	if (config_parse_int(config_get(sec, "check_history_raw_hours"), 1, 8760, &n) == 0)
		cfg->check_history_raw_hours = (int)n;
	if (config_get(sec, "spread") &&
	    duration_parse(config_get(sec, "spread"), &ms, err, sizeof err) == 0)
		cfg->spread_ms = ms;
	if (config_get(sec, "shutdown_grace") &&
	    duration_parse(config_get(sec, "shutdown_grace"), &ms, err, sizeof err) == 0)
		cfg->shutdown_grace_ms = ms;
	if (config_parse_int(config_get(sec, "max_line_bytes"), CONFIG_LINE_BYTES_MIN,
	                     CONFIG_LINE_BYTES_MAX, &n) == 0)
		cfg->max_line_bytes = (int)n;
	if (config_get(sec, "output_drain") &&
	    duration_parse(config_get(sec, "output_drain"), &ms, err, sizeof err) == 0)
		cfg->output_drain_ms = ms;
	char **pass =
	        config_get(sec, "pass_env") ? env_list_parse(config_get(sec, "pass_env")) : NULL;
	if (pass) {
		names_free(cfg->pass_env);
		cfg->pass_env = pass;
	}
}

static void log_apply(config *cfg, const config_section *sec)
{
	string_set(&cfg->log_level, sec, "level");
	string_set(&cfg->log_format, sec, "format");
	string_set(&cfg->service_name, sec, "service");
}

/* [store] and [cluster]: db_path becomes "postgresql:<dsn>" on
 * PostgreSQL (store.h's location). */
static void store_apply(config *cfg, const config_section *store_sec,
                        const config_section *cluster_sec)
{
	const char *backend = config_get(store_sec, "backend");
	const char *dsn = config_get(store_sec, "dsn");
	cfg->store_postgresql = backend && strcasecmp(backend, "postgresql") == 0 && dsn;
	if (cfg->store_postgresql) {
		size_t n = strlen(STORE_PG_PREFIX) + strlen(dsn) + 1;
		cfg->db_path = xrealloc(NULL, n);
		snprintf(cfg->db_path, n, "%s%s", STORE_PG_PREFIX, dsn);
	} else {
		cfg->db_path = path_join(cfg->state_dir, "state.db");
	}
	string_set(&cfg->cluster_instance, cluster_sec, "instance");
	if (cfg->cluster_instance == NULL) {
		char host[256] = "";
		gethostname(host, sizeof host - 1);
		cfg->cluster_instance = xstrdup(host[0] ? host : "fleetkeeper");
	}
	char err[200];
	int64_t ms;
	cfg->failover_timeout_ms = 15000;
	if (config_get(cluster_sec, "failover_timeout") &&
	    duration_parse(config_get(cluster_sec, "failover_timeout"), &ms, err, sizeof err) == 0)
		cfg->failover_timeout_ms = ms;
}

static void defaults_finish(config *cfg)
{
	if (cfg->state_dir == NULL)
		cfg->state_dir = xstrdup("./var");
	if (cfg->control_socket == NULL)
		cfg->control_socket = path_join(cfg->state_dir, "fleetkeeper.sock");
}

static void provider_check(loader *ld, const config_section *sec)
{
	const char *name = sec->name + strlen("provider.");
	for (const section_schema *p = providers; p->name; p++) {
		if (strcmp(p->name, name) == 0) {
			section_check(ld, sec, p->keys);
			return;
		}
	}
	load_error_add(ld, sec->line, "unknown provider '%s' (known: time4vps, inventory)", name);
}

/* A key that only some notifier types take. */
static void notify_key_only(loader *ld, const config_section *sec, const char *key,
                            const char *type, const char *types)
{
	const config_entry *e = config_entry_find(sec, key);
	if (e && !choice_match(types, type))
		load_error_add(ld, e->line, "[%s] %s: not used by type %s (only by %s)", sec->name,
		               key, type, types);
}

/* The keys each notifier type requires (docs/notifications.md). */
static void notify_type_check(loader *ld, const config_section *sec, const char *type)
{
	bool has_url = config_get(sec, "url_file") != NULL;
	if (choice_match("telegram", type)) {
		if (config_get(sec, "chat_ids") == NULL)
			load_error_add(ld, sec->line, "[%s] chat_ids is required for type telegram",
			               sec->name);
		if (!config_get(sec, "token_file") && !config_get(sec, "token_env"))
			load_error_add(ld, sec->line,
			               "[%s] token_file or token_env is required for type telegram",
			               sec->name);
	} else if (choice_match("slack", type) && !has_url) {
		load_error_add(ld, sec->line, "[%s] url_file is required for type slack",
		               sec->name);
	} else if (choice_match("webhook", type)) {
		if (!has_url && config_get(sec, "api_url") == NULL)
			load_error_add(ld, sec->line,
			               "[%s] api_url or url_file is required for type webhook",
			               sec->name);
		if (config_get(sec, "secret_file") == NULL)
			load_error_add(ld, sec->line,
			               "[%s] secret_file is required for type webhook", sec->name);
	}
	notify_key_only(ld, sec, "chat_ids", type, "telegram");
	notify_key_only(ld, sec, "token_file", type, "telegram");
	notify_key_only(ld, sec, "token_env", type, "telegram");
	notify_key_only(ld, sec, "secret_file", type, "webhook");
	notify_key_only(ld, sec, "url_file", type, "slack|webhook");
	notify_key_only(ld, sec, "api_url", type, "telegram|webhook");
}

static void notify_check(loader *ld, const config_section *sec)
{
	const char *name = sec->name + strlen("notify.");
	if (!name_valid(name))
		load_error_add(ld, sec->line,
		               "[%s] invalid notifier name '%s': use 1 to %d letters, digits, "
		               "'_' or '-'",
		               sec->name, name, CONFIG_NAME_MAX);
	section_check(ld, sec, notify_keys);
	if (config_get(sec, "type") == NULL)
		load_error_add(ld, sec->line,
		               "[%s] type is required (one of: telegram, slack, webhook)",
		               sec->name);
	else if (choice_match("telegram|slack|webhook", config_get(sec, "type")))
		notify_type_check(ld, sec, config_get(sec, "type"));
}

/* [api.token.NAME]: a valid name and its token_file. */
static void api_token_check(loader *ld, const config_section *sec)
{
	const char *name = sec->name + strlen("api.token.");
	if (!name_valid(name))
		load_error_add(ld, sec->line,
		               "[%s] invalid token name '%s': use 1 to %d letters, digits, "
		               "'_' or '-'",
		               sec->name, name, CONFIG_NAME_MAX);
	section_check(ld, sec, api_token_keys);
	const char *f = config_get(sec, "token_file");
	if (f == NULL || f[0] == '\0')
		load_error_add(ld, sec->line, "[%s] token_file is required", sec->name);
}

/* ---- maintenance windows ---- */

/* "web-*, db-1" (commas and/or blanks) into a NULL-terminated array. */
static char **pattern_list_parse(const char *v, size_t *n)
{
	char **out = xrealloc(NULL, sizeof *out);
	*n = 0;
	for (const char *p = v; *p;) {
		size_t len = strcspn(p, ", \t");
		if (len == 0) {
			p++;
			continue;
		}
		out = xrealloc(out, (*n + 2) * sizeof *out);
		out[*n] = xrealloc(NULL, len + 1);
		memcpy(out[*n], p, len);
		out[(*n)++][len] = '\0';
		p += len;
	}
	out[*n] = NULL;
	return out;
}

static void maintenance_when(loader *ld, maintenance_rule *r, const config_section *sec)
{
	char err[256];
	const config_entry *e = config_entry_find(sec, "schedule");
	if (e == NULL) {
		load_error_add(ld, sec->line, "[%s] schedule is required (a cron expression)",
		               sec->name);
	} else if (schedule_parse(&r->when, e->value, err, sizeof err) != 0) {
		load_error_add(ld, e->line, "[%s] schedule: %s", sec->name, err);
	} else if (r->when.kind != SCHEDULE_CRON) {
		load_error_add(ld, e->line,
		               "[%s] schedule: a window opens at cron times (e.g. 0 2 * * 0), "
		               "not every interval",
		               sec->name);
	} else if (!schedule_can_fire(&r->when)) {
		load_error_add(ld, e->line, "[%s] schedule '%s' can never fire", sec->name,
		               e->value);
	}
	const char *zone = config_get(sec, "tz");
	if (tz_load(zone, &r->zone, err, sizeof err) != 0)
		load_error_add(ld, sec->line, "[%s] tz: %s", sec->name, err);
}

static void maintenance_build(loader *ld, maintenance_rule *r, const config_section *sec)
{
	const char *name = sec->name + strlen("maintenance.");
	memset(r, 0, sizeof *r);
	r->name = xstrdup(name);
	if (!name_valid(name))
		load_error_add(ld, sec->line,
		               "[%s] invalid window name '%s': use 1 to %d letters, digits, "
		               "'_' or '-'",
		               sec->name, name, CONFIG_NAME_MAX);
	section_check(ld, sec, maintenance_keys);
	const char *servers = config_get(sec, "servers");
	r->servers = pattern_list_parse(servers ? servers : "", &r->nservers);
	if (r->nservers == 0)
		load_error_add(ld, sec->line,
		               "[%s] servers is required (handles or patterns: web-*, db-1)",
		               sec->name);
	maintenance_when(ld, r, sec);
	const char *duration = config_get(sec, "duration");
	int64_t ms = 0;
	char err[128];
	if (duration == NULL)
		load_error_add(ld, sec->line, "[%s] duration is required (e.g. 2h)", sec->name);
	else if (duration_parse(duration, &ms, err, sizeof err) == 0 && ms < 60000)
		load_error_add(ld, sec->line, "[%s] duration: at least 1m", sec->name);
	r->duration = ms / 1000;
	const char *reason = config_get(sec, "reason");
	r->reason = reason && reason[0] ? xstrdup(reason) : NULL;
}

static void maintenance_rule_free(maintenance_rule *r)
{
	free(r->name);
	names_free(r->servers);
	free(r->reason);
}

/* ---- tasks ---- */

static const task_type *task_type_resolve(loader *ld, const config_section *sec, const char *name)
{
	const config_entry *e = config_entry_find(sec, "type");
	const task_type *type;

	if (e == NULL) {
		type = task_type_find(name);
		if (type == NULL)
			load_error_add(ld, sec->line, "[%s] type is required (one of: %s)",
			               sec->name, task_type_names());
		return type;
	}
	if (e->value[0] == '\0') {
		load_error_add(ld, e->line, "[%s] type: value is empty (one of: %s)", sec->name,
		               task_type_names());
		return NULL;
	}
	type = task_type_find(e->value);
	if (type == NULL)
		load_error_add(ld, e->line, "[%s] type: unknown task type '%s' (known: %s)",
		               sec->name, e->value, task_type_names());
	return type;
}

static int task_schedule_set(loader *ld, task_config *t, const config_section *sec,
                             const config_entry *e)
{
	char err[256];

	if (schedule_parse(&t->sched, e->value, err, sizeof err) != 0) {
		load_error_add(ld, e->line, "[%s] schedule: %s", sec->name, err);
		return -1;
	}
	if (!schedule_can_fire(&t->sched)) {
		load_error_add(ld, e->line, "[%s] schedule '%s' can never fire", sec->name,
		               e->value);
		return -1;
	}
	t->schedule_expr = xstrdup(e->value);
	return 0;
}

/* One checked common key into t; 0, or -1 after reporting. */
static int task_common_set(loader *ld, task_config *t, const config_section *sec,
                           const config_entry *e)
{
	const char *k = e->key, *v = e->value;
	char err[256];
	long n;

	if (strcmp(k, "schedule") == 0)
		return task_schedule_set(ld, t, sec, e);
	if (strcmp(k, "tz") == 0) {
		if (tz_load(v, &t->zone, err, sizeof err) == 0)
			return 0;
		load_error_add(ld, e->line, "[%s] tz: %s", sec->name, err);
		return -1;
	}
	if (strcmp(k, "enabled") == 0)
		return config_parse_bool(v, &t->enabled);
	if (strcmp(k, "persistent") == 0)
		return config_parse_bool(v, &t->persistent);
	if (strcmp(k, "run_on_start") == 0)
		return config_parse_bool(v, &t->run_on_start);
	if (strcmp(k, "timeout") == 0)
		return duration_parse(v, &t->timeout_ms, err, sizeof err);
	if (strcmp(k, "jitter") == 0)
		return duration_parse(v, &t->jitter_ms, err, sizeof err);
	if (strcmp(k, "overlap") == 0)
		t->overlap = strcasecmp(v, "queue") == 0 ? OVERLAP_QUEUE : OVERLAP_SKIP;
	if (strcmp(k, "failure_alert_after") == 0 && config_parse_int(v, 0, 1000, &n) == 0)
		t->failure_alert_after = (int)n;
	if (strcmp(k, "retries") == 0 && config_parse_int(v, 0, 100, &n) == 0)
		t->retries = (int)n;
	if (strcmp(k, "retry_backoff") == 0)
		return duration_parse(v, &t->retry_backoff_ms, err, sizeof err);
	if (strcmp(k, "retry_backoff_max") == 0)
		return duration_parse(v, &t->retry_backoff_max_ms, err, sizeof err);
	return 0;
}

/* A key the runner does not know: the type's. 0, or -1 after reporting. */
static int task_type_key(loader *ld, task_config *t, const config_section *sec,
                         const config_entry *e)
{
	const char *hint = NULL;
	char err[512];

	if (t->type->config_key == NULL) {
		hint = suggest_key(e->key, task_keys);
		load_error_add(ld, e->line, "[%s] unknown key '%s'%s%s%s", sec->name, e->key,
		               hint ? "; did you mean '" : "", hint ? hint : "", hint ? "'?" : "");
		return -1;
	}
	if (e->value[0] == '\0') {
		load_error_add(ld, e->line, "[%s] %s: value is empty", sec->name, e->key);
		return -1;
	}
	snprintf(err, sizeof err, "invalid value");
	if (t->type->config_key(&t->params, e->key, e->value, err, sizeof err) == 0)
		return 0;
	if (strncmp(err, "unknown key", 11) == 0)
		hint = suggest_key(e->key, task_keys);
	load_error_add(ld, e->line, "[%s] %s: %s%s%s%s", sec->name, e->key, err,
	               hint ? "; did you mean '" : "", hint ? hint : "", hint ? "'?" : "");
	return -1;
}

/* Every key of the task section, each problem reported. */
static void task_keys_apply(loader *ld, task_config *t, const config_section *sec)
{
	for (size_t i = 0; i < sec->nentries; i++) {
		const config_entry *e = &sec->entries[i];
		const key_spec *spec = spec_find(task_keys, e->key);

		if (key_is_secret(e->key))
			secret_error(ld, sec, e, task_keys, t->type ? t->type->keys : NULL);
		else if (spec && strcmp(e->key, "type") == 0)
			continue; /* task_type_resolve */
		else if (spec && entry_check(ld, sec, e, spec) == 0 && e->value[0])
			task_common_set(ld, t, sec, e);
		else if (spec == NULL && t->type)
			task_type_key(ld, t, sec, e);
	}
}

/* True if an error was reported between the header of sec and the next
 * header line (valid or not). */
static bool section_has_errors(const loader *ld, const config_section *sec)
{
	int end = 0x7fffffff;
	size_t lo = 0, hi = ld->nheaders; /* the first header after sec's */

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ld->headers[mid] > sec->line)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (lo < ld->nheaders)
		end = ld->headers[lo];
	for (size_t i = 0; i < ld->nerrs; i++) /* at most CONFIG_MAX_ERRORS */
		if (ld->errs[i].line >= sec->line && ld->errs[i].line < end)
			return true;
	return false;
}

static void task_build(loader *ld, task_config *t, const config_section *sec)
{
	const char *name = sec->name + strlen("task.");
	char err[512];

	*t = (task_config){.name = xstrdup(name),
	                   .line = sec->line,
	                   .enabled = true,
	                   .retry_backoff_ms = 30 * 1000,
	                   .retry_backoff_max_ms = 10 * 60 * 1000,
	                   .section = sec};
	if (!name_valid(name))
		load_error_add(
		        ld, sec->line,
		        "[%s] invalid task name '%s': use 1 to %d letters, digits, '_' or '-'",
		        sec->name, name, CONFIG_NAME_MAX);
	t->type = task_type_resolve(ld, sec, name);
	task_keys_apply(ld, t, sec);
	if (t->type == NULL || section_has_errors(ld, sec))
		return; /* config_finish would only repeat what was said */
	if (t->zone == NULL && tz_load(NULL, &t->zone, err, sizeof err) != 0)
		load_error_add(ld, sec->line, "[%s] cannot load the local time zone: %s", sec->name,
		               err);
	snprintf(err, sizeof err, "invalid configuration");
	if (t->type->config_finish && t->type->config_finish(&t->params, sec, err, sizeof err) != 0)
		load_error_add(ld, sec->line, "[%s] %s", sec->name, err);
}

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void unknown_section_error(loader *ld, const config_section *sec)
{
	static const char *const plain[] = {"daemon",  "log",      "metrics", "ssh",   "github",
	                                    "ansible", "recovery", "api",     "store", "cluster"};
	static const char *const prefixes[] = {"provider", "notify", "task", "maintenance",
	                                       "api.token"};
	const char *dot = strchr(sec->name, '.');
	const char *s;
	char head[64];

	if (dot == NULL) {
		s = suggest(sec->name, plain, sizeof plain / sizeof plain[0]);
		if (s)
			load_error_add(ld, sec->line, "unknown section [%s]; did you mean [%s]?",
			               sec->name, s);
		else
			load_error_add(ld, sec->line, "unknown section [%s]", sec->name);
		return;
	}
	snprintf(head, sizeof head, "%.*s", (int)(dot - sec->name), sec->name);
	s = suggest(head, prefixes, sizeof prefixes / sizeof prefixes[0]);
	if (s)
		load_error_add(ld, sec->line, "unknown section [%s]; did you mean [%s%s]?",
		               sec->name, s, dot);
	else
		load_error_add(ld, sec->line, "unknown section [%s]", sec->name);
}

/* [store]: a dsn with backend = postgresql, never with a password in it
 * (store_dsn_check). */
static void store_section_check(loader *ld, const config_section *sec)
{
	const config_entry *backend = config_entry_find(sec, "backend");
	const config_entry *dsn = config_entry_find(sec, "dsn");
	bool pg = backend && strcasecmp(backend->value, "postgresql") == 0;
	char err[300];

	if (pg && !dsn)
		load_error_add(ld, backend->line,
		               "[%s] backend = postgresql needs dsn = (a libpq connection string, "
		               "e.g. dsn = host=db.example dbname=fleetkeeper user=fleetkeeper)",
		               sec->name);
	else if (dsn && !pg)
		load_error_add(ld, dsn->line, "[%s] dsn: only used with backend = postgresql",
		               sec->name);
	else if (dsn && store_dsn_check(dsn->value, err, sizeof err) != 0)
		load_error_add(ld, dsn->line, "[%s] dsn: %s", sec->name, err);
}

/* [github]: a token or a GitHub App (github_app.h), and what an app
 * needs. The key file itself is checked by check-config
 * (github_app_config_check): a reload must not depend on reading it. */
static void github_check(loader *ld, const config_section *sec)
{
	const config_entry *app = config_entry_find(sec, "app_id");
	const config_entry *tok = config_entry_find(sec, "token_file");
	const char *v;

	if (tok == NULL)
		tok = config_entry_find(sec, "token_env");
	if (app == NULL) {
		static const char *const app_only[] = {"private_key_file", "installation_id"};
		for (size_t i = 0; i < 2; i++) {
			const config_entry *e = config_entry_find(sec, app_only[i]);
			if (e)
				load_error_add(ld, e->line, "[%s] %s: only used with app_id",
				               sec->name, app_only[i]);
		}
		return;
	}
	v = app->value;
	if (v[0] && !github_app_id_ok(v))
		load_error_add(ld, app->line,
		               "[%s] app_id: '%s' is not an App ID or Client ID (1 to 64 letters, "
		               "digits, '.', '_' or '-')",
		               sec->name, v);
	if (tok)
		load_error_add(ld, tok->line,
		               "[%s] %s: authenticate with a token or as a GitHub App (app_id), "
		               "not both",
		               sec->name, tok->key);
	if (config_get(sec, "private_key_file") == NULL)
		load_error_add(ld, app->line,
		               "[%s] app_id needs private_key_file (the app's private key, PEM)",
		               sec->name);
	if (config_get(sec, "installation_id") == NULL && config_get(sec, "org") == NULL &&
	    config_get(sec, "user") == NULL)
		load_error_add(ld, app->line,
		               "[%s] app_id needs installation_id, or org (or user) to find the "
		               "app's installation",
		               sec->name);
}

static void section_validate(loader *ld, const config_section *sec)
{
	config *cfg = ld->cfg;

	for (const section_schema *p = plain_sections; p->name; p++) {
		if (strcmp(p->name, sec->name) == 0) {
			section_check(ld, sec, p->keys);
			if (p->keys == github_keys)
				github_check(ld, sec);
			if (p->keys == store_keys)
				store_section_check(ld, sec);
			return;
		}
	}
	if (has_prefix(sec->name, "provider."))
		provider_check(ld, sec);
	else if (has_prefix(sec->name, "notify."))
		notify_check(ld, sec);
	else if (has_prefix(sec->name, "task."))
		task_build(ld, &cfg->tasks[cfg->ntasks++], sec);
	else if (has_prefix(sec->name, "maintenance."))
		maintenance_build(ld, &cfg->maintenance[cfg->nmaintenance++], sec);
	else if (has_prefix(sec->name, "api.token."))
		api_token_check(ld, sec);
	else
		unknown_section_error(ld, sec);
}

/* token_env = NAME: a key naming the variable that holds a secret. */
static bool key_names_env(const char *key)
{
	size_t n = strlen(key);
	return n > 4 && strcmp(key + n - 4, "_env") == 0 && strcmp(key, "pass_env") != 0;
}

static bool names_contain(char *const *names, const char *name)
{
	for (size_t i = 0; names && names[i]; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

/* A `*_env` key names the variable holding a secret: a plain name, not one
 * of the names every child inherits (a load removes it from the
 * environment, which would take PATH or HOME away from every child) and
 * not a pass_env name (a contradiction). A pass_env prefix that matches it
 * is fine: the variable is gone from the environment before any child. */
static void env_keys_check(loader *ld, const config_section *sec)
{
	for (size_t i = 0; i < sec->nentries; i++) {
		const config_entry *e = &sec->entries[i];
		const char *v = e->value;

		if (!key_names_env(e->key) || v[0] == '\0' || load_error_at(ld, e->line))
			continue;
		if (!env_name_valid(v, strlen(v), false))
			load_error_add(ld, e->line,
			               "[%s] %s: '%s' is not an environment variable name",
			               sec->name, e->key, v);
		else if (proc_env_inherited(v, NULL) || names_contain(ld->cfg->pass_env, v))
			load_error_add(
			        ld, e->line,
			        "[%s] %s: %s is passed to every child process (the fixed list "
			        "or [daemon] pass_env); keep the secret in a variable of its own",
			        sec->name, e->key, v);
	}
}

static void config_validate(loader *ld)
{
	config *cfg = ld->cfg;
	size_t ntasks = 0, nmaintenance = 0;

	for (size_t i = 0; i < cfg->nsections; i++) {
		ntasks += has_prefix(cfg->sections[i].name, "task.");
		nmaintenance += has_prefix(cfg->sections[i].name, "maintenance.");
	}
	cfg->tasks = xrealloc(NULL, ntasks * sizeof *cfg->tasks);
	cfg->maintenance = xrealloc(NULL, (nmaintenance + 1) * sizeof *cfg->maintenance);
	for (size_t i = 0; i < cfg->nsections; i++)
		section_validate(ld, &cfg->sections[i]);
	for (size_t i = 0; i < cfg->ntasks; i++)
		name_index_put(&cfg->index->tasks, cfg->tasks[i].name, i);
	daemon_apply(cfg, config_section_find(cfg, "daemon"));
	log_apply(cfg, config_section_find(cfg, "log"));
	defaults_finish(cfg);
	store_apply(cfg, config_section_find(cfg, "store"), config_section_find(cfg, "cluster"));
	for (size_t i = 0; i < cfg->nsections; i++)
		env_keys_check(ld, &cfg->sections[i]);
}

/* ---- the environment (process-wide) ---- */

typedef struct {
	char *name;
	char *value;
} kept_env;

/* Append-only: a kept value is never freed, so what config_env returned
 * stays valid; a later take of the same name is found first. */
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static kept_env *kept;
static size_t nkept;

/* Move the variable out of the environment: keep its value (the first, as
 * getenv does), wipe the bytes of every NAME=... string (the original block
 * is what /proc/PID/environ shows, also in forked children) and unsetenv. */
static void env_take(const char *name)
{
	size_t n = strlen(name);
	char *value = NULL;

	for (char **e = environ; e && *e; e++) {
		if (strncmp(*e, name, n) != 0 || (*e)[n] != '=')
			continue;
		if (value == NULL)
			value = xstrdup(*e + n + 1);
		explicit_bzero(*e + n + 1, strlen(*e + n + 1));
	}
	if (value == NULL)
		return; /* not set, or taken by an earlier load */
	unsetenv(name);
	pthread_mutex_lock(&kept_lock);
	kept = xrealloc(kept, (nkept + 1) * sizeof *kept);
	kept[nkept++] = (kept_env){.name = xstrdup(name), .value = value};
	pthread_mutex_unlock(&kept_lock);
}

static void config_env_apply(const config *cfg)
{
	for (size_t i = 0; i < cfg->nsections; i++) {
		const config_section *sec = &cfg->sections[i];
		for (size_t j = 0; j < sec->nentries; j++)
			if (key_names_env(sec->entries[j].key) && sec->entries[j].value[0])
				env_take(sec->entries[j].value);
	}
	if (proc_env_pass((const char *const *)cfg->pass_env) != 0)
		abort(); /* out of memory */
}

const char *config_env(const char *name)
{
	const char *v = NULL;

	if (name == NULL)
		return NULL;
	pthread_mutex_lock(&kept_lock);
	for (size_t i = nkept; v == NULL && i-- > 0;)
		if (strcmp(kept[i].name, name) == 0)
			v = kept[i].value;
	pthread_mutex_unlock(&kept_lock);
	return v ? v : getenv(name);
}

/* ---- lifecycle ---- */

static void config_free(config *cfg)
{
	for (size_t i = 0; i < cfg->ntasks; i++) {
		task_config *t = &cfg->tasks[i];
		if (t->params && t->type && t->type->config_free)
			t->type->config_free(t->params);
		free(t->name);
		free(t->schedule_expr);
	}
	free(cfg->tasks);
	for (size_t i = 0; i < cfg->nmaintenance; i++)
		maintenance_rule_free(&cfg->maintenance[i]);
	free(cfg->maintenance);
	for (size_t i = 0; i < cfg->nsections; i++) {
		config_section *s = &cfg->sections[i];
		for (size_t j = 0; j < s->nentries; j++) {
			free(s->entries[j].key);
			free(s->entries[j].value);
		}
		free(s->entries);
		free(s->name);
	}
	free(cfg->sections);
	name_index_free(&cfg->index->sections);
	name_index_free(&cfg->index->tasks);
	free(cfg->index);
	names_free(cfg->pass_env);
	free(cfg->path);
	free(cfg->state_dir);
	free(cfg->control_socket);
	free(cfg->db_path);
	free(cfg->cluster_instance);
	free(cfg->log_level);
	free(cfg->log_format);
	free(cfg->service_name);
	free(cfg);
}

static config *config_new(const char *path)
{
	config *cfg = xrealloc(NULL, sizeof *cfg);
	*cfg = (config){
	        .path = xstrdup(path),
	        .index = xrealloc(NULL, sizeof *cfg->index),
	        .pass_env = xrealloc(NULL, sizeof *cfg->pass_env),
	        .max_concurrent_tasks = 4,
	        .shutdown_grace_ms = 30000,
	        .retention_days = 30,
	        .check_history_days = 30,
	        .check_history_raw_hours = 48,
	        .max_line_bytes = CONFIG_LINE_BYTES_MAX,
	        .output_drain_ms = 5000,
	        .refs = 1,
	};
	memset(cfg->index, 0, sizeof *cfg->index);
	cfg->pass_env[0] = NULL;
	return cfg;
}

/* Why st is not a file config_load reads, or NULL. */
static const char *file_refused(const struct stat *st, char *why, size_t cap)
{
	if (S_ISDIR(st->st_mode))
		return strerror(EISDIR);
	if (!S_ISREG(st->st_mode)) {
		snprintf(why, cap, "not a regular file (%s)",
		         S_ISFIFO(st->st_mode)   ? "a FIFO"
		         : S_ISCHR(st->st_mode)  ? "a character device"
		         : S_ISBLK(st->st_mode)  ? "a block device"
		         : S_ISSOCK(st->st_mode) ? "a socket"
		                                 : "of an unknown kind");
		return why;
	}
	if (st->st_size > CONFIG_MAX_BYTES) {
		snprintf(why, cap, "file too large (%lld bytes; at most %d MiB)",
		         (long long)st->st_size, CONFIG_MAX_BYTES >> 20);
		return why;
	}
	return NULL;
}

/* Open path for reading if it is a regular file of a bounded size. stat
 * first (a device is never opened), then a non-blocking open (a FIFO
 * swapped in meanwhile cannot block) and fstat of what was opened. */
static FILE *config_open(loader *ld, const char *path)
{
	struct stat st;
	char why[128];
	const char *bad;
	int fd;

	if (stat(path, &st) != 0) {
		load_error_add(ld, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if ((bad = file_refused(&st, why, sizeof why)) != NULL) {
		load_error_add(ld, 0, "cannot read: %s", bad);
		return NULL;
	}
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		char hint[300] = "";
		if (e == EACCES)
			file_read_hint(path, hint, sizeof hint);
		load_error_add(ld, 0, "cannot open: %s%s", strerror(e), hint);
		return NULL;
	}
	if (fstat(fd, &st) != 0 || (bad = file_refused(&st, why, sizeof why)) != NULL ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
		load_error_add(ld, 0, "cannot read: %s", bad ? bad : strerror(errno));
		close(fd);
		return NULL;
	}
	FILE *fp = fdopen(fd, "r");
	if (fp == NULL) {
		load_error_add(ld, 0, "cannot open: %s", strerror(errno));
		close(fd);
	}
	return fp;
}

/* The config of a file read with errors (config_load_lenient): [daemon]
 * and [log] from what was read; a value that is empty gives the default. */
static config *config_degraded(const config *read, const char *path)
{
	config *cfg = config_new(path);
	cfg->degraded = true;
	daemon_apply(cfg, config_section_find(read, "daemon"));
	log_apply(cfg, config_section_find(read, "log"));
	char **paths[] = {&cfg->state_dir, &cfg->control_socket};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
		if (*paths[i] && (*paths[i])[0] == '\0') {
			free(*paths[i]);
			*paths[i] = NULL;
		}
	defaults_finish(cfg);
	store_apply(cfg, config_section_find(read, "store"), config_section_find(read, "cluster"));
	return cfg;
}

static int load_file(config **out, const char *path, config_errors *errs, bool lenient)
{
	loader *ld;
	int rc = 0;

	*out = NULL;
	ld = xrealloc(NULL, sizeof *ld);
	*ld = (loader){.path = path, .cur = SECTION_NONE};
	ld->fp = config_open(ld, path);
	if (ld->fp == NULL)
		goto done;
	ld->cfg = config_new(path);
	config_read(ld);
	fclose(ld->fp);
	name_index_free(&ld->keys);
	if (!ld->too_many && !ld->too_big)
		config_validate(ld);
done:
	if (ld->nerrs > 0 || ld->too_many) {
		rc = -1;
		if (lenient && ld->cfg) {
			*out = config_degraded(ld->cfg, path);
			rc = 1;
		}
		if (ld->cfg)
			config_free(ld->cfg);
	} else {
		config_env_apply(ld->cfg);
		*out = ld->cfg;
	}
	load_errors_flush(ld, errs);
	free(ld->headers);
	free(ld);
	return rc;
}

int config_load(config **out, const char *path, config_errors *errs)
{
	return load_file(out, path, errs, false);
}

int config_load_lenient(config **out, const char *path, config_errors *errs)
{
	return load_file(out, path, errs, true);
}

config *config_ref(config *cfg)
{
	if (cfg)
		__atomic_fetch_add(&cfg->refs, 1, __ATOMIC_RELAXED);
	return cfg;
}

void config_unref(config *cfg)
{
	if (cfg && __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(cfg);
}

/* ---- lookups ---- */

const task_config *config_task(const config *cfg, const char *name)
{
	size_t i;
	if (cfg == NULL || name == NULL || !name_index_get(&cfg->index->tasks, name, &i))
		return NULL;
	return &cfg->tasks[i];
}

const config_section *config_section_find(const config *cfg, const char *name)
{
	size_t i;
	if (cfg == NULL || name == NULL || !name_index_get(&cfg->index->sections, name, &i))
		return NULL;
	return &cfg->sections[i];
}

const config_entry *config_entry_find(const config_section *sec, const char *key)
{
	if (sec == NULL || key == NULL)
		return NULL;
	for (size_t i = 0; i < sec->nentries; i++)
		if (strcmp(sec->entries[i].key, key) == 0)
			return &sec->entries[i];
	return NULL;
}

const char *config_get(const config_section *sec, const char *key)
{
	const config_entry *e = config_entry_find(sec, key);
	return e ? e->value : NULL;
}
