/*
 * fuzz_health_history — the samples decoder (health_history.h): any bytes
 * decode without reading past the end, every call moves on (so a row's
 * samples always finish), and each decoded sample encodes and decodes
 * back to itself.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "health_history.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	/* an exact-size copy: ASan sees any read past the end */
	char *text = malloc(size ? size : 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	const int64_t hour = 1699999200;
	const char *p = text, *end = text + size;
	health_sample s, back;
	int d;
	while ((d = health_history_decode(&p, end, hour, &s)) != 0) {
		assert(p > text && p <= end);
		if (d != 1)
			continue;
		assert(s.at >= (double)hour && s.at < (double)hour + 3600);
		assert(s.response_ms >= 0);
		char enc[HEALTH_SAMPLE_MAX];
		size_t n = health_history_encode(&s, enc, sizeof enc);
		assert(n > 0 && n < sizeof enc);
		const char *q = enc;
		assert(health_history_decode(&q, enc + n, hour, &back) == 1 && q == enc + n);
		assert(back.healthy == s.healthy && back.at == s.at &&
		       back.response_ms == s.response_ms && back.stage == s.stage &&
		       back.error == s.error);
	}
	assert(p == end);
	free(text);
	return 0;
}
