/* Unit tests: the pure half of src/github_app.c (base64url, the JWT's
 * signing input, times, the token and installations responses, the renewal
 * rule) and the key and RS256 signature of src/net/github_app_sign.c,
 * checked with libcrypto's own verifier on keys generated here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "github.h"
#include "github_app.h"

#define NOW 1700000000

static char tmpdir[] = "/tmp/fk-test-github-app-XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void write_text(const char *name, const char *text)
{
	char p[256];
	path_of(p, sizeof p, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* A key written as PEM: PKCS#1 ("RSA PRIVATE KEY", what GitHub hands out)
 * when traditional, else PKCS#8; encrypted with a passphrase if asked. */
static void write_key(const char *name, EVP_PKEY *k, bool traditional, bool encrypted)
{
	char p[256];
	path_of(p, sizeof p, name);
	BIO *b = BIO_new_file(p, "w");
	assert_non_null(b);
	if (encrypted)
		assert_int_equal(PEM_write_bio_PrivateKey(b, k, EVP_aes_128_cbc(),
		                                          (unsigned char *)"pw", 2, NULL, NULL),
		                 1);
	else if (traditional)
		assert_int_equal(
		        PEM_write_bio_PrivateKey_traditional(b, k, NULL, NULL, 0, NULL, NULL), 1);
	else
		assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	BIO_free(b);
}

static void test_b64url(void **state)
{
	(void)state;
	char out[16];
	static const unsigned char urlchars[] = {0xfb, 0xff};
	assert_int_equal(github_b64url("", 0, out, sizeof out), 0);
	assert_string_equal(out, "");
	assert_int_equal(github_b64url("f", 1, out, sizeof out), 2);
	assert_string_equal(out, "Zg");
	assert_int_equal(github_b64url("fo", 2, out, sizeof out), 3);
	assert_string_equal(out, "Zm8");
	assert_int_equal(github_b64url("foo", 3, out, sizeof out), 4);
	assert_string_equal(out, "Zm9v");
	assert_int_equal(github_b64url("foob", 4, out, sizeof out), 6);
	assert_string_equal(out, "Zm9vYg");
	/* The URL alphabet ('-' and '_' for '+' and '/'), no '=' padding. */
	assert_int_equal(github_b64url(urlchars, 2, out, sizeof out), 3);
	assert_string_equal(out, "-_8");
	/* Too small a buffer: nothing. */
	assert_int_equal(github_b64url("foo", 3, out, 4), 0);
	assert_int_equal(GITHUB_B64URL_LEN(256), 342);
}

static void test_jwt_input_pinned(void **state)
{
	(void)state;
	/* header {"alg":"RS256","typ":"JWT"}, claims in the order iat, exp, iss:
	 * {"iat":1699999940,"exp":1700000540,"iss":"12345"} */
	char *in = github_app_jwt_input("12345", NOW);
	assert_non_null(in);
	assert_string_equal(in,
	                    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."
	                    "eyJpYXQiOjE2OTk5OTk5NDAsImV4cCI6MTcwMDAwMDU0MCwiaXNzIjoiMTIzNDUifQ");
	free(in);
	/* A Client ID as the issuer, a string too. */
	in = github_app_jwt_input("Iv23liABC.x_y-z", NOW);
	assert_non_null(in);
	assert_string_equal(strchr(in, '.') + 1, "eyJpYXQiOjE2OTk5OTk5NDAsImV4cCI6MTcwMDAwMDU0MCwia"
	                                         "XNzIjoiSXYyM2xpQUJDLnhfeS16In0");
	free(in);
	assert_int_equal(GITHUB_APP_JWT_BACKDATE + GITHUB_APP_JWT_AHEAD, 600);

	static const char *const bad[] = {"",
	                                  "a b",
	                                  "x\"y",
	                                  "12\n3",
	                                  "ü",
	                                  "0123456789012345678901234567890123456789012345678901234"
	                                  "5678901234"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_false(github_app_id_ok(bad[i]));
		assert_null(github_app_jwt_input(bad[i], NOW));
	}
	assert_false(github_app_id_ok(NULL));
	assert_true(github_app_id_ok("1"));
}

