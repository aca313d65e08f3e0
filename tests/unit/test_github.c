/* Unit tests: repository pages of src/github.c, on the recorded fixture and
 * on malformed input (all or nothing, never a crash). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "github.h"

static const char PAGE[] =
        "[{\"id\": 1296269, \"name\": \"hello-world\", \"full_name\": \"o/hello-world\","
        " \"archived\": false, \"default_branch\": \"main\", \"clone_url\": \"https://x/h.git\","
        " \"description\": null, \"owner\": {\"login\": \"o\"}},"
        " {\"id\": 2, \"name\": \"old\", \"archived\": true}]";

static void test_page(void **state)
{
	(void)state;
	github_repo_list l = {0};
	char err[256];
	assert_int_equal(github_parse_page(PAGE, strlen(PAGE), &l, err, sizeof err), 0);
	assert_int_equal(l.count, 2);
	assert_int_equal(l.items[0].id, 1296269);
	assert_string_equal(l.items[0].name, "hello-world");
	assert_string_equal(l.items[0].default_branch, "main");
	assert_null(l.items[0].description);
	assert_false(l.items[0].archived);
	assert_true(l.items[1].archived);
	assert_null(l.items[1].full_name);

	char *compact = github_page_compact(&l, 1, "http://n/2");
	github_repo_list l2 = {0};
	char *next = NULL;
	assert_int_equal(github_parse_compact(compact, &l2, &next, err, sizeof err), 0);
	assert_int_equal(l2.count, 1);
	assert_int_equal(l2.items[0].id, 2);
	assert_string_equal(next, "http://n/2");
	free(next);
	free(compact);
	github_repo_list_free(&l2);
	github_repo_list_free(&l);
}

static void test_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {"",
	                                  "{}",
	                                  "null",
	                                  "[1]",
	                                  "[{\"id\": 1}]",
	                                  "[{\"id\": \"1\", \"name\": \"a\"}]",
	                                  "[{\"id\": 0, \"name\": \"a\"}]",
	                                  "[{\"id\": 1.5, \"name\": \"a\"}]",
	                                  "[{\"id\": 1e300, \"name\": \"a\"}]",
	                                  "[{\"id\": 1, \"name\": \"\"}]",
	                                  "[{\"id\": 1, \"name\": \"a\"}, {\"id\": 2}]",
	                                  "[{\"id\": 1, \"name\": \"a\"",
	                                  NULL};
	for (size_t i = 0; bad[i]; i++) {
		github_repo_list l = {0};
		char err[256] = "";
		assert_int_equal(github_parse_page(bad[i], strlen(bad[i]), &l, err, sizeof err),
		                 -1);
		assert_int_equal(l.count, 0);
		assert_true(err[0] != '\0');
		github_repo_list_free(&l);
	}
	github_repo_list l = {0};
	char *next = NULL, err[128];
	assert_int_equal(github_parse_compact("[]", &l, &next, err, sizeof err), -1);
	assert_int_equal(github_parse_compact(NULL, &l, &next, err, sizeof err), -1);
}

static void test_fixture(void **state)
{
	(void)state;
	char path[4096];
	const char *root = getenv("FK_SOURCE_ROOT");
	snprintf(path, sizeof path, "%s/tests/fixtures/github/get-repository.json",
	         root ? root : "..");
	FILE *f = fopen(path, "r");
	assert_non_null(f); /* the recorded fixture ships in the repository */
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The file is an array of exchanges; the first "response" object is a
	 * repository. Wrap it as a one-item page. */
	char *resp = strstr(buf, "\"response\"");
	assert_non_null(resp);
	char *obj = strchr(resp, '{');
	size_t depth = 0, i = 0;
	for (; obj[i]; i++) {
		depth += obj[i] == '{';
		depth -= obj[i] == '}';
		if (depth == 0)
			break;
	}
	char *page = malloc(i + 4);
	snprintf(page, i + 4, "[%.*s]", (int)(i + 1), obj);
	github_repo_list l = {0};
	char err[256];
	assert_int_equal(github_parse_page(page, strlen(page), &l, err, sizeof err), 0);
	assert_int_equal(l.count, 1);
	assert_true(l.items[0].id > 0);
	assert_string_equal(l.items[0].name, "hello-world");
	github_repo_list_free(&l);
	free(page);
}

/* One repository (GET /repos/OWNER/NAME or /repositories/ID, e.g. after a
 * rename's 301): appended to the list; anything else leaves it unchanged. */
static void test_single_repository(void **state)
{
	(void)state;
	static const char repo[] = "{\"id\": 1000, \"name\": \"rename-repository-newname\","
	                           " \"full_name\": \"o/rename-repository-newname\","
	                           " \"archived\": false, \"default_branch\": \"main\"}";
	github_repo_list l = {0};
	char err[256];
	assert_int_equal(github_parse_page(PAGE, strlen(PAGE), &l, err, sizeof err), 0);
	assert_int_equal(github_parse_repo(repo, strlen(repo), &l, err, sizeof err), 0);
	assert_int_equal(l.count, 3);
	assert_int_equal(l.items[2].id, 1000);
	assert_string_equal(l.items[2].name, "rename-repository-newname");
	static const char *const bad[] = {"",
	                                  "[]",
	                                  "null",
	                                  "{\"id\": 5}",
	                                  "{\"name\": \"a\"}",
	                                  "{\"id\": -1, \"name\": \"a\"}",
	                                  "{\"id\": 1, \"name\": 3}",
	                                  "{\"id\": 1, \"name\": \"a\""};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		assert_int_equal(github_parse_repo(bad[i], strlen(bad[i]), &l, err, sizeof err),
		                 -1);
		assert_true(err[0] != '\0');
		assert_int_equal(l.count, 3);
	}
	github_repo_list_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_page),
	        cmocka_unit_test(test_malformed),
	        cmocka_unit_test(test_fixture),
	        cmocka_unit_test(test_single_repository),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
