/*
 * cli — argument parsing, dispatch, and the small commands (help, version,
 * check-config). The larger commands live in cli_run.c (run, once, trigger),
 * cli_query.c (status, runs, incidents, trace) and cli_next.c (next).
 */
#include "cli.h"

#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "github_app.h"
#include "log.h"
#include "providers.h"

/* An installed build (meson -Dsystem_config=true, the Debian package) reads
 * <sysconfdir>/fleetkeeper/fleetkeeper.conf; a build directory the
 * shipped example. */
#ifdef FK_DEFAULT_CONFIG
#define DEFAULT_CONFIG FK_DEFAULT_CONFIG
#else
#define DEFAULT_CONFIG "etc/fleetkeeper.conf"
#endif

static const char usage_text[] =
        "usage: fleetkeeper [-c FILE] COMMAND [ARGS]\n"
        "\n"
        "  run                           the daemon, in the foreground\n"
        "  once TASK                     run one task now, in this process, and exit with its "
        "result\n"
        "  trigger TASK [--follow]       ask the running daemon to run TASK now\n"
        "  next TASK|EXPR [-n N] [--from ISO8601] [--tz ZONE] [--json]\n"
        "                                the next N fire times\n"
        "  status                        tasks, servers and open incidents\n"
        "  runs [--task T] [--limit N]   task run history\n"
        "  incidents [--open]            incidents (open: detected, recovering or failed)\n"
        "  incidents ack ID [--reason R] acknowledge: it stays open, its notifications stop\n"
        "  incidents close ID --reason R resolve it by hand; the server's status comes back\n"
        "  trace CORRELATION_ID          every stored event of one correlation id, in order\n"
        "  ssh-test [USER@]HOST[:PORT] [--key F] [--timeout S] [--command C]\n"
        "                                test SSH access (--known-hosts F, --policy P)\n"
        "  known-hosts scan [SERVER...|--all] [--accept] | forget SERVER...\n"
        "                                host key fingerprints; record (trust on first use) "
        "or forget them\n"
        "  ansible PLAYBOOK --server S [-e KEY=VALUE | -e @FILE ...]\n"
        "                                run one playbook against one server\n"
        "  services add|list|rm          the services deployed on each server\n"
        "  recover SERVER [--reprovision] [--follow]\n"
        "                                redeploy the server's services (through the daemon "
        "when it runs);\n"
        "                                --reprovision: reprovision an unreachable server "
        "first\n"
        "  notify test NAME              send a test message through notifier NAME\n"
        "  store check | backup FILE | vacuum  check the state store for damage | copy it\n"
        "                                safely | give free pages back (daemon stopped)\n"
        "  servers [show S | set-status S STATUS --reason R | forget S |\n"
        "          maintenance S --for DURATION [--from TIME] [--reason R] | --end]\n"
        "                                the fleet, and the operator's controls of a server\n"
        "  check-config [--list-keys]    validate the configuration | list every key and "
        "its default\n"
        "  version | help\n"
        "\n"
        "FILE: -c, else $FLEETKEEPER_CONFIG, else " DEFAULT_CONFIG ".\n"
        "Listing commands print a table, or JSON lines with --json.\n"
        "Exit status: 0 success, 1 the work failed, 2 usage or configuration error.\n";

void cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("fleetkeeper: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see 'fleetkeeper help')\n", stderr);
}

int cli_parse_name_follow(const cli_ctx *ctx, const char *command, const char *what,
                          const char **name, bool *follow)
{
	for (int i = 0; i < ctx->argc; i++) {
		const char *arg = ctx->argv[i];
		if (strcmp(arg, "--follow") == 0 || strcmp(arg, "-f") == 0) {
			*follow = true;
		} else if (*name == NULL && arg[0] != '-' && arg[0] != '\0') {
			*name = arg;
		} else {
			cli_usage_error("%s: unexpected argument '%s'", command, arg);
			return -1;
		}
	}
	if (*name == NULL) {
		cli_usage_error("%s needs a %s", command, what);
		return -1;
	}
	return 0;
}

