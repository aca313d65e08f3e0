/*
 * spread — see spread.h.
 */
#include "spread.h"

#include <stddef.h>

static uint64_t fnv1a64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* SplitMix64's finalizer: every input bit moves about half the output bits. */
static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

int64_t spread_offset_ms(const char *name, int64_t spread_ms)
{
	if (spread_ms <= 0 || name == NULL)
		return 0;
	return (int64_t)(mix64(fnv1a64(name)) % (uint64_t)spread_ms);
}

int64_t spread_task_offset_ms(const char *name, int64_t jitter_ms, int64_t spread_ms)
{
	return jitter_ms > 0 ? 0 : spread_offset_ms(name, spread_ms);
}
