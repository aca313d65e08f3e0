/* Unit tests: the pure parts of src/notifiers.c — filter, message and
 * summary text, webhook signature, redaction, backoff, rate window and the
 * folding decision. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notifiers.h"

static void test_filter(void **state)
{
	(void)state;
	notifier nf = {.min_level = LOG_WARNING};
	assert_true(notifier_wants(&nf, "server_unreachable", LOG_CRITICAL));
	assert_true(notifier_wants(&nf, "server_missing", LOG_WARNING));
	assert_false(notifier_wants(&nf, "server_recovered", LOG_INFO));
	assert_false(notifier_wants(&nf, NOTIFY_KIND_FOLDED, LOG_CRITICAL));
	assert_false(notifier_wants(&nf, NULL, LOG_CRITICAL));

	char events[] = "server_recovered, project_missing";
	nf = (notifier){.min_level = LOG_INFO, .events = events};
	assert_true(notifier_wants(&nf, "server_recovered", LOG_INFO));
	assert_true(notifier_wants(&nf, "project_missing", LOG_CRITICAL));
	assert_false(notifier_wants(&nf, "server_unreachable", LOG_CRITICAL));
	assert_false(notifier_wants(&nf, "server_recover", LOG_INFO));
}

static void test_text(void **state)
{
	(void)state;
	outbox_row row = {.id = 7,
	                  .kind = "server_unreachable",
	                  .level = LOG_CRITICAL,
	                  .title = "Server unreachable: web-1",
	                  .body = "3 checks failed",
	                  .correlation_id = "run_health_check_1_abcd"};
	char *t = notify_text(&row);
	assert_string_equal(t, "[critical] Server unreachable: web-1\n3 checks failed\n\n"
	                       "correlation_id: run_health_check_1_abcd\n"
	                       "fleetkeeper trace run_health_check_1_abcd");
	free(t);

	row.body = NULL;
	row.correlation_id = NULL;
	t = notify_text(&row);
	assert_string_equal(t, "[critical] Server unreachable: web-1");
	free(t);

	/* A huge body is cut, on a UTF-8 boundary, and the hint survives. */
	size_t n = 10000;
	char *body = malloc(n + 1);
	for (size_t i = 0; i < n; i += 2)
		memcpy(body + i, "\xc3\xa9", 2); /* é */
	body[n] = '\0';
	row.body = body;
	row.correlation_id = "cid-1";
	t = notify_text(&row);
	assert_true(strlen(t) <= NOTIFY_TEXT_MAX);
	assert_non_null(strstr(t, "\nfleetkeeper trace cid-1"));
	const char *dots = strstr(t, "\n...\n");
	assert_non_null(dots);
	assert_int_equal((dots - t - (long)strlen("[critical] Server unreachable: web-1\n")) % 2,
	                 0);
	free(t);
	free(body);
}

static void test_summary(void **state)
{
	(void)state;
	outbox_row rows[60];
	char titles[60][64], cids[60][32];
	for (int i = 0; i < 60; i++) {
		snprintf(titles[i], sizeof titles[i], "Server unreachable: web-%d", i);
		snprintf(cids[i], sizeof cids[i], "cid-%d", i);
		rows[i] = (outbox_row){.id = i + 1,
		                       .kind = "server_unreachable",
		                       .level = i == 3 ? LOG_CRITICAL : LOG_WARNING,
		                       .title = titles[i],
		                       .correlation_id = cids[i]};
	}
	char *title, *body;
	log_level level;
	notify_summary(rows, 3, 10, &title, &body, &level);
	assert_string_equal(title, "3 notifications folded into one (rate limit: 10 a minute)");
	assert_string_equal(body,
	                    "- [warning] Server unreachable: web-0 (fleetkeeper trace cid-0)\n"
	                    "- [warning] Server unreachable: web-1 (fleetkeeper trace cid-1)\n"
	                    "- [warning] Server unreachable: web-2 (fleetkeeper trace cid-2)\n");
	assert_int_equal(level, LOG_WARNING);
	free(title);
	free(body);

	notify_summary(rows, 60, 10, &title, &body, &level);
	assert_int_equal(level, LOG_CRITICAL);
	assert_true(strlen(body) < NOTIFY_TEXT_MAX - 100);
	const char *more = strstr(body, "... and ");
	assert_non_null(more);
	int listed = 0;
	for (const char *p = body; (p = strstr(p, "- [")) != NULL; p++)
		listed++;
	assert_int_equal(listed + atoi(more + 8), 60);
	free(title);
	free(body);
}

static void test_sign(void **state)
{
	(void)state;
	char sig[80];
	/* python3: hmac.new(b"Jefe", b'1700000000.{"a":1}', hashlib.sha256).hexdigest() */
	assert_int_equal(notify_sign("Jefe", "1700000000", "{\"a\":1}", sig, sizeof sig), 0);
	assert_string_equal(
	        sig, "sha256=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a");
	assert_int_equal(notify_sign("Jefe", "1", "x", sig, 10), -1);
}

