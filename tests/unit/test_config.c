/*
 * Unit tests: the configuration loader. Every kind of error is checked for
 * its exact "FILE:LINE: message"; garbage input must never crash.
 * Files are written to a mkdtemp directory removed at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "duration.h"
#include "proc.h"
#include "task.h"

static char tmpdir[64];
static char conf_path[128];

static int group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_config.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(conf_path, sizeof conf_path, "%s/t.conf", tmpdir);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	unlink(conf_path);
	return rmdir(tmpdir);
}

static void write_bytes(const char *data, size_t len)
{
	FILE *f = fopen(conf_path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Write text as the configuration and load it. */
static int load_text(const char *text, config **cfg, config_errors *errs)
{
	write_bytes(text, strlen(text));
	return config_load(cfg, conf_path, errs);
}

static config *load_ok(const char *text)
{
	config *cfg = NULL;
	config_errors errs = {0};
	int rc = load_text(text, &cfg, &errs);
	for (size_t i = 0; i < errs.count; i++)
		fprintf(stderr, "unexpected: %s\n", errs.lines[i]);
	assert_int_equal(rc, 0);
	assert_int_equal(errs.count, 0);
	assert_non_null(cfg);
	return cfg;
}

/* The load fails with exactly `count` errors. */
static void load_fails(const char *text, size_t count, config_errors *errs)
{
	config *cfg = (config *)1;
	*errs = (config_errors){0};
	assert_int_equal(load_text(text, &cfg, errs), -1);
	assert_null(cfg);
	for (size_t i = 0; count != errs->count && i < errs->count; i++)
		fprintf(stderr, "got: %s\n", errs->lines[i]);
	assert_int_equal(errs->count, count);
}

/* errs->lines[i] is "conf_path:LINE: ..." and contains needle. */
static void assert_error(const config_errors *errs, size_t i, int line, const char *needle)
{
	char prefix[256];

	assert_true(i < errs->count);
	if (line > 0)
		snprintf(prefix, sizeof prefix, "%s:%d: ", conf_path, line);
	else
		snprintf(prefix, sizeof prefix, "%s: ", conf_path);
	if (strncmp(errs->lines[i], prefix, strlen(prefix)) != 0 ||
	    strstr(errs->lines[i], needle) == NULL)
		fail_msg("error %zu is '%s', expected '%s...%s'", i, errs->lines[i], prefix,
		         needle);
}

/* The one error of text is exactly "conf_path:LINE: msg". */
static void assert_only_error(const char *text, int line, const char *msg)
{
	config_errors errs;
	char want[512];

	load_fails(text, 1, &errs);
	snprintf(want, sizeof want, "%s:%d: %s", conf_path, line, msg);
	assert_string_equal(errs.lines[0], want);
	config_errors_free(&errs);
}

static const char *source_file(const char *rel, char *buf, size_t cap)
{
	const char *root = getenv("FK_SOURCE_ROOT");
	snprintf(buf, cap, "%s/%s", root && *root ? root : ".", rel);
	return buf;
}

static const char *const minimal = "[task.hello]\n"
                                   "type = command\n"
                                   "command = true\n";

/* ---- valid files ---- */

static void test_shipped_default(void **state)
{
	char path[1024];
	config *cfg = NULL;
	config_errors errs = {0};
	(void)state;

	source_file("etc/fleetkeeper.conf", path, sizeof path);
	int rc = config_load(&cfg, path, &errs);
	for (size_t i = 0; i < errs.count; i++)
		fprintf(stderr, "%s\n", errs.lines[i]);
	assert_int_equal(rc, 0);
	assert_int_equal(errs.count, 0);
	assert_non_null(config_task(cfg, "hello"));
	assert_string_equal(config_task(cfg, "hello")->type->name, "command");
	assert_string_equal(config_task(cfg, "github_sync")->type->name, "github_sync");
	assert_string_equal(config_task(cfg, "server_sync")->type->name, "server_sync");
	assert_string_equal(config_task(cfg, "health_check")->type->name, "health_check");
	assert_string_equal(cfg->state_dir, "./var");
	assert_string_equal(cfg->db_path, "./var/state.db");
	config_unref(cfg);
}

