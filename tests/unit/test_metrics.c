/* Unit tests: the metric registry, its text rendering, the store gauges and
 * the HTTP endpoint (on 127.0.0.1, an ephemeral port), with /healthz
 * failing on a locked and on a read-only store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "metrics.h"
#include "metrics_http.h"
#include "store.h"

static char *render(store *st)
{
	metrics_buf b = {0};
	metrics_render(&b, st);
	assert_false(b.failed);
	return b.data;
}

static void assert_line(const char *text, const char *line)
{
	char want[512];
	snprintf(want, sizeof want, "\n%s\n", line);
	if (!strstr(text, want))
		fail_msg("missing line %s in:\n%s", line, text);
}

static int reset(void **state)
{
	(void)state;
	metrics_reset();
	return 0;
}

static void test_label_escaping(void **state)
{
	(void)state;
	metrics_buf b = {0};
	metrics_buf_label(&b, "a\"b\\c\nd");
	assert_string_equal(b.data, "a\\\"b\\\\c\\nd");
	metrics_buf_free(&b);
	metrics_ansible_run("we\"ird\\pb\n.yml", "ok");
	char *t = render(NULL);
	assert_line(t,
	            "fleetkeeper_ansible_playbook_runs_total{playbook=\"we\\\"ird\\\\pb\\n.yml\","
	            "result=\"ok\"} 1");
	free(t);
}

static void fake_task(task_config *tc, const char *name, const char *expr)
{
	char err[128];
	memset(tc, 0, sizeof *tc);
	tc->name = (char *)name;
	if (expr) {
		tc->schedule_expr = (char *)expr;
		assert_int_equal(schedule_parse(&tc->sched, expr, err, sizeof err), 0);
	}
}

static void test_run_hooks(void **state)
{
	(void)state;
	task_config tc;
	task_run run;
	fake_task(&tc, "backup", "@every 90s");
	memset(&run, 0, sizeof run);
	run.task = &tc;
	run.items[0].name = "lines_output";
	run.items[0].value = 3;
	run.nitems = 1;

	metrics_run_started(&tc);
	char *t = render(NULL);
	assert_line(t, "fleetkeeper_task_running{task=\"backup\"} 1");
	assert_line(t, "fleetkeeper_task_interval_seconds{task=\"backup\"} 90");
	free(t);

	metrics_run_finished(&run, RUN_SUCCESS, 0.7);
	metrics_run_started(&tc);
	metrics_run_finished(&run, RUN_FAILED, 42);
	metrics_run_skipped("backup");
	t = render(NULL);
	assert_line(t, "fleetkeeper_task_running{task=\"backup\"} 0");
	assert_line(t, "fleetkeeper_task_runs_total{task=\"backup\",status=\"success\"} 1");
	assert_line(t, "fleetkeeper_task_runs_total{task=\"backup\",status=\"failed\"} 1");
	assert_line(t, "fleetkeeper_task_runs_total{task=\"backup\",status=\"skipped\"} 1");
	assert_line(t, "fleetkeeper_task_items_total{task=\"backup\",item=\"lines_output\"} 6");
	assert_line(t, "fleetkeeper_task_duration_seconds_bucket{task=\"backup\",le=\"0.5\"} 0");
	assert_line(t, "fleetkeeper_task_duration_seconds_bucket{task=\"backup\",le=\"1\"} 1");
	assert_line(t, "fleetkeeper_task_duration_seconds_bucket{task=\"backup\",le=\"30\"} 1");
	assert_line(t, "fleetkeeper_task_duration_seconds_bucket{task=\"backup\",le=\"60\"} 2");
	assert_line(t, "fleetkeeper_task_duration_seconds_bucket{task=\"backup\",le=\"+Inf\"} 2");
	assert_line(t, "fleetkeeper_task_duration_seconds_sum{task=\"backup\"} 42.7");
	assert_line(t, "fleetkeeper_task_duration_seconds_count{task=\"backup\"} 2");
	assert_non_null(
	        strstr(t, "fleetkeeper_task_last_success_timestamp_seconds{task=\"backup\"} 1"));
	free(t);
}

static void test_cron_interval(void **state)
{
	(void)state;
	task_config tc;
	const tz *utc = NULL;
	char err[128];
	fake_task(&tc, "nightly", "30 2 * * *");
	assert_int_equal(tz_load("UTC", &utc, err, sizeof err), 0);
	tc.zone = utc;
	metrics_run_started(&tc);
	char *t = render(NULL);
	assert_line(t, "fleetkeeper_task_interval_seconds{task=\"nightly\"} 86400");
	free(t);
}

static void test_families_always_declared(void **state)
{
	(void)state;
	metrics_event_logged(LOG_INFO);
	metrics_event_logged(LOG_INFO);
	metrics_event_logged(LOG_ERROR);
	char *t = render(NULL);
	assert_line(t, "# TYPE fleetkeeper_ansible_playbook_runs_total counter");
	assert_line(t, "# TYPE fleetkeeper_task_duration_seconds histogram");
	assert_line(t, "fleetkeeper_events_total{level=\"info\"} 2");
	assert_line(t, "fleetkeeper_events_total{level=\"error\"} 1");
	assert_line(t, "fleetkeeper_events_total{level=\"critical\"} 0");
	assert_line(t, "fleetkeeper_store_scrape_error 1");
	assert_line(t, "# TYPE fleetkeeper_events_dropped_total counter");
	assert_line(t, "fleetkeeper_events_dropped_total 0");
	assert_line(t, "# TYPE fleetkeeper_store_write_errors_total counter");
	assert_line(t, "fleetkeeper_store_write_errors_total 0");
	assert_line(t, "fleetkeeper_store_write_failing 0");
	assert_non_null(strstr(t, "\nprocess_cpu_seconds_total "));
	assert_non_null(strstr(t, "\nprocess_resident_memory_bytes "));
	assert_non_null(strstr(t, "\nprocess_open_fds "));
	assert_non_null(strstr(t, "\nprocess_max_fds "));
	assert_non_null(strstr(t, "\nprocess_start_time_seconds 1"));
	assert_null(strstr(t, "fleetkeeper_servers{"));
	free(t);
}

/* ---- a store with servers and incidents ---- */

