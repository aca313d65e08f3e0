/*
 * log_classify — private to log.c (and tests/unit/test_log.c, which builds
 * both paths on purpose and checks they agree): the class of a string's
 * bytes in one pass, the union over its bytes of str_class.
 *
 * log_classify is the SSE2 path on x86-64; the scalar path is the
 * reference and what every other target, or -DLOG_CLASSIFY_SCALAR,
 * compiles. bench_log times both on its event's strings and bench_log_scalar
 * is the whole log with the scalar path (README, "Performance"): if the
 * SSE2 path stops paying, delete it and log_classify_sse2's test goes too.
 * Pure, thread-safe; the SSE2 path never reads outside s[0..n).
 */
#ifndef FK_LOG_CLASSIFY_H
#define FK_LOG_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define CL_X16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
/*
 * One pass over a key or a string value finds its length and what it needs:
 * CL_ESC, a byte that needs a JSON escape or a UTF-8 check; CL_SECRET, one of
 * w, k, z, c in either case. Every secret word has one of those (passWord,
 * passWd, seCret, toKen, authoriZation, private_Key, api_Key), so a key
 * without any cannot be secret and skips the word search.
 */
#define CL_ESC    1u
#define CL_SECRET 2u
static const unsigned char str_class[256] = {
        CL_X16(CL_ESC),    CL_X16(CL_ESC),    ['"'] = CL_ESC,    ['\\'] = CL_ESC,
        ['C'] = CL_SECRET, ['K'] = CL_SECRET, ['W'] = CL_SECRET, ['Z'] = CL_SECRET,
        ['c'] = CL_SECRET, ['k'] = CL_SECRET, ['w'] = CL_SECRET, ['z'] = CL_SECRET,
        [0x7f] = CL_ESC,   CL_X16(CL_ESC),    CL_X16(CL_ESC),    CL_X16(CL_ESC),
        CL_X16(CL_ESC),    CL_X16(CL_ESC),    CL_X16(CL_ESC),    CL_X16(CL_ESC),
        CL_X16(CL_ESC),
};
#undef CL_X16

#if defined(__SSE2__)
/*
 * str_class for a whole string at once, with SSE2 and no loop for the
 * short strings that keys and most values are: the n bytes are loaded as
 * overlapping pieces that never leave the string (bytes seen twice do not
 * change an "any byte" test), the rest of the vector is 'A'. Signed bytes:
 * x < 0x20 holds for the control characters and for every byte >= 0x80.
 */
static inline unsigned class_vec(__m128i x)
{
	const __m128i sp = _mm_set1_epi8(0x20);
	__m128i esc = _mm_or_si128(
	        _mm_or_si128(_mm_cmplt_epi8(x, sp), _mm_cmpeq_epi8(x, _mm_set1_epi8('"'))),
	        _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('\\')),
	                     _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f))));
	__m128i y = _mm_or_si128(x, sp);
	__m128i sec = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(y, _mm_set1_epi8('w')),
	                                        _mm_cmpeq_epi8(y, _mm_set1_epi8('k'))),
	                           _mm_or_si128(_mm_cmpeq_epi8(y, _mm_set1_epi8('z')),
	                                        _mm_cmpeq_epi8(y, _mm_set1_epi8('c'))));
	/* branch-free: whether a key has a secret letter is not predictable */
	return (unsigned)(_mm_movemask_epi8(esc) != 0) * CL_ESC |
	       (unsigned)(_mm_movemask_epi8(sec) != 0) * CL_SECRET;
}

static inline uint64_t cl_load64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint32_t cl_load32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline unsigned log_classify_sse2(const char *s, size_t n)
{
	const int32_t pad = 0x41414141;
	if (n >= 16) {
		unsigned acc = 0;
		size_t i = 0;
		for (; i + 16 <= n; i += 16)
			acc |= class_vec(_mm_loadu_si128((const __m128i *)(const void *)(s + i)));
		if (i < n)
			acc |= class_vec(
			        _mm_loadu_si128((const __m128i *)(const void *)(s + n - 16)));
		return acc;
	}
	if (n >= 8)
		return class_vec(
		        _mm_set_epi64x((long long)cl_load64(s + n - 8), (long long)cl_load64(s)));
	if (n >= 4)
		return class_vec(_mm_set_epi32(pad, pad, (int32_t)cl_load32(s + n - 4),
		                               (int32_t)cl_load32(s)));
	if (n == 0)
		return 0;
	uint32_t w = (uint32_t)(unsigned char)s[0] | (uint32_t)(unsigned char)s[n / 2] << 8 |
	             (uint32_t)(unsigned char)s[n - 1] << 16 | 0x41u << 24;
	return class_vec(_mm_set_epi32(pad, pad, pad, (int32_t)w));
}
#endif

/* The reference: one table lookup per byte. */
static inline unsigned log_classify_scalar(const char *s, size_t n)
{
	unsigned acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= str_class[(unsigned char)s[i]];
	return acc;
}

static inline unsigned log_classify(const char *s, size_t n)
{
#if defined(__SSE2__) && !defined(LOG_CLASSIFY_SCALAR)
	return log_classify_sse2(s, n);
#else
	return log_classify_scalar(s, n);
#endif
}

#endif