/* base64url (no padding) back into bytes; the length, or -1. */
static long b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
	static const char abc[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		const char *p = memchr(abc, s[i], 64);
		if (p == NULL || s[i] == '\0')
			return -1;
		acc = (acc << 6) | (uint32_t)(p - abc);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	return (long)o;
}

static bool verifies(EVP_PKEY *k, const char *jwt)
{
	const char *dot = strrchr(jwt, '.');
	unsigned char sig[1024];
	long n = b64url_decode(dot + 1, strlen(dot + 1), sig, sizeof sig);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = n > 0 && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
	          EVP_DigestVerify(md, sig, (size_t)n, (const unsigned char *)jwt,
	                           (size_t)(dot - jwt)) == 1;
	EVP_MD_CTX_free(md);
	return ok;
}

static void test_jwt_signature(void **state)
{
	(void)state;
	char p[256], err[512];
	EVP_PKEY *rsa = EVP_RSA_gen(2048), *other = EVP_RSA_gen(2048);
	assert_non_null(rsa);
	assert_non_null(other);

	for (int traditional = 0; traditional < 2; traditional++) {
		github_app_key *k = NULL;
		char *jwt = NULL;
		write_key("app.pem", rsa, traditional, false);
		path_of(p, sizeof p, "app.pem");
		assert_int_equal(github_app_key_load(p, &k, err, sizeof err), GITHUB_APP_OK);
		assert_int_equal(github_app_jwt(k, "12345", NOW, &jwt, err, sizeof err), 0);
		char *in = github_app_jwt_input("12345", NOW);
		size_t n = strlen(in);
		assert_memory_equal(jwt, in, n);
		assert_int_equal(jwt[n], '.');
		/* 2048 bits: a 256-byte signature, 342 base64url characters. */
		assert_int_equal(strlen(jwt + n + 1), 342);
		assert_null(strpbrk(jwt, "=+/ \n"));
		assert_true(verifies(rsa, jwt));
		assert_false(verifies(other, jwt));
		/* A changed claim no longer verifies with the same signature. */
		jwt[n - 2] = jwt[n - 2] == 'A' ? 'B' : 'A';
		assert_false(verifies(rsa, jwt));
		free(in);
		github_app_secret_free(jwt);
		github_app_key_free(k);
	}
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(other);
}

static void assert_key_refused(const char *name, const char *why)
{
	char p[256], err[512];
	github_app_key *k = (github_app_key *)1;
	path_of(p, sizeof p, name);
	assert_int_equal(github_app_key_load(p, &k, err, sizeof err), GITHUB_APP_ERR_KEY);
	assert_null(k);
	assert_non_null(strstr(err, p)); /* names the file */
	if (strstr(err, why) == NULL)
		fail_msg("%s: expected '%s' in '%s'", name, why, err);
	assert_null(strstr(err, "MII")); /* never the key's bytes */
}

static void test_key_refused(void **state)
{
	(void)state;
	EVP_PKEY *small = EVP_RSA_gen(1024);
	EVP_PKEY *ec = EVP_EC_gen("P-256");
	EVP_PKEY *ok = EVP_RSA_gen(2048);
	assert_non_null(small);
	assert_non_null(ec);

	assert_key_refused("absent.pem", "cannot read: No such file or directory");
	write_text("text.pem", "ghp_not_a_key\n");
	assert_key_refused("text.pem", "not PEM");
	write_text("broken.pem", "-----BEGIN RSA PRIVATE KEY-----\nMIIbroken\n"
	                         "-----END RSA PRIVATE KEY-----\n");
	assert_key_refused("broken.pem", "not a PEM private key");
	write_key("small.pem", small, true, false);
	assert_key_refused("small.pem", "RSA key of 1024 bits; at least 2048");
	write_key("ec.pem", ec, false, false);
	assert_key_refused("ec.pem", "not an RSA key (EC)");
	write_key("enc.pem", ok, false, true);
	assert_key_refused("enc.pem", "encrypted");
	EVP_PKEY_free(small);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ok);
}

