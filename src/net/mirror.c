/*
 * mirror — see mirror.h.
 *
 * Invariants: the remote URL stored in a mirror is exactly the clone URL
 * given (never with credentials); the credential callback answers at most
 * once per operation, so a wrong token fails instead of looping; files read
 * from the default branch are capped at MIRROR_MAX_FILE bytes and must not
 * contain NUL bytes.
 */
#include "mirror.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <git2.h>

#define MIRROR_MAX_FILE (1024 * 1024)

typedef struct {
	const char *token;
	int asked;
	int cancel_fd;
} cred_ctx;

void mirror_init(void)
{
	git_libgit2_init();
}

void mirror_shutdown(void)
{
	git_libgit2_shutdown();
}

bool mirror_name_ok(const char *name)
{
	if (name == NULL || name[0] == '\0' || name[0] == '.' || strlen(name) > 200)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

static int on_credentials(git_credential **out, const char *url, const char *user_from_url,
                          unsigned int allowed, void *payload)
{
	cred_ctx *c = payload;
	if (c->token == NULL || c->asked++ > 0 || !(allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT))
		return GIT_PASSTHROUGH;
	return git_credential_userpass_plaintext_new(out, "x-access-token", c->token);
}

static int on_progress(const git_indexer_progress *stats, void *payload)
{
	cred_ctx *c = payload;
	struct pollfd p = {.fd = c->cancel_fd, .events = POLLIN};
	if (c->cancel_fd >= 0 && poll(&p, 1, 0) > 0)
		return -1;
	return 0;
}

static void set_git_err(char *err, size_t errlen, const char *what)
{
	const git_error *e = git_error_last();
	snprintf(err, errlen, "%s: %s", what, e && e->message ? e->message : "unknown error");
}

static int create_mirror_remote(git_remote **out, git_repository *repo, const char *name,
                                const char *url, void *payload)
{
	int rc = git_remote_create_with_fetchspec(out, repo, name, url, "+refs/*:refs/*");
	if (rc == 0) {
		git_config *cfg = NULL;
		if (git_repository_config(&cfg, repo) == 0) {
			git_config_set_bool(cfg, "remote.origin.mirror", 1);
			git_config_free(cfg);
		}
	}
	return rc;
}

static void callbacks_init(git_remote_callbacks *cb, cred_ctx *ctx)
{
	cb->credentials = on_credentials;
	cb->transfer_progress = on_progress;
	cb->payload = ctx;
}

static int clone_mirror(git_repository **repo, const char *path, const char *url, cred_ctx *ctx)
{
	git_clone_options o;
	git_clone_options_init(&o, GIT_CLONE_OPTIONS_VERSION);
	o.bare = 1;
	o.remote_cb = create_mirror_remote;
	callbacks_init(&o.fetch_opts.callbacks, ctx);
	return git_clone(repo, url, path, &o);
}

static int fetch_mirror(git_repository *repo, cred_ctx *ctx)
{
	git_remote *remote = NULL;
	git_fetch_options o;
	git_fetch_options_init(&o, GIT_FETCH_OPTIONS_VERSION);
	int rc = git_remote_lookup(&remote, repo, "origin");
	if (rc != 0)
		return rc;
	o.prune = GIT_FETCH_PRUNE;
	callbacks_init(&o.callbacks, ctx);
	rc = git_remote_fetch(remote, NULL, &o, NULL);
	git_remote_free(remote);
	return rc;
}

/* "refs/heads/BRANCH:PATH" (or HEAD:PATH) as a string, or NULL. */
static char *read_file(git_repository *repo, const char *branch, const char *path)
{
	char spec[512];
	git_object *obj = NULL;
	char *text = NULL;

	if (branch && mirror_name_ok(branch))
		snprintf(spec, sizeof spec, "refs/heads/%s:%s", branch, path);
	else
		snprintf(spec, sizeof spec, "HEAD:%s", path);
	if (git_revparse_single(&obj, repo, spec) != 0)
		return NULL;
	if (git_object_type(obj) == GIT_OBJECT_BLOB) {
		const git_blob *blob = (const git_blob *)obj;
		git_object_size_t n = git_blob_rawsize(blob);
		const void *raw = git_blob_rawcontent(blob);
		if (n <= MIRROR_MAX_FILE && memchr(raw, '\0', (size_t)n) == NULL)
			text = strndup(raw, (size_t)n);
	}
	git_object_free(obj);
	return text;
}

int mirror_sync(const char *dir, const char *name, const char *url, const char *token,
                const char *branch, int cancel_fd, mirror_result *out, char *err, size_t errlen)
{
	char path[4096];
	git_repository *repo = NULL;
	cred_ctx ctx = {.token = token, .cancel_fd = cancel_fd};
	struct stat sb;
	int rc;

	*out = (mirror_result){0};
	if (!mirror_name_ok(name)) {
		snprintf(err, errlen, "repository name not usable as a directory");
		return -1;
	}
	mkdir(dir, 0750);
	snprintf(path, sizeof path, "%s/%s.git", dir, name);
	if (stat(path, &sb) == 0) {
		rc = git_repository_open_bare(&repo, path);
		if (rc == 0)
			rc = fetch_mirror(repo, &ctx);
		if (rc != 0)
			set_git_err(err, errlen, "fetch");
	} else {
		rc = clone_mirror(&repo, path, url, &ctx);
		out->cloned = rc == 0;
		if (rc != 0)
			set_git_err(err, errlen, "clone");
	}
	if (rc == 0) {
		out->spec = read_file(repo, branch, ".project-spec.yaml");
		out->readme = read_file(repo, branch, "README.md");
	}
	git_repository_free(repo);
	return rc == 0 ? 0 : -1;
}

void mirror_result_free(mirror_result *r)
{
	free(r->spec);
	free(r->readme);
	r->spec = r->readme = NULL;
}