static void test_every_key(void **state)
{
	char path[1024];
	config *cfg = NULL;
	config_errors errs = {0};
	(void)state;

	source_file("tests/unit/configs/full.conf", path, sizeof path);
	int rc = config_load(&cfg, path, &errs);
	for (size_t i = 0; i < errs.count; i++)
		fprintf(stderr, "%s\n", errs.lines[i]);
	assert_int_equal(rc, 0);
	assert_string_equal(cfg->path, path);
	assert_string_equal(cfg->state_dir, "/srv/fleetkeeper/");
	assert_string_equal(cfg->db_path, "/srv/fleetkeeper/state.db");
	assert_string_equal(cfg->control_socket, "/run/fleetkeeper.sock");
	assert_int_equal(cfg->max_concurrent_tasks, 8);
	assert_int_equal(cfg->shutdown_grace_ms, 90000);
	assert_int_equal(cfg->retention_days, 90);
	assert_string_equal(cfg->log_level, "warning");
	assert_string_equal(cfg->log_format, "console");
	assert_string_equal(cfg->service_name, "fleet");
	assert_int_equal(cfg->nsections, 13);
	assert_int_equal(cfg->ntasks, 4);
	assert_string_equal(config_get(config_section_find(cfg, "github"), "mirror_dir"), "");
	assert_string_equal(config_get(config_section_find(cfg, "notify.ops"), "chat_ids"),
	                    "123456, -100987654");

	const task_config *t = config_task(cfg, "nightly_backup");
	assert_non_null(t);
	assert_string_equal(t->schedule_expr, "30 2 * * *");
	assert_int_equal(t->sched.kind, SCHEDULE_CRON);
	assert_int_equal(t->timeout_ms, 20 * 60000);
	assert_int_equal(t->jitter_ms, 30000);
	assert_int_equal(t->overlap, OVERLAP_QUEUE);
	assert_true(t->persistent);
	assert_false(t->run_on_start);
	assert_true(t->enabled);
	assert_int_equal(t->failure_alert_after, 3);
	assert_non_null(t->params);
	assert_string_equal(tz_name(t->zone), "UTC");
	assert_int_equal(config_task(cfg, "server_sync")->sched.kind, SCHEDULE_INTERVAL);
	assert_int_equal(config_task(cfg, "server_sync")->sched.interval_ms, 60000);
	config_unref(cfg);
}

static void test_defaults(void **state)
{
	(void)state;
	config *cfg = load_ok(minimal);

	assert_string_equal(cfg->state_dir, "./var");
	assert_string_equal(cfg->control_socket, "./var/fleetkeeper.sock");
	assert_string_equal(cfg->db_path, "./var/state.db");
	assert_int_equal(cfg->max_concurrent_tasks, 4);
	assert_int_equal(cfg->shutdown_grace_ms, 30000);
	assert_int_equal(cfg->retention_days, 30);
	assert_null(cfg->log_level);
	assert_null(cfg->log_format);
	assert_null(cfg->service_name);
	assert_int_equal(cfg->ntasks, 1);
	assert_int_equal(cfg->nsections, 1);

	const task_config *t = config_task(cfg, "hello");
	assert_ptr_equal(t, &cfg->tasks[0]);
	assert_string_equal(t->name, "hello");
	assert_string_equal(t->type->name, "command");
	assert_int_equal(t->line, 1);
	assert_true(t->enabled);
	assert_null(t->schedule_expr);
	assert_non_null(t->zone);
	assert_int_equal(t->timeout_ms, 0);
	assert_int_equal(t->jitter_ms, 0);
	assert_int_equal(t->overlap, OVERLAP_SKIP);
	assert_false(t->persistent);
	assert_false(t->run_on_start);
	assert_int_equal(t->failure_alert_after, 0);
	assert_ptr_equal(t->section, config_section_find(cfg, "task.hello"));
	config_unref(cfg);
}

static void test_task_values(void **state)
{
	(void)state;
	config *cfg = load_ok("[daemon]\n"
	                      "state_dir = /var/lib/fk\n"
	                      "[task.a]\n"
	                      "type = command\n"
	                      "command = true\n"
	                      "enabled = off\n"
	                      "schedule = @every 90s\n"
	                      "timeout = 1h\n"
	                      "jitter = 500ms\n"
	                      "overlap = QUEUE\n"
	                      "persistent = 1\n"
	                      "run_on_start = Yes\n"
	                      "failure_alert_after = 1000\n");
	assert_string_equal(cfg->control_socket, "/var/lib/fk/fleetkeeper.sock");
	assert_string_equal(cfg->db_path, "/var/lib/fk/state.db");
	const task_config *t = config_task(cfg, "a");
	assert_false(t->enabled);
	assert_string_equal(t->schedule_expr, "@every 90s");
	assert_int_equal(t->sched.interval_ms, 90000);
	assert_int_equal(t->timeout_ms, 3600000);
	assert_int_equal(t->jitter_ms, 500);
	assert_int_equal(t->overlap, OVERLAP_QUEUE);
	assert_true(t->persistent);
	assert_true(t->run_on_start);
	assert_int_equal(t->failure_alert_after, 1000);
	assert_int_equal(t->line, 3);
	config_unref(cfg);
}

static void test_type_from_name(void **state)
{
	(void)state;
	config *cfg = load_ok("[task.server_sync]\n[task.github_sync]\nenabled = false\n");
	assert_int_equal(cfg->ntasks, 2);
	assert_string_equal(cfg->tasks[0].type->name, "server_sync");
	assert_string_equal(cfg->tasks[1].type->name, "github_sync");
	assert_false(cfg->tasks[1].enabled);
	config_unref(cfg);
}

static void test_inline_comments(void **state)
{
	(void)state;
	config *cfg = load_ok("; a comment\n"
	                      "# another\n"
	                      "[daemon]   ; the daemon\n"
	                      "  max_concurrent_tasks = 8   ; indented, with a comment\n"
	                      "state_dir = ./x;y\n"
	                      "[task.hello]\n"
	                      "type = command ; the type\n"
	                      "command = echo a; echo b # not a comment\n");
	assert_int_equal(cfg->max_concurrent_tasks, 8);
	assert_string_equal(cfg->state_dir, "./x;y");
	const config_section *sec = config_section_find(cfg, "task.hello");
	assert_string_equal(config_get(sec, "type"), "command");
	assert_string_equal(config_get(sec, "command"), "echo a; echo b # not a comment");
	assert_int_equal(config_entry_find(sec, "command")->line, 8);
	assert_int_equal(sec->line, 6);
	config_unref(cfg);
}