static void test_times(void **state)
{
	(void)state;
	int64_t t = 0;
	char buf[32];
	assert_int_equal(github_app_parse_time("2016-07-11T22:14:10Z", &t), 0);
	assert_int_equal(t, 1468275250);
	assert_int_equal(github_app_parse_time("2016-07-11T22:14:10.123Z", &t), 0);
	assert_int_equal(t, 1468275250);
	assert_int_equal(github_app_parse_time("2016-07-12T00:14:10+02:00", &t), 0);
	assert_int_equal(t, 1468275250);
	assert_int_equal(github_app_parse_time("2016-07-11T21:14:10-01:00", &t), 0);
	assert_int_equal(t, 1468275250);
	assert_int_equal(github_app_parse_time("2024-02-29T00:00:00Z", &t), 0);
	assert_int_equal(t, 1709164800);
	github_app_format_time(1468275250, buf, sizeof buf);
	assert_string_equal(buf, "2016-07-11T22:14:10Z");

	static const char *const bad[] = {"",
	                                  "2016-07-11T22:14:10",
	                                  "2016-07-11 22:14:10Z",
	                                  "2016-7-11T22:14:10Z",
	                                  "2023-02-29T00:00:00Z",
	                                  "2016-13-01T00:00:00Z",
	                                  "2016-07-11T24:00:00Z",
	                                  "2016-07-11T22:14:10Zjunk",
	                                  "2016-07-11T22:14:10.Z",
	                                  "2016-07-11T22:14:10+2:00",
	                                  "+016-07-11T22:14:10Z"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		t = 42;
		if (github_app_parse_time(bad[i], &t) != -1)
			fail_msg("accepted '%s'", bad[i]);
	}
	assert_int_equal(github_app_parse_time(NULL, &t), -1);
}

static void test_token_response(void **state)
{
	(void)state;
	char *tok = NULL, err[256];
	int64_t exp = 0;
	/* The documented response of POST /app/installations/{id}/access_tokens. */
	static const char ok[] =
	        "{\"token\": \"ghs_16C7e42F292c6912E7710c838347Ae178B4a\","
	        " \"expires_at\": \"2016-07-11T22:14:10Z\","
	        " \"permissions\": {\"metadata\": \"read\", \"contents\": \"read\"},"
	        " \"repository_selection\": \"all\"}";
	assert_int_equal(github_app_parse_token(ok, strlen(ok), &tok, &exp, err, sizeof err), 0);
	assert_string_equal(tok, "ghs_16C7e42F292c6912E7710c838347Ae178B4a");
	assert_int_equal(exp, 1468275250);
	github_app_secret_free(tok);

	static const char *const bad[] = {
	        "",
	        "[]",
	        "{\"expires_at\": \"2016-07-11T22:14:10Z\"}",
	        "{\"token\": \"\", \"expires_at\": \"2016-07-11T22:14:10Z\"}",
	        "{\"token\": \"ghs_a\\r\\nX-Evil: 1\", \"expires_at\": \"2016-07-11T22:14:10Z\"}",
	        "{\"token\": \"ghs a\", \"expires_at\": \"2016-07-11T22:14:10Z\"}",
	        "{\"token\": 5, \"expires_at\": \"2016-07-11T22:14:10Z\"}",
	        "{\"token\": \"ghs_secretvalue\"}",
	        "{\"token\": \"ghs_secretvalue\", \"expires_at\": 1468275250}",
	        "{\"token\": \"ghs_secretvalue\", \"expires_at\": \"tomorrow\"}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		tok = (char *)1;
		assert_int_equal(
		        github_app_parse_token(bad[i], strlen(bad[i]), &tok, &exp, err, sizeof err),
		        -1);
		assert_null(tok);
		assert_true(err[0] != '\0');
		assert_null(strstr(err, "secretvalue")); /* never the token */
	}
}

