/*
 * fuzz_schedule — the cron/interval parser: any input either parses or
 * fails with a message; a parsed schedule's next fire times are strictly
 * increasing (or -1, never fires) in UTC and a zone with DST.
 */
#include <assert.h>
#include <stdint.h>

#include "fuzz_util.h"
#include "schedule.h"
#include "tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *expr = fuzz_cstr(data, size);
	schedule s;
	char err[256];
	if (schedule_parse(&s, expr, err, sizeof err) == 0) {
		const char *zones[] = {"UTC", "Europe/Vilnius"};
		for (size_t z = 0; z < 2; z++) {
			const tz *zone = NULL;
			if (tz_load(zones[z], &zone, err, sizeof err) != 0)
				abort();
			int64_t t = 1711846800; /* 2024-03-31, a DST change in Vilnius */
			for (int i = 0; i < 4 && t >= 0; i++) {
				int64_t next = schedule_next(&s, zone, t);
				assert(next == -1 || next > t);
				t = next;
			}
		}
		(void)schedule_can_fire(&s);
	} else {
		assert(err[0] != '\0');
	}
	free(expr);
	return 0;
}
