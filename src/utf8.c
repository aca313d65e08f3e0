/* utf8 — see utf8.h. */
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

int utf8_seq(const unsigned char *p)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	int n;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return -1;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return -1;
	for (int i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return -i;
	return n;
}

bool utf8_valid(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		int n = utf8_seq(p);
		if (n < 0)
			return false;
		p += n;
	}
	return true;
}

size_t utf8_prefix(const char *s, size_t max)
{
	size_t len = 0;
	const unsigned char *p = (const unsigned char *)s;
	while (p[len]) {
		int n = utf8_seq(p + len);
		size_t step = n > 0 ? (size_t)n : 1;
		if (len + step > max)
			break;
		len += step;
	}
	return len;
}

char *utf8_sanitize(char *s)
{
	if (s == NULL || utf8_valid(s))
		return s;
	size_t len = strlen(s);
	char *out = malloc(3 * len + 1);
	char *o = out;
	for (const unsigned char *p = (const unsigned char *)s; out && *p;) {
		int n = utf8_seq(p);
		if (n < 0) {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			p += -n;
			continue;
		}
		memcpy(o, p, (size_t)n);
		o += n;
		p += n;
	}
	if (out)
		*o = '\0';
	free(s);
	return out;
}