static void test_installations(void **state)
{
	(void)state;
	int64_t id = 0;
	char err[256];
	static const char page[] = "[{\"id\": 1, \"account\": {\"login\": \"other\"}},"
	                           " {\"id\": 7, \"account\": {\"login\": \"ACME\", \"type\": "
	                           "\"Organization\"}, \"app_id\": 9}]";
	assert_int_equal(
	        github_app_parse_installations(page, strlen(page), "acme", &id, err, sizeof err),
	        0);
	assert_int_equal(id, 7);
	assert_int_equal(
	        github_app_parse_installations(page, strlen(page), "nobody", &id, err, sizeof err),
	        0);
	assert_int_equal(id, 0);
	static const char odd[] = "[{\"id\": 1.5, \"account\": {\"login\": \"acme\"}},"
	                          " {\"account\": {\"login\": \"acme\"}},"
	                          " {\"id\": 3, \"account\": \"acme\"}]";
	assert_int_equal(
	        github_app_parse_installations(odd, strlen(odd), "acme", &id, err, sizeof err), 0);
	assert_int_equal(id, 0);
	static const char *const bad[] = {"", "{}", "null", "[1]"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		id = 5;
		assert_int_equal(github_app_parse_installations(bad[i], strlen(bad[i]), "acme", &id,
		                                                err, sizeof err),
		                 -1);
		assert_int_equal(id, 0);
	}
}

static void test_renewal_rule(void **state)
{
	(void)state;
	/* Used until five minutes before expires_at, renewed from then on. */
	assert_true(github_app_token_fresh(NOW + 3600, NOW));
	assert_true(github_app_token_fresh(NOW + 301, NOW));
	assert_false(github_app_token_fresh(NOW + 300, NOW));
	assert_false(github_app_token_fresh(NOW + 10, NOW));
	assert_false(github_app_token_fresh(NOW - 10, NOW));
	assert_int_equal(GITHUB_APP_RENEW_MARGIN, 300);
}

static void test_error_types(void **state)
{
	(void)state;
	assert_string_equal(github_app_error_type(GITHUB_APP_ERR_JWT_REJECTED), "jwt_rejected");
	assert_string_equal(github_app_error_type(GITHUB_APP_ERR_NOT_FOUND),
	                    "installation_not_found");
	assert_string_equal(github_app_error_type(GITHUB_APP_ERR_SERVER), "http_5xx");
	assert_string_equal(github_app_error_type(GITHUB_APP_ERR_KEY), "private_key_invalid");
	assert_string_equal(github_app_error_type(12345), "internal");
}

static void test_installation_page(void **state)
{
	(void)state;
	github_repo_list l = {0};
	char err[256];
	static const char page[] = "{\"total_count\": 2, \"repository_selection\": \"all\","
	                           " \"repositories\": [{\"id\": 1, \"name\": \"a\"},"
	                           " {\"id\": 2, \"name\": \"b\", \"archived\": true}]}";
	assert_int_equal(github_parse_installation_page(page, strlen(page), &l, err, sizeof err),
	                 0);
	assert_int_equal(l.count, 2);
	assert_string_equal(l.items[1].name, "b");
	assert_true(l.items[1].archived);
	static const char *const bad[] = {"", "[]", "{}", "{\"repositories\": {}}",
	                                  "{\"repositories\": [{\"id\": 3}]}"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(
		        github_parse_installation_page(bad[i], strlen(bad[i]), &l, err, sizeof err),
		        -1);
		assert_int_equal(l.count, 2);
	}
	github_repo_list_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_b64url),        cmocka_unit_test(test_jwt_input_pinned),
	        cmocka_unit_test(test_jwt_signature), cmocka_unit_test(test_key_refused),
	        cmocka_unit_test(test_times),         cmocka_unit_test(test_token_response),
	        cmocka_unit_test(test_installations), cmocka_unit_test(test_renewal_rule),
	        cmocka_unit_test(test_error_types),   cmocka_unit_test(test_installation_page),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