static void test_crlf_and_bom(void **state)
{
	(void)state;
	config *cfg = load_ok("\xef\xbb\xbf[daemon]\r\n"
	                      "retention_days = 7\r\n"
	                      "\r\n"
	                      "[task.hello]\r\ntype = command\r\ncommand = true\r\n");
	assert_int_equal(cfg->retention_days, 7);
	assert_int_equal(config_entry_find(config_section_find(cfg, "task.hello"), "command")->line,
	                 6);
	config_unref(cfg);
}

static void test_lookups(void **state)
{
	(void)state;
	config *cfg = load_ok("[github]\norg = x\n[log]\nlevel = WARN\n[metrics]\nlisten =\n");
	assert_int_equal(cfg->nsections, 3);
	assert_string_equal(cfg->sections[0].name, "github");
	assert_string_equal(cfg->sections[1].name, "log");
	assert_string_equal(cfg->sections[2].name, "metrics");
	assert_string_equal(cfg->log_level, "WARN");
	assert_string_equal(config_get(&cfg->sections[0], "org"), "x");
	assert_int_equal(config_entry_find(&cfg->sections[0], "org")->line, 2);
	assert_null(config_get(&cfg->sections[0], "user"));
	assert_null(config_get(NULL, "user"));
	assert_null(config_section_find(cfg, "ssh"));
	assert_null(config_task(cfg, "nope"));
	assert_int_equal(cfg->ntasks, 0);
	config_unref(cfg);
}

static void test_refcount(void **state)
{
	(void)state;
	config *cfg = load_ok(minimal);
	assert_int_equal(__atomic_load_n(&cfg->refs, __ATOMIC_SEQ_CST), 1);
	assert_ptr_equal(config_ref(cfg), cfg);
	assert_int_equal(__atomic_load_n(&cfg->refs, __ATOMIC_SEQ_CST), 2);
	config_unref(cfg);
	assert_int_equal(__atomic_load_n(&cfg->refs, __ATOMIC_SEQ_CST), 1);
	assert_string_equal(config_task(cfg, "hello")->name, "hello");
	config_unref(cfg); /* frees, task params included (ASan checks leaks) */
	config_unref(NULL);
	assert_null(config_ref(NULL));
}

static void test_helpers(void **state)
{
	bool b = false;
	long n = 0;
	(void)state;
	const char *yes[] = {"true", "yes", "on", "1", "TRUE", "Yes"};
	const char *no[] = {"false", "no", "off", "0", "Off"};
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		b = false;
		assert_int_equal(config_parse_bool(yes[i], &b), 0);
		assert_true(b);
	}
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
		b = true;
		assert_int_equal(config_parse_bool(no[i], &b), 0);
		assert_false(b);
	}
	assert_int_equal(config_parse_bool("maybe", &b), -1);
	assert_int_equal(config_parse_bool("", &b), -1);
	assert_int_equal(config_parse_int("42", 1, 100, &n), 0);
	assert_int_equal(n, 42);
	assert_int_equal(config_parse_int("-5", -10, 0, &n), 0);
	assert_int_equal(n, -5);
	assert_int_equal(config_parse_int("101", 1, 100, &n), -1);
	assert_int_equal(config_parse_int("0", 1, 100, &n), -1);
	assert_int_equal(config_parse_int("4x", 1, 100, &n), -1);
	assert_int_equal(config_parse_int(" 4", 1, 100, &n), -1);
	assert_int_equal(config_parse_int("", 1, 100, &n), -1);
	assert_int_equal(config_parse_int("99999999999999999999", 1, 100, &n), -1);
	assert_int_equal(n, -5);
}

/* ---- one test per kind of error ---- */

static void test_missing_file(void **state)
{
	config *cfg = (config *)1;
	config_errors errs = {0};
	char want[256];
	(void)state;

	snprintf(want, sizeof want, "%s/absent.conf", tmpdir);
	assert_int_equal(config_load(&cfg, want, &errs), -1);
	assert_null(cfg);
	assert_int_equal(errs.count, 1);
	strcat(want, ": cannot open: No such file or directory");
	assert_string_equal(errs.lines[0], want);
	config_errors_free(&errs);
	assert_int_equal(errs.count, 0);
	assert_null(errs.lines);
}

static void test_bad_integer(void **state)
{
	(void)state;
	assert_only_error("[daemon]\nmax_concurrent_tasks = abc\n", 2,
	                  "[daemon] max_concurrent_tasks: expected an integer from 1 to 1024, got "
	                  "'abc'");
	assert_only_error("[daemon]\n\nretention_days = 0\n", 3,
	                  "[daemon] retention_days: expected an integer from 1 to 36500, got '0'");
	assert_only_error("[ssh]\nport = 70000\n", 2,
	                  "[ssh] port: expected an integer from 1 to 65535, got '70000'");
	assert_only_error("[github]\nper_page = 101\n", 2,
	                  "[github] per_page: expected an integer from 1 to 100, got '101'");
}

static void test_unknown_section(void **state)
{
	(void)state;
	assert_only_error("[deamon]\nstate_dir = x\n", 1,
	                  "unknown section [deamon]; did you mean [daemon]?");
	assert_only_error("[tasks.hello]\n", 1,
	                  "unknown section [tasks.hello]; did you mean [task.hello]?");
	assert_only_error("\n[frobnicator]\n", 2, "unknown section [frobnicator]");
}

