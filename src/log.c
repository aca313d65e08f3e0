/*
 * log — the structured event log (see log.h and SPEC §2).
 *
 * Role: render one event as one JSON line (or one console line) and write it
 * to the output fd with a single logical write, then hand the JSON rendering
 * to the sink (the event store).
 *
 * Invariants and design:
 * - Every thread owns a struct log_thread (thread-local, freed by a
 *   pthread key destructor at thread exit): its output buffers, its bound
 *   context and its timestamp cache. Rendering therefore never locks; only
 *   the write(2) itself is serialised by write_mu, so lines never interleave
 *   even on pipes and for lines longer than PIPE_BUF.
 * - Bound fields are copied on log_bind and pre-rendered to their JSON
 *   fragment (`, "key": value`), so the hot path only memcpy's them.
 * - Key order: timestamp, level, service, logger, event, bound context (bind
 *   order), call fields (call order). A bound field whose key is also a call
 *   field is left out. A bound or call field named like one of the five
 *   fixed keys is left out too (the fixed key wins), so no line ever holds a
 *   key twice because of it.
 * - Strings: ", \ and every byte < 0x20 and 0x7f are escaped; valid UTF-8 is
 *   copied raw (structlog's json.dumps would write \uXXXX: both are the same
 *   JSON string); each maximal ill-formed UTF-8 subsequence becomes U+FFFD,
 *   also written raw (EF BF BD), as Python's decode(errors="replace") does.
 *   A LOG_STRN value is its length, not its first NUL: a NUL byte inside
 *   it is escaped (\u0000; \x00 on the console) like any control byte.
 * - A line is capped softly at LINE_BUDGET bytes: a string value that would
 *   cross it is cut (at a character boundary) and ends with "...(truncated)";
 *   values after it become "...(truncated)" too. Names (keys, logger, event)
 *   are not cut by the budget but each is capped at NAME_MAX_BYTES, so a
 *   line can exceed 64 KiB only by its names and numbers.
 * - Console (LOG_FORMAT=console) follows structlog's ConsoleRenderer:
 *   timestamp, [level padded to 9], event padded to 30, [logger], then
 *   key=value for the context and the fields. Strings are bare unless they
 *   are empty or hold a space, control character or quote; then they are
 *   quoted like Python's repr() but always with ' (control characters as
 *   \n, \t, \xNN). Booleans and null print as true/false/null.
 * - The sink is called under sink_lock held for reading; log_set_sink takes
 *   it for writing, so once it returns no thread is still in the old sink.
 *   A sink that logs does not reach the sink again (depth guard).
 * - Output errors (EPIPE, EBADF, EAGAIN on a full non-blocking fd) drop the
 *   line for the fd; the sink still gets it. The process must ignore
 *   SIGPIPE (the daemon does) for EPIPE not to kill it.
 */
#include "log.h"

#include "clock.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log_classify.h"
#include "utf8.h"

#define LINE_BUDGET    (64 * 1024 - 512) /* soft cap on one line's strings */
#define BOUND_BUDGET   8192              /* cap on one bound field's fragment */
#define TRUNC_MARK     "...(truncated)"
#define NAME_MAX_BYTES 1024 /* cap on one key, logger or event */
#define STACK_FIELDS   32
#define SERVICE_MAX    256
#define PREFIX_CAP     (SERVICE_MAX * 6 + 96)

/* ---- output buffer ---------------------------------------------------- */

struct ob {
	char *p;
	size_t len;
	size_t cap;
	size_t limit; /* strings are truncated past this length */
	bool oom;
};

static bool ob_grow(struct ob *o, size_t need)
{
	size_t ncap = o->cap ? o->cap : 1024;
	while (ncap - o->len < need)
		ncap *= 2;
	char *np = realloc(o->p, ncap);
	if (!np) {
		o->oom = true;
		return false;
	}
	o->p = np;
	o->cap = ncap;
	return true;
}

static inline bool ob_need(struct ob *o, size_t need)
{
	if (o->cap - o->len >= need)
		return true;
	return ob_grow(o, need);
}

/* memcpy without a libc call for the short copies that make up a line:
 * two overlapping fixed-size moves. */
static inline void copy_bytes(char *d, const char *s, size_t n)
{
	if (n > 32) {
		memcpy(d, s, n);
	} else if (n >= 16) {
		memcpy(d, s, 16);
		memcpy(d + n - 16, s + n - 16, 16);
	} else if (n >= 8) {
		memcpy(d, s, 8);
		memcpy(d + n - 8, s + n - 8, 8);
	} else if (n >= 4) {
		memcpy(d, s, 4);
		memcpy(d + n - 4, s + n - 4, 4);
	} else {
		for (size_t i = 0; i < n; i++)
			d[i] = s[i];
	}
}

static inline void ob_put(struct ob *o, const void *s, size_t n)
{
	if (!ob_need(o, n + 1))
		return;
	copy_bytes(o->p + o->len, s, n);
	o->len += n;
}

#define OB_LIT(o, lit) ob_put((o), (lit), sizeof(lit) - 1)

static inline void ob_putc(struct ob *o, char c)
{
	if (!ob_need(o, 2))
		return;
	o->p[o->len++] = c;
}

static void ob_reset(struct ob *o, size_t limit)
{
	o->len = 0;
	o->limit = limit;
	o->oom = false;
}

static void ob_free(struct ob *o)
{
	free(o->p);
	memset(o, 0, sizeof *o);
}

/* ---- global state ----------------------------------------------------- */

static const char *const level_names[5] = {"debug", "info", "warning", "error", "critical"};

/* `", "level": "<level>", "service": "<service>", "logger": ` per level. */
#define DEFAULT_PREFIX(lv) "\", \"level\": \"" lv "\", \"service\": \"scheduler\", \"logger\": "

/* Writer-preferring where glibc offers it: with the default reader
 * preference, threads that log all the time could starve log_set_sink. No
 * thread takes the read lock twice (the depth guard), so this cannot
 * deadlock. */
#ifdef PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
#define SINK_LOCK_INITIALIZER PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
#else
#define SINK_LOCK_INITIALIZER PTHREAD_RWLOCK_INITIALIZER
#endif

static struct {
	atomic_int level;
	int fd;
	log_format format;
	bool color;
	char *service; /* owned; NULL means "scheduler" */
	char prefix[5][PREFIX_CAP];
	size_t prefix_len[5];
	bool prefix_built;
	pthread_mutex_t write_mu;
	pthread_rwlock_t sink_lock;
	_Atomic(log_sink_fn) sink_fn;
	void *sink_ctx; /* guarded by sink_lock */
} g = {
        .level = LOG_INFO,
        .fd = 1,
        .format = LOG_FORMAT_JSON,
        .write_mu = PTHREAD_MUTEX_INITIALIZER,
        .sink_lock = SINK_LOCK_INITIALIZER,
};

