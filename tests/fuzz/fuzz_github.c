/*
 * fuzz_github — a GitHub repository list page: parsed or rejected; what
 * parsed survives the compact round trip with the same count. The same bytes
 * as a single repository: appended (one more item) or rejected (unchanged).
 */
#include <assert.h>
#include <stdint.h>

#include "fuzz_util.h"
#include "github.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	if (size > 1 << 20)
		return 0;
	github_repo_list l = {0};
	if (github_parse_page((const char *)data, size, &l, err, sizeof err) == 0) {
		char *compact = github_page_compact(&l, 0, "https://next");
		assert(compact != NULL);
		github_repo_list back = {0};
		char *next = NULL;
		int rc = github_parse_compact(compact, &back, &next, err, sizeof err);
		assert(rc == 0 && back.count == l.count);
		free(next);
		github_repo_list_free(&back);
		free(compact);
	}
	github_repo_list_free(&l);
	github_repo_list one = {0};
	int rc = github_parse_repo((const char *)data, size, &one, err, sizeof err);
	assert(rc == 0 ? one.count == 1 : one.count == 0);
	github_repo_list_free(&one);
	char *s = fuzz_cstr(data, size);
	free(github_json_string(s, "message"));
	free(s);
	return 0;
}
