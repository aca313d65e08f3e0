/*
 * cli_known_hosts — `fleetkeeper known-hosts scan|forget`: seeding and
 * repairing the known_hosts file the daemon uses ([ssh] known_hosts, else
 * <state_dir>/known_hosts), as `host_key_policy = strict` needs
 * (docs/ssh.md).
 *
 *   known-hosts scan [SERVER...|--all] [--accept] [--timeout S] [--json]
 *   known-hosts forget SERVER... [--json]
 *
 * SERVER is a server handle from the store, or HOST:PORT ([V6ADDR]:PORT)
 * for a host that is not in it (ssh-test's hints name it so); --all is
 * every managed server that is not decommissioned.
 *
 * scan connects to each, takes its host key in the handshake (no
 * authentication: the SSH tester with hostkey_only) and prints the key's
 * type, its SHA256 fingerprint as `ssh-keygen -l` prints it and its
 * result: match, unknown, mismatch, recorded (--accept: an unknown key is
 * recorded, trust on first use done deliberately) or failed. A mismatch is
 * never overwritten: `forget` first. forget removes the server's entries
 * (known_hosts_forget: the name it is looked up under, plain or hashed).
 *
 * Exit: 0 every server matched, was unknown or was recorded (forget: done,
 * even if there was nothing to remove); 1 a mismatch or a failure; 2 usage
 * (an unknown handle too). Nothing is logged: the output is the result.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "duration.h"
#include "servers.h"
#include "ssh.h"
#include "table.h"

#define SCAN_CONCURRENCY 16

typedef struct {
	char label[256]; /* the handle, or HOST:PORT as given */
	char host[256];
	int port;
} kh_target;

typedef struct {
	bool scan, accept, all;
	const char *timeout;
	const char **names; /* the SERVER arguments, borrowed from argv */
	int nnames;
} kh_args;

/* Statuses of the servers --all scans: every one but decommissioned. */
static const char *const all_statuses[] = {
        "discovered", "pending_setup", "provisioning", "force_rebuild", "ready", "in_use",
        "error",      "maintenance",   "reserved",     "missing",       NULL};

static int parse_args(const cli_ctx *ctx, kh_args *a)
{
	const char *sub = ctx->argc > 0 ? ctx->argv[0] : "";

	if (strcmp(sub, "scan") != 0 && strcmp(sub, "forget") != 0) {
		cli_usage_error("known-hosts: expected scan or forget, got '%s'", sub);
		return -1;
	}
	a->scan = strcmp(sub, "scan") == 0;
	a->names = calloc((size_t)ctx->argc, sizeof *a->names);
	if (a->names == NULL)
		return -1;
	for (int i = 1; i < ctx->argc; i++) {
		const char *arg = ctx->argv[i];
		if (a->scan && strcmp(arg, "--accept") == 0) {
			a->accept = true;
		} else if (a->scan && strcmp(arg, "--all") == 0) {
			a->all = true;
		} else if (a->scan && strcmp(arg, "--timeout") == 0) {
			if (i + 1 >= ctx->argc) {
				cli_usage_error("known-hosts scan: --timeout needs a value");
				return -1;
			}
			a->timeout = ctx->argv[++i];
		} else if (arg[0] == '-' || arg[0] == '\0') {
			cli_usage_error("known-hosts %s: unexpected argument '%s'", sub, arg);
			return -1;
		} else {
			a->names[a->nnames++] = arg;
		}
	}
	if (a->all && a->nnames > 0) {
		cli_usage_error("known-hosts scan: --all or SERVER..., not both");
		return -1;
	}
	if (!a->all && a->nnames == 0) {
		cli_usage_error("known-hosts %s needs a SERVER%s", sub, a->scan ? " or --all" : "");
		return -1;
	}
	return 0;
}

/* HOST:PORT or [V6ADDR]:PORT into t; false if arg is no such address
 * (then it is a handle). */
static bool parse_address(const char *arg, kh_target *t)
{
	const char *host = arg, *end, *colon;
	long port;

	if (*arg == '[') {
		end = strchr(arg, ']');
		if (end == NULL || end[1] != ':')
			return false;
		host = arg + 1;
		colon = end + 1;
	} else {
		colon = strrchr(arg, ':');
		if (colon == NULL || strchr(arg, ':') != colon)
			return false;
		end = colon;
	}
	if (end == host || (size_t)(end - host) >= sizeof t->host ||
	    config_parse_int(colon + 1, 1, 65535, &port) != 0)
		return false;
	snprintf(t->host, sizeof t->host, "%.*s", (int)(end - host), host);
	snprintf(t->label, sizeof t->label, "%s", arg);
	t->port = (int)port;
	return true;
}

static void target_of_server(const server_row *srv, kh_target *t)
{
	snprintf(t->label, sizeof t->label, "%s", srv->handle);
	snprintf(t->host, sizeof t->host, "%s", srv->ip && *srv->ip ? srv->ip : srv->handle);
	t->port = srv->port;
}

