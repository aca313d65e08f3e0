/*
 * ansible — see ansible.h. Invariants:
 *
 * 1. The password is read from its file into memory only to be written to
 *    the 0600 inventory in the private directory; it is never in argv, in
 *    the child's added environment, in an event, in an artifact or in an
 *    error message; the buffer is wiped once the inventory is written.
 * 2. Everything that leaves the run (events, artifact files) goes through
 *    ansible_redact with the run's secret values.
 * 3. The run's cancel source is one epoll fd watching the caller's
 *    cancel_fd and a timerfd for the timeout, so proc_run's own
 *    SIGTERM -> grace -> SIGKILL path serves both; proc_run returns once the
 *    group is gone.
 * 4. The private directory is removed (recursively) on every path out.
 * 5. Every path handed to ansible-playbook is absolute (ansible_run makes an
 *    absolute copy of the spec's): it runs in the private directory, and a
 *    relative known_hosts would be another file than the daemon's, found
 *    empty (strict fails, accept-new learns nothing and goes on to offer
 *    the password to whatever answers).
 */
#include "ansible.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <ftw.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "duration.h"
#include "log.h"
#include "metrics.h"
#include "proc.h"
#include "runtime.h"
#include "ssh.h"

#define LINE_ACCUM_MAX (4 * 1024 * 1024)

/* snprintf that may truncate (paths and messages are bounded on purpose). */
static void fmt_into(char *buf, size_t cap, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void fmt_into(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
}

/* ---- settings ---- */

static const config_section *settings_section(const config *cfg)
{
	const config_section *sec = config_section_find(cfg, "ansible");
	if (sec)
		return sec;
	for (size_t i = 0; i < cfg->ntasks; i++)
		if (strcmp(cfg->tasks[i].type->name, "provision") == 0)
			return cfg->tasks[i].section;
	return NULL;
}

static int64_t get_duration(const config_section *sec, const char *key, int64_t dflt)
{
	const char *v = sec ? config_get(sec, key) : NULL;
	int64_t ms = 0;
	char err[128];
	if (v && duration_parse(v, &ms, err, sizeof err) == 0 && ms > 0)
		return ms;
	return dflt;
}

void ansible_settings_load(const config *cfg, ansible_settings *out)
{
	const config_section *sec = settings_section(cfg);
	const char *v;

	*out = (ansible_settings){.playbook_dir = "playbooks",
	                          .deploy_root = "/srv/fleetkeeper",
	                          .program = "ansible-playbook"};
	if (sec && (v = config_get(sec, "playbook_dir")) && *v)
		out->playbook_dir = v;
	if (sec && (v = config_get(sec, "deploy_root")) && *v)
		out->deploy_root = v;
	if (sec && (v = config_get(sec, "vars_file")) && *v)
		out->vars_file = v;
	if (sec && (v = config_get(sec, "ansible_playbook")) && *v)
		out->program = v;
	out->timeout_ms = get_duration(sec, "playbook_timeout", ANSIBLE_DEFAULT_TIMEOUT_MS);
	out->kill_grace_ms = get_duration(sec, "kill_grace", 5000);
	if (sec && (v = config_get(sec, "pipelining")))
		config_parse_bool(v, &out->pipelining); /* validated by the config */
}

bool ansible_result_ok(const ansible_result *r)
{
	return r->exit_code == 0 && !r->timed_out && !r->cancelled && r->failed == 0 &&
	       r->unreachable == 0;
}

/* ---- pure parts ---- */

char *ansible_redact(const char *in, const char *const *secrets)
{
	size_t cap = strlen(in) + 1, len = 0;
	char *out = malloc(cap);
	if (out == NULL)
		return NULL;
	for (const char *p = in; *p;) {
		size_t hit = 0;
		for (size_t i = 0; secrets && secrets[i]; i++) {
			size_t n = strlen(secrets[i]);
			if (n && strncmp(p, secrets[i], n) == 0 && n > hit)
				hit = n;
		}
		size_t need = hit ? 3 : 1;
		if (len + need + 1 > cap) {
			char *grown = realloc(out, cap = cap * 2 + 4);
			if (grown == NULL) {
				free(out);
				return NULL;
			}
			out = grown;
		}
		if (hit) {
			memcpy(out + len, "***", 3);
			len += 3;
			p += hit;
		} else {
			out[len++] = *p++;
		}
	}
	out[len] = '\0';
	return out;
}

size_t ansible_secret_values(const cJSON *vars, const char **out, size_t cap)
{
	size_t n = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, vars)
	{
		if (n >= cap)
			break;
		if (cJSON_IsString(it) && it->string && log_key_is_secret(it->string) &&
		    *it->valuestring)
			out[n++] = it->valuestring;
		else if (cJSON_IsObject(it) || cJSON_IsArray(it))
			n += ansible_secret_values(it, out + n, cap - n);
	}
	return n;
}

