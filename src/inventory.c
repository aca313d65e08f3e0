/*
 * inventory — see inventory.h.
 *
 * Invariants: the whole output is parsed before anything is handed over
 * (all or nothing); group nesting is followed at most MAX_DEPTH levels, so
 * a cyclic inventory cannot loop; the temporary output file is removed on
 * every path; the inventory is handed over by its absolute path (docs/ansible.md:
 * every path given to an Ansible child is absolute).
 */
#include "inventory.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "proc.h"
#include "sync_common.h"

#define MAX_DEPTH 16

static bool group_skipped(const char *name)
{
	return strcmp(name, "all") == 0 || strcmp(name, "ungrouped") == 0 ||
	       strcmp(name, "_meta") == 0;
}

/* True if group g (or a child of it) lists host. */
static bool group_has(const cJSON *root, const char *g, const char *host, int depth)
{
	const cJSON *grp = cJSON_GetObjectItemCaseSensitive(root, g);
	const cJSON *it;
	if (depth > MAX_DEPTH || !cJSON_IsObject(grp))
		return false;
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(grp, "hosts"))
	{
		if (cJSON_IsString(it) && strcmp(it->valuestring, host) == 0)
			return true;
	}
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(grp, "children"))
	{
		if (cJSON_IsString(it) && group_has(root, it->valuestring, host, depth + 1))
			return true;
	}
	return false;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The sorted groups of host as a JSON array, NULL if none. */
static char *labels_of(const cJSON *root, const char *host)
{
	const char *names[256];
	size_t n = 0;
	const cJSON *g;
	cJSON_ArrayForEach(g, root)
	{
		if (n < 256 && g->string && !group_skipped(g->string) &&
		    group_has(root, g->string, host, 0))
			names[n++] = g->string;
	}
	if (n == 0)
		return NULL;
	qsort(names, n, sizeof names[0], str_cmp);
	cJSON *arr = cJSON_CreateStringArray(names, (int)n);
	char *s = cJSON_PrintUnformatted(arr);
	cJSON_Delete(arr);
	return s;
}

static void host_vars(provider_server *s, const cJSON *vars)
{
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(vars, "ansible_host");
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(vars, "ansible_port");
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(vars, "ansible_user");
	s->ip = strdup(cJSON_IsString(h) && h->valuestring[0] ? h->valuestring : s->handle);
	long port = 22;
	if (cJSON_IsNumber(p))
		port = (long)p->valuedouble;
	else if (cJSON_IsString(p))
		port = strtol(p->valuestring, NULL, 10);
	s->port = port >= 1 && port <= 65535 ? (int)port : 22;
	s->ssh_user = cJSON_IsString(u) && u->valuestring[0] ? strdup(u->valuestring) : NULL;
}

static bool listed(const provider_list *l, const char *host)
{
	for (size_t i = 0; i < l->count; i++)
		if (strcmp(l->items[i].handle, host) == 0)
			return true;
	return false;
}

static int add_host(provider_list *l, const cJSON *root, const char *host, char *err, size_t errlen)
{
	const cJSON *hostvars = cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(root, "_meta"), "hostvars");
	if (host[0] == '\0' || listed(l, host))
		return 0;
	provider_server *s = provider_list_add(l);
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->handle = strdup(host);
	host_vars(s, cJSON_GetObjectItemCaseSensitive(hostvars, host));
	s->labels = labels_of(root, host);
	return 0;
}

static int handle_cmp(const void *a, const void *b)
{
	return strcmp(((const provider_server *)a)->handle, ((const provider_server *)b)->handle);
}

static int collect(const cJSON *root, provider_list *l, char *err, size_t errlen)
{
	const cJSON *g, *h;
	const cJSON *hostvars = cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(root, "_meta"), "hostvars");
	cJSON_ArrayForEach(h, hostvars)
	{
		if (h->string && add_host(l, root, h->string, err, errlen) != 0)
			return -1;
	}
	cJSON_ArrayForEach(g, root)
	{
		if (!cJSON_IsObject(g) || (g->string && strcmp(g->string, "_meta") == 0))
			continue;
		cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(g, "hosts"))
		{
			if (cJSON_IsString(h) &&
			    add_host(l, root, h->valuestring, err, errlen) != 0)
				return -1;
		}
	}
	return 0;
}

int inventory_parse(const char *json, size_t len, provider_list *out, char *err, size_t errlen)
{
	provider_list l = {0};
	cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
	int rc = -1;
	if (!cJSON_IsObject(root))
		snprintf(err, errlen, "ansible-inventory output is not a JSON object");
	else
		rc = collect(root, &l, err, errlen);
	cJSON_Delete(root);
	if (rc != 0) {
		provider_list_free(&l);
		return -1;
	}
	if (l.count > 1)
		qsort(l.items, l.count, sizeof *l.items, handle_cmp);
	provider_list_free(out);
	*out = l;
	return 0;
}

typedef struct {
	char last[512];
} stderr_tail;

static void on_line(void *ctx, int stream, const char *line, size_t len)
{
	stderr_tail *t = ctx;
	if (stream == PROC_STDERR && len > 0)
		snprintf(t->last, sizeof t->last, "%s", line);
}

int inventory_load(const char *file, int cancel_fd, provider_list *out, char *err, size_t errlen)
{
	char tmp[] = "/tmp/fleetkeeper-inventory-XXXXXX", path[PATH_MAX];
	if (config_path_absolute(file, path, sizeof path) != 0) {
		snprintf(err, errlen, "inventory %s: cannot make the path absolute", file);
		return -1;
	}
	int fd = mkstemp(tmp);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create a temporary file");
		return -1;
	}
	close(fd);
	const char *argv[] = {"ansible-inventory", "-i", path, "--list", "--output", tmp, NULL};
	const char *env[] = {"ANSIBLE_INVENTORY_UNPARSED_FAILED=True",
	                     "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED=True", "ANSIBLE_NOCOLOR=1",
	                     "ANSIBLE_DEPRECATION_WARNINGS=False", NULL};
	stderr_tail tail = {{0}};
	proc_spec spec = {.argv = argv,
	                  .env_add = env,
	                  .cancel_fd = cancel_fd,
	                  .on_line = on_line,
	                  .ctx = &tail};
	proc_result res;
	char perr[256];
	int rc = -1;

	if (proc_run(&spec, &res, perr, sizeof perr) != 0)
		snprintf(err, errlen,
		         "ansible-inventory could not be run (is ansible installed?): %s", perr);
	else if (res.cancelled)
		snprintf(err, errlen, "ansible-inventory cancelled");
	else if (res.exit_code != 0)
		snprintf(err, errlen, "ansible-inventory -i %s failed (exit %d): %s", file,
		         res.exit_code, tail.last);
	else {
		size_t len = 0;
		char *json = sync_file_read(tmp, 64u * 1024u * 1024u, &len);
		rc = inventory_parse(json, len, out, err, errlen);
		free(json);
	}
	unlink(tmp);
	return rc;
}