static void test_unknown_key(void **state)
{
	(void)state;
	assert_only_error("[daemon]\nmax_concurent_tasks = 4\n", 2,
	                  "[daemon] unknown key 'max_concurent_tasks'; did you mean "
	                  "'max_concurrent_tasks'?");
	assert_only_error("[ssh]\nflavour = x\n", 2, "[ssh] unknown key 'flavour'");
	assert_only_error("[task.github_sync]\nschedul = @daily\n", 2,
	                  "[task.github_sync] unknown key 'schedul'; did you mean 'schedule'?");
}

static void test_schedule_error(void **state)
{
	config_errors errs;
	(void)state;
	load_fails("[task.hello]\ntype = command\ncommand = true\nschedule = 61 * * * *\n", 1,
	           &errs);
	assert_error(&errs, 0, 4, "[task.hello] schedule: minute:");
	assert_non_null(strstr(errs.lines[0], "61"));
	config_errors_free(&errs);
}

static void test_never_fires(void **state)
{
	(void)state;
	assert_only_error("[task.hello]\ntype = command\nschedule = 0 0 30 2 *\ncommand = true\n",
	                  3, "[task.hello] schedule '0 0 30 2 *' can never fire");
}

static void test_duplicate_key(void **state)
{
	(void)state;
	assert_only_error("[task.x]\nschedule = @daily\nschedule = @hourly\ntype = command\n"
	                  "command = true\n",
	                  3, "[task.x] duplicate key 'schedule' (first at line 2)");
}

static void test_duplicate_section(void **state)
{
	(void)state;
	assert_only_error("[task.hello]\ntype = command\ncommand = true\n\n[task.hello]\n"
	                  "command = false\n",
	                  5, "duplicate section [task.hello] (first at line 1)");
}

static void test_empty_value(void **state)
{
	(void)state;
	assert_only_error("[daemon]\nstate_dir =\n", 2, "[daemon] state_dir: value is empty");
	assert_only_error("[task.hello]\ntype = command\ncommand =   ; nothing\n", 3,
	                  "[task.hello] command: value is empty");
	assert_only_error("[task.hello]\ntype = command\ncommand = x\nschedule =\n", 4,
	                  "[task.hello] schedule: value is empty");
}

static void test_bad_duration(void **state)
{
	config_errors errs;
	(void)state;
	load_fails("[daemon]\nshutdown_grace = 5x\n", 1, &errs);
	assert_error(&errs, 0, 2, "[daemon] shutdown_grace: unknown unit 'x' in duration '5x'");
	config_errors_free(&errs);
	load_fails("[task.t]\ntype = command\ncommand = true\njitter = -1s\n", 1, &errs);
	assert_error(&errs, 0, 4, "[task.t] jitter: ");
	assert_non_null(strstr(errs.lines[0], "'-1s'"));
	config_errors_free(&errs);
}

static void test_bad_bool(void **state)
{
	(void)state;
	assert_only_error("[task.t]\ntype = command\ncommand = true\nenabled = maybe\n", 4,
	                  "[task.t] enabled: expected true/false, yes/no, on/off or 1/0, got "
	                  "'maybe'");
}

static void test_bad_enum_and_level(void **state)
{
	(void)state;
	assert_only_error(
	        "[ssh]\nhost_key_policy = trust\n", 2,
	        "[ssh] host_key_policy: expected one of strict|accept-new|off, got 'trust'");
	assert_only_error("[task.t]\ntype = command\ncommand = true\noverlap = parallel\n", 4,
	                  "[task.t] overlap: expected one of skip|queue, got 'parallel'");
	assert_only_error("[log]\nlevel = verbose\n", 2,
	                  "[log] level: expected one of debug|info|warning|error|critical, got "
	                  "'verbose'");
	assert_only_error("[log]\nformat = xml\n", 2,
	                  "[log] format: expected one of json|console, got 'xml'");
	assert_only_error("[metrics]\nlisten = localhost\n", 2,
	                  "[metrics] listen: expected host:port (port 1-65535), got 'localhost'");
	assert_only_error("[github]\napi_url = api.github.com\n", 2,
	                  "[github] api_url: expected an http:// or https:// URL, got "
	                  "'api.github.com'");
	assert_only_error("[notify.ops]\ntype = telegram\ntoken_env = T\nchat_ids = 1, x\n", 4,
	                  "[notify.ops] chat_ids: expected a comma-separated list of integers, got "
	                  "'1, x'");
}

static void test_secrets_rejected(void **state)
{
	config_errors errs;
	(void)state;
	load_fails("[github]\ntoken = ghp_SECRET1\n[ssh]\npassword = SECRET2\n"
	           "[task.t]\ntype = command\ncommand = true\napi_key = SECRET3\n"
	           "[provider.time4vps]\nsecret = SECRET4\n",
	           4, &errs);
	assert_error(&errs, 0, 2,
	             "[github] token: put secrets in a file (token_file) or the environment "
	             "(token_env), not in the configuration");
	assert_error(&errs, 1, 4, "[ssh] password: put secrets in a file (password_file)");
	assert_error(&errs, 2, 8, "[task.t] api_key: put secrets in a file");
	assert_error(&errs, 3, 10, "[provider.time4vps] secret: put secrets in a file");
	for (size_t i = 0; i < errs.count; i++)
		assert_null(strstr(errs.lines[i], "SECRET"));
	config_errors_free(&errs);
}

