/* Unit tests: the structured event log (SPEC §2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "log_classify.h" /* both classifier paths, built on purpose */

/* 2025-12-26T00:03:45.123456Z */
#define T0 1766707425123456LL

static char buf[1 << 18];

static void set_tz(const char *tz)
{
	setenv("TZ", tz, 1);
	tzset();
}

/* Renders one event at T0 as JSON into buf and returns buf. */
static const char *render(const log_field *f, size_t n)
{
	size_t len = log_render_json(buf, sizeof buf, T0, LOG_INFO, "test", "ev", f, n);
	assert_int_equal(len, strlen(buf));
	return buf;
}

/* The rendering of a single field, after the fixed keys. */
static const char *render_one(log_field f)
{
	static const char head[] = "{\"timestamp\": \"2025-12-26T00:03:45.123456+00:00\", "
	                           "\"level\": \"info\", \"service\": \"scheduler\", "
	                           "\"logger\": \"test\", \"event\": \"ev\", ";
	render(&f, 1);
	assert_memory_equal(buf, head, sizeof head - 1);
	return buf + sizeof head - 1;
}

static void assert_one(log_field f, const char *expect)
{
	assert_string_equal(render_one(f), expect);
}

static int setup_utc(void **state)
{
	(void)state;
	set_tz("UTC");
	log_clear_context();
	return 0;
}

static int teardown_ctx(void **state)
{
	(void)state;
	log_clear_context();
	log_shutdown();
	return 0;
}

/* ---- format ----------------------------------------------------------- */

static void test_golden_line(void **state)
{
	(void)state;
	set_tz("Europe/Helsinki");
	log_bind(LOG_STR("correlation_id", "run_github_sync_1735167345_a1b2"));
	log_bind(LOG_STR("task", "github_sync"));
	log_bind(LOG_INT("run_id", 42));
	log_field f[] = {LOG_INT("repos_synced", 12), LOG_DBL("duration_sec", 0.84)};
	size_t len = log_render_json(buf, sizeof buf, T0, LOG_INFO, "tasks.github_sync",
	                             "github_sync_complete", f, 2);
	const char *want =
	        "{\"timestamp\": \"2025-12-26T02:03:45.123456+02:00\", \"level\": \"info\", "
	        "\"service\": \"scheduler\", \"logger\": \"tasks.github_sync\", \"event\": "
	        "\"github_sync_complete\", \"correlation_id\": "
	        "\"run_github_sync_1735167345_a1b2\", "
	        "\"task\": \"github_sync\", \"run_id\": 42, \"repos_synced\": 12, "
	        "\"duration_sec\": "
	        "0.84}";
	assert_string_equal(buf, want);
	assert_int_equal(len, strlen(want));

	/* like snprintf: the needed length even when cap is too small */
	char small[10];
	assert_int_equal(log_render_json(small, sizeof small, T0, LOG_INFO, "tasks.github_sync",
	                                 "github_sync_complete", f, 2),
	                 strlen(want));
	assert_string_equal(small, "{\"timesta");
}

static void test_levels_and_service(void **state)
{
	(void)state;
	log_options o;
	log_options_default(&o);
	o.service = "fleet \"k\"";
	o.fd = -1;
	assert_int_equal(log_init(&o), -1);
	o.fd = 1;
	o.level = LOG_DEBUG;
	assert_int_equal(log_init(&o), 0);
	static const struct {
		log_level l;
		const char *name;
	} lv[] = {{LOG_DEBUG, "debug"},
	          {LOG_INFO, "info"},
	          {LOG_WARNING, "warning"},
	          {LOG_ERROR, "error"},
	          {LOG_CRITICAL, "critical"}};
	for (size_t i = 0; i < 5; i++) {
		log_render_json(buf, sizeof buf, T0, lv[i].l, "a.b", "e", NULL, 0);
		char want[256];
		snprintf(want, sizeof want,
		         "{\"timestamp\": \"2025-12-26T00:03:45.123456+00:00\", \"level\": \"%s\", "
		         "\"service\": \"fleet \\\"k\\\"\", \"logger\": \"a.b\", \"event\": \"e\"}",
		         lv[i].name);
		assert_string_equal(buf, want);
		assert_string_equal(log_level_name(lv[i].l), lv[i].name);
	}
}

static void test_timestamps(void **state)
{
	(void)state;
	char ts[40];
	set_tz("UTC");
	assert_int_equal(log_format_timestamp(ts, sizeof ts, T0), 32);
	assert_string_equal(ts, "2025-12-26T00:03:45.123456+00:00");
	assert_int_equal(log_format_timestamp(ts, sizeof ts, 0), 32);
	assert_string_equal(ts, "1970-01-01T00:00:00.000000+00:00");
	log_format_timestamp(ts, sizeof ts, -1);
	assert_string_equal(ts, "1969-12-31T23:59:59.999999+00:00");

	set_tz("Europe/Berlin");
	log_format_timestamp(ts, sizeof ts, T0);
	assert_string_equal(ts, "2025-12-26T01:03:45.123456+01:00");
	log_format_timestamp(ts, sizeof ts, 1751371200000001LL); /* 2025-07-01T12:00Z */
	assert_string_equal(ts, "2025-07-01T14:00:00.000001+02:00");
	/* the DST switch, one second apart: the per-second cache follows */
	log_format_timestamp(ts, sizeof ts, 1743296399999999LL);
	assert_string_equal(ts, "2025-03-30T01:59:59.999999+01:00");
	log_format_timestamp(ts, sizeof ts, 1743296400000000LL);
	assert_string_equal(ts, "2025-03-30T03:00:00.000000+02:00");

	set_tz("America/St_Johns");
	log_format_timestamp(ts, sizeof ts, T0);
	assert_string_equal(ts, "2025-12-25T20:33:45.123456-03:30");
	set_tz("Asia/Kolkata");
	log_format_timestamp(ts, sizeof ts, T0);
	assert_string_equal(ts, "2025-12-26T05:33:45.123456+05:30");

	char small[8];
	assert_int_equal(log_format_timestamp(small, sizeof small, T0), 32);
	assert_string_equal(small, "2025-12");
	set_tz("UTC");
}

