/*
 * notify_sign — the webhook signature (notifiers.h): HMAC-SHA256 with
 * libcrypto, in the network module with the rest of what needs the TLS
 * libraries (docs/architecture.md).
 */
#include "notifiers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

int notify_sign(const char *secret, const char *timestamp, const char *body, char *out, size_t cap)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char *msg = NULL;
	int ret = -1;

	if (cap < 72 || asprintf(&msg, "%s.%s", timestamp, body) < 0)
		return -1;
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, strlen(msg),
	         md, &mdlen) != NULL &&
	    mdlen == 32) {
		size_t o = (size_t)snprintf(out, cap, "sha256=");
		for (unsigned i = 0; i < mdlen; i++)
			o += (size_t)snprintf(out + o, cap - o, "%02x", md[i]);
		ret = 0;
	}
	free(msg);
	return ret;
}