int cli_load_config(const cli_ctx *ctx, config **out)
{
	config_errors errs = {0};
	if (config_load(out, ctx->config_path, &errs) == 0) {
		config_errors_free(&errs);
		return EXIT_OK;
	}
	for (size_t i = 0; i < errs.count; i++)
		fprintf(stderr, "%s\n", errs.lines[i]);
	if (errs.count == 0)
		fprintf(stderr, "%s: invalid configuration\n", ctx->config_path);
	config_errors_free(&errs);
	return EXIT_USAGE;
}

int cli_load_config_lenient(const cli_ctx *ctx, config **out)
{
	config_errors errs = {0};
	int rc = config_load_lenient(out, ctx->config_path, &errs);
	for (size_t i = 0; i < errs.count; i++)
		fprintf(stderr, "%s%s\n", rc == 1 ? "warning: " : "", errs.lines[i]);
	if (rc < 0 && errs.count == 0)
		fprintf(stderr, "%s: invalid configuration\n", ctx->config_path);
	config_errors_free(&errs);
	if (rc < 0)
		return EXIT_USAGE;
	if (rc == 1)
		fprintf(stderr,
		        "warning: %s has errors (a running daemon keeps its configuration); %s "
		        "answers from the state directory %s\n",
		        ctx->config_path, ctx->command, (*out)->state_dir);
	return EXIT_OK;
}

const char *cli_operator_name(void)
{
	const char *u = getenv("SUDO_USER");
	if (u && *u)
		return u;
	struct passwd *pw = getpwuid(getuid());
	return pw ? pw->pw_name : "unknown";
}

int cli_setup_logging(const config *cfg)
{
	log_options opts;
	const char *bad = NULL;

	log_options_default(&opts);
	if (cfg && cfg->log_level)
		log_level_parse(cfg->log_level, &opts.level);
	if (cfg && cfg->log_format)
		log_format_parse(cfg->log_format, &opts.format);
	if (cfg && cfg->service_name)
		opts.service = cfg->service_name;
	int env_rc = log_options_from_env(&opts, &bad);
	if (log_init(&opts) != 0) {
		fprintf(stderr, "fleetkeeper: cannot initialise logging\n");
		return EXIT_FAILED;
	}
	log_info("core.log", "logging_initialized", LOG_STR("service", opts.service),
	         LOG_STR("log_format", opts.format == LOG_FORMAT_JSON ? "json" : "console"),
	         LOG_STR("log_level", log_level_name(opts.level)));
	if (env_rc != 0)
		log_warning("core.log", "log_env_invalid", LOG_STR("variable", bad),
		            LOG_STR("value", getenv(bad)), LOG_STR("error", "ignored: bad value"));
	return EXIT_OK;
}

int cli_print_json(cJSON *o)
{
	char *s = o ? cJSON_PrintUnformatted(o) : NULL;
	if (s)
		printf("%s\n", s);
	free(s);
	cJSON_Delete(o);
	return s ? 0 : -1;
}

static void print_key(void *arg, const char *section, const char *key, const char *def)
{
	const cli_ctx *ctx = arg;
	if (!ctx->json) {
		printf("%s\t%s\t%s\n", section, key, def);
		return;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "section", section);
	cJSON_AddStringToObject(o, "key", key);
	cJSON_AddStringToObject(o, "default", def);
	cli_print_json(o);
}

/* check-config --list-keys: every key config_load accepts, from its own
 * tables, with the default as documented (no file is read). */
static int list_keys(const cli_ctx *ctx)
{
	if (!ctx->json)
		printf("SECTION\tKEY\tDEFAULT\n");
	config_keys_foreach(print_key, (void *)ctx);
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
}

/* A warning does not fail check-config: FILE:LINE: warning: message. */
static void print_warning(void *arg, int line, const char *message)
{
	const config *cfg = arg;
	fprintf(stderr, "%s:%d: warning: %s\n", cfg->path, line, message);
}

/* An error of a check beyond config_load: FILE:LINE: message. */
static void print_error(void *arg, int line, const char *message)
{
	const config *cfg = arg;
	fprintf(stderr, "%s:%d: %s\n", cfg->path, line, message);
}