typedef struct {
	char dir[64];
	char path[128];
	store *rw;
} fixture;

static void fixture_open(fixture *f)
{
	char err[256];
	snprintf(f->dir, sizeof f->dir, "/tmp/fk_metrics_XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
	assert_int_equal(store_open(&f->rw, f->path, err, sizeof err), STORE_OK);
	assert_int_equal(store_exec(f->rw,
	                            "INSERT INTO servers(id, handle, status, last_health_check,"
	                            " response_time_ms, consecutive_failures, created_at,"
	                            " updated_at) VALUES"
	                            " (1, 'web-1', 'ready', 1, 12.5, 0, 1, 1),"
	                            " (2, 'db-\"1', 'error', 1, NULL, 3, 1, 1),"
	                            " (3, 'new-1', 'discovered', NULL, NULL, 0, 1, 1)"),
	                 STORE_OK);
	assert_int_equal(store_exec(f->rw, "INSERT INTO incidents(server_id, type, status,"
	                                   " detected_at) VALUES"
	                                   " (2, 'server_unreachable', 'detected', 1),"
	                                   " (2, 'server_unreachable', 'resolved', 1)"),
	                 STORE_OK);
}

static void fixture_close(fixture *f)
{
	char cmd[128];
	store_close(f->rw);
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
}

static void test_store_gauges(void **state)
{
	(void)state;
	fixture f;
	store *ro = NULL;
	char err[256];
	fixture_open(&f);
	assert_int_equal(store_open_readonly(&ro, f.path, err, sizeof err), STORE_OK);
	char *t = render(ro);
	assert_line(t, "fleetkeeper_servers{status=\"ready\"} 1");
	assert_line(t, "fleetkeeper_servers{status=\"error\"} 1");
	assert_line(t, "fleetkeeper_servers{status=\"discovered\"} 1");
	assert_line(t, "fleetkeeper_servers{status=\"missing\"} 0");
	assert_line(t, "fleetkeeper_server_up{server_handle=\"web-1\"} 1");
	assert_line(t, "fleetkeeper_server_up{server_handle=\"db-\\\"1\"} 0");
	assert_null(strstr(t, "server_handle=\"new-1\""));
	assert_line(t, "fleetkeeper_server_response_time_seconds{server_handle=\"web-1\"} 0.0125");
	assert_null(strstr(t, "fleetkeeper_server_response_time_seconds{server_handle=\"db"));
	assert_line(t, "fleetkeeper_incidents_open 1");
	assert_line(t, "fleetkeeper_store_scrape_error 0");
	free(t);
	store_close(ro);
	fixture_close(&f);
}

/* ---- the HTTP endpoint ---- */

typedef struct {
	metrics_http *h;
	int stop_fd[2];
	pthread_t thread;
} fake_loop;

/* Answers the liveness probes like the daemon's loop does. */
static void *loop_main(void *arg)
{
	fake_loop *l = arg;
	struct pollfd p[2] = {{.fd = metrics_http_probe_fd(l->h), .events = POLLIN},
	                      {.fd = l->stop_fd[0], .events = POLLIN}};
	while (poll(p, 2, -1) >= 0 && !(p[1].revents & POLLIN))
		if (p[0].revents & POLLIN)
			metrics_http_probe_ack(l->h);
	return NULL;
}

static size_t collect(char *data, size_t size, size_t n, void *ctx)
{
	metrics_buf *b = ctx;
	metrics_buf_printf(b, "%.*s", (int)(size * n), data);
	return size * n;
}

/* The status (-1 if the request failed) and the body. No cmocka asserts:
 * a forked child uses it too. */
static long http_fetch(const char *address, const char *path, char **body)
{
	char url[256];
	long code = -1;
	metrics_buf b = {0};
	CURL *c = curl_easy_init();
	snprintf(url, sizeof url, "http://%s%s", address, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	*body = b.data ? b.data : strdup("");
	return code;
}

static long http_get(const char *address, const char *path, char **body)
{
	long code = http_fetch(address, path, body);
	assert_int_not_equal(code, -1);
	return code;
}

static void test_http_endpoint(void **state)
{
	(void)state;
	fixture f;
	fake_loop l;
	char err[256], *body = NULL;
	fixture_open(&f);
	assert_int_equal(metrics_http_start(&l.h, "127.0.0.1:0", f.path, err, sizeof err), 0);
	const char *addr = metrics_http_address(l.h);
	assert_non_null(strstr(addr, "127.0.0.1:"));
	assert_int_equal(pipe(l.stop_fd), 0);
	assert_int_equal(pthread_create(&l.thread, NULL, loop_main, &l), 0);

	assert_int_equal(http_get(addr, "/metrics", &body), 200);
	assert_non_null(strstr(body, "\nfleetkeeper_incidents_open 1\n"));
	free(body);
	assert_int_equal(http_get(addr, "/healthz", &body), 200);
	assert_non_null(strstr(body, "\"status\": \"ok\""));
	free(body);
	assert_int_equal(http_get(addr, "/nope", &body), 404);
	free(body);

	/* Another connection holds the write lock: the store probe fails. */
	assert_int_equal(store_tx_begin(f.rw), STORE_OK);
	int64_t t0 = clock_mono_ms();
	assert_int_equal(http_get(addr, "/healthz", &body), 503);
	assert_true(clock_mono_ms() - t0 < 3000); /* its own 500 ms, not the store's 5 s */
	assert_non_null(strstr(body, "\"store\": false"));
	assert_non_null(strstr(body, "locked"));
	free(body);
	assert_int_equal(http_get(addr, "/metrics", &body), 200); /* readers go on */
	free(body);
	store_tx_rollback(f.rw);

	/* The event writer's writes fail (a full disk, which the probe cannot
	 * see): 503 naming the writer's error, until a write succeeds. */
	metrics_store_write_error();
	metrics_store_writer_state(false, "commit events: database or disk is full");
	assert_int_equal(http_get(addr, "/healthz", &body), 503);
	assert_non_null(strstr(body, "\"loop\": true, \"store\": false"));
	assert_non_null(strstr(body, "event writer: commit events: database or disk is full"));
	free(body);
	assert_int_equal(http_get(addr, "/metrics", &body), 200);
	assert_non_null(strstr(body, "\nfleetkeeper_store_write_errors_total 1\n"));
	assert_non_null(strstr(body, "\nfleetkeeper_store_write_failing 1\n"));
	free(body);
	metrics_store_writer_state(true, NULL);
	assert_int_equal(http_get(addr, "/healthz", &body), 200);
	free(body);

	/* The loop stops answering. */
	assert_int_equal(write(l.stop_fd[1], "x", 1), 1);
	pthread_join(l.thread, NULL);
	assert_int_equal(http_get(addr, "/healthz", &body), 503);
	assert_non_null(strstr(body, "\"loop\": false, \"store\": true"));
	free(body);

	/* The same address again: a clear error. */
	metrics_http *second = NULL;
	assert_int_equal(metrics_http_start(&second, addr, f.path, err, sizeof err), -1);
	assert_null(second);
	assert_non_null(strstr(err, "Address already in use"));

	metrics_http_stop(l.h);
	close(l.stop_fd[0]);
	close(l.stop_fd[1]);
	fixture_close(&f);
}

/* ---- /healthz on a read-only store ---- */

static void fake_loop_start(fake_loop *l)
{
	if (pipe(l->stop_fd) != 0 || pthread_create(&l->thread, NULL, loop_main, l) != 0)
		_exit(10);
}

/* In a child that cannot write the store (root drops to nobody: root
 * writes read-only files anyway): start the endpoint and exit 0 if
 * /healthz says 503 because of the store alone, naming a read-only store.
 * No cmocka asserts here: they would unwind into the child's copy of the
 * test runner. */
static void readonly_child(const char *path)
{
	char err[256], *body = NULL;
	fake_loop l;
	if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
		_exit(11);
	if (metrics_http_start(&l.h, "127.0.0.1:0", path, err, sizeof err) != 0)
		_exit(12);
	fake_loop_start(&l);
	long code = http_fetch(metrics_http_address(l.h), "/healthz", &body);
	fprintf(stderr, "readonly healthz: %ld %s", code, body);
	bool ok = code == 503 && strstr(body, "\"loop\": true, \"store\": false") &&
	          (strstr(body, "read-only") || strstr(body, "readonly"));
	_exit(ok ? 0 : 13);
}

static void test_healthz_readonly_store(void **state)
{
	(void)state;
	fixture f;
	char wal[160], shm[160];
	int status = -1;
	fixture_open(&f);
	store_close(f.rw); /* checkpointed: only the file is left */
	f.rw = NULL;
	snprintf(wal, sizeof wal, "%s-wal", f.path);
	snprintf(shm, sizeof shm, "%s-shm", f.path);
	assert_int_equal(access(wal, F_OK) != 0 && access(shm, F_OK) != 0, 1);
	assert_int_equal(chmod(f.path, 0444), 0);
	assert_int_equal(chmod(f.dir, 0555), 0);

	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		readonly_child(f.path);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(chmod(f.dir, 0700), 0);
	assert_int_equal(chmod(f.path, 0644), 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	char err[256];
	assert_int_equal(store_open(&f.rw, f.path, err, sizeof err), STORE_OK);
	fixture_close(&f);
}

static void test_listen_address(void **state)
{
	(void)state;
	char err[256];
	metrics_http *h = NULL;
	assert_int_equal(metrics_http_start(&h, "nonsense", "/nonexistent", err, sizeof err), -1);
	assert_non_null(strstr(err, "expected host:port"));
	assert_int_equal(metrics_http_start(&h, "[::1]:0", "/nonexistent", err, sizeof err) == 0 ||
	                         strstr(err, "[metrics] listen") != NULL,
	                 1);
	if (h) {
		assert_non_null(strstr(metrics_http_address(h), "[::1]:"));
		metrics_http_stop(h);
	}
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup(test_label_escaping, reset),
	        cmocka_unit_test_setup(test_run_hooks, reset),
	        cmocka_unit_test_setup(test_cron_interval, reset),
	        cmocka_unit_test_setup(test_families_always_declared, reset),
	        cmocka_unit_test_setup(test_store_gauges, reset),
	        cmocka_unit_test_setup(test_http_endpoint, reset),
	        cmocka_unit_test_setup(test_healthz_readonly_store, reset),
	        cmocka_unit_test_setup(test_listen_address, reset),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