static void test_webhook_body(void **state)
{
	(void)state;
	outbox_row row = {.id = 3,
	                  .created_at = 1700000000.5,
	                  .kind = "project_missing",
	                  .level = LOG_CRITICAL,
	                  .title = "Project missing: a/b",
	                  .fields_json = "{\"project\": \"a/b\"}"};
	char *b = notify_webhook_body(&row, "text");
	assert_string_equal(b, "{\"id\":3,\"created_at\":1700000000.5,\"kind\":\"project_missing\","
	                       "\"level\":\"critical\",\"title\":\"Project missing: a/b\","
	                       "\"body\":null,\"correlation_id\":null,"
	                       "\"fields\":{\"project\":\"a/b\"},\"text\":\"text\"}");
	free(b);
}

static void test_redact(void **state)
{
	(void)state;
	char token[] = "123:ABCDEF", url[] = "https://hooks/x/SECRETPATH";
	notifier nf = {.type = NOTIFIER_TELEGRAM, .token = token, .url = url};
	char s[128] = "HTTP 401: Unauthorized /bot123:ABCDEF/sendMessage 123:ABCDEF";
	notifier_redact(&nf, s);
	assert_string_equal(s, "HTTP 401: Unauthorized /bot***/sendMessage ***");
	nf = (notifier){.type = NOTIFIER_SLACK, .url = url};
	snprintf(s, sizeof s, "bad url https://hooks/x/SECRETPATH!");
	notifier_redact(&nf, s);
	assert_string_equal(s, "bad url ***!");
}

static void test_backoff(void **state)
{
	(void)state;
	assert_true(notify_backoff(0) == 1.0);
	assert_true(notify_backoff(1) == 1.0);
	assert_true(notify_backoff(2) == 2.0);
	assert_true(notify_backoff(4) == 8.0);
	assert_true(notify_backoff(30) == NOTIFY_BACKOFF_MAX);
	assert_true(notify_backoff(100000) == NOTIFY_BACKOFF_MAX);
}

static void test_rate_window(void **state)
{
	(void)state;
	notify_rate r;
	assert_int_equal(notify_rate_init(&r, 3), 0);
	assert_int_equal(notify_rate_free_slots(&r, 1000.0), 3);
	notify_rate_note(&r, 1000.0);
	notify_rate_note(&r, 1010.0);
	assert_int_equal(notify_rate_free_slots(&r, 1020.0), 1);
	notify_rate_note(&r, 1020.0);
	assert_int_equal(notify_rate_free_slots(&r, 1030.0), 0);
	assert_true(notify_rate_next_free(&r, 1030.0) == 1060.0);
	assert_int_equal(notify_rate_free_slots(&r, 1060.0), 1); /* 1000 left the window */
	assert_true(notify_rate_next_free(&r, 1060.0) == 1060.0);
	assert_int_equal(notify_rate_free_slots(&r, 1081.0), 3);
	/* The wall clock set back an hour: old send times do not block. */
	notify_rate_note(&r, 2000.0);
	notify_rate_note(&r, 2001.0);
	notify_rate_note(&r, 2002.0);
	assert_int_equal(notify_rate_free_slots(&r, 2002.5), 0);
	assert_int_equal(notify_rate_free_slots(&r, 2000.0 - 3600.0), 3);
	notify_rate_free(&r);

	assert_int_equal(notify_rate_init(&r, 0), 0); /* unlimited */
	notify_rate_note(&r, 1.0);
	assert_int_equal(notify_rate_free_slots(&r, 1.0), INT32_MAX);
	notify_rate_free(&r);
}

static void test_fold_decision(void **state)
{
	(void)state;
	assert_int_equal(notify_fold_decision(0, 10), -1);
	assert_int_equal(notify_fold_decision(5, 0), -1);
	assert_int_equal(notify_fold_decision(50, 10), 0); /* send the head */
	assert_int_equal(notify_fold_decision(41, 2), 0);
	assert_int_equal(notify_fold_decision(41, 1), 41); /* the last slot: a summary */
	assert_int_equal(notify_fold_decision(1, 1), 0);
	assert_int_equal(notify_fold_decision(3, INT32_MAX), 0);
}

/* 50 due rows against a limit of 10: 9 alone, then one summary of 41. */
static void test_burst_plan(void **state)
{
	(void)state;
	notify_rate r;
	notify_rate_init(&r, 10);
	int pending = 50, messages = 0, folded = 0;
	double now = 5000.0;
	while (pending > 0) {
		int d = notify_fold_decision(pending, notify_rate_free_slots(&r, now));
		assert_true(d >= 0);
		if (d > 1) {
			folded = d;
			pending = 1;
			continue;
		}
		notify_rate_note(&r, now);
		messages++;
		pending--;
		now += 0.01;
	}
	assert_int_equal(messages, 10);
	assert_int_equal(folded, 41);
	notify_rate_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_filter),        cmocka_unit_test(test_text),
	        cmocka_unit_test(test_summary),       cmocka_unit_test(test_sign),
	        cmocka_unit_test(test_webhook_body),  cmocka_unit_test(test_redact),
	        cmocka_unit_test(test_backoff),       cmocka_unit_test(test_rate_window),
	        cmocka_unit_test(test_fold_decision), cmocka_unit_test(test_burst_plan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
