/*
 * cli_notify — `fleetkeeper notify test NAME`.
 *
 * Sends one test message through notifier NAME directly (not through the
 * outbox: nothing is stored, the daemon need not run) and prints one
 * notification_test event. Exit 0 sent, 1 not sent (the event's error says
 * why, without secrets), 2 usage error or unknown notifier.
 *
 * A step answered 429 with a retry_after of at most NOTIFY_TEST_WAIT_MAX
 * seconds (Telegram's flood control) is sent again once after that wait,
 * as the daemon's sender would; a longer wait fails the test at once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clock.h"
#include "log.h"
#include "notifiers.h"
#include "runner.h"

static int parse_args(const cli_ctx *ctx, const char **name)
{
	if (ctx->argc < 1 || strcmp(ctx->argv[0], "test") != 0) {
		cli_usage_error("notify: expected 'notify test NAME'");
		return -1;
	}
	if (ctx->argc != 2 || ctx->argv[1][0] == '\0' || ctx->argv[1][0] == '-') {
		cli_usage_error("notify test needs one notifier name");
		return -1;
	}
	*name = ctx->argv[1];
	return 0;
}

#define NOTIFY_TEST_WAIT_MAX 30 /* seconds */

/* One step, sent again once when the receiver asks for a short wait. */
static int send_step(const notifier *nf, http_client *c, const outbox_row *row, const char *text,
                     size_t step, notify_result *res, char *err, size_t errlen)
{
	int rc = notifier_send_step(nf, c, row, text, step, clock_wall(), res, err, errlen);
	if (rc == 0 || res->status != 429 || res->retry_after < 0 ||
	    res->retry_after > NOTIFY_TEST_WAIT_MAX)
		return rc;
	fprintf(stderr,
	        "fleetkeeper: notify test: %s answered 429, retry_after %lld s; waiting, "
	        "then sending once more\n",
	        nf->name, (long long)res->retry_after);
	struct timespec ts = {.tv_sec = (time_t)res->retry_after};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	*res = (notify_result){.retry_after = -1};
	return notifier_send_step(nf, c, row, text, step, clock_wall(), res, err, errlen);
}

/* 0 if every step was delivered; err and res describe the first failure. */
static int send_test(const notifier *nf, const char *cid, notify_result *res, char *err,
                     size_t errlen)
{
	char title[256], body[256], ua[64];
	snprintf(title, sizeof title, "fleetkeeper test message (notifier %s)", nf->name);
	snprintf(body, sizeof body, "If you read this, notifier %s (%s) works.", nf->name,
	         notifier_type_name(nf->type));
	outbox_row row = {.id = 0,
	                  .created_at = clock_wall(),
	                  .kind = "test",
	                  .level = LOG_INFO,
	                  .title = title,
	                  .body = body,
	                  .correlation_id = cid};
	snprintf(ua, sizeof ua, "fleetkeeper/%s", FK_VERSION);
	http_options o = {
	        .user_agent = ua, .connect_timeout_ms = 5000, .timeout_ms = 15000, .cancel_fd = -1};
	http_client *c = http_client_new(&o);
	char *text = notify_text(&row);
	int rc = c && text ? 0 : -1;
	if (rc != 0)
		snprintf(err, errlen, "out of memory");
	for (size_t i = 0; rc == 0 && i < notifier_steps(nf); i++)
		rc = send_step(nf, c, &row, text, i, res, err, errlen);
	free(text);
	http_client_free(c);
	return rc;
}

int cli_cmd_notify(const cli_ctx *ctx)
{
	const char *name = NULL;
	config *cfg = NULL;
	notifier nf;
	char err[512] = "", cid[RUNNER_CORRELATION_MAX];
	notify_result res = {.retry_after = -1};

	if (parse_args(ctx, &name) != 0)
		return EXIT_USAGE;
	int rc = cli_load_config(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	int lrc = notifier_load_one(cfg, name, &nf, err, sizeof err);
	if (lrc == -2) {
		fprintf(stderr, "fleetkeeper: %s: %s\n", cfg->path, err);
		config_unref(cfg);
		return EXIT_USAGE;
	}
	if (cli_setup_logging(cfg) != EXIT_OK) {
		notifier_clear(&nf);
		config_unref(cfg);
		return EXIT_FAILED;
	}
	runner_new_correlation_id("notify_test", clock_wall(), cid, sizeof cid);
	rc = lrc == 0 ? send_test(&nf, cid, &res, err, sizeof err) : -1;
	log_emit(rc == 0 ? LOG_INFO : LOG_ERROR, "core.notify", "notification_test",
	         LOG_STR("notifier", name),
	         LOG_STR("type", lrc == 0 ? notifier_type_name(nf.type) : NULL),
	         LOG_BOOL("success", rc == 0), LOG_STR("error", rc == 0 ? NULL : err),
	         LOG_STR("error_type", rc == 0      ? NULL
	                               : lrc != 0   ? "config"
	                               : res.status ? "http"
	                                            : "network"),
	         LOG_INT("http_status", res.status), LOG_STR("correlation_id", cid), LOG_END);
	log_shutdown();
	notifier_clear(&nf);
	config_unref(cfg);
	return rc == 0 ? EXIT_OK : EXIT_FAILED;
}