char *ansible_inventory_render(const ansible_spec *spec, const char *password)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *all = cJSON_AddObjectToObject(root, "all");
	cJSON *hosts = cJSON_AddObjectToObject(all, "hosts");
	cJSON *h = cJSON_AddObjectToObject(hosts, spec->server_handle);

	cJSON_AddStringToObject(h, "ansible_host", spec->host ? spec->host : spec->server_handle);
	cJSON_AddNumberToObject(h, "ansible_port", spec->port > 0 ? spec->port : 22);
	cJSON_AddStringToObject(h, "ansible_user", spec->user ? spec->user : "root");
	if (spec->key_file)
		cJSON_AddStringToObject(h, "ansible_ssh_private_key_file", spec->key_file);
	if (password)
		cJSON_AddStringToObject(h, "ansible_password", password);
	cJSON_AddStringToObject(h, "ansible_python_interpreter", "auto_silent");
	char *out = cJSON_Print(root);
	cJSON_Delete(root);
	return out;
}

static const char *status_of_event(const char *ev, const cJSON *res)
{
	if (strcmp(ev, "v2_runner_on_ok") == 0)
		return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "changed")) ? "changed"
		                                                                      : "ok";
	if (strcmp(ev, "v2_runner_on_failed") == 0)
		return "failed";
	if (strcmp(ev, "v2_runner_on_skipped") == 0)
		return "skipped";
	if (strcmp(ev, "v2_runner_on_unreachable") == 0)
		return "unreachable";
	return NULL;
}

static void parse_stats(const cJSON *stats, ansible_stats *st)
{
	const cJSON *h;
	st->ok = st->changed = st->failed = st->unreachable = st->skipped = 0;
	cJSON_ArrayForEach(h, stats)
	{
		const cJSON *v;
		st->ok += (v = cJSON_GetObjectItemCaseSensitive(h, "ok")) ? v->valueint : 0;
		st->changed +=
		        (v = cJSON_GetObjectItemCaseSensitive(h, "changed")) ? v->valueint : 0;
		st->failed +=
		        (v = cJSON_GetObjectItemCaseSensitive(h, "failures")) ? v->valueint : 0;
		st->unreachable +=
		        (v = cJSON_GetObjectItemCaseSensitive(h, "unreachable")) ? v->valueint : 0;
		st->skipped +=
		        (v = cJSON_GetObjectItemCaseSensitive(h, "skipped")) ? v->valueint : 0;
	}
	st->have_stats = true;
}

ansible_line_kind ansible_parse_line(const char *line, ansible_stats *stats, ansible_result_fn cb,
                                     void *ctx)
{
	ansible_line_kind kind = ANSIBLE_LINE_OTHER;
	cJSON *root = cJSON_Parse(line);
	const cJSON *ev = cJSON_GetObjectItemCaseSensitive(root, "_event");

	if (!cJSON_IsString(ev))
		goto out;
	if (strcmp(ev->valuestring, "v2_playbook_on_stats") == 0) {
		parse_stats(cJSON_GetObjectItemCaseSensitive(root, "stats"), stats);
		kind = ANSIBLE_LINE_STATS;
		goto out;
	}
	const cJSON *task = cJSON_GetObjectItemCaseSensitive(root, "task");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(task, "name");
	const cJSON *hosts = cJSON_GetObjectItemCaseSensitive(root, "hosts"), *h;
	cJSON_ArrayForEach(h, hosts)
	{
		const char *status = status_of_event(ev->valuestring, h);
		if (status == NULL)
			continue;
		const cJSON *msg = cJSON_GetObjectItemCaseSensitive(h, "msg");
		kind = ANSIBLE_LINE_RESULT;
		if (cb)
			cb(ctx, cJSON_IsString(name) ? name->valuestring : "", h->string, status,
			   cJSON_IsString(msg) && *msg->valuestring ? msg->valuestring : NULL);
	}
out:
	cJSON_Delete(root);
	return kind;
}

/* ---- files ---- */

static int write_private(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	return close(fd) == 0 && off == len ? 0 : -1;
}

