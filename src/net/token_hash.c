/*
 * token_hash — see token_hash.h.
 */
#include "token_hash.h"

#include <openssl/evp.h>

int token_hash_sha256(const void *data, size_t len, uint8_t out[TOKEN_HASH_LEN])
{
	unsigned int n = 0;
	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != TOKEN_HASH_LEN)
		return -1;
	return 0;
}
