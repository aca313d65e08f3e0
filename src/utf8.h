/*
 * utf8 — well-formed UTF-8, for every place that copies text it did not
 * write into output that must stay valid (log lines, control replies,
 * configuration messages).
 *
 * Threads: any (pure). Errors: none. Ownership: utf8_sanitize takes its
 * argument and returns a malloc'd string (or the same one).
 */
#ifndef FK_UTF8_H
#define FK_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the well-formed sequence at p (1 for ASCII, up to 4), or
 * -(length of its maximal ill-formed subpart) (at least 1): the Unicode
 * "substitution of maximal subparts" that Python's errors="replace"
 * follows. A NUL ends a sequence (it is never a continuation byte). */
int utf8_seq(const unsigned char *p);

/* Every byte of the NUL-terminated s is part of a well-formed sequence. */
bool utf8_valid(const char *s);

/* The longest prefix of s of at most max bytes that does not cut a
 * sequence (ill-formed bytes count as one each). */
size_t utf8_prefix(const char *s, size_t max);

/* s (taken) with every maximal ill-formed subpart replaced by U+FFFD;
 * malloc'd, NULL if s is NULL or memory runs out. Bytes >= 0x80 are never
 * JSON syntax, so a JSON text stays JSON. */
char *utf8_sanitize(char *s);

#endif