static const char *const default_prefix[5] = {
        DEFAULT_PREFIX("debug"), DEFAULT_PREFIX("info"),     DEFAULT_PREFIX("warning"),
        DEFAULT_PREFIX("error"), DEFAULT_PREFIX("critical"),
};

static inline int level_index(log_level level)
{
	if (level < LOG_INFO)
		return 0;
	if (level < LOG_WARNING)
		return 1;
	if (level < LOG_ERROR)
		return 2;
	if (level < LOG_CRITICAL)
		return 3;
	return 4;
}

/* ---- per-thread state ------------------------------------------------- */

struct bound_field {
	log_field f; /* f.key and string values are owned copies */
	size_t klen;
	bool reserved; /* named like a fixed key: never rendered */
	char *frag;    /* `, "key": value`, redacted if secret */
	size_t fraglen;
};

struct ts_cache {
	int64_t sec;
	const char *tz0, *tz1; /* tzname[] when computed: a tzset() invalidates */
	long tzoff;
	bool valid;
	char head[19]; /* YYYY-MM-DDTHH:MM:SS */
	char off[6];   /* +HH:MM */
};

struct log_thread {
	struct ob out;     /* the line written to the fd */
	struct ob json;    /* the JSON for the sink when the format is console */
	struct ob scratch; /* log_render_* and nested events */
	struct bound_field *bound;
	size_t nbound, capbound;
	struct ts_cache ts;
	int depth;
};

static _Thread_local struct log_thread *tls_state;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void bound_field_free(struct bound_field *b)
{
	if (b->f.type == LOG_T_STR || b->f.type == LOG_T_RAW)
		free((char *)b->f.v.s);
	else if (b->f.type == LOG_T_STRN)
		free((char *)b->f.v.sn.p);
	free((char *)b->f.key);
	free(b->frag);
}

static void thread_free(void *arg)
{
	struct log_thread *st = arg;
	if (!st)
		return;
	for (size_t i = 0; i < st->nbound; i++)
		bound_field_free(&st->bound[i]);
	free(st->bound);
	ob_free(&st->out);
	ob_free(&st->json);
	ob_free(&st->scratch);
	free(st);
	if (tls_state == st)
		tls_state = NULL;
}

static void tls_key_create(void)
{
	pthread_key_create(&tls_key, thread_free);
}

static struct log_thread *thread_get(void)
{
	if (tls_state)
		return tls_state;
	pthread_once(&tls_once, tls_key_create);
	struct log_thread *st = calloc(1, sizeof *st);
	if (!st)
		return NULL;
	pthread_setspecific(tls_key, st);
	tls_state = st;
	return st;
}

/* ---- string escaping -------------------------------------------------- */

enum esc_mode { ESC_JSON, ESC_REPR, ESC_PLAIN };

#define X16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v

/* Non-zero for the bytes the escaper must look at: NUL (the end), ASCII
 * that needs escaping in the mode, and every byte >= 0x80 (UTF-8 check).
 * JSON: control characters, 0x7f, " and \. REPR (console, quoted): the same
 * with ' for ". PLAIN (console, bare words): control characters and 0x7f. */
static const unsigned char esc_tab[3][256] = {
        [ESC_JSON] = {X16(1), X16(1), ['"'] = 1, ['\\'] = 1, [0x7f] = 1, X16(1), X16(1), X16(1),
                      X16(1), X16(1), X16(1), X16(1), X16(1)},
        [ESC_REPR] = {X16(1), X16(1), ['\''] = 1, ['\\'] = 1, [0x7f] = 1, X16(1), X16(1), X16(1),
                      X16(1), X16(1), X16(1), X16(1), X16(1)},
        [ESC_PLAIN] = {X16(1), X16(1), [0x7f] = 1, X16(1), X16(1), X16(1), X16(1), X16(1), X16(1),
                       X16(1), X16(1)},
};

static const char hexdig[] = "0123456789abcdef";

/* Room left for string bytes before the line budget. */
static inline size_t ob_room(const struct ob *o)
{
	return o->limit > o->len ? o->limit - o->len : 0;
}

static void put_trunc(struct ob *o)
{
	OB_LIT(o, TRUNC_MARK);
}

/* Escape of one ASCII byte that esc_tab flagged. */
static void put_ascii_esc(struct ob *o, unsigned char c, enum esc_mode mode)
{
	char e[6] = {'\\', 0, 0, 0, 0, 0};
	size_t n = 2;
	switch (c) {
	case '"':
		e[1] = '"';
		break;
	case '\'':
		e[1] = '\'';
		break;
	case '\\':
		e[1] = '\\';
		break;
	case '\n':
		e[1] = 'n';
		break;
	case '\r':
		e[1] = 'r';
		break;
	case '\t':
		e[1] = 't';
		break;
	case '\b':
		e[1] = mode == ESC_JSON ? 'b' : 0;
		break;
	case '\f':
		e[1] = mode == ESC_JSON ? 'f' : 0;
		break;
	default:
		break;
	}
	if (e[1] == 0 && mode == ESC_JSON) {
		memcpy(e + 1, "u00", 3);
		e[4] = hexdig[c >> 4];
		e[5] = hexdig[c & 15];
		n = 6;
	} else if (e[1] == 0) {
		e[1] = 'x';
		e[2] = hexdig[c >> 4];
		e[3] = hexdig[c & 15];
		n = 4;
	}
	ob_put(o, e, n);
}

/* Append s escaped for mode (no quotes), up to its NUL, or up to end when
 * end is not NULL: a NUL before end is escaped like any control character
 * (*end must be '\0'). False if it was truncated. */
static bool put_esc_n(struct ob *o, const char *s, const char *end, enum esc_mode mode)
{
	const unsigned char *tab = esc_tab[mode];
	const unsigned char *p = (const unsigned char *)s;
	for (;;) {
		const unsigned char *run = p;
		while (!tab[*p])
			p++;
		size_t n = (size_t)(p - run);
		if (n) {
			size_t room = ob_room(o);
			if (n > room) {
				ob_put(o, run, room);
				put_trunc(o);
				return false;
			}
			ob_put(o, run, n);
		}
		unsigned char c = *p;
		if (c == 0 && (end == NULL || p >= (const unsigned char *)end))
			return true;
		if (ob_room(o) < 6) {
			put_trunc(o);
			return false;
		}
		if (c < 0x80) {
			put_ascii_esc(o, c, mode);
			p++;
			continue;
		}
		int len = utf8_seq(p);
		if (len > 0) {
			ob_put(o, p, (size_t)len);
			p += len;
		} else {
			OB_LIT(o, "\xef\xbf\xbd");
			p += -len;
		}
	}
}