/* The first line of a file, without its newline; malloc'd, or NULL. */
static char *read_secret_file(const char *path)
{
	char buf[4096];
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return NULL;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	char *out = strdup(buf);
	explicit_bzero(buf, sizeof buf);
	return out;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_tree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Artifact directories older than the retention. */
static void prune_artifacts(const char *dir, int retention_days)
{
	time_t cutoff = time(NULL) - (time_t)retention_days * 86400;
	DIR *d = retention_days > 0 ? opendir(dir) : NULL;
	struct dirent *e;
	char path[4096];
	struct stat sb;

	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		fmt_into(path, sizeof path, "%s/%s", dir, e->d_name);
		if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode) && sb.st_mtime < cutoff)
			rm_tree(path);
	}
	if (d)
		closedir(d);
}

/* ---- one run ---- */

/* What ssh said about the host key, from an unreachable result. */
typedef enum {
	HOSTKEY_FINE = 0,
	HOSTKEY_UNKNOWN,  /* not in known_hosts and the policy is strict */
	HOSTKEY_MISMATCH, /* known_hosts holds another key */
} hostkey_verdict;

typedef struct {
	const ansible_spec *spec;
	hostkey_verdict hostkey;
	const char *playbook; /* its file name, for events */
	const char *secrets[ANSIBLE_MAX_SECRETS + 2];
	ansible_stats stats;
	FILE *out, *err, *events; /* artifacts; NULL when not kept */
	char *accum;              /* a stdout line split by proc */
	size_t alen;
} run_ctx;

static void put_line(FILE *f, const run_ctx *rc, const char *line)
{
	char *clean;
	if (f == NULL || (clean = ansible_redact(line, rc->secrets)) == NULL)
		return;
	fprintf(f, "%s\n", clean);
	free(clean);
}

/* OpenSSH's words (ansible quotes its stderr in the unreachable message). */
static hostkey_verdict hostkey_of_message(const char *msg)
{
	if (msg == NULL)
		return HOSTKEY_FINE;
	if (strstr(msg, "REMOTE HOST IDENTIFICATION HAS CHANGED") ||
	    strstr(msg, "has changed and you have requested strict checking"))
		return HOSTKEY_MISMATCH;
	if (strstr(msg, "Host key verification failed"))
		return HOSTKEY_UNKNOWN;
	return HOSTKEY_FINE;
}

static void on_result(void *ctx, const char *task_name, const char *host, const char *status,
                      const char *msg)
{
	run_ctx *rc = ctx;
	bool bad = strcmp(status, "failed") == 0 || strcmp(status, "unreachable") == 0;
	char *clean = bad && msg ? ansible_redact(msg, rc->secrets) : NULL;
	hostkey_verdict hk = strcmp(status, "unreachable") == 0 ? hostkey_of_message(msg) : 0;

	if (hk > rc->hostkey)
		rc->hostkey = hk;
	log_emit(bad ? LOG_WARNING : LOG_INFO, ANSIBLE_LOGGER, "ansible_task_result",
	         LOG_STR("playbook", rc->playbook), LOG_STR("task_name", task_name),
	         LOG_STR("host", host), LOG_STR("status", status),
	         bad ? LOG_STR("error", clean ? clean : "task failed") : LOG_NULL("error"),
	         LOG_END);
	if (rc->events) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "task_name", task_name);
		cJSON_AddStringToObject(o, "host", host);
		cJSON_AddStringToObject(o, "status", status);
		if (clean)
			cJSON_AddStringToObject(o, "error", clean);
		char *line = cJSON_PrintUnformatted(o);
		put_line(rc->events, rc, line ? line : "{}");
		free(line);
		cJSON_Delete(o);
	}
	free(clean);
}

static void stdout_complete(run_ctx *rc, const char *line)
{
	char *clean = ansible_redact(line, rc->secrets);
	if (clean == NULL)
		return;
	if (rc->out)
		fprintf(rc->out, "%s\n", clean);
	ansible_parse_line(clean, &rc->stats, on_result, rc);
	free(clean);
}

/* proc splits lines longer than PROC_MAX_LINE: a full-size piece that is
 * not a JSON document by itself is kept until the rest arrives. */
static void on_stdout(run_ctx *rc, const char *line, size_t len)
{
	bool piece = len == PROC_MAX_LINE;
	if (rc->accum == NULL && !piece) {
		stdout_complete(rc, line);
		return;
	}
	char *grown =
	        rc->alen + len < LINE_ACCUM_MAX ? realloc(rc->accum, rc->alen + len + 1) : NULL;
	if (grown) {
		memcpy(grown + rc->alen, line, len + 1);
		rc->accum = grown;
		rc->alen += len;
	}
	cJSON *probe = piece ? cJSON_Parse(rc->accum) : NULL;
	if (!piece || probe || grown == NULL) {
		if (rc->accum)
			stdout_complete(rc, rc->accum);
		free(rc->accum);
		rc->accum = NULL;
		rc->alen = 0;
	}
	cJSON_Delete(probe);
}