static void test_key_order_and_context(void **state)
{
	(void)state;
	log_bind(LOG_STR("correlation_id", "c1"));
	log_bind(LOG_STR("task", "t1"));
	log_bind(LOG_INT("run_id", 1));
	log_bind(LOG_STR("server_handle", "srv1"));
	/* bound again: replaced in place */
	log_bind(LOG_INT("run_id", 7));
	assert_string_equal(log_bound_str("task"), "t1");
	assert_null(log_bound_str("run_id")); /* not a string */
	assert_null(log_bound_str("nope"));

	log_field f[] = {LOG_STR("z", "1"), LOG_STR("task", "override"), LOG_INT("a", 2)};
	assert_string_equal(render_one(f[0]) - 0, "\"correlation_id\": \"c1\", \"task\": \"t1\", "
	                                          "\"run_id\": 7, \"server_handle\": \"srv1\", "
	                                          "\"z\": \"1\"}");
	render(f, 3);
	assert_non_null(strstr(buf, "\"event\": \"ev\", \"correlation_id\": \"c1\", \"run_id\": 7, "
	                            "\"server_handle\": \"srv1\", \"z\": \"1\", \"task\": "
	                            "\"override\", \"a\": 2}"));

	log_unbind("run_id");
	log_unbind("absent");
	assert_string_equal(render_one(LOG_INT("n", 1)),
	                    "\"correlation_id\": \"c1\", \"task\": \"t1\", \"server_handle\": "
	                    "\"srv1\", \"n\": 1}");
	log_clear_context();
	assert_null(log_bound_str("task"));
	assert_string_equal(render_one(LOG_INT("n", 1)), "\"n\": 1}");
}

static void test_fixed_keys_not_repeated(void **state)
{
	(void)state;
	log_bind(LOG_STR("level", "x"));
	log_field f[] = {LOG_STR("service", "other"), LOG_STR("timestamp", "t"),
	                 LOG_STR("event", "e2"), LOG_STR("logger", "l2"), LOG_INT("ok", 1)};
	render(f, 5);
	assert_string_equal(buf, "{\"timestamp\": \"2025-12-26T00:03:45.123456+00:00\", "
	                         "\"level\": \"info\", \"service\": \"scheduler\", \"logger\": "
	                         "\"test\", \"event\": \"ev\", \"ok\": 1}");
}

static void test_values(void **state)
{
	(void)state;
	assert_one(LOG_INT("i", 0), "\"i\": 0}");
	assert_one(LOG_INT("i", -1), "\"i\": -1}");
	assert_one(LOG_INT("i", INT64_MAX), "\"i\": 9223372036854775807}");
	assert_one(LOG_INT("i", INT64_MIN), "\"i\": -9223372036854775808}");
	assert_one(LOG_BOOL("b", true), "\"b\": true}");
	assert_one(LOG_BOOL("b", false), "\"b\": false}");
	assert_one(LOG_NULL("n"), "\"n\": null}");
	assert_one(LOG_STR("s", NULL), "\"s\": null}");
	assert_one(LOG_STR("s", ""), "\"s\": \"\"}");
	assert_one(LOG_RAW("r", "{\"a\": [1, 2]}"), "\"r\": {\"a\": [1, 2]}}");
	assert_one(LOG_RAW("r", NULL), "\"r\": null}");
	/* doubles as Python's repr() */
	static const struct {
		double d;
		const char *s;
	} dv[] = {
	        {0.84, "0.84"},
	        {2.0, "2.0"},
	        {-2.5, "-2.5"},
	        {0.0, "0.0"},
	        {-0.0, "-0.0"},
	        {0.1 + 0.2, "0.30000000000000004"},
	        {1e16, "1e+16"},
	        {1e15, "1000000000000000.0"},
	        {123456789012.25, "123456789012.25"},
	        {1e-5, "1e-05"},
	        {0.0001, "0.0001"},
	        {1.5e-7, "1.5e-07"},
	        {1e300, "1e+300"},
	        {1.7976931348623157e308, "1.7976931348623157e+308"},
	        {5e-324, "5e-324"},
	        {3.141592653589793, "3.141592653589793"},
	        {1234567890123456.8, "1234567890123456.8"},
	        {12345678901234568.0, "1.2345678901234568e+16"},
	        {100.0, "100.0"},
	        {0.5, "0.5"},
	        {1.0 / 3, "0.3333333333333333"},
	};
	for (size_t i = 0; i < sizeof dv / sizeof dv[0]; i++) {
		char want[64];
		snprintf(want, sizeof want, "\"d\": %s}", dv[i].s);
		assert_string_equal(render_one(LOG_DBL("d", dv[i].d)), want);
	}
	assert_one(LOG_DBL("d", NAN), "\"d\": null}");
	assert_one(LOG_DBL("d", INFINITY), "\"d\": null}");
	assert_one(LOG_DBL("d", -INFINITY), "\"d\": null}");
}