static bool put_esc(struct ob *o, const char *s, enum esc_mode mode)
{
	return put_esc_n(o, s, NULL, mode);
}

/* Names (keys, logger, event) are not cut by the line budget, which is for
 * values, but each is capped at NAME_MAX_BYTES of output. */
static void put_name(struct ob *o, const char *s, enum esc_mode mode)
{
	size_t limit = o->limit;
	o->limit = o->len + NAME_MAX_BYTES;
	put_esc(o, s, mode);
	o->limit = limit;
}

/* ---- numbers ---------------------------------------------------------- */

static const char digit_pairs[] = "00010203040506070809101112131415161718192021222324"
                                  "25262728293031323334353637383940414243444546474849"
                                  "50515253545556575859606162636465666768697071727374"
                                  "75767778798081828384858687888990919293949596979899";

/* Number of decimal digits of v (1 for 0). */
static inline size_t u64_ndigits(uint64_t v)
{
	size_t n = 1;
	while (v >= 10000) {
		v /= 10000;
		n += 4;
	}
	return n + (v >= 10) + (v >= 100) + (v >= 1000);
}

/* Writes exactly nd digits of v (zero-padded) ending at end. Digits go
 * straight to their final place: building them elsewhere and copying
 * makes the CPU stall on store forwarding. */
static inline void u64_digits_at(char *end, uint64_t v, size_t nd)
{
	char *p = end;
	while (nd >= 2) {
		unsigned r = (unsigned)(v % 100);
		v /= 100;
		p -= 2;
		memcpy(p, digit_pairs + 2 * r, 2);
		nd -= 2;
	}
	if (nd)
		*--p = (char)('0' + v % 10);
}

/* Decimal form of v at out (room for 20); returns its length. */
static inline size_t fmt_u64(char *out, uint64_t v)
{
	size_t nd = u64_ndigits(v);
	u64_digits_at(out + nd, v, nd);
	return nd;
}

static void put_int(struct ob *o, int64_t v)
{
	if (!ob_need(o, 24))
		return;
	char *d = o->p + o->len;
	uint64_t u = (uint64_t)v;
	if (v < 0) {
		*d++ = '-';
		u = (uint64_t)0 - u;
	}
	d += fmt_u64(d, u);
	o->len = (size_t)(d - o->p);
}