static int open_store(const config *cfg, store **st)
{
	char err[512] = "";
	if (*st != NULL)
		return EXIT_OK;
	if (store_open_readonly(st, cfg->db_path, err, sizeof err) == 0)
		return EXIT_OK;
	fprintf(stderr, "fleetkeeper: %s: cannot open the store%s%s\n", cfg->db_path,
	        err[0] ? ": " : "", err);
	return EXIT_FAILED;
}

/* One SERVER argument into t (the store opened on first need). */
static int resolve_one(const config *cfg, store **st, const char *name, kh_target *t)
{
	server_list list = {0};
	char err[512];

	if (parse_address(name, t))
		return EXIT_OK;
	int rc = open_store(cfg, st);
	if (rc != EXIT_OK)
		return rc;
	rc = servers_find(*st, name, &list, NULL, err, sizeof err);
	if (rc == STORE_NOTFOUND) {
		cli_usage_error("known-hosts: no server '%s' (a server handle, or HOST:PORT)",
		                name);
		return EXIT_USAGE;
	}
	if (rc != 0) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		return EXIT_FAILED;
	}
	target_of_server(&list.rows[0], t);
	server_list_free(&list);
	return EXIT_OK;
}

static int resolve_all(const config *cfg, store **st, kh_target **out, size_t *n)
{
	server_list list = {0};
	char err[512];
	int rc = open_store(cfg, st);

	if (rc != EXIT_OK)
		return rc;
	if (servers_list_for_check(*st, all_statuses, &list, err, sizeof err) != 0) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		return EXIT_FAILED;
	}
	*out = calloc(list.count ? list.count : 1, sizeof **out);
	if (*out == NULL) {
		server_list_free(&list);
		return EXIT_FAILED;
	}
	for (size_t i = 0; i < list.count; i++)
		target_of_server(&list.rows[i], &(*out)[i]);
	*n = list.count;
	server_list_free(&list);
	return EXIT_OK;
}

static int resolve_targets(const config *cfg, const kh_args *a, kh_target **out, size_t *n)
{
	store *st = NULL;
	int rc = EXIT_OK;

	*out = NULL;
	*n = 0;
	if (a->all) {
		rc = resolve_all(cfg, &st, out, n);
	} else if ((*out = calloc((size_t)a->nnames, sizeof **out)) == NULL) {
		rc = EXIT_FAILED;
	} else {
		for (int i = 0; i < a->nnames && rc == EXIT_OK; i++)
			rc = resolve_one(cfg, &st, a->names[i], &(*out)[(*n)++]);
	}
	store_close(st);
	return rc;
}

/* [ssh] (user, timeout, known_hosts) with the scan's policy. */
static int base_options(const config *cfg, const kh_args *a, ssh_options *o, char *kh, size_t khcap)
{
	char err[256];

	ssh_options_default(o);
	if (ssh_options_from_config(o, config_section_find(cfg, "ssh"), err, sizeof err) != 0) {
		cli_usage_error("%s: %s", cfg->path, err);
		return -1;
	}
	ssh_options_known_hosts(o, cfg->state_dir, kh, khcap);
	o->policy = a->accept ? HOSTKEY_POLICY_ACCEPT_NEW : HOSTKEY_POLICY_STRICT;
	o->hostkey_only = true;
	if (a->timeout && (duration_parse(a->timeout, &o->timeout_ms, err, sizeof err) != 0 ||
	                   o->timeout_ms <= 0)) {
		cli_usage_error("known-hosts scan: --timeout '%s': %s", a->timeout,
		                o->timeout_ms <= 0 ? "must be positive" : err);
		return -1;
	}
	return 0;
}

/* ---- scan output ---- */

static const char *scan_verdict(const ssh_result *r)
{
	if (r->success)
		return r->hostkey_added ? "recorded" : "match";
	if (r->error == SSH_ERR_HOSTKEY_UNKNOWN)
		return "unknown";
	if (r->error == SSH_ERR_HOSTKEY_MISMATCH)
		return "mismatch";
	return "failed";
}

static bool verdict_ok(const ssh_result *r)
{
	return r->success || r->error == SSH_ERR_HOSTKEY_UNKNOWN;
}

static int print_json(const kh_target *t, const ssh_options *o, const ssh_result *r)
{
	char hint[700];
	bool hinted = ssh_hostkey_hint(r->error, t->label, hint, sizeof hint);
	cJSON *j = cJSON_CreateObject();

	cJSON_AddStringToObject(j, "server", t->label);
	cJSON_AddStringToObject(j, "host", t->host);
	cJSON_AddNumberToObject(j, "port", t->port > 0 ? t->port : 22);
	cJSON_AddStringToObject(j, "result", scan_verdict(r));
	if (r->key_type[0])
		cJSON_AddStringToObject(j, "key_type", r->key_type);
	else
		cJSON_AddNullToObject(j, "key_type");
	if (r->fingerprint[0])
		cJSON_AddStringToObject(j, "fingerprint", r->fingerprint);
	else
		cJSON_AddNullToObject(j, "fingerprint");
	cJSON_AddStringToObject(j, "known_hosts", o->known_hosts);
	if (r->success) {
		cJSON_AddNullToObject(j, "error");
		cJSON_AddNullToObject(j, "error_type");
	} else {
		cJSON_AddStringToObject(j, "error", r->message);
		cJSON_AddStringToObject(j, "error_type", ssh_error_name(r->error));
	}
	if (hinted)
		cJSON_AddStringToObject(j, "hint", hint);
	else
		cJSON_AddNullToObject(j, "hint");
	return cli_print_json(j);
}

