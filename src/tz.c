/*
 * tz — IANA time zones from TZif files, without touching the process TZ.
 *
 * A zone is a sorted table of transitions (instant -> local time type) read
 * from the 64-bit block of a TZif v2+ file (or the 32-bit block of a v1
 * file), plus the POSIX TZ "footer" rule that governs every instant after
 * the last transition. Instants before the first transition use type 0
 * (RFC 8536). Leap-second records are ignored ("right/" zones are not
 * supported: their transition times are not unix times).
 *
 * Invariants:
 *  - zones are built completely, then published in a process-wide list
 *    guarded by cache_lock; once published they are never modified or
 *    freed, so a const tz * may be used by any thread without locking;
 *  - a zone with no transitions and no DST rule is "fixed": its offset is
 *    `fixed_off` and every lookup is O(1) (UTC is built in, no file needed);
 *  - names coming from configuration are checked before touching the file
 *    system: no absolute paths, no "..", only [A-Za-z0-9_+-./].
 */
#include "tz.h"

#include <ctype.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TZ_MAX_FILE   (1 << 20)
#define TZ_NAME_MAX   255
#define SECS_PER_DAY  86400
#define DEFAULT_TZDIR "/usr/share/zoneinfo"

/* One end of a POSIX DST rule: Jn, n or Mm.w.d, at `secs` local time. */
typedef struct {
	char kind; /* 'J' (1..365, no Feb 29), 'D' (0..365), 'M' */
	int day;   /* Jn / n: the day; M: weekday 0..6 */
	int month;
	int week; /* 1..5, 5 = last */
	int32_t secs;
} tz_rule_date;

typedef struct {
	bool present;
	bool has_dst;
	int32_t std_off; /* seconds east of UTC */
	int32_t dst_off;
	tz_rule_date start, end;
} tz_rule;