static void test_double_roundtrip(void **state)
{
	(void)state;
	srand(7);
	for (int i = 0; i < 20000; i++) {
		uint64_t bits =
		        ((uint64_t)rand() << 42) ^ ((uint64_t)rand() << 21) ^ (uint64_t)rand();
		double d;
		memcpy(&d, &bits, sizeof d);
		if (i % 2)
			d = (double)(rand() % 100000) / 100.0;
		if (!isfinite(d))
			continue;
		const char *v = render_one(LOG_DBL("d", d)) + 5;
		assert_true(strtod(v, NULL) == d);
	}
}

/* ---- strings ---------------------------------------------------------- */

static void test_control_characters(void **state)
{
	(void)state;
	for (int c = 1; c < 0x20; c++) {
		char s[4] = {'a', (char)c, 'b', 0};
		char want[32];
		const char *esc;
		char u[8];
		switch (c) {
		case '\b':
			esc = "\\b";
			break;
		case '\t':
			esc = "\\t";
			break;
		case '\n':
			esc = "\\n";
			break;
		case '\f':
			esc = "\\f";
			break;
		case '\r':
			esc = "\\r";
			break;
		default:
			snprintf(u, sizeof u, "\\u%04x", c);
			esc = u;
		}
		snprintf(want, sizeof want, "\"s\": \"a%sb\"}", esc);
		assert_string_equal(render_one(LOG_STR("s", s)), want);
		/* keys are escaped the same way */
		char k[4] = {'k', (char)c, 0, 0};
		snprintf(want, sizeof want, "\"k%s\": 1}", esc);
		assert_string_equal(render_one(LOG_INT(k, 1)), want);
	}
	assert_one(LOG_STR("s", "\x7f"), "\"s\": \"\\u007f\"}");
	assert_one(LOG_STR("s", "say \"hi\" \\ bye"), "\"s\": \"say \\\"hi\\\" \\\\ bye\"}");
	assert_one(LOG_STR("a\"b\\", "x"), "\"a\\\"b\\\\\": \"x\"}");
	/* the logger and the event too */
	log_render_json(buf, sizeof buf, T0, LOG_INFO, "l\"", "e\n", NULL, 0);
	assert_non_null(strstr(buf, "\"logger\": \"l\\\"\", \"event\": \"e\\n\"}"));
}

/* A length-aware string keeps what follows a NUL byte, escaped (issue 15:
 * printf 'a\0b' used to log "a"); bound, it is copied whole. */
static void test_strn_nul_bytes(void **state)
{
	static const char s[] = "a\0b\0";
	(void)state;
	assert_one(LOG_STRN("line", s, 3), "\"line\": \"a\\u0000b\"}");
	assert_one(LOG_STRN("line", s, 4), "\"line\": \"a\\u0000b\\u0000\"}");
	assert_one(LOG_STRN("line", "", 0), "\"line\": \"\"}");
	assert_one(LOG_STRN("line", NULL, 0), "\"line\": null}");
	assert_one(LOG_STRN("password", s, 3), "\"password\": \"***\"}");
	/* JSON that a parser reads back as the three bytes */
	cJSON *j = cJSON_Parse(render(&LOG_STRN("line", s, 3), 1));
	assert_non_null(j);
	cJSON_Delete(j);
	log_field f = LOG_STRN("line", s, 3);
	log_render_console(buf, sizeof buf, T0, LOG_INFO, "l", "e", &f, 1, false);
	assert_non_null(strstr(buf, " line='a\\x00b'"));
	char bound[] = "x\0y";
	log_bind(LOG_STRN("b", bound, 3));
	memset(bound, 'z', 3);
	assert_one(LOG_INT("i", 1), "\"b\": \"x\\u0000y\", \"i\": 1}");
	log_clear_context();
}

