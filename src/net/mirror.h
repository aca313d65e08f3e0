/*
 * mirror — local bare mirrors of repositories with libgit2.
 *
 * mirror_sync clones URL into DIR/NAME.git as a mirror (all refs, bare) the
 * first time and fetches (pruning) afterwards, then reads
 * .project-spec.yaml and README.md of the default branch. Credentials (a
 * token) go through libgit2's credential callback as
 * x-access-token:TOKEN for https remotes; they are never put in the URL,
 * the repository config, err, or a log.
 */
#ifndef FK_MIRROR_H
#define FK_MIRROR_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
	char *spec;   /* .project-spec.yaml, NULL if absent */
	char *readme; /* README.md, NULL if absent */
	bool cloned;  /* true: cloned now; false: fetched */
} mirror_result;

/* Process-wide libgit2 setup; pair every init with a shutdown. */
void mirror_init(void);
void mirror_shutdown(void);

/* True if name can be a directory name (letters, digits, . _ -, not "." or
 * "..", no leading dot). */
bool mirror_name_ok(const char *name);

/* branch NULL: the remote's HEAD. token may be NULL. cancel_fd >= 0 aborts
 * a transfer once readable. 0, or -1 with err. */
int mirror_sync(const char *dir, const char *name, const char *url, const char *token,
                const char *branch, int cancel_fd, mirror_result *out, char *err, size_t errlen);
void mirror_result_free(mirror_result *r);

#endif
