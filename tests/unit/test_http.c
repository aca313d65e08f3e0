/* Unit tests: Link header parsing and the http_cache rows of src/http.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "http.h"

static void link_is(const char *header, const char *want)
{
	char *got = http_link_next(header);
	if (want == NULL) {
		assert_null(got);
	} else {
		assert_non_null(got);
		assert_string_equal(got, want);
	}
	free(got);
}

static void test_link_next(void **state)
{
	(void)state;
	/* As recorded from GitHub (paginate-issues.json). */
	link_is("<https://api.github.com/repositories/1000/issues?per_page=3&page=1>; "
	        "rel=\"prev\", "
	        "<https://api.github.com/repositories/1000/issues?per_page=3&page=3>; "
	        "rel=\"next\", "
	        "<https://api.github.com/repositories/1000/issues?per_page=3&page=5>; rel=\"last\"",
	        "https://api.github.com/repositories/1000/issues?per_page=3&page=3");
	link_is("<https://x/a?page=5>; rel=\"last\"", NULL);
	link_is("<https://x/a?page=2>; rel=next", "https://x/a?page=2");
	link_is("", NULL);
	link_is("<unterminated; rel=\"next\"", NULL);
	link_is("garbage, <<>>; rel=\"next\"", "<");
	link_is(";;;,,,", NULL);
}

static void test_cache_roundtrip(void **state)
{
	(void)state;
	char path[] = "/tmp/fk-test-http-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	store *s = NULL;
	char err[256];
	assert_int_equal(store_open(&s, path, err, sizeof err), 0);
	char *etag, *body;
	assert_int_equal(http_cache_get(s, "http://x/1", &etag, &body), 0);
	assert_null(etag);
	assert_null(body);
	assert_int_equal(http_cache_put(s, "http://x/1", "\"e1\"", NULL, "{\"repos\":[]}"), 0);
	assert_int_equal(http_cache_put(s, "http://x/1", "\"e2\"", "Mon", "{}"), 0);
	assert_int_equal(http_cache_get(s, "http://x/1", &etag, &body), 0);
	assert_string_equal(etag, "\"e2\"");
	assert_string_equal(body, "{}");
	free(etag);
	free(body);
	store_close(s);
	unlink(path);
}

static void test_unreachable_is_network_error(void **state)
{
	(void)state;
	http_options o = {.user_agent = "t",
	                  .connect_timeout_ms = 2000,
	                  .timeout_ms = 2000,
	                  .max_retries = 1,
	                  .backoff_ms = 1,
	                  .cancel_fd = -1,
	                  .bearer_token = "SECRET-TOKEN"};
	http_client *c = http_client_new(&o);
	http_response r;
	char err[512];
	/* Port 1 on loopback: connection refused. */
	assert_int_equal(http_get(c, "http://127.0.0.1:1/x", NULL, &r, err, sizeof err),
	                 HTTP_ERR_NETWORK);
	assert_null(strstr(err, "SECRET"));
	assert_int_equal(http_client_stats(c)->requests, 2);
	assert_int_equal(http_client_stats(c)->retries, 1);
	http_response_free(&r);
	http_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_link_next),
	        cmocka_unit_test(test_cache_roundtrip),
	        cmocka_unit_test(test_unreachable_is_network_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