static void on_line(void *ctx, int stream, const char *line, size_t len)
{
	run_ctx *rc = ctx;
	if (stream == PROC_STDERR)
		put_line(rc->err, rc, line);
	else
		on_stdout(rc, line, len);
}

/* The playbook's absolute path; name alone: playbook_dir/name[.yml]. */
int ansible_playbook_resolve(const ansible_spec *spec, char *out, size_t cap)
{
	char path[4096];
	const char *dir = spec->playbook_dir ? spec->playbook_dir : "playbooks";
	bool has_ext = strstr(spec->playbook, ".yml") || strstr(spec->playbook, ".yaml");

	if (strchr(spec->playbook, '/'))
		fmt_into(path, sizeof path, "%s", spec->playbook);
	else
		fmt_into(path, sizeof path, "%s/%s%s", dir, spec->playbook, has_ext ? "" : ".yml");
	if (cap < PATH_MAX || realpath(path, out) == NULL)
		return -1;
	return 0;
}

static void new_run_id(const char *playbook, char *out, size_t cap)
{
	uint16_t rnd = 0;
	char stem[48];
	if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
		rnd = (uint16_t)clock_mono_ms();
	const char *base = strrchr(playbook, '/');
	fmt_into(stem, sizeof stem, "%s", base ? base + 1 : playbook);
	stem[strcspn(stem, ".")] = '\0';
	fmt_into(out, cap, "%lld_%s_%04x", (long long)clock_wall(), stem, rnd);
}

/* Inventory and extra vars into the private directory. vars_out keeps the
 * extra vars (for the secret list) until the run ends. */
static int write_inputs(const ansible_spec *spec, const char *dir, cJSON **vars_out,
                        char **password_out, ansible_result *out)
{
	char path[4096];
	char *password = NULL, *inv = NULL, *vars_text = NULL;
	int rc = -1;

	if (spec->password_file && (password = read_secret_file(spec->password_file)) == NULL) {
		fmt_into(out->error, sizeof out->error, "cannot read the password file %s",
		         spec->password_file);
		fmt_into(out->error_type, sizeof out->error_type, "credentials_unreadable");
		goto cleanup;
	}
	cJSON *vars =
	        spec->extra_vars ? cJSON_Duplicate(spec->extra_vars, true) : cJSON_CreateObject();
	*vars_out = vars;
	const char *cid =
	        spec->correlation_id ? spec->correlation_id : log_bound_str("correlation_id");
	cJSON_DeleteItemFromObjectCaseSensitive(vars, "fleetkeeper_correlation_id");
	cJSON_AddStringToObject(vars, "fleetkeeper_correlation_id", cid ? cid : "");
	inv = ansible_inventory_render(spec, password);
	vars_text = cJSON_Print(vars);
	fmt_into(path, sizeof path, "%s/inventory.json", dir);
	if (inv == NULL || vars_text == NULL || write_private(path, inv) != 0)
		goto io_error;
	fmt_into(path, sizeof path, "%s/extra_vars.json", dir);
	if (write_private(path, vars_text) != 0)
		goto io_error;
	rc = 0;
	goto cleanup;
io_error:
	fmt_into(out->error, sizeof out->error, "cannot write the run's inputs in %s", dir);
	fmt_into(out->error_type, sizeof out->error_type, "io");
cleanup:
	if (inv)
		explicit_bzero(inv, strlen(inv));
	free(inv);
	free(vars_text);
	*password_out = password; /* kept only as a redaction pattern */
	return rc;
}

