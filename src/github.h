/*
 * github — GitHub REST JSON into repository records, with cJSON.
 *
 * Parsing is defensive: any input (truncated, wrong types, huge) gives
 * either a complete page of valid records or an error, never a partial
 * page and never a crash. A record needs a positive integer id and a
 * non-empty name; other fields are optional.
 *
 * The compact form (github_page_compact) is what the sync keeps in
 * http_cache next to a page's ETag, so a 304 can be replayed without the
 * multi-kilobyte repository objects: {"next": URL|null, "repos": [...]}.
 */
#ifndef FK_GITHUB_H
#define FK_GITHUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	int64_t id;
	char *name;
	char *full_name;      /* NULL if absent */
	char *default_branch; /* NULL if absent */
	char *clone_url;
	char *html_url;
	char *description;
	bool archived;
} github_repo;

typedef struct {
	github_repo *items;
	size_t count, cap;
} github_repo_list;

void github_repo_list_free(github_repo_list *l);

/* Append the repositories of one list page (a JSON array) to out. On
 * error (-1, message in err) out is unchanged. */
int github_parse_page(const char *json, size_t len, github_repo_list *out, char *err,
                      size_t errlen);

/* Append the repositories of one page of GET /installation/repositories
 * (a GitHub App's listing: an object whose "repositories" is the array).
 * On error (-1, message in err) out is unchanged. */
int github_parse_installation_page(const char *json, size_t len, github_repo_list *out, char *err,
                                   size_t errlen);

/* Append the repository of a single-repository response (a JSON object:
 * GET /repos/OWNER/NAME, /repositories/ID). On error (-1, message in err)
 * out is unchanged. */
int github_parse_repo(const char *json, size_t len, github_repo_list *out, char *err,
                      size_t errlen);

/* Compact form of out->items[from..] and next (may be NULL); malloc'd. */
char *github_page_compact(const github_repo_list *l, size_t from, const char *next);
/* Parse a compact form: appends to out, *next malloc'd or NULL. 0 or -1. */
int github_parse_compact(const char *json, github_repo_list *out, char **next, char *err,
                         size_t errlen);

/* The string value of a JSON object's key, or NULL if not a string. */
char *github_json_string(const char *json, const char *key);

#endif
