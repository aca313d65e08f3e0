/* Unit tests: the HTTP API's token match, its failed-authentication
 * limiter (src/api/api_auth.c) and the check of a caller's correlation id
 * (runner_correlation_id_valid). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api_internal.h"
#include "runner.h"

static void make(api_token *t, const char *name, const char *secret, api_scope scope)
{
	memset(t, 0, sizeof *t);
	snprintf(t->name, sizeof t->name, "%s", name);
	assert_int_equal(token_hash_sha256(secret, strlen(secret), t->hash), 0);
	t->scope = scope;
}

static void test_match_finds_only_the_exact_token(void **state)
{
	(void)state;
	api_token t[3];
	make(&t[0], "viewer", "read-token-0123456789", SCOPE_READ);
	make(&t[1], "ops", "operate-token-0123456789", SCOPE_OPERATE);
	make(&t[2], "root", "admin-token-0123456789", SCOPE_ADMIN);
	assert_ptr_equal(api_tokens_match(t, 3, "read-token-0123456789"), &t[0]);
	assert_ptr_equal(api_tokens_match(t, 3, "operate-token-0123456789"), &t[1]);
	assert_ptr_equal(api_tokens_match(t, 3, "admin-token-0123456789"), &t[2]);
	assert_null(api_tokens_match(t, 3, "read-token-012345678"));   /* a prefix */
	assert_null(api_tokens_match(t, 3, "read-token-01234567890")); /* longer */
	assert_null(api_tokens_match(t, 3, "READ-TOKEN-0123456789"));
	assert_null(api_tokens_match(t, 3, ""));
	assert_null(api_tokens_match(t, 0, "read-token-0123456789"));
	/* the digest, not the text, is what is kept */
	assert_null(memmem(t, sizeof t, "read-token", 10));
	assert_string_equal(api_scope_name(t[1].scope), "operate");
}

static void test_limiter_blocks_after_the_limit_for_the_window(void **state)
{
	(void)state;
	api_limiter l;
	int retry = 0;
	api_limiter_init(&l);
	for (int i = 0; i < API_AUTH_FAILS - 1; i++)
		api_limiter_fail(&l, "10.0.0.1", 1000.0 + i);
	assert_false(api_limiter_blocked(&l, "10.0.0.1", 1010.0, &retry));
	api_limiter_fail(&l, "10.0.0.1", 1010.0);
	assert_true(api_limiter_blocked(&l, "10.0.0.1", 1010.0, &retry));
	assert_int_equal(retry, API_AUTH_WINDOW_S - 10 + 1);
	assert_false(api_limiter_blocked(&l, "10.0.0.2", 1010.0, &retry)); /* per address */
	/* the window ends: the address starts again from zero */
	assert_false(api_limiter_blocked(&l, "10.0.0.1", 1000.0 + API_AUTH_WINDOW_S, &retry));
	api_limiter_fail(&l, "10.0.0.1", 1000.0 + API_AUTH_WINDOW_S);
	assert_false(api_limiter_blocked(&l, "10.0.0.1", 1000.0 + API_AUTH_WINDOW_S, &retry));
	api_limiter_destroy(&l);
}

static void test_limiter_table_is_bounded(void **state)
{
	(void)state;
	api_limiter l;
	char addr[32];
	int retry;
	api_limiter_init(&l);
	for (int i = 0; i < API_AUTH_FAILS; i++)
		api_limiter_fail(&l, "192.0.2.1", 5000.0);
	assert_true(api_limiter_blocked(&l, "192.0.2.1", 5001.0, &retry));
	/* a flood of other addresses takes the oldest slots, never memory */
	for (int i = 0; i < 4 * API_LIMITER_SLOTS; i++) {
		snprintf(addr, sizeof addr, "198.51.100.%d:%d", i % 250, i);
		api_limiter_fail(&l, addr, 5002.0 + i);
	}
	assert_false(api_limiter_blocked(&l, "192.0.2.1", 5003.0, &retry));
	api_limiter_destroy(&l);
}

static void test_correlation_id_check(void **state)
{
	(void)state;
	char max[RUNNER_CORRELATION_GIVEN_MAX + 2];
	assert_true(runner_correlation_id_valid("req_abc123"));
	assert_true(runner_correlation_id_valid("a.b:c-d_E9"));
	memset(max, 'x', sizeof max);
	max[RUNNER_CORRELATION_GIVEN_MAX] = '\0';
	assert_true(runner_correlation_id_valid(max));
	max[RUNNER_CORRELATION_GIVEN_MAX] = 'x';
	max[RUNNER_CORRELATION_GIVEN_MAX + 1] = '\0';
	assert_false(runner_correlation_id_valid(max));
	assert_false(runner_correlation_id_valid(""));
	assert_false(runner_correlation_id_valid(NULL));
	assert_false(runner_correlation_id_valid("has space"));
	assert_false(runner_correlation_id_valid("semi;colon"));
	assert_false(runner_correlation_id_valid("new\nline"));
	assert_false(runner_correlation_id_valid("\xc3\xbc"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_match_finds_only_the_exact_token),
	        cmocka_unit_test(test_limiter_blocks_after_the_limit_for_the_window),
	        cmocka_unit_test(test_limiter_table_is_bounded),
	        cmocka_unit_test(test_correlation_id_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
