/*
 * fuzz_config — the INI configuration loader with validation, fed from a
 * memfd: a load either succeeds with a config (each task has a type) or
 * fails with at least one "FILE:LINE: message" line.
 */
#include <assert.h>
#include <stdint.h>

#include "config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	if (size > 65536)
		return 0;
	int fd = fuzz_memfile(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	config *cfg = NULL;
	config_errors errs = {0};
	if (config_load(&cfg, path, &errs) == 0) {
		assert(cfg != NULL);
		for (size_t i = 0; i < cfg->ntasks; i++)
			assert(cfg->tasks[i].type != NULL);
		for (size_t i = 0; i < cfg->nsections; i++)
			(void)config_section_find(cfg, cfg->sections[i].name);
		config_unref(cfg);
	} else {
		assert(cfg == NULL && errs.count > 0);
	}
	config_errors_free(&errs);
	close(fd);
	return 0;
}