static FILE *artifact_open(const char *dir, const char *name)
{
	char path[4096];
	fmt_into(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	return fd < 0 ? NULL : fdopen(fd, "w");
}

static void artifacts_open(const ansible_spec *spec, const char *run_id, run_ctx *rc, char *dir,
                           size_t cap)
{
	char base[4096];
	dir[0] = '\0';
	if (spec->state_dir == NULL)
		return;
	fmt_into(base, sizeof base, "%s/artifacts", spec->state_dir);
	prune_artifacts(base, spec->retention_days);
	fmt_into(dir, cap, "%s/%s", base, run_id);
	if (runtime_mkdirs(dir) != 0) {
		dir[0] = '\0';
		return;
	}
	rc->out = artifact_open(dir, "stdout");
	rc->err = artifact_open(dir, "stderr");
	rc->events = artifact_open(dir, "events.jsonl");
}

static void artifacts_close(run_ctx *rc, const char *dir, const char *const *argv,
                            const char *const *env, const ansible_result *res)
{
	FILE *f;
	if (rc->out)
		fclose(rc->out);
	if (rc->err)
		fclose(rc->err);
	if (rc->events) {
		fprintf(rc->events,
		        "{\"stats\": {\"ok\": %d, \"changed\": %d, \"failed\": %d, "
		        "\"unreachable\": "
		        "%d, \"skipped\": %d}, \"exit_code\": %d, \"timed_out\": %s}\n",
		        res->ok, res->changed, res->failed, res->unreachable, res->skipped,
		        res->exit_code, res->timed_out ? "true" : "false");
		fclose(rc->events);
	}
	rc->out = rc->err = rc->events = NULL;
	if (dir[0] == '\0')
		return;
	if ((f = artifact_open(dir, "rc")) != NULL) {
		fprintf(f, "%d\n", res->exit_code);
		fclose(f);
	}
	if ((f = artifact_open(dir, "command")) != NULL) {
		for (size_t i = 0; env[i]; i++)
			put_line(f, rc, env[i]);
		for (size_t i = 0; argv[i]; i++)
			put_line(f, rc, argv[i]);
		fclose(f);
	}
}

/* One fd readable once the caller cancels or the timeout passes. */
static int cancel_source(const ansible_spec *spec, int *timer_fd)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	*timer_fd = -1;
	if (ep < 0)
		return -1;
	if (spec->cancel_fd >= 0) {
		struct epoll_event ev = {.events = EPOLLIN};
		epoll_ctl(ep, EPOLL_CTL_ADD, spec->cancel_fd, &ev);
	}
	if (spec->timeout_ms > 0) {
		*timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		struct itimerspec its = {.it_value = {spec->timeout_ms / 1000,
		                                      (spec->timeout_ms % 1000) * 1000000L}};
		struct epoll_event ev = {.events = EPOLLIN};
		if (*timer_fd >= 0) {
			timerfd_settime(*timer_fd, 0, &its, NULL);
			epoll_ctl(ep, EPOLL_CTL_ADD, *timer_fd, &ev);
		}
	}
	return ep;
}

static bool timer_fired(int timer_fd)
{
	uint64_t n = 0;
	return timer_fd >= 0 && read(timer_fd, &n, sizeof n) == (ssize_t)sizeof n && n > 0;
}

static const char *auth_mode(const ansible_spec *spec)
{
	if (spec->password_file)
		return "password";
	return spec->key_file ? "key" : "agent";
}

static void ssh_args(const ansible_spec *spec, char *buf, size_t cap)
{
	const char *strict = spec->policy == HOSTKEY_POLICY_STRICT       ? "yes"
	                     : spec->policy == HOSTKEY_POLICY_ACCEPT_NEW ? "accept-new"
	                                                                 : "no";
	const char *kh = spec->policy == HOSTKEY_POLICY_OFF ? "/dev/null" : spec->known_hosts;
	fmt_into(buf, cap,
	         "ANSIBLE_SSH_ARGS=-o ControlMaster=no -o ControlPersist=no -o BatchMode=%s"
	         " -o StrictHostKeyChecking=%s%s%s",
	         spec->password_file ? "no" : "yes", strict, kh ? " -o UserKnownHostsFile=" : "",
	         kh ? kh : "");
}