/* The table, then what went wrong and how to fix it on stderr. */
static void print_table(const kh_target *t, size_t n, const ssh_result *res)
{
	table *tb = table_new(5, "SERVER", "ADDRESS", "KEY_TYPE", "FINGERPRINT", "RESULT");
	char addr[300], hint[700];

	for (size_t i = 0; tb && i < n; i++) {
		ssh_target_address(addr, sizeof addr, t[i].host, t[i].port);
		table_add(tb, t[i].label, addr, res[i].key_type[0] ? res[i].key_type : NULL,
		          res[i].fingerprint[0] ? res[i].fingerprint : NULL, scan_verdict(&res[i]));
	}
	if (tb)
		table_print(tb, stdout);
	table_free(tb);
	fflush(stdout);
	for (size_t i = 0; i < n; i++) {
		if (res[i].success)
			continue;
		fprintf(stderr, "fleetkeeper: %s: %s: %s\n", t[i].label,
		        ssh_error_name(res[i].error), res[i].message);
		if (ssh_hostkey_hint(res[i].error, t[i].label, hint, sizeof hint))
			fprintf(stderr, "  fix: %s\n", hint);
	}
}

static int scan(const cli_ctx *ctx, const config *cfg, const kh_args *a, const kh_target *t,
                size_t n)
{
	ssh_options base, *opts = calloc(n ? n : 1, sizeof *opts);
	ssh_result *res = calloc(n ? n : 1, sizeof *res);
	char kh[4096];
	int rc = EXIT_OK;

	if (opts == NULL || res == NULL || base_options(cfg, a, &base, kh, sizeof kh) != 0) {
		rc = opts && res ? EXIT_USAGE : EXIT_FAILED;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		opts[i] = base;
		opts[i].host = t[i].host;
		opts[i].port = t[i].port;
	}
	ssh_run_many(opts, n, SCAN_CONCURRENCY, 0, -1, res);
	if (!ctx->json)
		print_table(t, n, res);
	for (size_t i = 0; i < n; i++) {
		if (ctx->json && print_json(&t[i], &base, &res[i]) != 0)
			rc = EXIT_FAILED;
		if (!verdict_ok(&res[i]))
			rc = EXIT_FAILED;
	}
out:
	free(opts);
	free(res);
	return rc;
}

/* ---- forget ---- */

static int forget_one(const cli_ctx *ctx, const char *path, const kh_target *t)
{
	char err[512], addr[300];
	int removed = 0;

	if (ssh_known_hosts_forget(path, t->host, t->port, &removed, err, sizeof err) != 0) {
		fprintf(stderr, "fleetkeeper: %s: %s\n", t->label, err);
		return EXIT_FAILED;
	}
	ssh_target_address(addr, sizeof addr, t->host, t->port);
	if (!ctx->json) {
		printf("%s (%s): %d %s removed from %s\n", t->label, addr, removed,
		       removed == 1 ? "entry" : "entries", path);
		return EXIT_OK;
	}
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "server", t->label);
	cJSON_AddStringToObject(j, "host", t->host);
	cJSON_AddNumberToObject(j, "port", t->port > 0 ? t->port : 22);
	cJSON_AddNumberToObject(j, "removed", removed);
	cJSON_AddStringToObject(j, "known_hosts", path);
	return cli_print_json(j) == 0 ? EXIT_OK : EXIT_FAILED;
}

static int forget(const cli_ctx *ctx, const config *cfg, const kh_target *t, size_t n)
{
	ssh_options o;
	char kh[4096], err[256];
	int rc = EXIT_OK;

	ssh_options_default(&o);
	if (ssh_options_from_config(&o, config_section_find(cfg, "ssh"), err, sizeof err) != 0) {
		cli_usage_error("%s: %s", cfg->path, err);
		return EXIT_USAGE;
	}
	ssh_options_known_hosts(&o, cfg->state_dir, kh, sizeof kh);
	for (size_t i = 0; i < n; i++)
		if (forget_one(ctx, o.known_hosts, &t[i]) != EXIT_OK)
			rc = EXIT_FAILED;
	return rc;
}

int cli_cmd_known_hosts(const cli_ctx *ctx)
{
	kh_args args = {0};
	kh_target *targets = NULL;
	size_t n = 0;
	config *cfg = NULL;
	int rc = EXIT_USAGE;

	if (parse_args(ctx, &args) != 0)
		goto out;
	if ((rc = cli_load_config(ctx, &cfg)) != EXIT_OK)
		goto out;
	if ((rc = resolve_targets(cfg, &args, &targets, &n)) != EXIT_OK)
		goto out;
	rc = args.scan ? scan(ctx, cfg, &args, targets, n) : forget(ctx, cfg, targets, n);
out:
	free(targets);
	free(args.names);
	config_unref(cfg);
	return rc;
}