static void test_task_type_errors(void **state)
{
	config_errors errs;
	char want[256];
	(void)state;

	snprintf(want, sizeof want, "[task.x] type is required (one of: %s)", task_type_names());
	assert_only_error("[task.x]\nschedule = @daily\n", 1, want);
	snprintf(want, sizeof want, "[task.x] type: unknown task type 'shell' (known: %s)",
	         task_type_names());
	assert_only_error("[task.x]\ntype = shell\n", 2, want);

	/* The type's own messages, prefixed with section and key. */
	load_fails("[task.x]\ntype = command\ncommand = true\nbogus_key = 1\n", 1, &errs);
	assert_error(&errs, 0, 4, "[task.x] bogus_key: ");
	config_errors_free(&errs);

	/* config_finish's message, at the section line. */
	load_fails("[daemon]\n[task.x]\ntype = command\n", 1, &errs);
	assert_error(&errs, 0, 2, "[task.x] ");
	config_errors_free(&errs);
}

static void test_bad_names(void **state)
{
	(void)state;
	assert_only_error("[task.a b]\ntype = command\ncommand = true\n", 1,
	                  "[task.a b] invalid task name 'a b': use 1 to 64 letters, digits, '_' or "
	                  "'-'");
	assert_only_error("[task.]\ntype = command\ncommand = true\n", 1,
	                  "[task.] invalid task name '': use 1 to 64 letters, digits, '_' or '-'");
	assert_only_error("[provider.hetzner]\napi_url = https://x\n", 1,
	                  "unknown provider 'hetzner' (known: time4vps, inventory)");
	assert_only_error("[notify.ops]\nmin_level = error\n", 1,
	                  "[notify.ops] type is required (one of: telegram, slack, webhook)");
}

static void test_long_task_name(void **state)
{
	char text[512], name[80];
	(void)state;

	memset(name, 'n', 64);
	name[64] = '\0';
	snprintf(text, sizeof text, "[task.%s]\ntype = command\ncommand = true\n", name);
	config *cfg = load_ok(text);
	assert_non_null(config_task(cfg, name));
	config_unref(cfg);
	strcat(name, "n");
	snprintf(text, sizeof text, "[task.%s]\ntype = command\ncommand = true\n", name);
	config_errors errs;
	load_fails(text, 1, &errs);
	assert_error(&errs, 0, 1, "invalid task name");
	config_errors_free(&errs);
}

static void test_tz_error(void **state)
{
	config_errors errs;
	(void)state;
	load_fails("[task.t]\ntype = command\ncommand = true\ntz = Mars/Olympus_Mons\n", 1, &errs);
	assert_error(&errs, 0, 4, "[task.t] tz: ");
	assert_non_null(strstr(errs.lines[0], "Mars/Olympus_Mons"));
	config_errors_free(&errs);
}

static void test_syntax_errors(void **state)
{
	config_errors errs;
	(void)state;
	assert_only_error("[daemon\n", 1, "syntax error: section header without ']'");
	assert_only_error("[daemon] junk\n", 1, "syntax error: unexpected text after ']'");
	assert_only_error("[ ]\n", 1, "syntax error: empty section name");
	assert_only_error("[daemon]\njust some words\n", 2,
	                  "syntax error: expected 'key = value', '[section]' or a comment");
	assert_only_error("[daemon]\n= 5\n", 2, "[daemon] syntax error: empty key name");
	assert_only_error("state_dir = x\n[daemon]\n", 1, "key 'state_dir' outside of any section");
	/* A continuation line is not one: it is reported, not glued on. */
	load_fails("[task.t]\ntype = command\ncommand = a\n    --flag\n", 1, &errs);
	assert_error(&errs, 0, 4, "syntax error");
	config_errors_free(&errs);
}

static void test_multiple_errors(void **state)
{
	config_errors errs;
	(void)state;
	load_fails("[daemon]\n"                 /* 1 */
	           "max_concurrent_tasks = 0\n" /* 2 */
	           "shutdown_grace = soon\n"    /* 3 */
	           "[deamon]\n"                 /* 4 */
	           "[task.hello]\n"             /* 5 */
	           "type = command\n"           /* 6 */
	           "command = true\n"           /* 7 */
	           "schedule = 99 * * * *\n"    /* 8 */
	           "garbage\n"                  /* 9 */
	           "[task.hello]\n"             /* 10 */
	           "[ssh]\n"                    /* 11 */
	           "use_agent = perhaps\n",     /* 12 */
	           7, &errs);
	assert_error(&errs, 0, 2, "[daemon] max_concurrent_tasks: expected an integer");
	assert_error(&errs, 1, 3, "[daemon] shutdown_grace: ");
	assert_error(&errs, 2, 4, "unknown section [deamon]");
	assert_error(&errs, 3, 8, "[task.hello] schedule: minute:");
	assert_error(&errs, 4, 9, "syntax error");
	assert_error(&errs, 5, 10, "duplicate section [task.hello] (first at line 5)");
	assert_error(&errs, 6, 12, "[ssh] use_agent: expected true/false");
	config_errors_free(&errs);
}

