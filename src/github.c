/*
 * github — see github.h.
 *
 * Invariants: a page is parsed into a local list first and appended to the
 * caller's list only when every item is valid (all or nothing); strings in
 * records are owned copies; ids must be integral and within int64 range
 * (cJSON stores numbers as doubles, so ids above 2^53 are rejected too).
 */
#include "github.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define MAX_ID 9007199254740992.0 /* 2^53 */

static void repo_free(github_repo *r)
{
	free(r->name);
	free(r->full_name);
	free(r->default_branch);
	free(r->clone_url);
	free(r->html_url);
	free(r->description);
}

void github_repo_list_free(github_repo_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		repo_free(&l->items[i]);
	free(l->items);
	*l = (github_repo_list){0};
}

static char *str_field(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(v) && v->valuestring ? strdup(v->valuestring) : NULL;
}

static int repo_from_json(const cJSON *o, github_repo *r, char *err, size_t errlen)
{
	*r = (github_repo){0};
	if (!cJSON_IsObject(o)) {
		snprintf(err, errlen, "repository is not an object");
		return -1;
	}
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
	if (!cJSON_IsNumber(id) || id->valuedouble < 1 || id->valuedouble > MAX_ID ||
	    floor(id->valuedouble) != id->valuedouble) {
		snprintf(err, errlen, "repository without a valid id");
		return -1;
	}
	r->id = (int64_t)id->valuedouble;
	r->name = str_field(o, "name");
	if (r->name == NULL || r->name[0] == '\0') {
		snprintf(err, errlen, "repository %lld without a name", (long long)r->id);
		repo_free(r);
		return -1;
	}
	r->full_name = str_field(o, "full_name");
	r->default_branch = str_field(o, "default_branch");
	r->clone_url = str_field(o, "clone_url");
	r->html_url = str_field(o, "html_url");
	r->description = str_field(o, "description");
	r->archived = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "archived"));
	return 0;
}

static int list_grow(github_repo_list *l, size_t extra)
{
	if (l->count + extra <= l->cap)
		return 0;
	size_t cap = l->cap ? l->cap : 128;
	while (cap < l->count + extra)
		cap *= 2;
	github_repo *n = realloc(l->items, cap * sizeof *n);
	if (n == NULL)
		return -1;
	l->items = n;
	l->cap = cap;
	return 0;
}

static int parse_array(const cJSON *arr, github_repo_list *out, char *err, size_t errlen)
{
	if (!cJSON_IsArray(arr)) {
		snprintf(err, errlen, "expected a JSON array of repositories");
		return -1;
	}
	size_t n = (size_t)cJSON_GetArraySize(arr), done = 0;
	if (list_grow(out, n) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	const cJSON *it;
	cJSON_ArrayForEach(it, arr)
	{
		if (repo_from_json(it, &out->items[out->count + done], err, errlen) != 0) {
			for (size_t i = 0; i < done; i++)
				repo_free(&out->items[out->count + i]);
			return -1;
		}
		done++;
	}
	out->count += done;
	return 0;
}

int github_parse_page(const char *json, size_t len, github_repo_list *out, char *err, size_t errlen)
{
	cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
	if (root == NULL) {
		snprintf(err, errlen, "invalid JSON in repository list");
		return -1;
	}
	int rc = parse_array(root, out, err, errlen);
	cJSON_Delete(root);
	return rc;
}

int github_parse_installation_page(const char *json, size_t len, github_repo_list *out, char *err,
                                   size_t errlen)
{
	cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
	int rc = -1;
	if (!cJSON_IsObject(root))
		snprintf(err, errlen,
		         "expected a JSON object with the installation's repositories");
	else
		rc = parse_array(cJSON_GetObjectItemCaseSensitive(root, "repositories"), out, err,
		                 errlen);
	cJSON_Delete(root);
	return rc;
}

int github_parse_repo(const char *json, size_t len, github_repo_list *out, char *err, size_t errlen)
{
	cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
	int rc = -1;
	if (root == NULL)
		snprintf(err, errlen, "invalid JSON in repository");
	else if (list_grow(out, 1) != 0)
		snprintf(err, errlen, "out of memory");
	else if (repo_from_json(root, &out->items[out->count], err, errlen) == 0)
		rc = 0;
	if (rc == 0)
		out->count++;
	cJSON_Delete(root);
	return rc;
}

static void add_str(cJSON *o, const char *k, const char *v)
{
	if (v)
		cJSON_AddStringToObject(o, k, v);
}

char *github_page_compact(const github_repo_list *l, size_t from, const char *next)
{
	cJSON *root = cJSON_CreateObject();
	if (next)
		cJSON_AddStringToObject(root, "next", next);
	else
		cJSON_AddNullToObject(root, "next");
	cJSON *arr = cJSON_AddArrayToObject(root, "repos");
	for (size_t i = from; i < l->count; i++) {
		const github_repo *r = &l->items[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "id", (double)r->id);
		add_str(o, "name", r->name);
		add_str(o, "full_name", r->full_name);
		add_str(o, "default_branch", r->default_branch);
		add_str(o, "clone_url", r->clone_url);
		add_str(o, "html_url", r->html_url);
		add_str(o, "description", r->description);
		cJSON_AddBoolToObject(o, "archived", r->archived);
		cJSON_AddItemToArray(arr, o);
	}
	char *s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return s;
}

int github_parse_compact(const char *json, github_repo_list *out, char **next, char *err,
                         size_t errlen)
{
	*next = NULL;
	cJSON *root = json ? cJSON_Parse(json) : NULL;
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		snprintf(err, errlen, "invalid cached page");
		return -1;
	}
	int rc = parse_array(cJSON_GetObjectItemCaseSensitive(root, "repos"), out, err, errlen);
	if (rc == 0)
		*next = str_field(root, "next");
	cJSON_Delete(root);
	return rc;
}

char *github_json_string(const char *json, const char *key)
{
	cJSON *root = json ? cJSON_Parse(json) : NULL;
	char *v = cJSON_IsObject(root) ? str_field(root, key) : NULL;
	cJSON_Delete(root);
	return v;
}
