/* Unit tests: health_history's sample encoding (known answers, round
 * trips, malformed input) and record/last_failure/summary/downsample/prune
 * on a temporary store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "health_history.h"
#include "temp_store.h"

#define H0 1700000000.0 /* 2023-11-14T22:13:20Z; its hour starts at 1699999200 */

static int setup(void **state)
{
	return temp_store_setup(state, "hh",
	                        "INSERT INTO servers (id, handle, created_at, updated_at)"
	                        " VALUES (1, 'web-1', 1, 1), (2, 'web-2', 1, 1)");
}

static int teardown(void **state)
{
	return temp_store_teardown(state);
}

static health_sample ok(int64_t id, double at, int64_t ms)
{
	return (health_sample){
	        .server_id = id, .at = at, .healthy = true, .stage = 'e', .response_ms = ms};
}

static health_sample bad(int64_t id, double at, const char *stage, const char *error, int64_t ms)
{
	return (health_sample){.server_id = id,
	                       .at = at,
	                       .stage = health_history_stage_code(stage),
	                       .error = health_history_error_code(error),
	                       .response_ms = ms};
}

/* ---- the encoding ---- */

static void test_codes(void **state)
{
	(void)state;
	const char *stages[] = {"resolve", "connect", "handshake", "hostkey", "auth", "exec"};
	for (size_t i = 0; i < 6; i++) {
		char c = health_history_stage_code(stages[i]);
		assert_true(c != '?');
		assert_string_equal(health_history_stage_name(c), stages[i]);
	}
	const char *errors[] = {"resolve_failed",
	                        "connect_refused",
	                        "connect_timeout",
	                        "connect_failed",
	                        "timeout",
	                        "handshake_failed",
	                        "hostkey_unknown",
	                        "hostkey_mismatch",
	                        "known_hosts_failed",
	                        "auth_failed",
	                        "credentials_unreadable",
	                        "exec_failed",
	                        "command_failed",
	                        "cancelled",
	                        "internal"};
	char seen[128] = {0};
	for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
		char c = health_history_error_code(errors[i]);
		assert_true(c != '?');
		assert_int_equal(seen[(unsigned char)c], 0); /* one letter per kind */
		seen[(unsigned char)c] = 1;
		assert_string_equal(health_history_error_name(c), errors[i]);
	}
	assert_int_equal(health_history_stage_code("bogus"), '?');
	assert_int_equal(health_history_stage_code(NULL), '?');
	assert_int_equal(health_history_error_code("handshake_timeout_new"), '?');
	assert_string_equal(health_history_error_name('?'), "unknown");
}

static void test_encode_known_answers(void **state)
{
	(void)state;
	char buf[HEALTH_SAMPLE_MAX];
	assert_int_equal(health_history_hour(H0), 1699999200);
	health_sample s = ok(1, H0 + 0.9, 42); /* 800.9 s into the hour */
	assert_int_equal(health_history_encode(&s, buf, sizeof buf), 7);
	assert_string_equal(buf, "800:42;");
	s = bad(1, H0 + 417, "connect", "connect_timeout", 5000);
	health_history_encode(&s, buf, sizeof buf);
	assert_string_equal(buf, "1217:cO5000;");
	s.response_ms = -5;
	health_history_encode(&s, buf, sizeof buf);
	assert_string_equal(buf, "1217:cO0;");
	s.response_ms = INT64_MAX; /* clamped: still fits */
	health_history_encode(&s, buf, sizeof buf);
	assert_string_equal(buf, "1217:cO999999999;");
	s = ok(1, 1699999200.0 + 3599.99, 0);
	health_history_encode(&s, buf, sizeof buf);
	assert_string_equal(buf, "3599:0;");
	assert_int_equal(health_history_encode(&s, buf, 8), 0); /* cap too small */
}

static void test_decode_round_trip(void **state)
{
	(void)state;
	char text[4096] = "";
	size_t len = 0;
	health_sample in[40];
	for (int i = 0; i < 40; i++) {
		in[i] = i % 3 ? ok(0, H0 + i * 60, i * 7)
		              : bad(0, H0 + i * 60, "auth", "auth_failed", i);
		len += health_history_encode(&in[i], text + len, sizeof text - len);
	}
	const char *p = text, *end = text + len;
	health_sample out;
	int i = 0, d;
	while ((d = health_history_decode(&p, end, health_history_hour(H0), &out)) == 1) {
		assert_true(i < 40);
		assert_int_equal(out.healthy, in[i].healthy);
		assert_int_equal(out.response_ms, in[i].response_ms);
		assert_true(out.at == (double)(int64_t)in[i].at);
		if (!out.healthy) {
			assert_int_equal(out.stage, 'a');
			assert_int_equal(out.error, health_history_error_code("auth_failed"));
		}
		i++;
	}
	assert_int_equal(d, 0);
	assert_int_equal(i, 40);
}