static void test_too_many_errors(void **state)
{
	size_t cap = 300 * 16 + 16;
	char *text = malloc(cap);
	size_t n = 0;
	config_errors errs;
	(void)state;

	assert_non_null(text);
	n += (size_t)snprintf(text + n, cap - n, "[daemon]\n");
	for (int i = 0; i < 300; i++)
		n += (size_t)snprintf(text + n, cap - n, "oops line\n");
	load_fails(text, 101, &errs);
	assert_error(&errs, 0, 2, "syntax error");
	assert_error(&errs, 99, 101, "syntax error");
	assert_error(&errs, 100, 0, "too many errors");
	config_errors_free(&errs);
	free(text);
}

static void test_errors_appended(void **state)
{
	config *cfg = NULL;
	config_errors errs = {0};
	(void)state;
	assert_int_equal(load_text("[daemon]\nport = 1\n", &cfg, &errs), -1);
	assert_int_equal(load_text("[ssh]\nport = x\n", &cfg, &errs), -1);
	assert_int_equal(errs.count, 2);
	config_errors_free(&errs);
	assert_int_equal(load_text("[ssh]\nport = x\n", &cfg, NULL), -1);
	assert_null(cfg);
}

/* ---- hostile input ---- */

static void test_empty_file(void **state)
{
	config_errors errs;
	(void)state;
	load_fails("", 1, &errs);
	assert_error(&errs, 0, 0, "no sections found");
	config_errors_free(&errs);
	load_fails("; only a comment\n\n", 1, &errs);
	assert_error(&errs, 0, 0, "no sections found");
	config_errors_free(&errs);
}

static void test_nul_file(void **state)
{
	static char zeros[4096];
	config *cfg = NULL;
	config_errors errs = {0};
	(void)state;

	write_bytes(zeros, sizeof zeros);
	assert_int_equal(config_load(&cfg, conf_path, &errs), -1);
	assert_null(cfg);
	assert_int_equal(errs.count, 1);
	assert_error(&errs, 0, 1, "NUL byte");
	config_errors_free(&errs);

	{
		static const char nul_inside[] = "[daemon]\nstate_dir = a\0b\n";
		write_bytes(nul_inside, sizeof nul_inside - 1);
	}
	assert_int_equal(config_load(&cfg, conf_path, &errs), -1);
	assert_int_equal(errs.count, 1);
	assert_error(&errs, 0, 2, "NUL byte (0x00) in column 14");
	config_errors_free(&errs);
}

static void test_long_lines(void **state)
{
	size_t len = 1024 * 1024;
	char *big = malloc(len + 64);
	config *cfg = NULL;
	config_errors errs = {0};
	char want[128];
	(void)state;

	assert_non_null(big);
	memset(big, 'a', len);
	write_bytes(big, len);
	assert_int_equal(config_load(&cfg, conf_path, &errs), -1);
	assert_int_equal(errs.count, 1);
	snprintf(want, sizeof want, "line too long (%zu characters; at most", len);
	assert_error(&errs, 0, 1, want);
	config_errors_free(&errs);

	/* A long value in an otherwise valid file: one error, at its line. */
	memcpy(big, "[task.t]\ntype = command\ncommand = ", 34);
	memset(big + 34, 'x', 300);
	memcpy(big + 334, "\nschedule = bad\n", 17);
	load_fails(big, 2, &errs);
	assert_error(&errs, 0, 3, "line too long (310 characters");
	assert_error(&errs, 1, 4, "[task.t] schedule: ");
	config_errors_free(&errs);
	free(big);
}

static void test_directory(void **state)
{
	config *cfg = NULL;
	config_errors errs = {0};
	char want[256];
	(void)state;
	assert_int_equal(config_load(&cfg, tmpdir, &errs), -1);
	assert_int_equal(errs.count, 1);
	snprintf(want, sizeof want, "%s: cannot read: Is a directory", tmpdir);
	assert_string_equal(errs.lines[0], want);
	config_errors_free(&errs);
}

/* Issue 15: a FIFO or /dev/zero (through a symlink) as the configuration
 * hung the loader (and the daemon on SIGHUP); a file past 16 MiB was read
 * whole. Each is refused at once. */