static void test_utf8(void **state)
{
	(void)state;
	/* valid multibyte sequences pass through raw */
	assert_one(LOG_STR("s", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf"),
	           "\"s\": \"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf\"}");
	assert_one(LOG_STR("s", "\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf"),
	           "\"s\": \"\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf\"}");
#define FFFD "\xef\xbf\xbd"
	static const struct {
		const char *in, *out;
	} bad[] = {
	        {"\x80", FFFD}, /* lone continuation */
	        {"a\xbf"
	         "b",
	         "a" FFFD "b"},
	        {"\xc3", FFFD}, /* truncated 2-byte */
	        {"\xc3"
	         "A",
	         FFFD "A"},
	        {"\xe2\x82", FFFD}, /* truncated 3-byte */
	        {"\xe2\x82"
	         "A",
	         FFFD "A"},
	        {"\xf0\x9f\x98", FFFD}, /* truncated 4-byte */
	        {"\xf0\x9f"
	         "A",
	         FFFD "A"},
	        {"\xc0\x80", FFFD FFFD}, /* overlong NUL */
	        {"\xc1\xbf", FFFD FFFD},
	        {"\xe0\x80\xaf", FFFD FFFD FFFD},          /* overlong 3-byte */
	        {"\xf0\x80\x80\xaf", FFFD FFFD FFFD FFFD}, /* overlong 4-byte */
	        {"\xed\xa0\x80", FFFD FFFD FFFD},          /* surrogate U+D800 */
	        {"\xed\xbf\xbf", FFFD FFFD FFFD},          /* surrogate U+DFFF */
	        {"\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD}, /* U+110000 */
	        {"\xf5\x80\x80\x80", FFFD FFFD FFFD FFFD},
	        {"\xfe\xff", FFFD FFFD},
	        {"ok\xe2\x82\xac\xe2\x82", "ok\xe2\x82\xac" FFFD},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char want[64];
		snprintf(want, sizeof want, "\"s\": \"%s\"}", bad[i].out);
		assert_string_equal(render_one(LOG_STR("s", bad[i].in)), want);
	}
	/* keys too */
	assert_one(LOG_INT("k\xff", 1), "\"k" FFFD "\": 1}");
#undef FFFD
}

static void test_truncation(void **state)
{
	(void)state;
	size_t big = 200000;
	char *s = malloc(big + 1);
	assert_non_null(s);
	memset(s, 'x', big);
	s[big] = '\0';
	log_field f[] = {LOG_STR("a", s), LOG_INT("after", 5), LOG_STR("b", s)};
	render(f, 3);
	size_t len = strlen(buf);
	assert_true(len <= 64 * 1024);
	assert_true(len > 60 * 1024);
	cJSON *j = cJSON_Parse(buf);
	assert_non_null(j);
	const char *a = cJSON_GetObjectItem(j, "a")->valuestring;
	assert_string_equal(a + strlen(a) - 14, "...(truncated)");
	assert_int_equal(cJSON_GetObjectItem(j, "after")->valueint, 5);
	assert_string_equal(cJSON_GetObjectItem(j, "b")->valuestring, "...(truncated)");
	cJSON_Delete(j);
	/* multibyte characters are never cut in the middle */
	for (size_t i = 0; i + 2 <= big; i += 2)
		memcpy(s + i, "\xc3\xa9", 2);
	log_field g2[] = {LOG_STR("a", s)};
	render(g2, 1);
	j = cJSON_Parse(buf);
	assert_non_null(j);
	a = cJSON_GetObjectItem(j, "a")->valuestring;
	size_t n = strlen(a) - 14;
	for (size_t i = 0; i < n; i += 2)
		assert_memory_equal(a + i, "\xc3\xa9", 2);
	cJSON_Delete(j);
	free(s);
}

/* ---- redaction -------------------------------------------------------- */

static void test_redaction(void **state)
{
	(void)state;
	static const char *secret[] = {
	        "password",
	        "PASSWORD",
	        "db_Password",
	        "passwd",
	        "PassWd_file",
	        "secret",
	        "client_SECRET",
	        "token",
	        "github_token",
	        "Authorization",
	        "authorization_header",
	        "private_key",
	        "ssh_PRIVATE_KEY",
	        "api_key",
	        "API_KEY",
	        "x_api_key_y",
	};
	for (size_t i = 0; i < sizeof secret / sizeof secret[0]; i++) {
		assert_true(log_key_is_secret(secret[i]));
		char want[96];
		snprintf(want, sizeof want, "\"%s\": \"***\"}", secret[i]);
		assert_string_equal(render_one(LOG_STR(secret[i], "hunter2")), want);
		assert_string_equal(render_one(LOG_INT(secret[i], 42)), want);
		assert_string_equal(render_one(LOG_NULL(secret[i])), want);
		assert_string_equal(render_one(LOG_DBL(secret[i], 1.5)), want);
	}
	static const char *plain[] = {
	        "pass",           "word",    "tok",           "api",
	        "apikey",         "private", "key",           "secre",
	        "auth",           "status",  "duration_sec",  "task",
	        "correlation_id", "passw",   "tokens_used_x",
	};
	/* "tokens_used_x" holds "token": secret; the others are not */
	for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
		assert_int_equal(log_key_is_secret(plain[i]),
		                 strcmp(plain[i], "tokens_used_x") == 0);
	assert_false(log_key_is_secret(NULL));
	assert_false(log_key_is_secret(""));

	log_bind(LOG_STR("GITHUB_TOKEN", "ghp_abc"));
	log_bind(LOG_STR("user", "bob"));
	assert_string_equal(render_one(LOG_INT("n", 1)),
	                    "\"GITHUB_TOKEN\": \"***\", \"user\": \"bob\", \"n\": 1}");
	/* the real value stays available to the thread */
	assert_string_equal(log_bound_str("GITHUB_TOKEN"), "ghp_abc");
	log_render_console(buf, sizeof buf, T0, LOG_INFO, "l", "e", NULL, 0, false);
	assert_non_null(strstr(buf, " GITHUB_TOKEN=*** user=bob"));
	assert_null(strstr(buf, "ghp_abc"));
}

/* ---- console ---------------------------------------------------------- */

static void test_console(void **state)
{
	(void)state;
	log_bind(LOG_STR("correlation_id", "c1"));
	log_field f[] = {LOG_INT("repos_synced", 12),
	                 LOG_DBL("duration_sec", 0.84),
	                 LOG_STR("msg", "two words"),
	                 LOG_BOOL("ok", true),
	                 LOG_STR("n", NULL),
	                 LOG_STR("q", "it's"),
	                 LOG_STR("e", ""),
	                 LOG_STR("nl", "a\nb")};
	size_t len = log_render_console(buf, sizeof buf, T0, LOG_INFO, "tasks.github_sync",
	                                "github_sync_complete", f, 8, false);
	const char *want = "2025-12-26T00:03:45.123456+00:00 [info     ] github_sync_complete"
	                   "           [tasks.github_sync] correlation_id=c1 repos_synced=12 "
	                   "duration_sec=0.84 msg='two words' ok=true n=null q='it\\'s' e='' "
	                   "nl='a\\nb'";
	assert_string_equal(buf, want);
	assert_int_equal(len, strlen(want));

	log_clear_context();
	log_render_console(buf, sizeof buf, T0, LOG_CRITICAL, "x",
	                   "a_very_long_event_name_beyond_30", NULL, 0, false);
	assert_string_equal(buf, "2025-12-26T00:03:45.123456+00:00 [critical ] "
	                         "a_very_long_event_name_beyond_30 [x]");
	assert_null(strchr(buf, '\x1b'));
	log_render_console(buf, sizeof buf, T0, LOG_ERROR, "x", "e", f, 1, true);
	assert_non_null(strstr(buf, "\x1b[31m"));
	assert_non_null(strstr(buf, "repos_synced"));
}

/* ---- emitting, levels, the sink ----------------------------------------- */

struct tmp {
	char dir[64];
	char path[128];
	int fd;
};

static void tmp_open(struct tmp *t)
{
	strcpy(t->dir, "/tmp/test_log_XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->path, sizeof t->path, "%s/out.log", t->dir);
	t->fd = open(t->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(t->fd >= 0);
}

/* The file's content, NUL-terminated; caller frees. */
static char *tmp_read(struct tmp *t, size_t *len)
{
	struct stat st;
	assert_int_equal(fstat(t->fd, &st), 0);
	char *s = malloc((size_t)st.st_size + 1);
	assert_non_null(s);
	assert_int_equal(pread(t->fd, s, (size_t)st.st_size, 0), st.st_size);
	s[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	return s;
}

static void tmp_close(struct tmp *t)
{
	close(t->fd);
	unlink(t->path);
	rmdir(t->dir);
}

static void init_to(int fd, log_level level, log_format format)
{
	log_options o;
	log_options_default(&o);
	o.fd = fd;
	o.level = level;
	o.format = format;
	o.color = -1; /* a file is no tty: no colour */
	assert_int_equal(log_init(&o), 0);
}

struct sink_log {
	int calls;
	char json[4096];
	char ts[40];
	char cid[64], task[64], logger[64], event[64];
	bool has_cid, has_task;
	int64_t run_id;
	log_level level;
	double unix_time;
};

static void sink_record(void *ctx, const log_record *r)
{
	struct sink_log *s = ctx;
	s->calls++;
	assert_int_equal(strlen(r->json), r->json_len);
	snprintf(s->json, sizeof s->json, "%s", r->json);
	snprintf(s->ts, sizeof s->ts, "%s", r->timestamp);
	snprintf(s->logger, sizeof s->logger, "%s", r->logger);
	snprintf(s->event, sizeof s->event, "%s", r->event);
	s->has_cid = r->correlation_id != NULL;
	s->has_task = r->task != NULL;
	snprintf(s->cid, sizeof s->cid, "%s", r->correlation_id ? r->correlation_id : "");
	snprintf(s->task, sizeof s->task, "%s", r->task ? r->task : "");
	s->run_id = r->run_id;
	s->level = r->level;
	s->unix_time = r->unix_time;
}

static void test_emit_levels_and_sink(void **state)
{
	(void)state;
	struct tmp t;
	struct sink_log s = {0};
	tmp_open(&t);
	init_to(t.fd, LOG_WARNING, LOG_FORMAT_JSON);
	assert_false(log_enabled(LOG_INFO));
	assert_true(log_enabled(LOG_WARNING));
	assert_int_equal(log_get_level(), LOG_WARNING);
	log_set_sink(sink_record, &s);

	log_info("core.x", "hidden", LOG_INT("a", 1));
	log_debug("core.x", "hidden");
	assert_int_equal(s.calls, 0);

	log_bind(LOG_STR("correlation_id", "bound_cid"));
	log_bind(LOG_STR("task", "health_check"));
	log_bind(LOG_INT("run_id", 9));
	errno = 1234;
	log_warning("tasks.health_check", "server_unhealthy", LOG_STR("server_handle", "srv1"));
	assert_int_equal(errno, 1234);
	assert_int_equal(s.calls, 1);
	assert_string_equal(s.cid, "bound_cid");
	assert_string_equal(s.task, "health_check");
	assert_int_equal(s.run_id, 9);
	assert_string_equal(s.logger, "tasks.health_check");
	assert_string_equal(s.event, "server_unhealthy");
	assert_int_equal(s.level, LOG_WARNING);
	assert_int_equal(strlen(s.ts), 32);
	assert_true(fabs(s.unix_time - (double)time(NULL)) < 5);

	size_t len;
	char *out = tmp_read(&t, &len);
	assert_true(len > 0 && out[len - 1] == '\n');
	out[len - 1] = '\0';
	assert_null(strchr(out, '\n'));
	assert_string_equal(out, s.json);
	free(out);

	/* call fields win over the bound ones */
	log_error("x", "e", LOG_STR("correlation_id", "call_cid"), LOG_INT("run_id", 77));
	assert_string_equal(s.cid, "call_cid");
	assert_string_equal(s.task, "health_check");
	assert_int_equal(s.run_id, 77);

	log_clear_context();
	log_critical("x", "e2");
	assert_int_equal(s.calls, 3);
	assert_false(s.has_cid);
	assert_false(s.has_task);
	assert_int_equal(s.run_id, 0);

	log_set_sink(NULL, NULL);
	log_error("x", "e3");
	assert_int_equal(s.calls, 3);

	out = tmp_read(&t, &len);
	int lines = 0;
	for (size_t i = 0; i < len; i++)
		lines += out[i] == '\n';
	assert_int_equal(lines, 4);
	free(out);
	tmp_close(&t);
}

static void test_emit_console_sink_gets_json(void **state)
{
	(void)state;
	struct tmp t;
	struct sink_log s = {0};
	tmp_open(&t);
	init_to(t.fd, LOG_INFO, LOG_FORMAT_CONSOLE);
	log_set_sink(sink_record, &s);
	log_info("l", "console_event", LOG_STR("password", "pw"), LOG_STR("task", "t"));
	size_t len;
	char *out = tmp_read(&t, &len);
	assert_non_null(strstr(out, " [info     ] console_event"
	                            "                  [l] "
	                            "password=*** task=t\n"));
	assert_null(strchr(out, '\x1b'));
	free(out);
	cJSON *j = cJSON_Parse(s.json);
	assert_non_null(j);
	assert_string_equal(cJSON_GetObjectItem(j, "event")->valuestring, "console_event");
	assert_string_equal(cJSON_GetObjectItem(j, "password")->valuestring, "***");
	assert_string_equal(s.task, "t");
	cJSON_Delete(j);
	log_set_sink(NULL, NULL);
	tmp_close(&t);
}

/* LOG_NO_SINK: written to the output, never handed to the sink. */
static void test_emit_no_sink_flag(void **state)
{
	(void)state;
	struct tmp t;
	struct sink_log s = {0};
	tmp_open(&t);
	init_to(t.fd, LOG_INFO, LOG_FORMAT_JSON);
	log_set_sink(sink_record, &s);
	log_field f[] = {LOG_STR("server_handle", "web-1")};
	log_emitv_flags(LOG_INFO, "tasks.health_check", "printed_only", LOG_NO_SINK, f, 1);
	assert_int_equal(s.calls, 0);
	log_emitv_flags(LOG_INFO, "tasks.health_check", "stored_too", 0, f, 1);
	assert_int_equal(s.calls, 1);
	assert_string_equal(s.event, "stored_too");
	log_emitv_flags(LOG_DEBUG, "tasks.health_check", "below_level", 0, f, 1);
	assert_int_equal(s.calls, 1);
	size_t len;
	char *out = tmp_read(&t, &len);
	assert_non_null(
	        strstr(out, "\"event\": \"printed_only\", \"server_handle\": \"web-1\"}\n"));
	assert_non_null(strstr(out, "\"event\": \"stored_too\""));
	assert_null(strstr(out, "below_level"));
	free(out);
	log_set_sink(NULL, NULL);
	tmp_close(&t);
}

/* A sink that logs does not recurse into itself. */
static void sink_that_logs(void *ctx, const log_record *r)
{
	int *calls = ctx;
	(*calls)++;
	log_info("sink", "inside_sink", LOG_STR("outer", r->event));
}

static void test_sink_reentrancy(void **state)
{
	(void)state;
	struct tmp t;
	int calls = 0;
	tmp_open(&t);
	init_to(t.fd, LOG_INFO, LOG_FORMAT_JSON);
	log_set_sink(sink_that_logs, &calls);
	log_info("x", "outer_event");
	log_set_sink(NULL, NULL);
	assert_int_equal(calls, 1);
	size_t len;
	char *out = tmp_read(&t, &len);
	char *second = strchr(out, '\n');
	assert_non_null(second);
	assert_non_null(strstr(out, "\"event\": \"outer_event\"}\n"));
	assert_non_null(
	        strstr(second + 1, "\"event\": \"inside_sink\", \"outer\": \"outer_event\"}\n"));
	free(out);
	tmp_close(&t);
}

static void test_bad_fd_does_not_fail(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	close(p[0]); /* EPIPE: the test runner ignores SIGPIPE below */
	signal(SIGPIPE, SIG_IGN);
	init_to(p[1], LOG_INFO, LOG_FORMAT_JSON);
	log_info("x", "to_closed_pipe");
	close(p[1]);
	init_to(p[1], LOG_INFO, LOG_FORMAT_JSON); /* EBADF */
	log_info("x", "to_closed_fd");
	/* a full non-blocking pipe: lines are dropped, never blocking */
	assert_int_equal(pipe(p), 0);
	fcntl(p[1], F_SETFL, O_NONBLOCK);
	init_to(p[1], LOG_INFO, LOG_FORMAT_JSON);
	for (int i = 0; i < 5000; i++)
		log_info("x", "fill", LOG_INT("i", i));
	close(p[0]);
	close(p[1]);
}

/* ---- options ---------------------------------------------------------- */

static void test_options(void **state)
{
	(void)state;
	log_options o;
	const char *bad = NULL;
	log_options_default(&o);
	assert_string_equal(o.service, "scheduler");
	assert_int_equal(o.level, LOG_INFO);
	assert_int_equal(o.format, LOG_FORMAT_JSON);
	assert_int_equal(o.fd, 1);
	assert_int_equal(o.color, -1);

	unsetenv("LOG_LEVEL");
	unsetenv("LOG_FORMAT");
	unsetenv("SERVICE_NAME");
	assert_int_equal(log_options_from_env(&o, &bad), 0);
	assert_null(bad);

	setenv("LOG_LEVEL", "WARN", 1);
	setenv("LOG_FORMAT", "Console", 1);
	setenv("SERVICE_NAME", "fleet", 1);
	assert_int_equal(log_options_from_env(&o, &bad), 0);
	assert_int_equal(o.level, LOG_WARNING);
	assert_int_equal(o.format, LOG_FORMAT_CONSOLE);
	assert_string_equal(o.service, "fleet");

	setenv("LOG_LEVEL", "loud", 1);
	setenv("LOG_FORMAT", "json", 1);
	assert_int_equal(log_options_from_env(&o, &bad), -1);
	assert_string_equal(bad, "LOG_LEVEL");
	assert_int_equal(o.level, LOG_WARNING); /* unchanged */
	assert_int_equal(o.format, LOG_FORMAT_JSON);

	bad = NULL;
	setenv("LOG_LEVEL", "debug", 1);
	setenv("LOG_FORMAT", "xml", 1);
	assert_int_equal(log_options_from_env(&o, &bad), -1);
	assert_string_equal(bad, "LOG_FORMAT");
	assert_int_equal(o.level, LOG_DEBUG);
	assert_int_equal(o.format, LOG_FORMAT_JSON);
	unsetenv("LOG_LEVEL");
	unsetenv("LOG_FORMAT");
	unsetenv("SERVICE_NAME");

	log_level l = LOG_INFO;
	assert_int_equal(log_level_parse("CRITICAL", &l), 0);
	assert_int_equal(l, LOG_CRITICAL);
	assert_int_equal(log_level_parse("Error", &l), 0);
	assert_int_equal(l, LOG_ERROR);
	assert_int_equal(log_level_parse("warning", &l), 0);
	assert_int_equal(l, LOG_WARNING);
	assert_int_equal(log_level_parse("info ", &l), -1);
	assert_int_equal(log_level_parse("", &l), -1);
	assert_int_equal(log_level_parse(NULL, &l), -1);
	assert_int_equal(l, LOG_WARNING);
	log_format f = LOG_FORMAT_JSON;
	assert_int_equal(log_format_parse("CONSOLE", &f), 0);
	assert_int_equal(f, LOG_FORMAT_CONSOLE);
	assert_int_equal(log_format_parse("text", &f), -1);
}

/* ---- threads ---------------------------------------------------------- */

#define THREADS    4
#define PER_THREAD 2000

static void *thread_emit(void *arg)
{
	int id = (int)(intptr_t)arg;
	char cid[32];
	snprintf(cid, sizeof cid, "thread_%d", id);
	log_bind(LOG_STR("correlation_id", cid));
	log_bind(LOG_INT("thread", id));
	char pad[300];
	memset(pad, 'a' + id, sizeof pad - 1);
	pad[sizeof pad - 1] = '\0';
	for (int i = 0; i < PER_THREAD; i++)
		log_info("test.threads", "tick", LOG_INT("seq", i), LOG_STR("pad", pad),
		         LOG_DBL("x", i * 0.5));
	/* no log_clear_context: the thread's state is freed at exit */
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	struct tmp t;
	tmp_open(&t);
	init_to(t.fd, LOG_INFO, LOG_FORMAT_JSON);
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, thread_emit, (void *)(intptr_t)i), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);

	size_t len;
	char *out = tmp_read(&t, &len);
	int next[THREADS] = {0};
	int lines = 0;
	char *save = NULL;
	for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		cJSON *j = cJSON_Parse(line);
		assert_non_null(j);
		int id = cJSON_GetObjectItem(j, "thread")->valueint;
		assert_true(id >= 0 && id < THREADS);
		char cid[32];
		snprintf(cid, sizeof cid, "thread_%d", id);
		assert_string_equal(cJSON_GetObjectItem(j, "correlation_id")->valuestring, cid);
		/* each thread's lines arrive whole and in order */
		assert_int_equal(cJSON_GetObjectItem(j, "seq")->valueint, next[id]);
		assert_int_equal(strlen(cJSON_GetObjectItem(j, "pad")->valuestring), 299);
		next[id]++;
		lines++;
		cJSON_Delete(j);
	}
	assert_int_equal(lines, THREADS * PER_THREAD);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(next[i], PER_THREAD);
	free(out);
	tmp_close(&t);
}

/* log_set_sink(NULL) returns only when no thread is inside the old sink. */
static atomic_int sink_inside;
static atomic_int sink_calls;
static atomic_bool stop_emitters;

static void sink_slowish(void *ctx, const log_record *r)
{
	(void)ctx;
	(void)r;
	atomic_fetch_add(&sink_inside, 1);
	for (volatile int i = 0; i < 2000; i++)
		;
	atomic_fetch_add(&sink_calls, 1);
	atomic_fetch_sub(&sink_inside, 1);
}

static void *thread_spin_emit(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop_emitters))
		log_info("x", "spin");
	return NULL;
}