static void test_decode_malformed(void **state)
{
	(void)state;
	/* each bad sample is skipped up to its ';', the good ones still read */
	const char *text = "3600:1;x;12:;5:cO;7:ab12;8:1;9:12345678901;10:c;11:5";
	const char *p = text, *end = text + strlen(text);
	health_sample out;
	int good = 0, badn = 0, d;
	while ((d = health_history_decode(&p, end, 0, &out)) != 0) {
		assert_true(p <= end);
		if (d == 1) {
			good++;
			assert_true(out.at == 7 || out.at == 8);
		} else {
			badn++;
		}
	}
	assert_int_equal(good, 2); /* 7:ab12 and 8:1 */
	assert_int_equal(badn, 7);
	/* never reads past end: a sample cut before its ';' */
	const char cut[] = "17:42;";
	p = cut;
	assert_int_equal(health_history_decode(&p, cut + 4, 0, &out), -1);
	assert_ptr_equal(p, cut + 4);
	p = cut;
	assert_int_equal(health_history_decode(&p, cut, 0, &out), 0);
}

/* ---- the table ---- */

static void row(store *st, int64_t id, int64_t hour, int64_t *checks, int64_t *failures,
                int64_t *min, int64_t *max, int64_t *sum, char *samples, size_t cap)
{
	store_stmt *q;
	assert_int_equal(store_prepare(st,
	                               "SELECT checks, failures, coalesce(rt_min_ms, -1),"
	                               " coalesce(rt_max_ms, -1), rt_sum_ms, samples"
	                               " FROM health_history WHERE server_id = ?1 AND hour = ?2",
	                               &q),
	                 STORE_OK);
	store_bind_int64(q, 1, id);
	store_bind_int64(q, 2, hour);
	assert_int_equal(store_step(q), STORE_ROW);
	*checks = store_col_int64(q, 0);
	*failures = store_col_int64(q, 1);
	*min = store_col_int64(q, 2);
	*max = store_col_int64(q, 3);
	*sum = store_col_int64(q, 4);
	const char *t = store_col_text(q, 5);
	snprintf(samples, cap, "%s", t ? t : "(null)");
	store_stmt_done(q);
}

static int64_t count_rows(store *st, const char *where_sql)
{
	store_stmt *q;
	assert_int_equal(store_prepare(st, where_sql, &q), STORE_OK);
	assert_int_equal(store_step(q), STORE_ROW);
	int64_t n = store_col_int64(q, 0);
	store_stmt_done(q);
	return n;
}

static void test_record_summary_and_last_failure(void **state)
{
	store *st = ((temp_store *)*state)->st;
	int64_t hour = health_history_hour(H0);
	health_sample run1[] = {bad(1, H0, "connect", "connect_refused", 3), ok(2, H0, 40),
	                        ok(99, H0, 1) /* no such server: skipped */};
	health_sample run2[] = {ok(1, H0 + 60, 25), ok(2, H0 + 60, 10)};
	health_sample run3[] = {bad(1, H0 + 120, "exec", "command_failed", 30),
	                        ok(2, H0 + 120, 70)};
	char stage = 0, error = 0;

	assert_int_equal(health_history_last_failure(st, 1, &stage, &error), STORE_NOTFOUND);
	assert_int_equal(health_history_record(st, run1, 3), STORE_OK);
	assert_int_equal(health_history_last_failure(st, 1, &stage, &error), STORE_OK);
	assert_int_equal(stage, 'c');
	assert_int_equal(error, health_history_error_code("connect_refused"));
	assert_int_equal(health_history_last_failure(st, 2, &stage, &error), STORE_NOTFOUND);

	assert_int_equal(store_tx_begin(st), STORE_OK); /* inside the caller's transaction */
	assert_int_equal(health_history_record(st, run2, 2), STORE_OK);
	assert_int_equal(health_history_record(st, run3, 2), STORE_OK);
	assert_int_equal(store_tx_commit(st), STORE_OK);

	int64_t checks, failures, min, max, sum;
	char samples[256];
	row(st, 1, hour, &checks, &failures, &min, &max, &sum, samples, sizeof samples);
	assert_int_equal(checks, 3);
	assert_int_equal(failures, 2);
	assert_int_equal(min, 25); /* healthy checks only */
	assert_int_equal(max, 25);
	assert_int_equal(sum, 25);
	assert_string_equal(samples, "800:cF3;860:25;920:eX30;");
	row(st, 2, hour, &checks, &failures, &min, &max, &sum, samples, sizeof samples);
	assert_int_equal(checks, 3);
	assert_int_equal(failures, 0);
	assert_int_equal(min, 10);
	assert_int_equal(max, 70);
	assert_int_equal(sum, 120);
	assert_string_equal(samples, "800:40;860:10;920:70;");
	assert_int_equal(count_rows(st, "SELECT count(*) FROM health_history"), 2);

	assert_int_equal(health_history_last_failure(st, 1, &stage, &error), STORE_OK);
	assert_int_equal(stage, 'e');
	assert_int_equal(error, 'X');

	/* the next hour is a new row, and the newest one answers */
	health_sample next[] = {ok(1, H0 + 3600, 5)};
	assert_int_equal(health_history_record(st, next, 1), STORE_OK);
	assert_int_equal(health_history_last_failure(st, 1, &stage, &error), STORE_NOTFOUND);
	health_history_summary(st, 1, H0 - 86400, &checks, &failures);
	assert_int_equal(checks, 4);
	assert_int_equal(failures, 2);
	health_history_summary(st, 1, H0 + 3600, &checks, &failures);
	assert_int_equal(checks, 1);
	assert_int_equal(failures, 0);

	/* with response times (`servers show`): healthy checks only */
	health_summary h;
	assert_int_equal(health_history_summarize(st, 1, H0 - 86400, &h), STORE_OK);
	assert_int_equal(h.checks, 4);
	assert_int_equal(h.failures, 2);
	assert_int_equal(h.rt_min_ms, 5);
	assert_int_equal(h.rt_max_ms, 25);
	assert_true(h.rt_avg_ms > 14.99 && h.rt_avg_ms < 15.01); /* (25 + 5) / 2 */
	assert_int_equal(health_history_summarize(st, 3, H0 - 86400, &h), STORE_OK);
	assert_int_equal(h.checks, 0);
	assert_int_equal(h.rt_min_ms, -1);
	assert_true(h.rt_avg_ms < 0);
}

