/*
 * cli_store — `fleetkeeper store check|backup`: look after the state store
 * file itself.
 *
 *   store check [--json]   PRAGMA integrity_check; exit 0 intact, 1 damaged
 *   store backup FILE      a consistent copy (SQLite online backup), safe
 *                          while the daemon runs; FILE is created 0600
 *   store vacuum           VACUUM with the daemon stopped: gives every free
 *                          page back and turns a store made before schema v6
 *                          (auto_vacuum NONE) into an incremental one
 *
 * check and backup open the store read-only: they never migrate or change
 * it. vacuum holds daemon.lock while it works, so no daemon runs meanwhile.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "store.h"

typedef struct {
	cJSON *problems; /* with --json */
	int count;
} check_out;

static void print_problem(void *ctx, const char *line)
{
	check_out *out = ctx;
	if (out->count++ < 100) {
		if (out->problems)
			cJSON_AddItemToArray(out->problems, cJSON_CreateString(line));
		else
			printf("  %s\n", line);
	}
}

static int open_store(const cli_ctx *ctx, config **cfg, store **st)
{
	char err[1024];
	int rc = cli_load_config(ctx, cfg);
	if (rc != EXIT_OK)
		return rc;
	if (store_open_readonly(st, (*cfg)->db_path, err, sizeof err) != STORE_OK) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

static int store_check(const cli_ctx *ctx, const config *cfg, store *st)
{
	check_out out = {ctx->json ? cJSON_CreateArray() : NULL, 0};
	if (!ctx->json)
		printf("%s:\n", cfg->db_path);
	int code = store_integrity_check(st, print_problem, &out);
	bool damaged = code == STORE_CORRUPT;
	if (code != STORE_OK && !damaged) {
		cJSON_Delete(out.problems);
		fprintf(stderr, "fleetkeeper: %s: %s\n", cfg->db_path, store_errmsg(st));
		return EXIT_FAILED;
	}
	if (ctx->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "path", cfg->db_path);
		cJSON_AddBoolToObject(o, "ok", !damaged);
		cJSON_AddItemToObject(o, "problems", out.problems);
		cli_print_json(o);
	} else if (!damaged) {
		printf("  ok\n");
	} else {
		printf("%d problem(s). Stop the daemon, then restore a backup made with"
		       " `fleetkeeper store backup FILE` over %s,\nor move %s away to start with"
		       " an empty store (servers come back with the next server_sync).\n",
		       out.count, cfg->db_path, cfg->db_path);
	}
	return damaged ? EXIT_FAILED : EXIT_OK;
}

static int store_backup_cmd(const cli_ctx *ctx, const config *cfg, store *st)
{
	char err[1024];
	if (store_backup(st, ctx->argv[1], err, sizeof err) != STORE_OK) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		return EXIT_FAILED;
	}
	if (ctx->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "backup", ctx->argv[1]);
		cJSON_AddStringToObject(o, "from", cfg->db_path);
		return cli_print_json(o) == 0 ? EXIT_OK : EXIT_FAILED;
	}
	printf("backed up %s to %s\n", cfg->db_path, ctx->argv[1]);
	return EXIT_OK;
}

/* daemon.lock, exclusively, without waiting: -1 (with a message) when a
 * daemon holds it or the lock file cannot be opened. */
static int lock_out_daemon(const config *cfg)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/daemon.lock", cfg->state_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "fleetkeeper: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		fprintf(stderr,
		        "fleetkeeper: store vacuum: a daemon is running on %s; stop it first\n",
		        cfg->state_dir);
		close(fd);
		return -1;
	}
	return fd;
}

static void print_space(const char *what, const store_space *sp)
{
	printf("  %s: %lld bytes, %lld free, auto_vacuum %s\n", what,
	       (long long)(sp->page_count * sp->page_size),
	       (long long)(sp->freelist_count * sp->page_size),
	       sp->auto_vacuum == STORE_AUTO_VACUUM_INCREMENTAL ? "incremental"
	       : sp->auto_vacuum == STORE_AUTO_VACUUM_FULL      ? "full"
	                                                        : "none");
}

