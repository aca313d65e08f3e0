/* runtime — see runtime.h. */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "file_modes.h"
#include "log.h"
#include "runs.h"

/* The soft limit before the raise; written once, before any child is
 * started, read by children after fork. */
static struct rlimit nofile_original;
static bool nofile_raised;

int runtime_raise_nofile(rlim_t *soft, rlim_t *hard)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (!nofile_raised) {
		nofile_original = rl;
		nofile_raised = true;
	}
	if (rl.rlim_cur != rl.rlim_max) {
		struct rlimit up = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl = up;
	}
	if (soft)
		*soft = rl.rlim_cur;
	if (hard)
		*hard = rl.rlim_max;
	return 0;
}

void runtime_child_nofile(void)
{
	if (nofile_raised && nofile_original.rlim_cur < nofile_original.rlim_max)
		setrlimit(RLIMIT_NOFILE, &nofile_original);
}

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
		if (runs_mark_interrupted(rt->st, clock_wall(), &count) == STORE_OK && count > 0)
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

/* Take away what others may do with path: mode &= ~drop. Said once, as a
 * warning, for each file it changes. */
static void tighten(const char *path, mode_t drop)
{
	struct stat sb;
	if (stat(path, &sb) != 0 || (sb.st_mode & drop) == 0)
		return;
	mode_t mode = sb.st_mode & 07777 & ~drop;
	if (chmod(path, mode) != 0)
		log_warning("core.store", "state_permissions_not_tightened", LOG_STR("path", path),
		            LOG_ERR(strerror(errno), "permission"));
	else
		log_warning("core.store", "state_permissions_tightened", LOG_STR("path", path),
		            LOG_INT("old_mode", (int64_t)(sb.st_mode & 07777)),
		            LOG_INT("new_mode", (int64_t)mode));
}

/* Let the group read path (it is in a directory that admits its group):
 * said once, for each file it changes. */
static void share(const char *path)
{
	struct stat sb;
	if (stat(path, &sb) != 0 || (sb.st_mode & S_IRGRP))
		return;
	mode_t mode = (sb.st_mode & 07777) | S_IRGRP;
	if (chmod(path, mode) == 0)
		log_info("core.store", "state_permissions_shared", LOG_STR("path", path),
		         LOG_INT("old_mode", (int64_t)(sb.st_mode & 07777)),
		         LOG_INT("new_mode", (int64_t)mode));
}

/* The state directory keeps what tasks printed: nobody but the daemon's
 * user may read it (group read is left, for an operators' group). Its
 * database files are 0600, or 0640 when the directory admits its group
 * (file_modes.h): operators then read the store. */
static void tighten_state(const config *cfg)
{
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	char path[4200];
	tighten(cfg->state_dir, S_IWGRP | S_IRWXO);
	if (store_location_is_pg(cfg->db_path))
		return;
	bool shared = file_mode_state(cfg->db_path) & S_IRGRP;
	for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
		snprintf(path, sizeof path, "%s%s", cfg->db_path, suffixes[i]);
		tighten(path, shared ? (S_IWGRP | S_IXGRP | S_IRWXO) : (S_IRWXG | S_IRWXO));
		if (shared)
			share(path);
	}
}

/* A damaged file is refused at start, with how to recover. */
static int check_store(runtime *rt, char *err, size_t errlen)
{
	if (store_quick_check(rt->st) == STORE_OK)
		return 0;
	snprintf(err, errlen,
	         "%s: the state store is damaged (%s); run `fleetkeeper store check` for"
	         " details, then with the daemon stopped restore a copy made by `fleetkeeper"
	         " store backup FILE` over it, or move it away to start with an empty store",
	         rt->cfg->db_path, store_errmsg(rt->st));
	return -1;
}

/* PostgreSQL's availability, told once per change for the process
 * (store.h): the outage's start and how long it lasted. */
static _Atomic double unavailable_since;

static void store_availability(bool available, const char *why)
{
	double now = clock_wall();
	if (!available) {
		atomic_store(&unavailable_since, now);
		log_error("core.store", "store_unavailable", LOG_ERR(why, "store_unavailable"),
		          LOG_STR("backend", "postgresql"));
		return;
	}
	double since = atomic_exchange(&unavailable_since, 0.0);
	log_info("core.store", "store_reconnected", LOG_STR("backend", "postgresql"),
	         LOG_DBL("unavailable_sec", since > 0 ? now - since : 0));
}

int runtime_open(runtime *rt, config *cfg, bool as_daemon, char *err, size_t errlen)
{
	memset(rt, 0, sizeof *rt);
	rt->cfg = cfg;
	rt->daemon_lock_fd = rt->runs_lock_fd = -1;
	runtime_raise_nofile(&rt->nofile_soft, &rt->nofile_hard);
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
	tighten_state(cfg);
	if (as_daemon)
		store_set_availability_cb(store_availability);
	if (store_open(&rt->st, cfg->db_path, err, errlen) != 0)
		goto fail;
	if (check_store(rt, err, errlen) != 0)
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