/* Hours 0..9 of two servers, one sample each. */
static void ten_hours(store *st)
{
	health_sample s[20];
	for (int h = 0; h < 10; h++) {
		s[2 * h] = ok(1, 1699999200.0 + h * 3600 + 5, h);
		s[2 * h + 1] = bad(2, 1699999200.0 + h * 3600 + 5, "connect", "timeout", h);
	}
	assert_int_equal(health_history_record(st, s, 20), STORE_OK);
}

static void test_downsample_in_bounded_batches(void **state)
{
	store *st = ((temp_store *)*state)->st;
	size_t done = 0;
	ten_hours(st);
	/* before = the start of hour 6: hours 0..5 ended, 12 rows */
	double before = 1699999200.0 + 6 * 3600;
	assert_int_equal(health_history_downsample(st, before, 5, &done), STORE_OK);
	assert_int_equal(done, 5);
	assert_int_equal(
	        count_rows(st, "SELECT count(*) FROM health_history WHERE samples IS NULL"), 5);
	assert_int_equal(health_history_downsample(st, before, 5, &done), STORE_OK);
	assert_int_equal(done, 5);
	assert_int_equal(health_history_downsample(st, before, 5, &done), STORE_OK);
	assert_int_equal(done, 2); /* fewer than max_rows: nothing left */
	assert_int_equal(health_history_downsample(st, before, 5, &done), STORE_OK);
	assert_int_equal(done, 0);
	assert_int_equal(count_rows(st, "SELECT count(*) FROM health_history WHERE samples IS NULL"
	                                " AND hour < 1699999200 + 6 * 3600"),
	                 12);
	assert_int_equal(
	        count_rows(st, "SELECT count(*) FROM health_history WHERE samples IS NULL"), 12);
	/* summaries kept; the hour still running is not touched */
	assert_int_equal(count_rows(st, "SELECT sum(checks) FROM health_history"), 20);
	assert_int_equal(health_history_downsample(st, before + 3599, 100, &done), STORE_OK);
	assert_int_equal(done, 0);
	/* a late sample into a downsampled hour counts, and keeps it NULL */
	health_sample late[] = {ok(1, 1699999200.0 + 10, 3)};
	assert_int_equal(health_history_record(st, late, 1), STORE_OK);
	assert_int_equal(count_rows(st, "SELECT checks FROM health_history WHERE server_id = 1"
	                                " AND hour = 1699999200 AND samples IS NULL"),
	                 2);
	assert_int_equal(health_history_downsample(st, before, 0, &done), STORE_OK);
	assert_int_equal(done, 0);
}

static void test_prune_in_bounded_batches(void **state)
{
	store *st = ((temp_store *)*state)->st;
	size_t deleted = 0;
	ten_hours(st);
	double before = 1699999200.0 + 3 * 3600 + 1800; /* hours 0..2 ended */
	assert_int_equal(health_history_prune(st, before, 4, &deleted), STORE_OK);
	assert_int_equal(deleted, 4);
	assert_int_equal(health_history_prune(st, before, 4, &deleted), STORE_OK);
	assert_int_equal(deleted, 2);
	assert_int_equal(count_rows(st, "SELECT count(*) FROM health_history"), 14);
	assert_int_equal(count_rows(st, "SELECT min(hour) FROM health_history"),
	                 1699999200 + 3 * 3600);
	/* deleting a server deletes its rows (ON DELETE CASCADE) */
	assert_int_equal(store_exec(st, "DELETE FROM servers WHERE id = 2"), STORE_OK);
	assert_int_equal(count_rows(st, "SELECT count(*) FROM health_history"), 7);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_codes),
	        cmocka_unit_test(test_encode_known_answers),
	        cmocka_unit_test(test_decode_round_trip),
	        cmocka_unit_test(test_decode_malformed),
	        T(test_record_summary_and_last_failure),
	        T(test_downsample_in_bounded_batches),
	        T(test_prune_in_bounded_batches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
