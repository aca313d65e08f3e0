/* duration — see duration.h. */
#include "duration.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static int unit_ms(const char *unit, size_t len, int64_t *ms)
{
	static const struct {
		const char *name;
		int64_t ms;
	} units[] = {
	        {"ms", 1},      {"s", 1000},    {"sec", 1000},   {"m", 60000},
	        {"min", 60000}, {"h", 3600000}, {"d", 86400000},
	};
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strlen(units[i].name) == len && strncmp(units[i].name, unit, len) == 0) {
			*ms = units[i].ms;
			return 0;
		}
	}
	return -1;
}

static int too_large(const char *text, char *err, size_t errlen)
{
	snprintf(err, errlen, "duration '%s' is too large (at most %dd, about 10 years)", text,
	         DURATION_MAX_DAYS);
	return -1;
}

int duration_parse(const char *text, int64_t *out_ms, char *err, size_t errlen)
{
	const char *p = text;
	int64_t total = 0;
	int parts = 0;

	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0') {
		snprintf(err, errlen, "empty duration");
		return -1;
	}
	while (*p && !isspace((unsigned char)*p)) {
		if (!isdigit((unsigned char)*p)) {
			snprintf(err, errlen, "bad duration '%s' (expected e.g. 30s, 5m, 1h30m)",
			         text);
			return -1;
		}
		int64_t n = 0;
		while (isdigit((unsigned char)*p)) {
			if (n > DURATION_MAX_MS)
				return too_large(text, err, errlen);
			n = n * 10 + (*p++ - '0');
		}
		const char *unit = p;
		while (isalpha((unsigned char)*p))
			p++;
		int64_t mult = 1000; /* a bare number means seconds */
		if (p > unit && unit_ms(unit, (size_t)(p - unit), &mult) != 0) {
			snprintf(err, errlen,
			         "unknown unit '%.*s' in duration '%s' (use ms, s, m, h, d)",
			         (int)(p - unit), unit, text);
			return -1;
		}
		if (p == unit && parts > 0) {
			snprintf(err, errlen, "bad duration '%s': number without unit", text);
			return -1;
		}
		if (n > 0 && mult > (DURATION_MAX_MS - total) / n)
			return too_large(text, err, errlen);
		total += n * mult;
		parts++;
		if (p == unit)
			break; /* a bare number stands alone */
	}
	while (isspace((unsigned char)*p))
		p++;
	if (*p != '\0') {
		snprintf(err, errlen, "bad duration '%s' (expected e.g. 30s, 5m, 1h30m)", text);
		return -1;
	}
	*out_ms = total;
	return 0;
}

void duration_format(int64_t ms, char *buf, size_t cap)
{
	static const struct {
		const char *name;
		int64_t ms;
	} units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
	size_t len = 0;

	if (ms <= 0) {
		snprintf(buf, cap, "0s");
		return;
	}
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof units / sizeof units[0] && len < cap; i++) {
		if (ms >= units[i].ms) {
			int n = snprintf(buf + len, cap - len, "%lld%s",
			                 (long long)(ms / units[i].ms), units[i].name);
			if (n < 0)
				return;
			len += (size_t)n;
			ms %= units[i].ms;
		}
	}
}