static const double pow10_tab[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Fixed notation of m / 10^k with k fraction digits, at least one ("2.0").
 * out needs 44 bytes (m < 10^17, k <= 24). */
static size_t fmt_fixed(char *out, uint64_t m, int k)
{
	uint64_t ip = m, fp = 0;
	if (k >= 20) {
		ip = 0;
		fp = m;
	} else if (k > 0) {
		uint64_t p = (uint64_t)pow10_tab[k];
		ip = m / p;
		fp = m % p;
	}
	size_t n = fmt_u64(out, ip);
	out[n++] = '.';
	if (k == 0) {
		out[n] = '0';
		return n + 1;
	}
	u64_digits_at(out + n + (size_t)k, fp, (size_t)k);
	return n + (size_t)k;
}

/* Shortest digits that round-trip (%.{15,16,17}e), Python repr layout. */
static size_t fmt_double_slow(char *out, double a)
{
	char e[40];
	/* 15 significant digits always round-trip to a normal double's
	 * shortest form; subnormals have less precision: start at 1. */
	int prec = a < DBL_MIN ? 1 : 15;
	for (; prec < 17; prec++) {
		snprintf(e, sizeof e, "%.*e", prec - 1, a);
		if (strtod(e, NULL) == a)
			break;
	}
	if (prec == 17)
		snprintf(e, sizeof e, "%.16e", a);
	char digits[24];
	size_t nd = 0;
	char *ep = strchr(e, 'e');
	for (char *q = e; q < ep; q++)
		if (*q != '.')
			digits[nd++] = *q;
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	int exp10 = atoi(ep + 1);
	size_t n = 0;
	if (exp10 >= -4 && exp10 < 16) {
		uint64_t m = 0;
		for (size_t i = 0; i < nd; i++)
			m = m * 10 + (uint64_t)(digits[i] - '0');
		int k = (int)nd - 1 - exp10;
		if (k >= 0)
			return fmt_fixed(out, m, k);
		n = fmt_fixed(out, m, 0) - 2;
		for (; k < 0; k++)
			out[n++] = '0';
		memcpy(out + n, ".0", 2);
		return n + 2;
	}
	out[n++] = digits[0];
	if (nd > 1) {
		out[n++] = '.';
		memcpy(out + n, digits + 1, nd - 1);
		n += nd - 1;
	}
	n += (size_t)sprintf(out + n, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
	return n;
}

/*
 * Python repr() of a finite double into out (>= 40 bytes). Fast path: the
 * fewest fraction digits k with m / 10^k == a exactly in double arithmetic
 * (m < 2^53 and 10^k are exact, the division is correctly rounded, so the
 * decimal m·10^-k reads back as a).
 */
static size_t fmt_double(char *out, double d)
{
	size_t n = 0;
	if (signbit(d)) {
		out[n++] = '-';
		d = -d;
	}
	if (d == 0) {
		memcpy(out + n, "0.0", 3);
		return n + 3;
	}
	if (d >= 1e-4 && d < 1e15) {
		for (int k = 0; k <= 19; k++) {
			double t = d * pow10_tab[k];
			if (t >= 9007199254740992.0)
				break;
			double m = (double)(int64_t)(t + 0.5);
			/* cheap filter before the exact test: t is within a few
			 * ulps of m whenever m / 10^k == d */
			if (fabs(t - m) <= t * 1e-12 && m / pow10_tab[k] == d)
				return n + fmt_fixed(out + n, (uint64_t)m, k);
		}
	}
	return n + fmt_double_slow(out + n, d);
}

static void put_dbl(struct ob *o, double d, bool json)
{
	if (isfinite(d)) {
		if (ob_need(o, 48))
			o->len += fmt_double(o->p + o->len, d);
	} else if (json) {
		OB_LIT(o, "null");
	} else if (isnan(d)) {
		OB_LIT(o, "nan");
	} else if (d > 0) {
		OB_LIT(o, "inf");
	} else {
		OB_LIT(o, "-inf");
	}
}

/* ---- timestamps ------------------------------------------------------- */

static void put2(char *p, int v)
{
	memcpy(p, digit_pairs + 2 * (v % 100), 2);
}

static void ts_compute(struct ts_cache *c, int64_t sec)
{
	time_t t = (time_t)sec;
	struct tm tm;
	if (!localtime_r(&t, &tm)) {
		memset(&tm, 0, sizeof tm);
		tm.tm_mday = 1;
		tm.tm_year = 70;
	}
	int year = tm.tm_year + 1900;
	if (year < 0)
		year = 0;
	if (year > 9999)
		year = 9999;
	put2(c->head, year / 100);
	put2(c->head + 2, year % 100);
	c->head[4] = '-';
	put2(c->head + 5, tm.tm_mon + 1);
	c->head[7] = '-';
	put2(c->head + 8, tm.tm_mday);
	c->head[10] = 'T';
	put2(c->head + 11, tm.tm_hour);
	c->head[13] = ':';
	put2(c->head + 14, tm.tm_min);
	c->head[16] = ':';
	put2(c->head + 17, tm.tm_sec);
	long off = tm.tm_gmtoff;
	c->off[0] = off < 0 ? '-' : '+';
	if (off < 0)
		off = -off;
	off /= 60; /* historical second offsets (LMT) are cut to minutes */
	put2(c->off + 1, (int)(off / 60 % 100));
	c->off[3] = ':';
	put2(c->off + 4, (int)(off % 60));
	c->sec = sec;
	c->tz0 = tzname[0];
	c->tz1 = tzname[1];
	c->tzoff = timezone;
	c->valid = true;
}

/* Writes the 32-byte timestamp (no NUL) into out. */
static void ts_render(struct ts_cache *c, int64_t usec, char *out)
{
	int64_t sec = usec / 1000000;
	int64_t frac = usec % 1000000;
	if (frac < 0) {
		frac += 1000000;
		sec--;
	}
	if (!c->valid || c->sec != sec || c->tz0 != tzname[0] || c->tz1 != tzname[1] ||
	    c->tzoff != timezone)
		ts_compute(c, sec);
	memcpy(out, c->head, 19);
	out[19] = '.';
	put2(out + 20, (int)(frac / 10000));
	put2(out + 22, (int)(frac / 100 % 100));
	put2(out + 24, (int)(frac % 100));
	memcpy(out + 26, c->off, 6);
}

#define TS_LEN 32

/* ---- keys ------------------------------------------------------------- */

static inline char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

/* s starts with the lower-case word, ignoring case. */
static bool match_ci(const char *s, const char *word)
{
	for (; *word; s++, word++)
		if (lower(*s) != *word)
			return false;
	return true;
}

/* key[i - back] starts word (ignoring case). */
static bool word_at(const char *key, size_t i, size_t back, const char *word)
{
	return i >= back && match_ci(key + i - back, word);
}

/* Looks for the secret words around their rare letter (see str_class). */
static bool key_has_secret_word(const char *key)
{
	for (size_t i = 0; key[i]; i++) {
		if (!(str_class[(unsigned char)key[i]] & CL_SECRET))
			continue;
		switch (lower(key[i])) {
		case 'w':
			if (word_at(key, i, 4, "passw") &&
			    (match_ci(key + i + 1, "ord") || match_ci(key + i + 1, "d")))
				return true;
			break;
		case 'c':
			if (word_at(key, i, 2, "secret"))
				return true;
			break;
		case 'k':
			if (word_at(key, i, 2, "token") || word_at(key, i, 8, "private_key") ||
			    word_at(key, i, 4, "api_key"))
				return true;
			break;
		case 'z':
			if (word_at(key, i, 7, "authorization"))
				return true;
			break;
		default:
			break;
		}
	}
	return false;
}

/* One of the five fixed keys, which fields cannot repeat. */
static bool key_is_reserved(const char *k)
{
	switch (k[0]) {
	case 't':
		return strcmp(k, "timestamp") == 0;
	case 'l':
		return strcmp(k, "level") == 0 || strcmp(k, "logger") == 0;
	case 's':
		return strcmp(k, "service") == 0;
	case 'e':
		return strcmp(k, "event") == 0;
	default:
		return false;
	}
}

/* ---- values ----------------------------------------------------------- */

static void put_json_value(struct ob *o, const log_field *f, bool secret)
{
	if (secret) {
		OB_LIT(o, "\"***\"");
		return;
	}
	switch (f->type) {
	case LOG_T_STR:
		if (!f->v.s) {
			OB_LIT(o, "null");
			return;
		}
		ob_putc(o, '"');
		put_esc(o, f->v.s, ESC_JSON);
		ob_putc(o, '"');
		return;
	case LOG_T_STRN:
		if (!f->v.sn.p) {
			OB_LIT(o, "null");
			return;
		}
		ob_putc(o, '"');
		put_esc_n(o, f->v.sn.p, f->v.sn.p + f->v.sn.n, ESC_JSON);
		ob_putc(o, '"');
		return;
	case LOG_T_INT:
		put_int(o, f->v.i);
		return;
	case LOG_T_DBL:
		put_dbl(o, f->v.d, true);
		return;
	case LOG_T_BOOL:
		if (f->v.b)
			OB_LIT(o, "true");
		else
			OB_LIT(o, "false");
		return;
	case LOG_T_RAW: {
		size_t n = f->v.s ? strlen(f->v.s) : 0;
		if (n == 0)
			OB_LIT(o, "null");
		else if (n > ob_room(o))
			OB_LIT(o, "\"" TRUNC_MARK "\"");
		else
			ob_put(o, f->v.s, n);
		return;
	}
	default:
		OB_LIT(o, "null");
		return;
	}
}

/* `, "key": value` */
static void put_json_field(struct ob *o, const log_field *f, bool secret)
{
	OB_LIT(o, ", \"");
	put_name(o, f->key, ESC_JSON);
	OB_LIT(o, "\": ");
	put_json_value(o, f, secret);
}

/* ---- bound context ---------------------------------------------------- */

/* Copies f's strings into b and renders its fragment. 0 or -1. */
static int bound_field_set(struct bound_field *b, log_field f)
{
	struct bound_field nb = {.f = f};
	nb.f.key = strdup(f.key);
	if ((f.type == LOG_T_STR || f.type == LOG_T_RAW) && f.v.s) {
		nb.f.v.s = strdup(f.v.s);
		if (!nb.f.v.s)
			goto fail;
	} else if (f.type == LOG_T_STRN && f.v.sn.p) {
		char *copy = malloc(f.v.sn.n + 1);
		nb.f.v.sn.p = copy;
		if (!copy)
			goto fail;
		memcpy(copy, f.v.sn.p, f.v.sn.n + 1);
	}
	if (!nb.f.key)
		goto fail;
	nb.klen = strlen(nb.f.key);
	nb.reserved = key_is_reserved(nb.f.key);
	struct ob o = {0};
	ob_reset(&o, BOUND_BUDGET);
	put_json_field(&o, &nb.f, log_key_is_secret(nb.f.key));
	if (o.oom || !o.p)
		goto fail_ob;
	o.p[o.len] = '\0';
	nb.frag = o.p;
	nb.fraglen = o.len;
	*b = nb;
	return 0;
fail_ob:
	ob_free(&o);
fail:
	bound_field_free(&nb);
	return -1;
}

static struct bound_field *bound_find(struct log_thread *st, const char *key)
{
	for (size_t i = 0; i < st->nbound; i++)
		if (strcmp(st->bound[i].f.key, key) == 0)
			return &st->bound[i];
	return NULL;
}

void log_bind(log_field field)
{
	struct log_thread *st = thread_get();
	if (!st || !field.key || field.type == LOG_T_END)
		return;
	struct bound_field nb;
	if (bound_field_set(&nb, field) != 0)
		return;
	struct bound_field *old = bound_find(st, field.key);
	if (old) {
		bound_field_free(old);
		*old = nb;
		return;
	}
	if (st->nbound == st->capbound) {
		size_t ncap = st->capbound ? st->capbound * 2 : 8;
		struct bound_field *nbv = realloc(st->bound, ncap * sizeof *nbv);
		if (!nbv) {
			bound_field_free(&nb);
			return;
		}
		st->bound = nbv;
		st->capbound = ncap;
	}
	st->bound[st->nbound++] = nb;
}

void log_unbind(const char *key)
{
	struct log_thread *st = tls_state;
	if (!st || !key)
		return;
	struct bound_field *b = bound_find(st, key);
	if (!b)
		return;
	bound_field_free(b);
	size_t i = (size_t)(b - st->bound);
	memmove(b, b + 1, (st->nbound - i - 1) * sizeof *b);
	st->nbound--;
}

void log_clear_context(void)
{
	struct log_thread *st = tls_state;
	if (!st)
		return;
	for (size_t i = 0; i < st->nbound; i++)
		bound_field_free(&st->bound[i]);
	free(st->bound);
	st->bound = NULL;
	st->nbound = st->capbound = 0;
}

const char *log_bound_str(const char *key)
{
	struct log_thread *st = tls_state;
	if (!st || !key)
		return NULL;
	struct bound_field *b = bound_find(st, key);
	if (!b || b->f.type != LOG_T_STR)
		return NULL;
	return b->f.v.s;
}

/* True if a call field repeats the bound key (the call field wins). */
static bool bound_overridden(const struct bound_field *b, const log_field *f, size_t n)
{
	const char *k = b->f.key;
	for (size_t i = 0; i < n; i++)
		if (f[i].key && f[i].key[0] == k[0] && strcmp(f[i].key, k) == 0)
			return true;
	return false;
}

/* ---- the record for the sink ------------------------------------------ */

struct meta {
	const char *cid;
	const char *task;
	int64_t run_id;
	bool has_cid, has_task, has_run_id;
};

static void meta_take(struct meta *m, const log_field *f)
{
	const char *k = f->key;
	if (k[0] == 'c' && !m->has_cid && strcmp(k, "correlation_id") == 0) {
		m->has_cid = true;
		m->cid = f->type == LOG_T_STR ? f->v.s : NULL;
	} else if (k[0] == 't' && !m->has_task && strcmp(k, "task") == 0) {
		m->has_task = true;
		m->task = f->type == LOG_T_STR ? f->v.s : NULL;
	} else if (k[0] == 'r' && !m->has_run_id && strcmp(k, "run_id") == 0) {
		m->has_run_id = true;
		if (f->type == LOG_T_INT)
			m->run_id = f->v.i;
		else if (f->type == LOG_T_STR && f->v.s)
			m->run_id = strtoll(f->v.s, NULL, 10);
	}
}

/* Call fields first (they win), then the bound context. */
static void meta_collect(struct meta *m, struct log_thread *st, const log_field *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (f[i].key && f[i].type != LOG_T_END)
			meta_take(m, &f[i]);
	for (size_t i = 0; st && i < st->nbound; i++)
		meta_take(m, &st->bound[i].f);
}

/* ---- JSON rendering --------------------------------------------------- */

/* Length of s and the union of str_class over its bytes. */
static inline size_t str_scan(const char *s, unsigned *cls)
{
	size_t n = strlen(s);
	*cls = log_classify(s, n);
	return n;
}

/* A JSON string value: memcpy when nothing needs escaping. */
static void put_json_str(struct ob *o, const char *s)
{
	unsigned cls;
	size_t n = str_scan(s, &cls);
	if (n <= ob_room(o) && !(cls & CL_ESC)) {
		if (!ob_need(o, n + 3))
			return;
		char *d = o->p + o->len;
		d[0] = '"';
		copy_bytes(d + 1, s, n);
		d[n + 1] = '"';
		o->len += n + 2;
		return;
	}
	ob_putc(o, '"');
	put_esc(o, s, ESC_JSON);
	ob_putc(o, '"');
}

/* A JSON string that is a name (logger, event): see put_name. */
static void put_json_name(struct ob *o, const char *s)
{
	size_t limit = o->limit;
	o->limit = o->len + NAME_MAX_BYTES;
	put_json_str(o, s);
	o->limit = limit;
}

/* What the renderer needs to know about a call field's key, from one pass. */
struct keyinfo {
	size_t len;
	bool clean; /* no byte needs escaping */
	bool skip;  /* no key, or one of the fixed keys */
	bool secret;
};

/* One of the five fixed keys. A branch-free test on (length, first byte)
 * first: the switch on the length alone mispredicts for every other key. */
static bool key_is_reserved_n(const char *k, size_t len)
{
	unsigned lf = (unsigned)(len < 16 ? len : 15) << 8 | (unsigned char)k[0];
	bool cand = (lf == (9u << 8 | 't')) | (lf == (5u << 8 | 'l')) | (lf == (5u << 8 | 'e')) |
	            (lf == (7u << 8 | 's')) | (lf == (6u << 8 | 'l'));
	if (!cand)
		return false;
	return key_is_reserved(k);
}

static void key_info(const log_field *f, struct keyinfo *ki)
{
	if (!f->key || f->type == LOG_T_END) {
		*ki = (struct keyinfo){.skip = true};
		return;
	}
	unsigned cls;
	size_t n = str_scan(f->key, &cls);
	ki->len = n;
	ki->clean = !(cls & CL_ESC);
	ki->skip = key_is_reserved_n(f->key, n);
	ki->secret = (cls & CL_SECRET) && key_has_secret_word(f->key);
}

bool log_key_is_secret(const char *key)
{
	return key && key_has_secret_word(key);
}

/* `, "key": ` */
static void put_json_key(struct ob *o, const char *k, const struct keyinfo *ki)
{
	if (ki->clean && ki->len <= NAME_MAX_BYTES) {
		if (!ob_need(o, ki->len + 8))
			return;
		char *d = o->p + o->len;
		memcpy(d, ", \"", 3);
		copy_bytes(d + 3, k, ki->len);
		memcpy(d + 3 + ki->len, "\": ", 3);
		o->len += ki->len + 6;
		return;
	}
	OB_LIT(o, ", \"");
	put_name(o, k, ESC_JSON);
	OB_LIT(o, "\": ");
}

/* A 64-bit filter of the call keys by (length, first byte): a bound key
 * whose bit is clear is not repeated by the call, without a loop. */
static inline uint64_t key_bit(size_t len, const char *k)
{
	return 1ull << ((len * 7 + (unsigned char)k[0]) & 63);
}

static bool bound_overridden_ki(const struct bound_field *b, const log_field *f,
                                const struct keyinfo *ki, size_t n, uint64_t filter)
{
	if (!(filter & key_bit(b->klen, b->f.key)))
		return false;
	for (size_t i = 0; i < n; i++)
		if (ki[i].len == b->klen && !ki[i].skip && memcmp(f[i].key, b->f.key, b->klen) == 0)
			return true;
	return false;
}

static void render_json_fields(struct ob *o, struct log_thread *st, const log_field *f, size_t n,
                               struct keyinfo *ki)
{
	uint64_t filter = 0;
	for (size_t i = 0; i < n; i++) {
		key_info(&f[i], &ki[i]);
		if (!ki[i].skip)
			filter |= key_bit(ki[i].len, f[i].key);
	}
	for (size_t i = 0; st && i < st->nbound; i++) {
		const struct bound_field *b = &st->bound[i];
		if (!b->reserved && !bound_overridden_ki(b, f, ki, n, filter))
			ob_put(o, b->frag, b->fraglen);
	}
	for (size_t i = 0; i < n; i++) {
		if (ki[i].skip)
			continue;
		put_json_key(o, f[i].key, &ki[i]);
		if (!ki[i].secret && f[i].type == LOG_T_STR && f[i].v.s)
			put_json_str(o, f[i].v.s);
		else
			put_json_value(o, &f[i], ki[i].secret);
	}
}

static void render_json(struct ob *o, struct log_thread *st, const char *ts, log_level level,
                        const char *logger, const char *event, const log_field *f, size_t n)
{
	int li = level_index(level);
	const char *prefix = g.prefix_built ? g.prefix[li] : default_prefix[li];
	size_t plen = g.prefix_built ? g.prefix_len[li] : strlen(prefix);

	OB_LIT(o, "{\"timestamp\": \"");
	ob_put(o, ts, TS_LEN);
	ob_put(o, prefix, plen);
	put_json_name(o, logger ? logger : "");
	OB_LIT(o, ", \"event\": ");
	put_json_name(o, event ? event : "");

	struct keyinfo stack[STACK_FIELDS];
	struct keyinfo *ki = n <= STACK_FIELDS ? stack : malloc(n * sizeof *ki);
	if (!ki) {
		o->oom = true;
		return;
	}
	render_json_fields(o, st, f, n, ki);
	if (ki != stack)
		free(ki);
	ob_putc(o, '}');
}

/* ---- console rendering ------------------------------------------------ */

#define C_RESET  "\x1b[0m"
#define C_DIM    "\x1b[2m"
#define C_BRIGHT "\x1b[1m"
#define C_KEY    "\x1b[36m"
#define C_VAL    "\x1b[35m"
#define C_LOGGER "\x1b[34m"

static const char *const level_color[5] = {"\x1b[32m", "\x1b[32m", "\x1b[33m", "\x1b[31m",
                                           "\x1b[31;1m"};

static void put_color(struct ob *o, bool color, const char *code)
{
	if (color)
		ob_put(o, code, strlen(code));
}

static void put_padded(struct ob *o, const char *s, size_t width)
{
	size_t start = o->len;
	put_name(o, s, ESC_PLAIN);
	for (size_t w = o->len - start; w < width; w++)
		ob_putc(o, ' ');
}

/* Bare if it is one plain word, else quoted the way Python's repr() does.
 * n bytes (NUL bytes among them are quoted and escaped). */
static void put_console_str_n(struct ob *o, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	bool quote = n == 0;
	for (; p < end && !quote; p++)
		quote = *p <= ' ' || *p == 0x7f || *p == '\'' || *p == '"';
	if (!quote) {
		put_esc_n(o, s, s + n, ESC_PLAIN);
		return;
	}
	ob_putc(o, '\'');
	put_esc_n(o, s, s + n, ESC_REPR);
	ob_putc(o, '\'');
}

static void put_console_str(struct ob *o, const char *s)
{
	put_console_str_n(o, s, strlen(s));
}

static void put_console_value(struct ob *o, const log_field *f, bool secret)
{
	if (secret) {
		OB_LIT(o, "***");
		return;
	}
	switch (f->type) {
	case LOG_T_STR:
		if (f->v.s)
			put_console_str(o, f->v.s);
		else
			OB_LIT(o, "null");
		return;
	case LOG_T_STRN:
		if (f->v.sn.p)
			put_console_str_n(o, f->v.sn.p, f->v.sn.n);
		else
			OB_LIT(o, "null");
		return;
	case LOG_T_DBL:
		put_dbl(o, f->v.d, false);
		return;
	default:
		put_json_value(o, f, false);
		return;
	}
}

static void put_console_field(struct ob *o, const log_field *f, bool secret, bool color)
{
	ob_putc(o, ' ');
	put_color(o, color, C_KEY);
	put_name(o, f->key, ESC_PLAIN);
	put_color(o, color, C_RESET);
	ob_putc(o, '=');
	put_color(o, color, C_VAL);
	put_console_value(o, f, secret);
	put_color(o, color, C_RESET);
}

static void render_console(struct ob *o, struct log_thread *st, const char *ts, log_level level,
                           const char *logger, const char *event, const log_field *f, size_t n,
                           bool color)
{
	int li = level_index(level);
	put_color(o, color, C_DIM);
	ob_put(o, ts, TS_LEN);
	put_color(o, color, C_RESET);
	OB_LIT(o, " [");
	put_color(o, color, level_color[li]);
	put_padded(o, level_names[li], 9);
	put_color(o, color, C_RESET);
	OB_LIT(o, "] ");
	put_color(o, color, C_BRIGHT);
	put_padded(o, event ? event : "", 30);
	put_color(o, color, C_RESET);
	if (logger && *logger) {
		OB_LIT(o, " [");
		put_color(o, color, C_LOGGER);
		put_name(o, logger, ESC_PLAIN);
		put_color(o, color, C_RESET);
		ob_putc(o, ']');
	}
	for (size_t i = 0; st && i < st->nbound; i++) {
		const struct bound_field *b = &st->bound[i];
		if (!b->reserved && !bound_overridden(b, f, n))
			put_console_field(o, &b->f, log_key_is_secret(b->f.key), color);
	}
	for (size_t i = 0; i < n; i++) {
		if (!f[i].key || f[i].type == LOG_T_END || key_is_reserved(f[i].key))
			continue;
		put_console_field(o, &f[i], log_key_is_secret(f[i].key), color);
	}
	while (o->len > 0 && o->p[o->len - 1] == ' ')
		o->len--;
}

/* ---- output ----------------------------------------------------------- */

/*
 * One logical write of the whole line under write_mu. EINTR and partial
 * writes loop. A full non-blocking fd (EAGAIN) drops the line if nothing
 * was written yet; once part of it is out, the rest gets PARTIAL_WAIT_MS of
 * poll(2) so the reader does not see two lines glued together, then it is
 * dropped too. Any other error (EPIPE, EBADF, ...) drops the line.
 */
#define PARTIAL_WAIT_MS 100

static void write_line(int fd, const char *p, size_t n)
{
	bool started = false;
	pthread_mutex_lock(&g.write_mu);
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			started = true;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && started) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			if (poll(&pfd, 1, PARTIAL_WAIT_MS) > 0 && (pfd.revents & POLLOUT))
				continue;
		}
		break;
	}
	pthread_mutex_unlock(&g.write_mu);
}

