/*
 * token_hash — SHA-256 of an API token (libcrypto, which only src/net/
 * links), so that the HTTP API keeps no token in memory, only its digest.
 *
 * Threads: any. Errors: 0, or -1 when libcrypto fails (out of memory).
 * Ownership: the caller's buffers; nothing is kept.
 */
#ifndef FK_TOKEN_HASH_H
#define FK_TOKEN_HASH_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_HASH_LEN 32

int token_hash_sha256(const void *data, size_t len, uint8_t out[TOKEN_HASH_LEN]);

#endif