static int cmd_check_config(const cli_ctx *ctx)
{
	config *cfg = NULL;
	if (ctx->argc == 1 && strcmp(ctx->argv[0], "--list-keys") == 0)
		return list_keys(ctx);
	if (ctx->argc > 0) {
		cli_usage_error("check-config: unexpected argument '%s'", ctx->argv[0]);
		return EXIT_USAGE;
	}
	int rc = cli_load_config(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	providers_config_warnings(cfg, print_warning, cfg);
	/* The files a load does not read: the GitHub App's private key. */
	if (github_app_config_check(cfg, print_error, cfg) > 0) {
		config_unref(cfg);
		return EXIT_USAGE;
	}
	if (ctx->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddBoolToObject(o, "ok", true);
		cJSON_AddStringToObject(o, "config", cfg->path);
		cJSON_AddNumberToObject(o, "tasks", (double)cfg->ntasks);
		if (cli_print_json(o) != 0)
			rc = EXIT_FAILED;
	} else {
		printf("%s: OK (%zu tasks)\n", cfg->path, cfg->ntasks);
	}
	config_unref(cfg);
	return rc;
}

static int cmd_version(const cli_ctx *ctx)
{
	(void)ctx;
	printf("fleetkeeper %s\n", FK_VERSION);
	return EXIT_OK;
}

static int cmd_help(const cli_ctx *ctx)
{
	(void)ctx;
	fputs(usage_text, stdout);
	return EXIT_OK;
}

typedef struct {
	const char *name;
	int (*fn)(const cli_ctx *ctx);
} command;

static const command commands[] = {
        {"run", cli_cmd_run},
        {"once", cli_cmd_once},
        {"trigger", cli_cmd_trigger},
        {"next", cli_cmd_next},
        {"status", cli_cmd_status},
        {"runs", cli_cmd_runs},
        {"incidents", cli_cmd_incidents},
        {"trace", cli_cmd_trace},
        {"ssh-test", cli_cmd_ssh_test},
        {"ansible", cli_cmd_ansible},
        {"services", cli_cmd_services},
        {"recover", cli_cmd_recover},
        {"notify", cli_cmd_notify},
        {"store", cli_cmd_store},
        {"servers", cli_cmd_servers},
        {"known-hosts", cli_cmd_known_hosts},
        {"check-config", cmd_check_config},
        {"version", cmd_version},
        {"help", cmd_help},
};

/* Take --json out of the command's arguments. */
static void strip_json_flag(cli_ctx *ctx)
{
	int out = 0;
	for (int i = 0; i < ctx->argc; i++) {
		if (strcmp(ctx->argv[i], "--json") == 0)
			ctx->json = true;
		else
			ctx->argv[out++] = ctx->argv[i];
	}
	ctx->argc = out;
}

static int parse_global(int argc, char **argv, cli_ctx *ctx)
{
	int i = 1;
	ctx->config_path = getenv("FLEETKEEPER_CONFIG");
	if (ctx->config_path == NULL || *ctx->config_path == '\0')
		ctx->config_path = DEFAULT_CONFIG;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc || argv[i + 1][0] == '\0') {
				cli_usage_error("%s needs a file name", argv[i]);
				return -1;
			}
			ctx->config_path = argv[++i];
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			ctx->command = "help";
			return 0;
		} else if (strcmp(argv[i], "--version") == 0) {
			ctx->command = "version";
			return 0;
		} else {
			cli_usage_error("unknown option '%s'", argv[i]);
			return -1;
		}
	}
	if (i >= argc) {
		cli_usage_error("no command given");
		return -1;
	}
	ctx->command = argv[i];
	ctx->argc = argc - i - 1;
	ctx->argv = argv + i + 1;
	strip_json_flag(ctx);
	return 0;
}

int cli_main(int argc, char **argv)
{
	cli_ctx ctx = {0};
	/* A closed stdout (a pipe nobody reads) must not kill us: writes fail
	 * with EPIPE instead, and the log keeps going to the store. */
	signal(SIGPIPE, SIG_IGN);
	if (parse_global(argc, argv, &ctx) != 0)
		return EXIT_USAGE;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].name, ctx.command) == 0)
			return commands[i].fn(&ctx);
	cli_usage_error("unknown command '%s'", ctx.command);
	return EXIT_USAGE;
}