static void sink_call(struct log_thread *st, int64_t usec, const char *ts, log_level level,
                      const char *logger, const char *event, const log_field *f, size_t n,
                      const struct ob *json)
{
	pthread_rwlock_rdlock(&g.sink_lock);
	log_sink_fn fn = atomic_load(&g.sink_fn);
	if (fn) {
		struct meta m = {0};
		char tsz[TS_LEN + 1];
		memcpy(tsz, ts, TS_LEN);
		tsz[TS_LEN] = '\0';
		meta_collect(&m, st, f, n);
		log_record rec = {
		        .unix_time = (double)usec / 1e6,
		        .timestamp = tsz,
		        .level = level,
		        .logger = logger ? logger : "",
		        .event = event ? event : "",
		        .correlation_id = m.cid,
		        .task = m.task,
		        .run_id = m.run_id,
		        .json = json->p,
		        .json_len = json->len,
		};
		st->depth++;
		fn(g.sink_ctx, &rec);
		st->depth--;
	}
	pthread_rwlock_unlock(&g.sink_lock);
}

/* Render (into scratch buffers when nested in a sink), write, hand to the sink. */
static void emit(struct log_thread *st, log_level level, const char *logger, const char *event,
                 unsigned flags, const log_field *f, size_t n)
{
	int64_t usec = clock_wall_usec();
	char ts[TS_LEN];
	ts_render(&st->ts, usec, ts);
	bool nested = st->depth > 0;
	bool want_sink = !nested && !(flags & LOG_NO_SINK) &&
	                 atomic_load_explicit(&g.sink_fn, memory_order_acquire);
	struct ob *out = nested ? &st->scratch : &st->out;
	struct ob *json = out;

	ob_reset(out, LINE_BUDGET);
	if (g.format == LOG_FORMAT_CONSOLE) {
		render_console(out, st, ts, level, logger, event, f, n, g.color);
		if (want_sink) {
			json = &st->json;
			ob_reset(json, LINE_BUDGET);
			render_json(json, st, ts, level, logger, event, f, n);
		}
	} else {
		render_json(out, st, ts, level, logger, event, f, n);
	}
	ob_putc(out, '\n');
	if (!out->oom)
		write_line(g.fd, out->p, out->len);
	if (!want_sink || json->oom)
		return;
	if (json == out)
		out->len--; /* without the newline */
	json->p[json->len] = '\0';
	sink_call(st, usec, ts, level, logger, event, f, n, json);
}

