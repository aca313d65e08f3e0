/*
 * temp_store — a state store in a fresh temporary directory for unit tests,
 * and its removal. Header-only: each test program includes it once.
 */
#ifndef FK_TEST_TEMP_STORE_H
#define FK_TEST_TEMP_STORE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store.h"

typedef struct {
	char dir[64];
	char path[128]; /* dir/state.db */
	store *st;
} temp_store;

/* mkdtemp under /tmp (tag names it) and store_open dir/state.db; 0 or -1. */
static inline int temp_store_open(temp_store *t, const char *tag)
{
	char err[256];
	snprintf(t->dir, sizeof t->dir, "/tmp/fk_%s_XXXXXX", tag);
	if (mkdtemp(t->dir) == NULL)
		return -1;
	snprintf(t->path, sizeof t->path, "%s/state.db", t->dir);
	if (store_open(&t->st, t->path, err, sizeof err) != STORE_OK) {
		fprintf(stderr, "temp_store_open: %s\n", err);
		return -1;
	}
	return 0;
}

static inline int temp_store_unlink_one(const char *path, const struct stat *sb, int flag,
                                        struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

/* Close the store and remove the directory with everything in it. */
static inline int temp_store_remove(temp_store *t)
{
	store_close(t->st);
	t->st = NULL;
	return nftw(t->dir, temp_store_unlink_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* cmocka group fixtures: a temp_store in *state, seeded with seed_sql
 * (NULL: none); and its removal. */
static inline int temp_store_setup(void **state, const char *tag, const char *seed_sql)
{
	temp_store *t = calloc(1, sizeof *t);
	if (t == NULL || temp_store_open(t, tag) != 0)
		return -1;
	if (seed_sql && store_exec(t->st, seed_sql) != STORE_OK)
		return -1;
	*state = t;
	return 0;
}

static inline int temp_store_teardown(void **state)
{
	temp_store *t = *state;
	int rc = temp_store_remove(t);
	free(t);
	return rc;
}

#endif