static void test_sink_removal_waits(void **state)
{
	(void)state;
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	init_to(fd, LOG_INFO, LOG_FORMAT_JSON);
	atomic_store(&stop_emitters, false);
	pthread_t th[3];
	for (int round = 0; round < 20; round++) {
		atomic_store(&sink_calls, 0);
		log_set_sink(sink_slowish, NULL);
		for (int i = 0; i < 3; i++)
			pthread_create(&th[i], NULL, thread_spin_emit, NULL);
		while (atomic_load(&sink_calls) < 50)
			log_info("x", "main"); /* the main thread feeds the sink too */
		log_set_sink(NULL, NULL);
		assert_int_equal(atomic_load(&sink_inside), 0);
		int calls = atomic_load(&sink_calls);
		for (int i = 0; i < 100; i++)
			log_info("x", "after");
		assert_int_equal(atomic_load(&sink_calls), calls);
		atomic_store(&stop_emitters, true);
		for (int i = 0; i < 3; i++)
			pthread_join(th[i], NULL);
		atomic_store(&stop_emitters, false);
	}
	close(fd);
}

/* ---- fuzz ------------------------------------------------------------- */

/* Strict UTF-8 check of a whole buffer. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		size_t len;
		unsigned cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static void test_fuzz_random_bytes(void **state)
{
	(void)state;
	srand(12345);
	char key[24], val[80];
	for (int it = 0; it < 10000; it++) {
		size_t kl = 1 + (size_t)rand() % (sizeof key - 1);
		size_t vl = (size_t)rand() % (sizeof val - 1);
		for (size_t i = 0; i < kl; i++)
			key[i] = (char)(1 + rand() % 255);
		key[kl] = '\0';
		for (size_t i = 0; i < vl; i++)
			val[i] = (char)(1 + rand() % 255);
		val[vl] = '\0';
		if (log_key_is_secret(key) || strcmp(key, "k2") == 0)
			continue;
		log_field f[] = {LOG_STR(key, val), LOG_INT("k2", it)};
		size_t len = log_render_json(buf, sizeof buf, T0, LOG_INFO, val, key, f, 2);
		assert_true(utf8_valid((const unsigned char *)buf, len));
		cJSON *j = cJSON_Parse(buf);
		assert_non_null(j);
		assert_int_equal(cJSON_GetArraySize(j), 7);
		assert_int_equal(cJSON_GetObjectItem(j, "k2")->valueint, it);
		cJSON_Delete(j);
		/* console lines hold no raw control character */
		len = log_render_console(buf, sizeof buf, T0, LOG_INFO, val, key, f, 2, false);
		for (size_t i = 0; i < len; i++)
			assert_true((unsigned char)buf[i] >= 0x20 && buf[i] != 0x7f);
		assert_true(utf8_valid((const unsigned char *)buf, len));
	}
}