/* The run itself, once the inputs are written. */
static void run_playbook(const ansible_spec *spec, run_ctx *rc, const char *dir,
                         const char *playbook_path, ansible_result *out)
{
	char inv[4200], vars[4200], args[8192], cid_env[160], tmp_env[4200], home_env[4200];
	char tmpdir_env[4200];
	char artifacts[4096], err[256];
	const char *cid =
	        spec->correlation_id ? spec->correlation_id : log_bound_str("correlation_id");
	int timer_fd = -1;

	fmt_into(inv, sizeof inv, "%s/inventory.json", dir);
	fmt_into(vars, sizeof vars, "@%s/extra_vars.json", dir);
	fmt_into(cid_env, sizeof cid_env, "FLEETKEEPER_CORRELATION_ID=%s", cid ? cid : "");
	fmt_into(tmp_env, sizeof tmp_env, "ANSIBLE_LOCAL_TEMP=%s/tmp", dir);
	/* what ansible leaves behind when it is killed (module payloads of
	 * local tasks) goes with the private directory */
	fmt_into(tmpdir_env, sizeof tmpdir_env, "TMPDIR=%s/tmp", dir);
	fmt_into(home_env, sizeof home_env, "ANSIBLE_HOME=%s/home", dir);
	ssh_args(spec, args, sizeof args);
	const char *argv[] = {spec->program ? spec->program : "ansible-playbook",
	                      "-i",
	                      inv,
	                      "-e",
	                      vars,
	                      playbook_path,
	                      NULL};
	const char *env[] = {"ANSIBLE_STDOUT_CALLBACK=ansible.posix.jsonl",
	                     "ANSIBLE_LOAD_CALLBACK_PLUGINS=1",
	                     spec->policy == HOSTKEY_POLICY_OFF ? "ANSIBLE_HOST_KEY_CHECKING=False"
	                                                        : "ANSIBLE_HOST_KEY_CHECKING=True",
	                     spec->pipelining ? "ANSIBLE_PIPELINING=True"
	                                      : "ANSIBLE_PIPELINING=False",
	                     "ANSIBLE_RETRY_FILES_ENABLED=False",
	                     "ANSIBLE_NOCOLOR=1",
	                     "ANSIBLE_DEPRECATION_WARNINGS=False",
	                     "PYTHONUNBUFFERED=1",
	                     args,
	                     cid_env,
	                     tmp_env,
	                     tmpdir_env,
	                     home_env,
	                     NULL};

	artifacts_open(spec, out->run_id, rc, artifacts, sizeof artifacts);
	int cancel = cancel_source(spec, &timer_fd);
	proc_spec ps = {.argv = argv,
	                .env_add = env,
	                .cwd = dir,
	                .cancel_fd = cancel,
	                .kill_grace_ms = spec->kill_grace_ms > 0 ? spec->kill_grace_ms : 5000,
	                .on_line = on_line,
	                .ctx = rc};
	proc_result pr = {0};
	int64_t started = clock_mono_ms();
	if (proc_run(&ps, &pr, err, sizeof err) != 0) {
		fmt_into(out->error, sizeof out->error, "cannot start %s: %s", argv[0], err);
		fmt_into(out->error_type, sizeof out->error_type, "exec_failed");
	} else {
		out->exit_code = pr.exit_code;
		out->timed_out = pr.cancelled && timer_fired(timer_fd);
		out->cancelled = pr.cancelled && !out->timed_out;
	}
	if (rc->accum)
		stdout_complete(rc, rc->accum);
	out->duration_sec = (double)(clock_mono_ms() - started) / 1000.0;
	out->ok = rc->stats.ok;
	out->changed = rc->stats.changed;
	out->failed = rc->stats.failed;
	out->unreachable = rc->stats.unreachable;
	out->skipped = rc->stats.skipped;
	artifacts_close(rc, artifacts, argv, env, out);
	if (timer_fd >= 0)
		close(timer_fd);
	if (cancel >= 0)
		close(cancel);
}

static void hostkey_error(const ansible_spec *spec, hostkey_verdict hk, ansible_result *out)
{
	int port = spec->port > 0 ? spec->port : 22;
	const char *host = spec->host ? spec->host : spec->server_handle;
	const char *kh = spec->known_hosts ? spec->known_hosts : "~/.ssh/known_hosts";
	if (hk == HOSTKEY_MISMATCH) {
		fmt_into(out->error, sizeof out->error,
		         "host key mismatch for %s:%d (known_hosts %s): ssh refused the host"
		         " before authentication",
		         host, port, kh);
		fmt_into(out->error_type, sizeof out->error_type, "%s",
		         ssh_error_name(SSH_ERR_HOSTKEY_MISMATCH));
	} else {
		fmt_into(out->error, sizeof out->error,
		         "host key of %s:%d is not in %s (host_key_policy = %s)", host, port, kh,
		         hostkey_policy_name(spec->policy));
		fmt_into(out->error_type, sizeof out->error_type, "%s",
		         ssh_error_name(SSH_ERR_HOSTKEY_UNKNOWN));
	}
}

