/* Unit tests: projects — insert and update as github_sync applies a
 * listing (linking by name, renames), missing after the threshold, the
 * spec written only when it changed, and a failed statement inside the
 * listing's transaction leaving nothing written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "projects.h"
#include "temp_store.h"

static int setup(void **state)
{
	temp_store *t = calloc(1, sizeof *t);
	if (t == NULL || temp_store_open(t, "projects") != 0)
		return -1;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	temp_store *t = *state;
	int rc = temp_store_remove(t);
	free(t);
	return rc;
}

static project_listed repo(int64_t id, const char *name, const char *status)
{
	return (project_listed){.repo_id = id,
	                        .name = name,
	                        .full_name = NULL,
	                        .status = status,
	                        .default_branch = "main",
	                        .clone_url = "https://x/r.git",
	                        .html_url = "https://x/r",
	                        .description = NULL};
}

static const project_row *by_name(const project_list *l, const char *name)
{
	for (size_t i = 0; i < l->count; i++)
		if (l->rows[i].name && strcmp(l->rows[i].name, name) == 0)
			return &l->rows[i];
	return NULL;
}

static double updated_at(store *st, int64_t id)
{
	static const char sql[] = "SELECT updated_at FROM projects WHERE id = ?1";
	store_stmt *q;
	double v = -1;
	assert_int_equal(store_prepare(st, sql, &q), STORE_OK);
	store_bind_int64(q, 1, id);
	if (store_step(q) == STORE_ROW)
		v = store_col_double(q, 0, -1);
	store_stmt_done(q);
	return v;
}

/* An unlinked project, as an operator adds one before it is on GitHub. */
static int64_t add_unlinked(store *st, const char *name)
{
	static const char sql[] = "INSERT INTO projects(name, created_at, updated_at)"
	                          " VALUES (?1, 0, 0) RETURNING id";
	store_stmt *q;
	int64_t id = 0;
	assert_int_equal(store_prepare(st, sql, &q), STORE_OK);
	store_bind_text(q, 1, name);
	assert_int_equal(store_step(q), STORE_ROW);
	id = store_col_int64(q, 0);
	store_stmt_done(q);
	return id;
}

static void test_insert_then_update(void **state)
{
	store *st = ((temp_store *)*state)->st;
	project_listed r = repo(42, "alpha", "active");
	project_list l;
	int64_t id = 0;

	assert_int_equal(projects_insert(st, &r, 100, &id), STORE_OK);
	assert_true(id > 0);
	assert_int_equal(projects_list(st, &l), STORE_OK);
	assert_int_equal(l.count, 1);
	assert_int_equal(l.rows[0].id, id);
	assert_int_equal(l.rows[0].repo_id, 42);
	assert_string_equal(l.rows[0].status, "active");
	assert_string_equal(l.rows[0].default_branch, "main");
	assert_null(l.rows[0].full_name);
	project_list_free(&l);

	r = repo(42, "alpha", "archived");
	r.description = "old code";
	assert_int_equal(projects_update(st, id, &r, 200), STORE_OK);
	assert_int_equal(projects_list(st, &l), STORE_OK);
	assert_int_equal(l.count, 1);
	assert_string_equal(l.rows[0].status, "archived");
	assert_string_equal(l.rows[0].description, "old code");
	project_list_free(&l);
	assert_true(updated_at(st, id) == 200);

	/* Two rows cannot claim one repository. */
	r = repo(42, "alpha-copy", "active");
	assert_int_equal(projects_insert(st, &r, 300, NULL), STORE_ERROR);
	assert_non_null(strstr(store_errmsg(st), "UNIQUE"));
}

static int collect_name(void *ctx, const char *name)
{
	char *buf = ctx;
	strcat(buf, name);
	strcat(buf, ";");
	return 0;
}

static void test_link_by_name_and_rename(void **state)
{
	store *st = ((temp_store *)*state)->st;
	int64_t legacy = add_unlinked(st, "legacy");
	int64_t later = add_unlinked(st, "later");
	project_listed r = repo(7, "old-name", "active");
	project_list l;
	int64_t id;
	char names[64] = "";

	assert_int_equal(projects_insert(st, &r, 100, &id), STORE_OK);
	assert_int_equal(projects_unlinked_names(st, collect_name, names), STORE_OK);
	assert_string_equal(names, "legacy;later;");

	/* Unlinked projects come first, then by repository id. */
	assert_int_equal(projects_list(st, &l), STORE_OK);
	assert_int_equal(l.count, 3);
	assert_int_equal(l.rows[0].id, legacy);
	assert_int_equal(l.rows[1].id, later);
	assert_int_equal(l.rows[2].repo_id, 7);
	project_list_free(&l);

	/* Linked by name: legacy takes repository 8 and its new name. */
	r = repo(8, "legacy-renamed", "active");
	assert_int_equal(projects_update(st, legacy, &r, 200), STORE_OK);
	/* Renamed on GitHub: the same row, the new name. */
	r = repo(7, "new-name", "active");
	assert_int_equal(projects_update(st, id, &r, 200), STORE_OK);

	assert_int_equal(projects_list(st, &l), STORE_OK);
	assert_int_equal(l.count, 3);
	assert_null(by_name(&l, "old-name"));
	assert_int_equal(by_name(&l, "new-name")->id, id);
	assert_int_equal(by_name(&l, "legacy-renamed")->id, legacy);
	assert_int_equal(by_name(&l, "legacy-renamed")->repo_id, 8);
	assert_int_equal(by_name(&l, "later")->repo_id, 0);
	project_list_free(&l);
	names[0] = '\0';
	assert_int_equal(projects_unlinked_names(st, collect_name, names), STORE_OK);
	assert_string_equal(names, "later;");
}