/* ---- the byte classifier: the SSE2 path against the scalar reference ---- */

/* Both paths on a copy in a buffer of exactly n bytes (ASan catches a read
 * outside it); returns the scalar answer. */
static unsigned classify_both(const char *s, size_t n)
{
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, s, n);
	unsigned want = log_classify_scalar(copy, n);
#if defined(__SSE2__)
	assert_int_equal(log_classify_sse2(copy, n), want);
#endif
	assert_int_equal(log_classify(copy, n), want);
	free(copy);
	return want;
}

static void test_classify_known_answers(void **state)
{
	(void)state;
	assert_int_equal(classify_both("", 0), 0);
	assert_int_equal(classify_both("server_ip", 9), 0);
	assert_int_equal(classify_both("password", 8), CL_SECRET);
	assert_int_equal(classify_both("Token", 5), CL_SECRET);
	assert_int_equal(classify_both("a\"b", 3), CL_ESC);
	assert_int_equal(classify_both("a\\b", 3), CL_ESC);
	assert_int_equal(classify_both("\x7f", 1), CL_ESC);
	assert_int_equal(classify_both("caf\xc3\xa9", 5), CL_ESC | CL_SECRET);
	assert_int_equal(classify_both("tab\there", 8), CL_ESC);
	assert_int_equal(classify_both("0123456789ABDEFGHIJ", 19), 0);
	assert_int_equal(classify_both("0123456789ABDEFGHIJ\n", 20), CL_ESC);
	assert_int_equal(classify_both("\0", 1), CL_ESC);
}