static void finish_events(const ansible_spec *spec, const run_ctx *rc, ansible_result *out)
{
	const char *result = "success";
	if (out->timed_out) {
		result = "timeout";
		fmt_into(out->error, sizeof out->error, "timed out after %.0f s",
		         (double)spec->timeout_ms / 1000.0);
		fmt_into(out->error_type, sizeof out->error_type, "timeout");
		log_warning(ANSIBLE_LOGGER, "ansible_playbook_timeout",
		            LOG_STR("playbook", rc->playbook),
		            LOG_STR("server_handle", spec->server_handle),
		            LOG_DBL("timeout_sec", (double)spec->timeout_ms / 1000.0));
	} else if (out->cancelled) {
		result = "cancelled";
		fmt_into(out->error, sizeof out->error, "cancelled");
		fmt_into(out->error_type, sizeof out->error_type, "cancelled");
	} else if (!ansible_result_ok(out)) {
		result = "failed";
		if (out->error[0] == '\0' && rc->hostkey != HOSTKEY_FINE)
			hostkey_error(spec, rc->hostkey, out);
		if (out->error[0] == '\0') {
			fmt_into(out->error, sizeof out->error,
			         "ansible-playbook exited with %d (failed %d, unreachable %d)",
			         out->exit_code, out->failed, out->unreachable);
			fmt_into(out->error_type, sizeof out->error_type, "%s",
			         out->unreachable ? "unreachable" : "playbook_failed");
		}
	}
	metrics_ansible_run(rc->playbook, result);
	log_emit(strcmp(result, "success") == 0 ? LOG_INFO : LOG_WARNING, ANSIBLE_LOGGER,
	         "ansible_playbook_complete", LOG_STR("playbook", rc->playbook),
	         LOG_STR("server_handle", spec->server_handle),
	         LOG_INT("exit_code", out->exit_code), LOG_DBL("duration_sec", out->duration_sec),
	         LOG_INT("ok", out->ok), LOG_INT("changed", out->changed),
	         LOG_INT("failed", out->failed), LOG_INT("unreachable", out->unreachable),
	         LOG_INT("skipped", out->skipped), LOG_STR("result", result),
	         LOG_STR("ansible_run_id", out->run_id),
	         out->error[0] ? LOG_STR("error", out->error) : LOG_NULL("error"),
	         out->error[0] ? LOG_STR("error_type", out->error_type) : LOG_NULL("error_type"),
	         LOG_END);
}

/* Absolute copies of the paths a run hands to ansible-playbook (invariant 5). */
typedef struct {
	char tmp[PATH_MAX], known_hosts[PATH_MAX], key_file[PATH_MAX], program[PATH_MAX];
} run_paths;

/* ssh splits UserKnownHostsFile at blanks and expands %, $ and quotes in it:
 * such a path would name another file. */
static bool ssh_would_mangle(const char *path)
{
	return strpbrk(path, " \t\n\"'\\%$") != NULL;
}

/* buf: path made absolute; *dst points at it (dst may be NULL). */
static int absolute(const char *what, const char *path, char *buf, size_t cap, const char **dst,
                    ansible_result *out)
{
	if (config_path_absolute(path, buf, cap) == 0) {
		if (dst)
			*dst = buf;
		return 0;
	}
	fmt_into(out->error, sizeof out->error, "%s %s: cannot make it absolute", what, path);
	fmt_into(out->error_type, sizeof out->error_type, "bad_path");
	return -1;
}

/* s: a copy of in whose paths are absolute (on failure, usable for the
 * events); "~/" key files are left to ansible, which expands them with HOME
 * as the daemon does. */
static int absolute_spec(const ansible_spec *in, ansible_spec *s, run_paths *p, ansible_result *out)
{
	const char *tmp = getenv("TMPDIR");
	*s = *in;
	if (absolute("TMPDIR", tmp && *tmp ? tmp : "/tmp", p->tmp, sizeof p->tmp, NULL, out))
		return -1;
	if (in->known_hosts && in->policy != HOSTKEY_POLICY_OFF) {
		if (absolute("known_hosts", in->known_hosts, p->known_hosts, sizeof p->known_hosts,
		             &s->known_hosts, out))
			return -1;
		if (ssh_would_mangle(s->known_hosts)) {
			fmt_into(out->error, sizeof out->error,
			         "known_hosts %s: ssh would read another file (blank, quote,"
			         " backslash, %% or $ in the path)",
			         s->known_hosts);
			fmt_into(out->error_type, sizeof out->error_type, "bad_path");
			return -1;
		}
	}
	if (in->key_file && strncmp(in->key_file, "~/", 2) != 0 &&
	    absolute("key_file", in->key_file, p->key_file, sizeof p->key_file, &s->key_file, out))
		return -1;
	if (in->program && strchr(in->program, '/') &&
	    absolute("ansible_playbook", in->program, p->program, sizeof p->program, &s->program,
	             out))
		return -1;
	return 0;
}