void log_emitv_flags(log_level level, const char *logger, const char *event, unsigned flags,
                     const log_field *fields, size_t nfields)
{
	if ((int)level < atomic_load_explicit(&g.level, memory_order_relaxed))
		return;
	int saved = errno;
	struct log_thread *st = thread_get();
	if (st)
		emit(st, level, logger, event, flags, fields, nfields);
	errno = saved;
}

void log_emitv(log_level level, const char *logger, const char *event, const log_field *fields,
               size_t nfields)
{
	log_emitv_flags(level, logger, event, 0, fields, nfields);
}

void log_emit(log_level level, const char *logger, const char *event, ...)
{
	if ((int)level < atomic_load_explicit(&g.level, memory_order_relaxed))
		return;
	log_field stack[STACK_FIELDS];
	log_field *f = stack;
	size_t n = 0, cap = STACK_FIELDS;
	va_list ap;
	va_start(ap, event);
	for (;;) {
		/* Member by member: a whole-struct copy makes 16-byte loads that
		 * straddle the caller's separate stores (a store-forwarding
		 * stall per field). */
		log_field x = va_arg(ap, log_field);
		log_type type = x.type;
		if (type == LOG_T_END)
			break;
		if (n == cap) {
			log_field *nf = malloc(2 * cap * sizeof *nf);
			if (!nf)
				break;
			memcpy(nf, f, n * sizeof *nf);
			if (f != stack)
				free(f);
			f = nf;
			cap *= 2;
		}
		f[n].key = x.key;
		f[n].type = type;
		memcpy(&f[n].v, &x.v, sizeof x.v);
		n++;
	}
	va_end(ap);
	log_emitv(level, logger, event, n ? f : NULL, n);
	if (f != stack)
		free(f);
}