/* Every byte value at every position of every length up to 48 (the SSE2
 * path has separate cases for 1-3, 4-7, 8-15 and 16+ bytes and a tail). */
static void test_classify_every_byte_at_every_position(void **state)
{
	char s[48];
	(void)state;
	for (size_t n = 1; n <= sizeof s; n++) {
		for (size_t pos = 0; pos < n; pos++) {
			for (int b = 0; b < 256; b++) {
				memset(s, 'A', n);
				s[pos] = (char)b;
				assert_int_equal(classify_both(s, n), str_class[b]);
			}
		}
	}
}

static void test_classify_random_strings(void **state)
{
	/* Mostly plain bytes, so that the classes are not always both set. */
	static const char plain[] = "ABDEFGHIJLMNOPQRSTUVXYabdefghijlmnopqrstuvxy0123456789_-.:/ ";
	char s[200];
	unsigned seen = 0;
	(void)state;
	srand(1234);
	for (int iter = 0; iter < 200000; iter++) {
		size_t n = (size_t)(rand() % (int)sizeof s);
		for (size_t i = 0; i < n; i++) {
			int r = rand() % 100;
			s[i] = r < 97 ? plain[rand() % (int)(sizeof plain - 1)]
			              : (char)(rand() % 256);
		}
		seen |= 1u << classify_both(s, n);
	}
	assert_int_equal(seen, 0xfu); /* every class combination came up */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_golden_line, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_levels_and_service, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_timestamps, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_key_order_and_context, setup_utc,
	                                        teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_fixed_keys_not_repeated, setup_utc,
	                                        teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_values, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_double_roundtrip, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_control_characters, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_strn_nul_bytes, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_utf8, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_truncation, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_redaction, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_console, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_emit_levels_and_sink, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_emit_console_sink_gets_json, setup_utc,
	                                        teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_emit_no_sink_flag, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_sink_reentrancy, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_bad_fd_does_not_fail, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_options, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_threads, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_sink_removal_waits, setup_utc, teardown_ctx),
	        cmocka_unit_test_setup_teardown(test_fuzz_random_bytes, setup_utc, teardown_ctx),
	        cmocka_unit_test(test_classify_known_answers),
	        cmocka_unit_test(test_classify_every_byte_at_every_position),
	        cmocka_unit_test(test_classify_random_strings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
