/*
 * fuzz_known_hosts — an arbitrary known_hosts file (via memfd) loaded with
 * libssh2's line parser, then looked up for a few host names and ports.
 */
#include <assert.h>
#include <stdint.h>

#include <libssh2.h>

#include "fuzz_util.h"
#include "known_hosts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static LIBSSH2_SESSION *session;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[256], types[512];
	if (size > 65536)
		return 0;
	if (session == NULL) {
		libssh2_init(0);
		session = libssh2_session_init();
		assert(session != NULL);
	}
	int fd = fuzz_memfile(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	known_hosts *kh = NULL;
	int skipped = 0;
	if (known_hosts_load(&kh, session, path, &skipped, err, sizeof err) == KNOWN_HOSTS_OK) {
		static const char key[] = "\0\0\0\x0bssh-ed25519\0\0\0\x20"
		                          "0123456789abcdef0123456789abcdef";
		const char *hosts[] = {"example.com", "127.0.0.1", "::1", "h"};
		for (size_t i = 0; i < 4; i++) {
			for (int port = 22; port <= 2222; port += 2200) {
				known_hosts_status st =
				        known_hosts_check(kh, hosts[i], port, key, sizeof key - 1,
				                          LIBSSH2_HOSTKEY_TYPE_ED25519);
				assert(st == KNOWN_HOSTS_MATCH || st == KNOWN_HOSTS_UNKNOWN ||
				       st == KNOWN_HOSTS_MISMATCH);
				int n = known_hosts_types(kh, hosts[i], port, types, sizeof types);
				assert(n >= 0);
			}
		}
		known_hosts_free(kh);
	}
	close(fd);
	return 0;
}
