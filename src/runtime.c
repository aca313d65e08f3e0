/* runtime — see runtime.h. */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

int runtime_mkdirs(const char *path)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, 0700) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int open_lock(const config *cfg, const char *name, char *err, size_t errlen)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", cfg->state_dir, name);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
	return fd;
}

static int take_daemon_lock(runtime *rt, char *err, size_t errlen)
{
	int fd = open_lock(rt->cfg, "daemon.lock", err, errlen);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		char pid[32] = "?";
		ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
		if (n > 0)
			pid[strcspn(pid, "\n")] = '\0';
		snprintf(err, errlen,
		         "another fleetkeeper daemon (pid %s) already runs on state directory %s",
		         pid, rt->cfg->state_dir);
		close(fd);
		return RUNTIME_LOCKED;
	}
	char pid[32];
	int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)len, 0) != len)
		(void)0; /* the pid is informational */
	rt->daemon_lock_fd = fd;
	return 0;
}

/* Exclusive if nobody else owns running rows (then mark them interrupted),
 * shared for the rest of our life either way. */
static int take_runs_lock(runtime *rt, char *err, size_t errlen)
{
	int fd = open_lock(rt->cfg, "runs.lock", err, errlen);
	if (fd < 0)
		return -1;
	rt->runs_lock_fd = fd;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
		int count = 0;
		if (store_runs_mark_interrupted(rt->st, clock_wall(), &count) == STORE_OK &&
		    count > 0)
			log_warning("core.store", "runs_interrupted", LOG_INT("count", count),
			            LOG_STR("reason", "left running by a process that stopped"));
	}
	if (flock(fd, LOCK_SH) != 0) {
		snprintf(err, errlen, "%s/runs.lock: cannot lock: %s", rt->cfg->state_dir,
		         strerror(errno));
		return -1;
	}
	return 0;
}

int runtime_open(runtime *rt, config *cfg, bool as_daemon, char *err, size_t errlen)
{
	memset(rt, 0, sizeof *rt);
	rt->cfg = cfg;
	rt->daemon_lock_fd = rt->runs_lock_fd = -1;
	if (runtime_mkdirs(cfg->state_dir) != 0) {
		snprintf(err, errlen, "%s: cannot create state directory: %s", cfg->state_dir,
		         strerror(errno));
		return -1;
	}
	if (as_daemon) {
		int rc = take_daemon_lock(rt, err, errlen);
		if (rc != 0)
			return rc;
	}
	if (store_open(&rt->st, cfg->db_path, err, errlen) != 0)
		goto fail;
	if (eventsink_start(&rt->sink, cfg->db_path, NULL, err, errlen) != 0)
		goto fail;
	log_set_sink(eventsink_log_sink, rt->sink);
	if (take_runs_lock(rt, err, errlen) != 0)
		goto fail;
	return 0;
fail:
	runtime_close(rt);
	return -1;
}

void runtime_close(runtime *rt)
{
	log_set_sink(NULL, NULL);
	eventsink_stop(rt->sink);
	rt->sink = NULL;
	store_close(rt->st);
	rt->st = NULL;
	if (rt->runs_lock_fd >= 0)
		close(rt->runs_lock_fd);
	if (rt->daemon_lock_fd >= 0)
		close(rt->daemon_lock_fd);
	rt->runs_lock_fd = rt->daemon_lock_fd = -1;
}