/* ---- configuration ---------------------------------------------------- */

void log_options_default(log_options *opts)
{
	opts->service = "scheduler";
	opts->level = LOG_INFO;
	opts->format = LOG_FORMAT_JSON;
	opts->fd = 1;
	opts->color = -1;
}

int log_options_from_env(log_options *opts, const char **bad_var)
{
	int rc = 0;
	const char *v = getenv("LOG_LEVEL");
	if (v && *v && log_level_parse(v, &opts->level) != 0) {
		rc = -1;
		if (bad_var)
			*bad_var = "LOG_LEVEL";
	}
	v = getenv("LOG_FORMAT");
	if (v && *v && log_format_parse(v, &opts->format) != 0) {
		if (bad_var && rc == 0)
			*bad_var = "LOG_FORMAT";
		rc = -1;
	}
	v = getenv("SERVICE_NAME");
	if (v && *v) {
		if (strlen(v) > SERVICE_MAX) {
			if (bad_var && rc == 0)
				*bad_var = "SERVICE_NAME";
			rc = -1;
		} else {
			opts->service = v;
		}
	}
	return rc;
}

static void prefixes_build(const char *service)
{
	for (int i = 0; i < 5; i++) {
		struct ob o = {.p = g.prefix[i], .cap = PREFIX_CAP, .limit = PREFIX_CAP - 32};
		OB_LIT(&o, "\", \"level\": \"");
		ob_put(&o, level_names[i], strlen(level_names[i]));
		OB_LIT(&o, "\", \"service\": \"");
		put_esc(&o, service, ESC_JSON);
		OB_LIT(&o, "\", \"logger\": ");
		g.prefix_len[i] = o.len;
	}
	g.prefix_built = true;
}

