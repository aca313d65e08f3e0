/* Unit tests: the command line's exit codes (0 success, 1 work failed,
 * 2 usage or configuration error). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"

static char dir[] = "/tmp/fk-test-cli-XXXXXX";
static char good[512], bad[512], state[512];

static int run_cli(int argc, ...)
{
	char *argv[16];
	va_list ap;
	argv[0] = "fleetkeeper";
	va_start(ap, argc);
	for (int i = 1; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[argc] = NULL;
	return cli_main(argc, argv);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **st)
{
	char text[1024];
	(void)st;
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(good, sizeof good, "%s/good.conf", dir);
	snprintf(bad, sizeof bad, "%s/bad.conf", dir);
	snprintf(state, sizeof state, "%s/var", dir);
	snprintf(text, sizeof text,
	         "[daemon]\nstate_dir = %s\n\n[task.ok]\ntype = command\ncommand = true\n\n"
	         "[task.ko]\ntype = command\ncommand = exit 7\n",
	         state);
	write_file(good, text);
	write_file(bad, "[daemon]\nmax_concurrent_tasks = lots\n");
	unsetenv("FLEETKEEPER_CONFIG");
	setenv("LOG_LEVEL", "critical", 1);
	return 0;
}

static int teardown(void **st)
{
	char cmd[600];
	(void)st;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_usage_errors(void **st)
{
	(void)st;
	assert_int_equal(run_cli(1), EXIT_USAGE);
	assert_int_equal(run_cli(2, "frobnicate"), EXIT_USAGE);
	assert_int_equal(run_cli(2, "-c"), EXIT_USAGE);
	assert_int_equal(run_cli(3, "--nope", "status"), EXIT_USAGE);
	assert_int_equal(run_cli(4, "-c", good, "once"), EXIT_USAGE);
	assert_int_equal(run_cli(5, "-c", good, "once", "a", "b"), EXIT_USAGE);
	assert_int_equal(run_cli(4, "-c", good, "trace"), EXIT_USAGE);
	assert_int_equal(run_cli(5, "-c", good, "run", "extra"), EXIT_USAGE);
	assert_int_equal(run_cli(6, "-c", good, "runs", "--limit", "x"), EXIT_USAGE);
	assert_int_equal(run_cli(5, "-c", good, "incidents", "--closed"), EXIT_USAGE);
	assert_int_equal(run_cli(5, "-c", good, "next", "61 * * * *"), EXIT_USAGE);
	assert_int_equal(run_cli(5, "-c", good, "once", "missing"), EXIT_USAGE);
}

static void test_next_usage_errors(void **st)
{
	(void)st;
	assert_int_equal(run_cli(2, "next"), EXIT_USAGE);
	assert_int_equal(run_cli(4, "next", "@daily", "-n"), EXIT_USAGE);
	assert_int_equal(run_cli(5, "next", "@daily", "-n", "0"), EXIT_USAGE);
	assert_int_equal(run_cli(5, "next", "@daily", "-n", "100001"), EXIT_USAGE);
	assert_int_equal(run_cli(5, "next", "@daily", "--from", "soon"), EXIT_USAGE);
	assert_int_equal(run_cli(5, "next", "@daily", "--from", "2026-02-30"), EXIT_USAGE);
	assert_int_equal(run_cli(5, "next", "@daily", "--from", "1969-12-31T23:59:59Z"),
	                 EXIT_USAGE);
	assert_int_equal(run_cli(5, "next", "@daily", "--tz", "Mars/Base"), EXIT_USAGE);
	assert_int_equal(run_cli(2, "next", "0 0 30 2 *"), EXIT_USAGE);
	assert_int_equal(run_cli(2, "next", "@every 0s"), EXIT_USAGE);
	assert_int_equal(run_cli(5, "-c", good, "next", "ok"), EXIT_USAGE); /* no schedule */
	assert_int_equal(run_cli(7, "next", "@daily", "-n", "1", "--from", "2028-02-29"), EXIT_OK);
	assert_int_equal(
	        run_cli(7, "next", "@daily", "--from", "1970-01-01T00:00:00Z", "--tz", "UTC"),
	        EXIT_OK);
}

static void test_config_errors(void **st)
{
	(void)st;
	assert_int_equal(run_cli(4, "-c", bad, "check-config"), EXIT_USAGE);
	assert_int_equal(run_cli(4, "-c", bad, "once", "ok"), EXIT_USAGE);
	assert_int_equal(run_cli(4, "-c", "/nonexistent/fk.conf", "check-config"), EXIT_USAGE);
	setenv("FLEETKEEPER_CONFIG", bad, 1);
	assert_int_equal(run_cli(2, "check-config"), EXIT_USAGE);
	unsetenv("FLEETKEEPER_CONFIG");
}

static void test_success_and_failure(void **st)
{
	(void)st;
	assert_int_equal(run_cli(2, "version"), EXIT_OK);
	assert_int_equal(run_cli(2, "help"), EXIT_OK);
	assert_int_equal(run_cli(4, "-c", good, "check-config"), EXIT_OK);
	assert_int_equal(run_cli(5, "-c", good, "once", "ok"), EXIT_OK);
	assert_int_equal(run_cli(5, "-c", good, "once", "ko"), EXIT_FAILED);
	assert_int_equal(run_cli(5, "-c", good, "trace", "run_nothing_0_0000"), EXIT_FAILED);
	assert_int_equal(run_cli(7, "-c", good, "next", "@daily", "-n", "2"), EXIT_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_usage_errors),
	        cmocka_unit_test(test_next_usage_errors),
	        cmocka_unit_test(test_config_errors),
	        cmocka_unit_test(test_success_and_failure),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