static void test_not_a_regular_file(void **state)
{
	char fifo[160], link[160], want[512];
	config *cfg = NULL;
	config_errors errs = {0};
	(void)state;

	alarm(20); /* a hang fails the test instead of stalling it */
	snprintf(fifo, sizeof fifo, "%s/fifo", tmpdir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(config_load(&cfg, fifo, &errs), -1);
	snprintf(want, sizeof want, "%s: cannot read: not a regular file (a FIFO)", fifo);
	assert_int_equal(errs.count, 1);
	assert_string_equal(errs.lines[0], want);
	config_errors_free(&errs);

	snprintf(link, sizeof link, "%s/zero.conf", tmpdir);
	assert_int_equal(symlink("/dev/zero", link), 0);
	assert_int_equal(config_load(&cfg, link, &errs), -1);
	snprintf(want, sizeof want, "%s: cannot read: not a regular file (a character device)",
	         link);
	assert_int_equal(errs.count, 1);
	assert_string_equal(errs.lines[0], want);
	config_errors_free(&errs);
	unlink(link);

	assert_int_equal(symlink(fifo, link), 0); /* a symlink to the FIFO */
	assert_int_equal(config_load(&cfg, link, &errs), -1);
	snprintf(want, sizeof want, "%s: cannot read: not a regular file (a FIFO)", link);
	assert_string_equal(errs.lines[0], want);
	config_errors_free(&errs);
	unlink(link);
	unlink(fifo);

	write_bytes(minimal, strlen(minimal));
	assert_int_equal(truncate(conf_path, CONFIG_MAX_BYTES + 1), 0);
	assert_int_equal(config_load(&cfg, conf_path, &errs), -1);
	assert_null(cfg);
	assert_int_equal(errs.count, 1);
	snprintf(want, sizeof want, "cannot read: file too large (%d bytes; at most 16 MiB)",
	         CONFIG_MAX_BYTES + 1);
	assert_error(&errs, 0, 0, want);
	config_errors_free(&errs);
	alarm(0);
}

/* Issue 15: "@every 106751991d" and "jitter = 99999999999d" loaded and were
 * shown as year 0000. */
static void test_duration_maximum(void **state)
{
	config_errors errs;
	(void)state;
	load_fails("[task.t]\ntype = command\ncommand = true\nschedule = @every 106751991d\n"
	           "jitter = 99999999999d\ntimeout = 3651d\n",
	           3, &errs);
	assert_error(&errs, 0, 4,
	             "[task.t] schedule: @every: duration '106751991d' is too large (at most "
	             "3650d");
	assert_error(&errs, 1, 5, "[task.t] jitter: duration '99999999999d' is too large");
	assert_error(&errs, 2, 6, "[task.t] timeout: duration '3651d' is too large");
	config_errors_free(&errs);
	config *cfg = load_ok("[task.t]\ntype = command\ncommand = true\nschedule = @every 3650d\n"
	                      "jitter = 3650d\n");
	assert_int_equal(config_task(cfg, "t")->jitter_ms, DURATION_MAX_MS);
	config_unref(cfg);
}

/* Issue 15: loading was quadratic in the number of sections (and of keys
 * in a section). Lookups by name are hashed; many names still resolve, and
 * a duplicate among thousands is found with the line of the first. */
static void test_many_names(void **state)
{
	enum { NTASKS = 20000, NKEYS = 5000 };
	size_t cap = (size_t)NTASKS * 64 + (size_t)NKEYS * 32 + 256;
	char *text = malloc(cap);
	size_t n = 0;
	config_errors errs;
	char name[32], want[512];
	(void)state;

	assert_non_null(text);
	for (int i = 0; i < NTASKS; i++)
		n += (size_t)snprintf(text + n, cap - n,
		                      "[task.t%d]\ntype = command\ncommand = true\n", i);
	config *cfg = load_ok(text);
	assert_int_equal(cfg->ntasks, NTASKS);
	for (int i = 0; i < NTASKS; i += 997) {
		snprintf(name, sizeof name, "t%d", i);
		assert_ptr_equal(config_task(cfg, name), &cfg->tasks[i]);
		snprintf(name, sizeof name, "task.t%d", i);
		assert_ptr_equal(config_section_find(cfg, name), &cfg->sections[i]);
	}
	assert_null(config_task(cfg, "t20000"));
	config_unref(cfg);

	n = (size_t)snprintf(text, cap, "[github]\n");
	for (int i = 0; i < NKEYS; i++)
		n += (size_t)snprintf(text + n, cap - n, "k%d = v\n", i);
	n += (size_t)snprintf(text + n, cap - n, "k1234 = again\n[task.t1]\n");
	errs = (config_errors){0};
	assert_int_equal(load_text(text, &cfg, &errs), -1);
	/* the duplicate is found while reading, before the (capped) unknown keys */
	snprintf(want, sizeof want, "%s:%d: [github] duplicate key 'k1234' (first at line 1236)",
	         conf_path, NKEYS + 2);
	bool found = false;
	for (size_t i = 0; i < errs.count; i++)
		found = found || strcmp(errs.lines[i], want) == 0;
	assert_true(found);
	config_errors_free(&errs);
	free(text);
}

/* Issue 15: a token_env secret reached every child. A load keeps the value
 * (config_env) and takes the variable out of the environment; a reload
 * still finds it. */
static void test_env_secret_taken(void **state)
{
	const char *text = "[daemon]\npass_env = FK_CFG_PASS, FK_PFX_*\n"
	                   "[github]\ntoken_env = FK_CFG_TOKEN\n";
	(void)state;

	setenv("FK_CFG_TOKEN", "s3cret", 1);
	config *cfg = load_ok(text);
	assert_null(getenv("FK_CFG_TOKEN"));
	assert_string_equal(config_env("FK_CFG_TOKEN"), "s3cret");
	assert_string_equal(cfg->pass_env[0], "FK_CFG_PASS");
	assert_string_equal(cfg->pass_env[1], "FK_PFX_*");
	assert_null(cfg->pass_env[2]);
	assert_true(proc_env_inherited("FK_PFX_X", (const char *const *)cfg->pass_env));
	config_unref(cfg);

	cfg = load_ok(text); /* SIGHUP: the variable is gone, the value is kept */
	assert_string_equal(config_env("FK_CFG_TOKEN"), "s3cret");
	config_unref(cfg);

	setenv("FK_CFG_OTHER", "plain", 1); /* never named by a *_env key */
	assert_string_equal(config_env("FK_CFG_OTHER"), "plain");
	unsetenv("FK_CFG_OTHER");
	assert_null(config_env("FK_CFG_NEVER_SET"));
	cfg = load_ok(minimal);
	assert_null(cfg->pass_env[0]); /* default: none besides the fixed list */
	config_unref(cfg);
}

static void test_env_key_errors(void **state)
{
	config_errors errs;
	(void)state;
	assert_only_error("[github]\ntoken_env = PATH\n", 2,
	                  "[github] token_env: PATH is passed to every child process (the fixed "
	                  "list or [daemon] pass_env); keep the secret in a variable of its own");
	assert_only_error("[daemon]\npass_env = FK_A\n[github]\ntoken_env = FK_A\n", 4,
	                  "[github] token_env: FK_A is passed to every child process (the fixed "
	                  "list or [daemon] pass_env); keep the secret in a variable of its own");
	assert_only_error("[github]\ntoken_env = 1X\n", 2,
	                  "[github] token_env: '1X' is not an environment variable name");
	assert_only_error("[github]\ntoken_env = A=B\n", 2,
	                  "[github] token_env: 'A=B' is not an environment variable name");
	load_fails("[daemon]\npass_env = A, b-c\n", 1, &errs);
	assert_error(&errs, 0, 2, "[daemon] pass_env: expected a comma-separated list");
	config_errors_free(&errs);
	config *cfg = load_ok("[daemon]\npass_env =\n");
	assert_null(cfg->pass_env[0]);
	config_unref(cfg);
	/* a prefix or "*" may cover it: the variable is gone before any child */
	cfg = load_ok("[daemon]\npass_env = *\n[github]\ntoken_env = FK_CFG_STAR\n");
	assert_string_equal(cfg->pass_env[0], "*");
	config_unref(cfg);
}

/* Random bytes, and random INI-looking text: never a crash; either a
 * config and no errors, or errors and no config. */
static void test_garbage(void **state)
{
	static const char alphabet[] = "[]=;#:. \t\n\r\nabcdefghijklmnopqrstuvwxyz_0123456789*@";
	char buf[2048];
	unsigned seed = 20261128;
	(void)state;

	for (int iter = 0; iter < 1000; iter++) {
		size_t len = (size_t)rand_r(&seed) % sizeof buf;
		bool ini_like = iter % 2 == 1;
		config *cfg = NULL;
		config_errors errs = {0};

		for (size_t i = 0; i < len; i++)
			buf[i] = ini_like ? alphabet[(size_t)rand_r(&seed) % (sizeof alphabet - 1)]
			                  : (char)(rand_r(&seed) & 0xff);
		write_bytes(buf, len);
		int rc = config_load(&cfg, conf_path, &errs);
		if (rc == 0) {
			assert_non_null(cfg);
			assert_int_equal(errs.count, 0);
			config_unref(cfg);
		} else {
			assert_int_equal(rc, -1);
			assert_null(cfg);
			assert_true(errs.count >= 1 && errs.count <= 101);
			for (size_t i = 0; i < errs.count; i++)
				assert_int_equal(
				        strncmp(errs.lines[i], conf_path, strlen(conf_path)), 0);
		}
		config_errors_free(&errs);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_shipped_default),
	        cmocka_unit_test(test_every_key),
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_task_values),
	        cmocka_unit_test(test_type_from_name),
	        cmocka_unit_test(test_inline_comments),
	        cmocka_unit_test(test_crlf_and_bom),
	        cmocka_unit_test(test_lookups),
	        cmocka_unit_test(test_refcount),
	        cmocka_unit_test(test_helpers),
	        cmocka_unit_test(test_missing_file),
	        cmocka_unit_test(test_bad_integer),
	        cmocka_unit_test(test_unknown_section),
	        cmocka_unit_test(test_unknown_key),
	        cmocka_unit_test(test_schedule_error),
	        cmocka_unit_test(test_never_fires),
	        cmocka_unit_test(test_duplicate_key),
	        cmocka_unit_test(test_duplicate_section),
	        cmocka_unit_test(test_empty_value),
	        cmocka_unit_test(test_bad_duration),
	        cmocka_unit_test(test_bad_bool),
	        cmocka_unit_test(test_bad_enum_and_level),
	        cmocka_unit_test(test_secrets_rejected),
	        cmocka_unit_test(test_task_type_errors),
	        cmocka_unit_test(test_bad_names),
	        cmocka_unit_test(test_long_task_name),
	        cmocka_unit_test(test_tz_error),
	        cmocka_unit_test(test_syntax_errors),
	        cmocka_unit_test(test_multiple_errors),
	        cmocka_unit_test(test_too_many_errors),
	        cmocka_unit_test(test_errors_appended),
	        cmocka_unit_test(test_empty_file),
	        cmocka_unit_test(test_nul_file),
	        cmocka_unit_test(test_long_lines),
	        cmocka_unit_test(test_directory),
	        cmocka_unit_test(test_garbage),
	        cmocka_unit_test(test_not_a_regular_file),
	        cmocka_unit_test(test_duration_maximum),
	        cmocka_unit_test(test_many_names),
	        cmocka_unit_test(test_env_secret_taken),
	        cmocka_unit_test(test_env_key_errors),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
