/*
 * fuzz_ansible — one line of the ansible.posix.jsonl callback output:
 * parsed into results/stats whatever it holds; callback strings are valid
 * C strings and stats never go negative.
 */
#include <assert.h>
#include <stdint.h>

#include "ansible.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_result(void *ctx, const char *task, const char *host, const char *status,
                      const char *msg)
{
	size_t *n = ctx;
	*n += (task ? strlen(task) : 0) + (host ? strlen(host) : 0) + strlen(status) +
	      (msg ? strlen(msg) : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 20)
		return 0;
	char *line = fuzz_cstr(data, size);
	ansible_stats st = {0};
	size_t n = 0;
	ansible_line_kind k = ansible_parse_line(line, &st, on_result, &n);
	assert(k == ANSIBLE_LINE_OTHER || k == ANSIBLE_LINE_RESULT || k == ANSIBLE_LINE_STATS);
	const char *secrets[] = {"hunter2", "", NULL};
	char *red = ansible_redact(line, secrets);
	assert(red != NULL && strstr(red, "hunter2") == NULL);
	free(red);
	free(line);
	return 0;
}
