/* file_modes — see file_modes.h. */
#include "file_modes.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void dir_of(const char *path, char *dir, size_t cap)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(dir, cap, ".");
	else if (slash == path)
		snprintf(dir, cap, "/");
	else
		snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

static bool admits_group(mode_t mode)
{
	return (mode & (S_IRGRP | S_IXGRP)) == (S_IRGRP | S_IXGRP);
}

bool file_dir_admits_group(const char *path)
{
	char dir[4096];
	struct stat sb;
	dir_of(path, dir, sizeof dir);
	return stat(dir, &sb) == 0 && admits_group(sb.st_mode);
}

void file_access_hint(const char *path, char *out, size_t cap)
{
	char dir[4096], user[64], group[64];
	struct stat sb;
	dir_of(path, dir, sizeof dir);
	out[0] = '\0';
	if (stat(dir, &sb) != 0)
		return;
	const struct passwd *pw = getpwuid(sb.st_uid);
	const struct group *gr = getgrgid(sb.st_gid);
	snprintf(user, sizeof user, "%s", pw ? pw->pw_name : "?");
	snprintf(group, sizeof group, "%s", gr ? gr->gr_name : "?");
	if (admits_group(sb.st_mode))
		snprintf(out, cap, " (only user %s and members of group %s may use %s)", user,
		         group, dir);
	else
		snprintf(out, cap, " (only user %s may use %s)", user, dir);
}

void file_read_hint(const char *path, char *out, size_t cap)
{
	struct stat sb;
	out[0] = '\0';
	if (stat(path, &sb) != 0) {
		file_access_hint(path, out, cap);
		return;
	}
	const struct passwd *pw = getpwuid(sb.st_uid);
	const struct group *gr = getgrgid(sb.st_gid);
	if (sb.st_mode & S_IRGRP)
		snprintf(out, cap, " (only user %s and members of group %s may read it)",
		         pw ? pw->pw_name : "?", gr ? gr->gr_name : "?");
	else
		snprintf(out, cap, " (only user %s may read it)", pw ? pw->pw_name : "?");
}

mode_t file_mode_state(const char *path)
{
	return file_dir_admits_group(path) ? 0640 : 0600;
}

mode_t file_mode_socket(const char *path)
{
	return file_dir_admits_group(path) ? 0660 : 0600;
}