int ansible_run(const ansible_spec *given, ansible_result *out)
{
	char dir[4096], playbook_path[PATH_MAX];
	ansible_spec abs_spec;
	const ansible_spec *spec = &abs_spec;
	run_paths paths;
	run_ctx rc = {.spec = spec};
	cJSON *vars = NULL;
	char *password = NULL;
	int ret = -1;

	memset(out, 0, sizeof *out);
	out->exit_code = -1;
	bool paths_ok = absolute_spec(given, &abs_spec, &paths, out) == 0;
	const char *base = strrchr(spec->playbook, '/');
	rc.playbook = base ? base + 1 : spec->playbook;
	new_run_id(spec->playbook, out->run_id, sizeof out->run_id);
	log_info(ANSIBLE_LOGGER, "ansible_playbook_start", LOG_STR("playbook", rc.playbook),
	         LOG_STR("server_handle", spec->server_handle), LOG_STR("server_ip", spec->host),
	         LOG_STR("auth_mode", auth_mode(spec)), LOG_STR("ansible_run_id", out->run_id));
	dir[0] = '\0';
	if (!paths_ok)
		goto done;
	fmt_into(dir, sizeof dir, "%s/fleetkeeper-ansible-XXXXXX", paths.tmp);
	if (ansible_playbook_resolve(spec, playbook_path, sizeof playbook_path) != 0) {
		fmt_into(out->error, sizeof out->error, "playbook %s not found in %s",
		         spec->playbook, spec->playbook_dir ? spec->playbook_dir : "playbooks");
		fmt_into(out->error_type, sizeof out->error_type, "not_found");
		dir[0] = '\0';
		goto done;
	}
	if (mkdtemp(dir) == NULL) {
		fmt_into(out->error, sizeof out->error, "cannot create a private directory: %s",
		         strerror(errno));
		fmt_into(out->error_type, sizeof out->error_type, "io");
		dir[0] = '\0';
		goto done;
	}
	if (write_inputs(spec, dir, &vars, &password, out) != 0)
		goto done;
	size_t n = 0;
	if (password && *password)
		rc.secrets[n++] = password;
	ansible_secret_values(vars, rc.secrets + n, ANSIBLE_MAX_SECRETS - n);
	run_playbook(spec, &rc, dir, playbook_path, out);
	ret = out->exit_code >= 0 ? 0 : -1;
done:
	if (dir[0])
		rm_tree(dir);
	finish_events(spec, &rc, out);
	free(rc.accum);
	if (password) {
		explicit_bzero(password, strlen(password));
		free(password);
	}
	cJSON_Delete(vars);
	return ret;
}

/* ---- helpers for the callers ---- */

int ansible_spec_for_server(ansible_spec *spec, const config *cfg, const ansible_settings *set,
                            const server_row *srv, char *kh, size_t khcap, char *err, size_t errlen)
{
	ssh_options o;

	ssh_options_default(&o);
	if (ssh_options_from_config(&o, config_section_find(cfg, "ssh"), err, errlen) != 0)
		return -1;
	if (o.known_hosts == NULL && o.policy != HOSTKEY_POLICY_OFF) {
		fmt_into(kh, khcap, "%s/known_hosts", cfg->state_dir);
		o.known_hosts = kh;
	}
	*spec = (ansible_spec){
	        .playbook_dir = set->playbook_dir,
	        .program = set->program,
	        .server_handle = srv->handle,
	        .host = srv->ip && *srv->ip ? srv->ip : srv->handle,
	        .port = srv->port,
	        .user = srv->ssh_user && *srv->ssh_user ? srv->ssh_user : o.user,
	        .key_file = o.key_file,
	        .password_file = o.password_file,
	        .known_hosts = o.known_hosts,
	        .policy = o.policy,
	        .state_dir = cfg->state_dir,
	        .retention_days = cfg->retention_days,
	        .timeout_ms = set->timeout_ms,
	        .kill_grace_ms = set->kill_grace_ms,
	        .cancel_fd = -1,
	        .pipelining = set->pipelining,
	};
	return 0;
}

cJSON *ansible_base_vars(const ansible_settings *set, char *err, size_t errlen)
{
	cJSON *vars = NULL;
	if (set->vars_file) {
		FILE *f = fopen(set->vars_file, "re");
		char *text = NULL;
		size_t cap = 0;
		if (f) {
			ssize_t n = getdelim(&text, &cap, '\0', f);
			fclose(f);
			vars = n > 0 ? cJSON_Parse(text) : NULL;
		}
		if (text)
			explicit_bzero(text, cap);
		free(text);
		if (!cJSON_IsObject(vars)) {
			cJSON_Delete(vars);
			fmt_into(err, errlen, "vars_file %s: unreadable or not a JSON object",
			         set->vars_file);
			return NULL;
		}
	} else {
		vars = cJSON_CreateObject();
	}
	if (!cJSON_HasObjectItem(vars, "deploy_root"))
		cJSON_AddStringToObject(vars, "deploy_root", set->deploy_root);
	return vars;
}
