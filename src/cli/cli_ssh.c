/*
 * cli_ssh — `fleetkeeper ssh-test [USER@]HOST[:PORT] [--key FILE]
 * [--timeout S] [--command CMD] [--known-hosts FILE] [--policy P]`.
 *
 * Defaults come from [ssh] of the configuration; the options override them.
 * Prints one ssh_connection_test event and exits 0 (the command ran and
 * exited 0), 1 (any failure, named by stage and error_type) or 2 (bad
 * arguments or configuration). The event carries the offered host key
 * (key_type, fingerprint) and, for hostkey_unknown / hostkey_mismatch, the
 * known-hosts command that fixes it (hint, naming HOST:PORT).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "duration.h"
#include "log.h"
#include "ssh.h"

typedef struct {
	char user[256];
	char host[256];
	int port;
	const char *key_file;
	const char *timeout;
	const char *command;
	const char *known_hosts;
	const char *policy;
	char default_kh[4096]; /* state_dir/known_hosts */
} ssh_args;

/* [USER@]HOST[:PORT], HOST may be [v6addr]. 0 or -1 (usage error printed). */
static int parse_target(const char *arg, ssh_args *a)
{
	const char *at = strrchr(arg, '@');
	const char *host = at ? at + 1 : arg;
	const char *colon = NULL, *end;
	long port;

	if (at && ((size_t)(at - arg) >= sizeof a->user || at == arg))
		goto bad;
	if (at)
		snprintf(a->user, sizeof a->user, "%.*s", (int)(at - arg), arg);
	if (*host == '[') {
		end = strchr(host, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			goto bad;
		colon = end[1] == ':' ? end + 1 : NULL;
		host++;
	} else {
		colon = strchr(host, ':');
		end = colon ? colon : host + strlen(host);
		if (colon && strchr(colon + 1, ':'))
			goto bad;
	}
	if (end == host || (size_t)(end - host) >= sizeof a->host)
		goto bad;
	snprintf(a->host, sizeof a->host, "%.*s", (int)(end - host), host);
	if (colon) {
		if (config_parse_int(colon + 1, 1, 65535, &port) != 0)
			goto bad;
		a->port = (int)port;
	}
	return 0;
bad:
	cli_usage_error("ssh-test: invalid target '%s' (expected [USER@]HOST[:PORT])", arg);
	return -1;
}

static int parse_args(const cli_ctx *ctx, ssh_args *a)
{
	static const char *const opts[] = {"--key",         "--timeout", "--command",
	                                   "--known-hosts", "--policy",  NULL};
	const char **slots[] = {&a->key_file, &a->timeout, &a->command, &a->known_hosts,
	                        &a->policy};
	bool have_target = false;

	for (int i = 0; i < ctx->argc; i++) {
		const char *arg = ctx->argv[i];
		size_t k = 0;
		while (opts[k] && strcmp(opts[k], arg) != 0)
			k++;
		if (opts[k]) {
			if (i + 1 >= ctx->argc) {
				cli_usage_error("ssh-test: %s needs a value", arg);
				return -1;
			}
			*slots[k] = ctx->argv[++i];
		} else if (arg[0] == '-' && arg[1] != '\0') {
			cli_usage_error("ssh-test: unknown option '%s'", arg);
			return -1;
		} else if (have_target) {
			cli_usage_error("ssh-test: unexpected argument '%s'", arg);
			return -1;
		} else if (parse_target(arg, a) != 0) {
			return -1;
		} else {
			have_target = true;
		}
	}
	if (!have_target)
		cli_usage_error("ssh-test: no host given ([USER@]HOST[:PORT])");
	return have_target ? 0 : -1;
}

/* Command-line values over [ssh]. 0 or -1 (usage error printed). */
static int apply_args(ssh_args *a, const config *cfg, ssh_options *o)
{
	char err[256];

	ssh_options_default(o);
	if (ssh_options_from_config(o, config_section_find(cfg, "ssh"), err, sizeof err) != 0) {
		cli_usage_error("%s: %s", cfg->path, err);
		return -1;
	}
	o->host = a->host;
	if (a->port)
		o->port = a->port;
	if (a->user[0])
		o->user = a->user;
	if (a->key_file)
		o->key_file = a->key_file;
	if (a->command)
		o->command = a->command;
	if (a->known_hosts)
		o->known_hosts = a->known_hosts;
	if (a->policy && hostkey_policy_parse(a->policy, &o->policy) != 0) {
		cli_usage_error("ssh-test: --policy must be strict, accept-new or off");
		return -1;
	}
	if (a->timeout && (duration_parse(a->timeout, &o->timeout_ms, err, sizeof err) != 0 ||
	                   o->timeout_ms <= 0)) {
		cli_usage_error("ssh-test: --timeout '%s': %s", a->timeout,
		                o->timeout_ms <= 0 ? "must be positive" : err);
		return -1;
	}
	ssh_options_known_hosts(o, cfg->state_dir, a->default_kh, sizeof a->default_kh);
	return 0;
}

/* key_type and fingerprint whenever the handshake got the key; a host key
 * failure also names the command that fixes it (hint). */
static void log_result(const ssh_options *o, const ssh_result *r)
{
	const char *kind = r->success ? NULL : ssh_error_name(r->error);
	char target[300], hint[700];

	ssh_target_address(target, sizeof target, o->host, o->port);
	bool hinted = !r->success && ssh_hostkey_hint(r->error, target, hint, sizeof hint);
	log_emit(r->success ? LOG_INFO : LOG_WARNING, "ssh", "ssh_connection_test",
	         LOG_STR("host", o->host), LOG_INT("port", o->port), LOG_STR("user", o->user),
	         LOG_BOOL("success", r->success), LOG_INT("duration_ms", r->duration_ms),
	         LOG_STR("stage", ssh_stage_name(r->stage)),
	         LOG_STR("error", r->success ? NULL : r->message), LOG_STR("error_type", kind),
	         r->exit_status >= 0 ? LOG_INT("exit_status", r->exit_status)
	                             : LOG_NULL("exit_status"),
	         LOG_STR("output", r->exit_status >= 0 ? r->output : NULL),
	         LOG_BOOL("hostkey_added", r->hostkey_added),
	         LOG_STR("host_key_policy", hostkey_policy_name(o->policy)),
	         LOG_STR("key_type", r->key_type[0] ? r->key_type : NULL),
	         LOG_STR("fingerprint", r->fingerprint[0] ? r->fingerprint : NULL),
	         LOG_STR("hint", hinted ? hint : NULL), LOG_END);
}

int cli_cmd_ssh_test(const cli_ctx *ctx)
{
	ssh_args args = {0};
	ssh_options opt;
	ssh_result res;
	config *cfg = NULL;

	if (parse_args(ctx, &args) != 0)
		return EXIT_USAGE;
	int rc = cli_load_config(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	if (apply_args(&args, cfg, &opt) != 0) {
		config_unref(cfg);
		return EXIT_USAGE;
	}
	if (cli_setup_logging(cfg) != EXIT_OK) {
		config_unref(cfg);
		return EXIT_FAILED;
	}
	ssh_test(&opt, -1, &res);
	log_result(&opt, &res);
	log_shutdown();
	config_unref(cfg);
	return res.success ? EXIT_OK : EXIT_FAILED;
}
