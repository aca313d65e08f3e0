/* Unit tests: file_modes — private files unless the directory admits its
 * group (g+rx), and the "who may" hints of a Permission denied. */
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

#include "file_modes.h"

static char dir[64];
static char file[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/fk_modes_XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(file, sizeof file, "%s/state.db", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(file);
	rmdir(dir);
	return 0;
}

static void test_private_directory_gives_private_modes(void **state)
{
	(void)state;
	assert_int_equal(chmod(dir, 0700), 0);
	assert_false(file_dir_admits_group(file));
	assert_int_equal(file_mode_state(file), 0600);
	assert_int_equal(file_mode_socket(file), 0600);
}

static void test_group_read_and_search_admit_the_group(void **state)
{
	(void)state;
	assert_int_equal(chmod(dir, 02750), 0);
	assert_true(file_dir_admits_group(file));
	assert_int_equal(file_mode_state(file), 0640);
	assert_int_equal(file_mode_socket(file), 0660);
	/* read without search, or search without read: not admitted */
	assert_int_equal(chmod(dir, 0740), 0);
	assert_int_equal(file_mode_state(file), 0600);
	assert_int_equal(chmod(dir, 0710), 0);
	assert_int_equal(file_mode_state(file), 0600);
}

static void test_missing_directory_is_private(void **state)
{
	(void)state;
	assert_int_equal(file_mode_state("/nonexistent/fk/state.db"), 0600);
	assert_int_equal(file_mode_state("state.db"), file_dir_admits_group("./x") ? 0640 : 0600);
}

static void test_hints_name_who_may(void **state)
{
	char hint[300];
	(void)state;
	assert_int_equal(chmod(dir, 0750), 0);
	file_access_hint(file, hint, sizeof hint);
	assert_non_null(strstr(hint, "members of group"));
	assert_non_null(strstr(hint, dir));
	assert_int_equal(chmod(dir, 0700), 0);
	file_access_hint(file, hint, sizeof hint);
	assert_null(strstr(hint, "members of group"));
	assert_non_null(strstr(hint, "only user"));

	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(chmod(file, 0640), 0);
	file_read_hint(file, hint, sizeof hint);
	assert_non_null(strstr(hint, "members of group"));
	assert_non_null(strstr(hint, "may read it"));
	assert_int_equal(chmod(file, 0600), 0);
	file_read_hint(file, hint, sizeof hint);
	assert_null(strstr(hint, "members of group"));
	file_access_hint("/nonexistent/fk/x", hint, sizeof hint);
	assert_string_equal(hint, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_private_directory_gives_private_modes),
	        cmocka_unit_test(test_group_read_and_search_admit_the_group),
	        cmocka_unit_test(test_missing_directory_is_private),
	        cmocka_unit_test(test_hints_name_who_may),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