static int store_vacuum_cmd(const cli_ctx *ctx)
{
	char err[1024];
	config *cfg = NULL;
	store *st = NULL;
	store_space before = {0}, after = {0};
	int rc = cli_load_config(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	int lock = lock_out_daemon(cfg);
	rc = lock < 0 ? EXIT_FAILED : EXIT_OK;
	if (rc == EXIT_OK && store_open(&st, cfg->db_path, err, sizeof err) != STORE_OK) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		rc = EXIT_FAILED;
	}
	if (rc == EXIT_OK &&
	    (store_space_get(st, &before) != STORE_OK || store_vacuum(st) != STORE_OK ||
	     store_checkpoint(st) != STORE_OK || store_space_get(st, &after) != STORE_OK)) {
		fprintf(stderr, "fleetkeeper: %s: %s\n", cfg->db_path, store_errmsg(st));
		rc = EXIT_FAILED;
	}
	if (rc == EXIT_OK) {
		printf("%s:\n", cfg->db_path);
		print_space("before", &before);
		print_space("after", &after);
	}
	store_close(st);
	if (lock >= 0)
		close(lock);
	config_unref(cfg);
	return rc;
}

/* The file commands on a PostgreSQL store: PostgreSQL's own tools. */
static int store_pg_cmd(const cli_ctx *ctx, const char *sub)
{
	config *cfg = NULL;
	int rc = cli_load_config(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	bool pg = store_location_is_pg(cfg->db_path);
	config_unref(cfg);
	if (!pg)
		return -1;
	if (strcmp(sub, "check") == 0)
		fprintf(stderr, "fleetkeeper: store check: the store is PostgreSQL's; check it with"
		                " PostgreSQL's tools (pg_amcheck)\n");
	else if (strcmp(sub, "backup") == 0)
		fprintf(stderr,
		        "fleetkeeper: store backup: the store is PostgreSQL's; back it up with"
		        " pg_dump or the server's own backups\n");
	else
		fprintf(stderr, "fleetkeeper: store vacuum: the store is PostgreSQL's; its"
		                " autovacuum gives space back (or run VACUUM there)\n");
	return EXIT_FAILED;
}

int cli_cmd_store(const cli_ctx *ctx)
{
	const char *sub = ctx->argc > 0 ? ctx->argv[0] : "";
	bool check = strcmp(sub, "check") == 0, backup = strcmp(sub, "backup") == 0;
	int pg_rc;
	if (strcmp(sub, "vacuum") == 0) {
		if (ctx->argc != 1) {
			cli_usage_error("store vacuum: unexpected argument '%s'", ctx->argv[1]);
			return EXIT_USAGE;
		}
		pg_rc = store_pg_cmd(ctx, sub);
		return pg_rc >= 0 ? pg_rc : store_vacuum_cmd(ctx);
	}
	if (!check && !backup) {
		cli_usage_error("store: expects check, backup FILE or vacuum, got '%s'", sub);
		return EXIT_USAGE;
	}
	if (check && ctx->argc != 1) {
		cli_usage_error("store check: unexpected argument '%s'", ctx->argv[1]);
		return EXIT_USAGE;
	}
	if (backup && (ctx->argc != 2 || ctx->argv[1][0] == '\0')) {
		cli_usage_error("store backup: expects one FILE");
		return EXIT_USAGE;
	}
	pg_rc = store_pg_cmd(ctx, sub);
	if (pg_rc >= 0)
		return pg_rc;
	config *cfg = NULL;
	store *st = NULL;
	int rc = open_store(ctx, &cfg, &st);
	if (rc == EXIT_OK)
		rc = check ? store_check(ctx, cfg, st) : store_backup_cmd(ctx, cfg, st);
	store_close(st);
	config_unref(cfg);
	return rc;
}