static void test_missing_after_three(void **state)
{
	store *st = ((temp_store *)*state)->st;
	project_listed r = repo(9, "gone", "archived");
	project_list l;
	int64_t id;
	long attempt = 0;
	bool marked = true;

	assert_int_equal(projects_insert(st, &r, 100, &id), STORE_OK);
	for (long want = 1; want <= 2; want++) {
		assert_int_equal(projects_count_missing(st, id, 3, 100 + want, &attempt, &marked),
		                 STORE_OK);
		assert_int_equal(attempt, want);
		assert_false(marked);
		assert_int_equal(projects_list(st, &l), STORE_OK);
		assert_string_equal(l.rows[0].status, "archived"); /* kept until the threshold */
		assert_int_equal(l.rows[0].missing_count, want);
		project_list_free(&l);
	}
	assert_int_equal(projects_count_missing(st, id, 3, 103, &attempt, &marked), STORE_OK);
	assert_int_equal(attempt, 3);
	assert_true(marked);
	assert_int_equal(projects_list(st, &l), STORE_OK);
	assert_string_equal(l.rows[0].status, "missing");
	project_list_free(&l);

	/* Listed again: recovered, the count reset. */
	assert_int_equal(projects_update(st, id, &r, 200), STORE_OK);
	assert_int_equal(projects_list(st, &l), STORE_OK);
	assert_string_equal(l.rows[0].status, "archived");
	assert_int_equal(l.rows[0].missing_count, 0);
	project_list_free(&l);

	assert_int_equal(projects_count_missing(st, id + 100, 3, 300, &attempt, &marked),
	                 STORE_NOTFOUND);
}

static void test_spec_written_only_when_changed(void **state)
{
	store *st = ((temp_store *)*state)->st;
	project_listed r = repo(11, "specced", "active");
	int64_t id;

	assert_int_equal(projects_insert(st, &r, 100, &id), STORE_OK);
	assert_int_equal(projects_set_spec(st, 11, "spec v1", NULL, 200), STORE_OK);
	assert_int_equal(store_changes(st), 1);
	assert_true(updated_at(st, id) == 200);
	assert_int_equal(projects_set_spec(st, 11, "spec v1", NULL, 300), STORE_OK);
	assert_int_equal(store_changes(st), 0);
	assert_true(updated_at(st, id) == 200);
	assert_int_equal(projects_set_spec(st, 11, "spec v1", "readme", 400), STORE_OK);
	assert_true(updated_at(st, id) == 400);
}

/* What github_sync's apply does in its transaction, ending with a failed
 * statement (a second row for repository 1). */
static int apply_then_fail(store *st, void *arg)
{
	int64_t *existing = arg;
	project_listed a = repo(1, "one", "active"), b = repo(2, "two", "active");
	long attempt;
	bool marked;
	int rc = projects_insert(st, &a, 500, NULL);
	if (rc == STORE_OK)
		rc = projects_insert(st, &b, 500, NULL);
	if (rc == STORE_OK)
		rc = projects_count_missing(st, *existing, 1, 500, &attempt, &marked);
	if (rc == STORE_OK) {
		project_listed dup = repo(1, "one-again", "active");
		rc = projects_insert(st, &dup, 500, NULL);
	}
	return rc;
}

static void test_failed_statement_in_transaction_writes_nothing(void **state)
{
	store *st = ((temp_store *)*state)->st;
	project_listed r = repo(99, "kept", "active");
	project_list l;
	int64_t id;

	assert_int_equal(projects_insert(st, &r, 100, &id), STORE_OK);
	assert_int_equal(store_tx(st, apply_then_fail, &id), STORE_ERROR);
	assert_non_null(strstr(store_errmsg(st), "UNIQUE"));

	assert_int_equal(projects_list(st, &l), STORE_OK);
	assert_int_equal(l.count, 1);
	assert_string_equal(l.rows[0].name, "kept");
	assert_string_equal(l.rows[0].status, "active");
	assert_int_equal(l.rows[0].missing_count, 0);
	project_list_free(&l);
	assert_true(updated_at(st, id) == 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_insert_then_update, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_link_by_name_and_rename, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_missing_after_three, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_spec_written_only_when_changed, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_failed_statement_in_transaction_writes_nothing,
	                                        setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