int log_init(const log_options *opts)
{
	log_options d;
	if (!opts) {
		log_options_default(&d);
		opts = &d;
	}
	const char *svc = opts->service && *opts->service ? opts->service : "scheduler";
	if (opts->fd < 0 || strlen(svc) > SERVICE_MAX)
		return -1;
	char *copy = strdup(svc);
	if (!copy)
		return -1;
	tzset();
	free(g.service);
	g.service = copy;
	prefixes_build(copy);
	g.fd = opts->fd;
	g.format = opts->format;
	g.color = opts->color > 0 || (opts->color < 0 && isatty(opts->fd));
	atomic_store(&g.level, (int)opts->level);
	return 0;
}

void log_shutdown(void)
{
	log_set_sink(NULL, NULL);
	free(g.service);
	g.service = NULL;
	g.prefix_built = false;
	g.fd = 1;
	g.format = LOG_FORMAT_JSON;
	g.color = false;
	atomic_store(&g.level, LOG_INFO);
	struct log_thread *st = tls_state;
	if (st) {
		pthread_setspecific(tls_key, NULL);
		thread_free(st);
	}
}

void log_set_sink(log_sink_fn fn, void *ctx)
{
	pthread_rwlock_wrlock(&g.sink_lock);
	g.sink_ctx = ctx;
	atomic_store(&g.sink_fn, fn);
	pthread_rwlock_unlock(&g.sink_lock);
}

bool log_enabled(log_level level)
{
	return (int)level >= atomic_load_explicit(&g.level, memory_order_relaxed);
}

log_level log_get_level(void)
{
	return (log_level)atomic_load(&g.level);
}

const char *log_level_name(log_level level)
{
	return level_names[level_index(level)];
}

int log_level_parse(const char *name, log_level *out)
{
	static const struct {
		const char *name;
		log_level level;
	} tab[] = {
	        {"debug", LOG_DEBUG},  {"info", LOG_INFO},   {"warning", LOG_WARNING},
	        {"warn", LOG_WARNING}, {"error", LOG_ERROR}, {"critical", LOG_CRITICAL},
	};
	if (!name)
		return -1;
	for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
		if (strcasecmp(name, tab[i].name) == 0) {
			*out = tab[i].level;
			return 0;
		}
	}
	return -1;
}

int log_format_parse(const char *name, log_format *out)
{
	if (name && strcasecmp(name, "json") == 0) {
		*out = LOG_FORMAT_JSON;
		return 0;
	}
	if (name && strcasecmp(name, "console") == 0) {
		*out = LOG_FORMAT_CONSOLE;
		return 0;
	}
	return -1;
}

/* ---- rendering for tests and the benchmark ---------------------------- */

/* Copies o into buf like snprintf; returns o's length. */
static size_t copy_out(char *buf, size_t cap, const struct ob *o)
{
	if (cap > 0) {
		size_t n = o->len < cap - 1 ? o->len : cap - 1;
		if (n)
			memcpy(buf, o->p, n);
		buf[n] = '\0';
	}
	return o->len;
}

size_t log_render_json(char *buf, size_t cap, int64_t unix_usec, log_level level,
                       const char *logger, const char *event, const log_field *fields,
                       size_t nfields)
{
	struct log_thread *st = thread_get();
	if (!st)
		return 0;
	char ts[TS_LEN];
	ts_render(&st->ts, unix_usec, ts);
	ob_reset(&st->scratch, LINE_BUDGET);
	render_json(&st->scratch, st, ts, level, logger, event, fields, nfields);
	return st->scratch.oom ? 0 : copy_out(buf, cap, &st->scratch);
}

size_t log_render_console(char *buf, size_t cap, int64_t unix_usec, log_level level,
                          const char *logger, const char *event, const log_field *fields,
                          size_t nfields, bool color)
{
	struct log_thread *st = thread_get();
	if (!st)
		return 0;
	char ts[TS_LEN];
	ts_render(&st->ts, unix_usec, ts);
	ob_reset(&st->scratch, LINE_BUDGET);
	render_console(&st->scratch, st, ts, level, logger, event, fields, nfields, color);
	return st->scratch.oom ? 0 : copy_out(buf, cap, &st->scratch);
}

size_t log_format_timestamp(char *buf, size_t cap, int64_t unix_usec)
{
	struct ts_cache local = {0};
	struct log_thread *st = thread_get();
	char ts[TS_LEN];
	ts_render(st ? &st->ts : &local, unix_usec, ts);
	struct ob o = {.p = ts, .len = TS_LEN};
	return copy_out(buf, cap, &o);
}
