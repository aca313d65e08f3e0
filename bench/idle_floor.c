/*
 * idle_floor — the baseline of bench/idle.sh: a program that does nothing
 * but link every library fleetkeeper links (SQLite, cJSON, inih,
 * libmicrohttpd, libssh2, libgit2, libcurl, libcrypto) and wait for a
 * signal. Its PSS and private dirty memory are what loading them costs
 * before any code runs: the floor under the idle daemon.
 *
 * Usage: idle_floor            waits until killed
 *        idle_floor --versions prints the libraries' versions and exits
 */
#include <cJSON.h>
#include <curl/curl.h>
#include <git2.h>
#include <ini.h>
#include <libssh2.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int ignore_line(void *user, const char *section, const char *name, const char *value)
{
	(void)user, (void)section, (void)name, (void)value;
	return 1;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--versions") == 0) {
		int major, minor, rev;
		git_libgit2_version(&major, &minor, &rev);
		printf("sqlite %s, cJSON %s, libssh2 %s, libgit2 %d.%d.%d, %s, "
		       "libmicrohttpd %s, %s, inih %d\n",
		       sqlite3_libversion(), cJSON_Version(), libssh2_version(0), major, minor, rev,
		       curl_version(), MHD_get_version(), OpenSSL_version(OPENSSL_VERSION),
		       ini_parse_string("", ignore_line, NULL));
		return 0;
	}
	pause();
	return 0;
}