struct tz {
	char *key;  /* what tz_load was asked for (cache key) */
	char *name; /* what tz_name reports */
	size_t ntrans;
	int64_t *trans;     /* ascending */
	int32_t *trans_off; /* offset in effect from trans[i] on */
	int32_t first_off;  /* before trans[0]: type 0 */
	bool fixed;
	int32_t fixed_off;
	tz_rule rule;
	struct tz *next;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tz *cache_head;

/* ---- calendar (Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms") ---- */

int64_t tz_days_from_civil(int year, int month, int day)
{
	int64_t y = (int64_t)year - (month <= 2);
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t mp = (month + 9) % 12;
	int64_t doy = (153 * mp + 2) / 5 + day - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void tz_civil_from_days(int64_t days, int *year, int *month, int *day)
{
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int d = (int)(doy - (153 * mp + 2) / 5 + 1);
	int m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*year = (int)(yoe + era * 400 + (m <= 2));
	*month = m;
	*day = d;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && is_leap(y) ? 29 : mdays[m - 1];
}

/* ---- POSIX TZ rules ---- */

/* Local (standard-time based) seconds since the epoch at which a rule date
 * of `year` occurs, before adding its time of day. */
static int64_t rule_day(const tz_rule_date *r, int year)
{
	int64_t jan1 = tz_days_from_civil(year, 1, 1);
	if (r->kind == 'J') {
		int64_t d = r->day - 1;
		if (is_leap(year) && r->day >= 60)
			d++;
		return jan1 + d;
	}
	if (r->kind == 'D')
		return jan1 + r->day;
	int64_t first = tz_days_from_civil(year, r->month, 1);
	int wday1 = (int)((first + 4) % 7 + 7) % 7; /* 1970-01-01 was a Thursday */
	int d = 1 + (r->day - wday1 + 7) % 7 + (r->week - 1) * 7;
	while (d > days_in_month(year, r->month))
		d -= 7;
	return first + d - 1;
}

static bool rule_is_dst(const tz_rule *r, int64_t t)
{
	int y, m, d;
	tz_civil_from_days(floor_div(t + r->std_off, SECS_PER_DAY), &y, &m, &d);
	int64_t start = rule_day(&r->start, y) * SECS_PER_DAY + r->start.secs - r->std_off;
	int64_t end = rule_day(&r->end, y) * SECS_PER_DAY + r->end.secs - r->dst_off;
	if (start < end)
		return t >= start && t < end;
	return !(t >= end && t < start);
}

static int32_t rule_offset(const tz_rule *r, int64_t t)
{
	if (!r->has_dst)
		return r->std_off;
	return rule_is_dst(r, t) ? r->dst_off : r->std_off;
}

/* A zone abbreviation: letters, or anything but '>' inside <...>. */
static const char *parse_abbr(const char *p)
{
	const char *start = p;
	if (*p == '<') {
		for (p++; *p && *p != '>'; p++)
			if (!(*p == '+' || *p == '-' || (*p >= '0' && *p <= '9') ||
			      (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
				return NULL;
		return *p == '>' && p - start >= 4 ? p + 1 : NULL;
	}
	while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
		p++;
	return p - start >= 3 ? p : NULL;
}

static const char *parse_num(const char *p, int lo, int hi, int *out)
{
	int v = 0, n = 0;
	while (*p >= '0' && *p <= '9' && n < 4) {
		v = v * 10 + (*p++ - '0');
		n++;
	}
	if (n == 0 || v < lo || v > hi)
		return NULL;
	*out = v;
	return p;
}

/* [+-]hh[:mm[:ss]], hours up to max_h; seconds in *out (sign applied). */
static const char *parse_hms(const char *p, int max_h, int32_t *out)
{
	int sign = 1, h, m = 0, s = 0;
	if (*p == '+' || *p == '-')
		sign = *p++ == '-' ? -1 : 1;
	if (!(p = parse_num(p, 0, max_h, &h)))
		return NULL;
	if (*p == ':' && !(p = parse_num(p + 1, 0, 59, &m)))
		return NULL;
	if (*p == ':' && !(p = parse_num(p + 1, 0, 59, &s)))
		return NULL;
	*out = sign * (h * 3600 + m * 60 + s);
	return p;
}

static const char *parse_rule_date(const char *p, tz_rule_date *r)
{
	if (*p == 'J') {
		r->kind = 'J';
		p = parse_num(p + 1, 1, 365, &r->day);
	} else if (*p == 'M') {
		r->kind = 'M';
		if (!(p = parse_num(p + 1, 1, 12, &r->month)) || *p != '.' ||
		    !(p = parse_num(p + 1, 1, 5, &r->week)) || *p != '.')
			return NULL;
		p = parse_num(p + 1, 0, 6, &r->day);
	} else {
		r->kind = 'D';
		p = parse_num(p, 0, 365, &r->day);
	}
	if (!p)
		return NULL;
	r->secs = 7200;
	if (*p == '/')
		p = parse_hms(p + 1, 167, &r->secs);
	return p;
}

/* "CET-1CEST,M3.5.0,M10.5.0/3", "<+03>-3", "EST5EDT" ... 0 or -1. */
static int rule_parse(const char *s, tz_rule *r)
{
	const char *p = parse_abbr(s);
	int32_t off;
	memset(r, 0, sizeof *r);
	if (!p || !(p = parse_hms(p, 24, &off)))
		return -1;
	r->std_off = -off;
	r->present = true;
	if (*p == '\0')
		return 0;
	if (!(p = parse_abbr(p)))
		return -1;
	r->has_dst = true;
	r->dst_off = r->std_off + 3600;
	if (*p && *p != ',') {
		if (!(p = parse_hms(p, 24, &off)))
			return -1;
		r->dst_off = -off;
	}
	if (*p == '\0') /* no rule given: the US rule, as glibc does */
		p = ",M3.2.0,M11.1.0";
	if (*p != ',' || !(p = parse_rule_date(p + 1, &r->start)) || *p != ',' ||
	    !(p = parse_rule_date(p + 1, &r->end)))
		return -1;
	return *p == '\0' ? 0 : -1;
}

/* ---- TZif ---- */

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

typedef struct {
	uint32_t isut, isstd, leap, time, type, chars;
} tzif_counts;

static size_t tzif_block_len(const tzif_counts *c, size_t tsize)
{
	return c->time * (tsize + 1) + c->type * 6 + c->chars + c->leap * (tsize + 4) + c->isstd +
	       c->isut;
}

static int tzif_header(const unsigned char *p, size_t len, tzif_counts *c)
{
	if (len < 44 || memcmp(p, "TZif", 4) != 0)
		return -1;
	c->isut = be32(p + 20);
	c->isstd = be32(p + 24);
	c->leap = be32(p + 28);
	c->time = be32(p + 32);
	c->type = be32(p + 36);
	c->chars = be32(p + 40);
	if (c->type == 0 || c->type > 256 || c->time > 100000 || c->leap > 10000 ||
	    c->chars > 100000 || c->isut > c->type || c->isstd > c->type)
		return -1;
	return 0;
}

/* Fill zone's transitions from one data block (tsize 4 or 8 bytes). */
static int tzif_block(struct tz *z, const unsigned char *p, const tzif_counts *c, size_t tsize)
{
	const unsigned char *idx = p + c->time * tsize;
	const unsigned char *types = idx + c->time;
	int32_t offs[256];

	for (uint32_t i = 0; i < c->type; i++) {
		offs[i] = (int32_t)be32(types + 6 * i);
		if (offs[i] < -26 * 3600 || offs[i] > 26 * 3600)
			return -1;
	}
	z->first_off = offs[0];
	z->ntrans = c->time;
	z->trans = calloc(c->time ? c->time : 1, sizeof *z->trans);
	z->trans_off = calloc(c->time ? c->time : 1, sizeof *z->trans_off);
	if (!z->trans || !z->trans_off)
		return -1;
	for (uint32_t i = 0; i < c->time; i++) {
		z->trans[i] = tsize == 8 ? be64(p + 8 * i) : (int32_t)be32(p + 4 * i);
		if (idx[i] >= c->type || (i > 0 && z->trans[i] <= z->trans[i - 1]))
			return -1;
		z->trans_off[i] = offs[idx[i]];
	}
	return 0;
}

static int tzif_parse(struct tz *z, const unsigned char *buf, size_t len)
{
	tzif_counts c;
	if (tzif_header(buf, len, &c) != 0)
		return -1;
	size_t v1len = tzif_block_len(&c, 4);
	if (44 + v1len > len)
		return -1;
	if (buf[4] == '\0')
		return tzif_block(z, buf + 44, &c, 4);

	const unsigned char *h2 = buf + 44 + v1len;
	size_t rest = len - 44 - v1len;
	if (tzif_header(h2, rest, &c) != 0 || 44 + tzif_block_len(&c, 8) > rest)
		return -1;
	if (tzif_block(z, h2 + 44, &c, 8) != 0)
		return -1;
	const char *foot = (const char *)h2 + 44 + tzif_block_len(&c, 8);
	size_t flen = (size_t)((const char *)buf + len - foot);
	if (flen < 2 || foot[0] != '\n')
		return 0;
	const char *nl = memchr(foot + 1, '\n', flen - 1);
	if (!nl || nl == foot + 1 || nl - foot > 128)
		return 0;
	char tzstr[128];
	memcpy(tzstr, foot + 1, (size_t)(nl - foot - 1));
	tzstr[nl - foot - 1] = '\0';
	return rule_parse(tzstr, &z->rule) == 0 ? 0 : -1;
}

static void zone_finish(struct tz *z)
{
	if (z->ntrans == 0 && !(z->rule.present && z->rule.has_dst)) {
		z->fixed = true;
		z->fixed_off = z->rule.present ? z->rule.std_off : z->first_off;
	}
}

static void zone_free(struct tz *z)
{
	if (!z)
		return;
	free(z->key);
	free(z->name);
	free(z->trans);
	free(z->trans_off);
	free(z);
}

static struct tz *zone_new(const char *key, const char *name)
{
	struct tz *z = calloc(1, sizeof *z);
	if (!z)
		return NULL;
	z->key = strdup(key);
	z->name = strdup(name);
	if (!z->key || !z->name) {
		zone_free(z);
		return NULL;
	}
	return z;
}

/* 0, -1 (no such file: errno ENOENT etc.), -2 (not a TZif file). */
static int zone_read_file(struct tz *z, const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	int rc = -1;

	if (!f)
		return -1;
	buf = malloc(TZ_MAX_FILE);
	if (!buf)
		goto out;
	size_t len = fread(buf, 1, TZ_MAX_FILE, f);
	if (len == 0 && ferror(f))
		goto out; /* e.g. a directory */
	rc = tzif_parse(z, buf, len) == 0 ? 0 : -2;
	if (rc == 0)
		zone_finish(z);
out:
	free(buf);
	fclose(f);
	return rc;
}

/* ---- names and loading ---- */

static bool name_is_safe(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > TZ_NAME_MAX || name[0] == '/' || name[0] == '-' ||
	    strstr(name, "..") || strstr(name, "//"))
		return false;
	for (const char *p = name; *p; p++) {
		char ch = *p;
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '+' || ch == '-' ||
		      ch == '/' || ch == '.'))
			return false;
	}
	return true;
}

static bool is_utc_name(const char *name)
{
	return strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0;
}

static const char *zoneinfo_dir(void)
{
	const char *dir = getenv("TZDIR");
	return dir && *dir ? dir : DEFAULT_TZDIR;
}

static struct tz *zone_utc(const char *key, const char *name)
{
	struct tz *z = zone_new(key, name);
	if (z) {
		z->fixed = true;
		z->fixed_off = 0;
	}
	return z;
}

/* An IANA name from the zoneinfo directory (UTC is built in). */
static struct tz *zone_load_named(const char *key, const char *name, char *err, size_t errlen)
{
	char path[PATH_MAX];
	if (!name_is_safe(name)) {
		snprintf(err, errlen, "invalid time zone name '%s'", name);
		return NULL;
	}
	if (is_utc_name(name))
		return zone_utc(key, name);
	struct tz *z = zone_new(key, name);
	if (!z) {
		snprintf(err, errlen, "time zone '%s': out of memory", name);
		return NULL;
	}
	snprintf(path, sizeof path, "%s/%s", zoneinfo_dir(), name);
	int rc = zone_read_file(z, path);
	if (rc == 0)
		return z;
	if (rc == -1)
		snprintf(err, errlen, "unknown time zone '%s'", name);
	else
		snprintf(err, errlen, "time zone '%s': %s is not a valid TZif file", name, path);
	zone_free(z);
	return NULL;
}

/* The name a zoneinfo path stands for: ".../zoneinfo/Europe/Berlin" -> "Europe/Berlin". */
static void name_from_path(const char *path, char *out, size_t cap, const char *fallback)
{
	char target[PATH_MAX];
	ssize_t n = readlink(path, target, sizeof target - 1);
	const char *src = path;
	if (n > 0) {
		target[n] = '\0';
		src = target;
	}
	const char *z = strstr(src, "zoneinfo/");
	snprintf(out, cap, "%s", z ? z + strlen("zoneinfo/") : fallback);
}

static struct tz *zone_load_path(const char *key, const char *path, const char *fallback, char *err,
                                 size_t errlen)
{
	char name[TZ_NAME_MAX + 1];
	name_from_path(path, name, sizeof name, fallback);
	struct tz *z = zone_new(key, name);
	if (!z) {
		snprintf(err, errlen, "time zone '%s': out of memory", path);
		return NULL;
	}
	if (zone_read_file(z, path) == 0)
		return z;
	snprintf(err, errlen, "cannot read time zone file '%s'", path);
	zone_free(z);
	return NULL;
}

/* The TZ variable: ":Name", "Name", ":/path", or a POSIX TZ string. */
static struct tz *zone_load_env(const char *key, const char *tzenv, char *err, size_t errlen)
{
	const char *v = tzenv[0] == ':' ? tzenv + 1 : tzenv;
	if (*v == '\0')
		return zone_utc(key, "UTC");
	if (v[0] == '/')
		return zone_load_path(key, v, v, err, errlen);
	struct tz *z = zone_load_named(key, v, err, errlen);
	if (z || tzenv[0] == ':')
		return z;
	tz_rule r;
	if (rule_parse(v, &r) != 0)
		return NULL; /* err already says "unknown time zone" */
	z = zone_new(key, v);
	if (!z) {
		snprintf(err, errlen, "time zone '%s': out of memory", v);
		return NULL;
	}
	z->rule = r;
	z->first_off = r.std_off;
	zone_finish(z);
	return z;
}

static struct tz *zone_load_local(const char *key, char *err, size_t errlen)
{
	const char *tzenv = getenv("TZ");
	if (tzenv)
		return zone_load_env(key, tzenv, err, errlen);
	if (access("/etc/localtime", R_OK) == 0)
		return zone_load_path(key, "/etc/localtime", "localtime", err, errlen);
	return zone_utc(key, "UTC");
}

static struct tz *cache_find(const char *key)
{
	for (struct tz *z = cache_head; z; z = z->next)
		if (strcmp(z->key, key) == 0)
			return z;
	return NULL;
}

int tz_load(const char *name, const tz **out, char *err, size_t errlen)
{
	char key[TZ_NAME_MAX + 16];
	bool local = name == NULL || *name == '\0';
	const char *tzenv = getenv("TZ");

	if (local)
		snprintf(key, sizeof key, "\x01local:%s", tzenv ? tzenv : "\x01unset");
	else
		snprintf(key, sizeof key, "%s", name);
	pthread_mutex_lock(&cache_lock);
	struct tz *z = cache_find(key);
	if (!z) {
		z = local ? zone_load_local(key, err, errlen)
		          : zone_load_named(key, name, err, errlen);
		if (z) {
			z->next = cache_head;
			cache_head = z;
		}
	}
	pthread_mutex_unlock(&cache_lock);
	if (!z)
		return -1;
	*out = z;
	return 0;
}

const char *tz_name(const tz *zone)
{
	return zone->name;
}

/* ---- lookups ---- */

int32_t tz_offset_at(const tz *zone, int64_t t)
{
	if (zone->fixed)
		return zone->fixed_off;
	size_t n = zone->ntrans;
	if (n == 0 || t >= zone->trans[n - 1]) {
		if (zone->rule.present)
			return rule_offset(&zone->rule, t);
		return n == 0 ? zone->first_off : zone->trans_off[n - 1];
	}
	if (t < zone->trans[0])
		return zone->first_off;
	size_t lo = 0, hi = n - 1; /* trans[lo] <= t < trans[hi] */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (zone->trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return zone->trans_off[lo];
}

static void civil_from_local(int64_t local, tz_civil *out)
{
	int64_t days = floor_div(local, SECS_PER_DAY);
	int secs = (int)(local - days * SECS_PER_DAY);
	tz_civil_from_days(days, &out->year, &out->month, &out->day);
	out->hour = secs / 3600;
	out->minute = secs / 60 % 60;
	out->second = secs % 60;
}

void tz_to_civil(const tz *zone, int64_t t, tz_civil *out)
{
	civil_from_local(t + tz_offset_at(zone, t), out);
}

/* In a gap [T + before, T + after) the transition T is the first instant
 * whose local time is past `local`; local time is increasing there. */
static int64_t gap_transition(const tz *zone, int64_t local, int64_t lo, int64_t hi)
{
	while (lo < hi) {
		int64_t mid = lo + (hi - lo) / 2;
		if (mid + tz_offset_at(zone, mid) > local)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

int tz_from_civil(const tz *zone, const tz_civil *c, int64_t *first, int64_t *second)
{
	int64_t local = tz_days_from_civil(c->year, c->month, c->day) * SECS_PER_DAY +
	                c->hour * 3600 + c->minute * 60 + c->second;
	if (zone->fixed) {
		*first = local - zone->fixed_off;
		if (second)
			*second = *first;
		return 1;
	}
	int32_t oe = tz_offset_at(zone, local - SECS_PER_DAY);
	int32_t ol = tz_offset_at(zone, local + SECS_PER_DAY);
	int64_t te = local - oe, tl = local - ol;
	bool ve = tz_offset_at(zone, te) == oe;
	bool vl = tz_offset_at(zone, tl) == ol;
	int64_t dummy;

	if (!second)
		second = &dummy;
	if (ve && vl && te != tl) {
		*first = te < tl ? te : tl;
		*second = te < tl ? tl : te;
		return 2;
	}
	if (ve || vl) {
		*first = *second = ve ? te : tl;
		return 1;
	}
	/* Neither offset gives this local time: it was skipped. */
	*first = *second = gap_transition(zone, local, tl < te ? tl : te, tl < te ? te : tl);
	return 0;
}

/* ---- ISO 8601 (see tz.h) ---- */

static int read_digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (*(*p)++ - '0');
	}
	*out = v;
	return 0;
}

/* 2026-02-30 is no date (tz_days_from_civil would make it March 2nd). */
static bool date_exists(int year, int month, int day)
{
	int y, m, d;
	tz_civil_from_days(tz_days_from_civil(year, month, day), &y, &m, &d);
	return d == day;
}

int tz_parse_iso8601(const char *s, const tz *zone, int64_t *out)
{
	tz_civil c = {0};
	const char *p = s;
	int oh = 0, om = 0, sign = 0;

	if (read_digits(&p, 4, &c.year) || *p++ != '-' || read_digits(&p, 2, &c.month) ||
	    *p++ != '-' || read_digits(&p, 2, &c.day))
		return -1;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (read_digits(&p, 2, &c.hour) || *p++ != ':' || read_digits(&p, 2, &c.minute))
			return -1;
		if (*p == ':' && (p++, read_digits(&p, 2, &c.second)))
			return -1;
		if (*p == '.' || *p == ',')
			for (p++; isdigit((unsigned char)*p); p++)
				;
	}
	if (*p == 'Z' || *p == 'z') {
		sign = 1;
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '+' ? 1 : -1;
		if (read_digits(&p, 2, &oh))
			return -1;
		if (*p == ':')
			p++;
		if (read_digits(&p, 2, &om))
			return -1;
	}
	if (*p != '\0' || c.month < 1 || c.month > 12 || c.day < 1 || c.day > 31 || c.hour > 23 ||
	    c.minute > 59 || c.second > 60 || oh > 23 || om > 59 ||
	    !date_exists(c.year, c.month, c.day))
		return -1;
	if (sign != 0) {
		int64_t days = tz_days_from_civil(c.year, c.month, c.day);
		*out = days * 86400 + c.hour * 3600 + c.minute * 60 + c.second -
		       sign * (oh * 3600 + om * 60);
		return 0;
	}
	int64_t first, second;
	tz_from_civil(zone, &c, &first, &second);
	*out = first;
	return 0;
}
