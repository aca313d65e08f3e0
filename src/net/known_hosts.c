/*
 * known_hosts — OpenSSH known_hosts lookups and accept-new appends; see
 * known_hosts.h.
 *
 * Invariants:
 *  1. accept-new only appends; the one rewrite is known_hosts_forget's,
 *     which drops the forgotten host's lines and copies every other line
 *     byte for byte, so comments, markers and entries libssh2 cannot parse
 *     survive our writes untouched.
 *  2. An append or a forget happens only under the process mutex and an
 *     exclusive flock on the file that is at path when the lock is held
 *     (a forget renames a new file over the old one: whoever locked the old
 *     inode locks again), after re-reading it under that lock.
 *  3. A host known under another key type than the one presented counts as
 *     a mismatch, never as unknown: accept-new cannot be bypassed by a
 *     server that offers a different key type.
 */
#include "known_hosts.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

struct known_hosts {
	LIBSSH2_KNOWNHOSTS *list;
};

static pthread_mutex_t add_lock = PTHREAD_MUTEX_INITIALIZER;

/* libssh2 host key types, their known_hosts key bits and method names. */
static const struct {
	int type;
	int bits;
	const char *name; /* as OpenSSH names the key */
	const char *methods;
} key_types[] = {
        {LIBSSH2_HOSTKEY_TYPE_ED25519, LIBSSH2_KNOWNHOST_KEY_ED25519, "ssh-ed25519", "ssh-ed25519"},
        {LIBSSH2_HOSTKEY_TYPE_ECDSA_256, LIBSSH2_KNOWNHOST_KEY_ECDSA_256, "ecdsa-sha2-nistp256",
         "ecdsa-sha2-nistp256"},
        {LIBSSH2_HOSTKEY_TYPE_ECDSA_384, LIBSSH2_KNOWNHOST_KEY_ECDSA_384, "ecdsa-sha2-nistp384",
         "ecdsa-sha2-nistp384"},
        {LIBSSH2_HOSTKEY_TYPE_ECDSA_521, LIBSSH2_KNOWNHOST_KEY_ECDSA_521, "ecdsa-sha2-nistp521",
         "ecdsa-sha2-nistp521"},
        {LIBSSH2_HOSTKEY_TYPE_RSA, LIBSSH2_KNOWNHOST_KEY_SSHRSA, "ssh-rsa",
         "rsa-sha2-512,rsa-sha2-256,ssh-rsa"},
        {LIBSSH2_HOSTKEY_TYPE_DSS, LIBSSH2_KNOWNHOST_KEY_SSHDSS, "ssh-dss", "ssh-dss"},
};
#define KEY_TYPE_COUNT (sizeof key_types / sizeof key_types[0])

void known_hosts_name(char *buf, size_t cap, const char *host, int port)
{
	if (port <= 0 || port == 22)
		snprintf(buf, cap, "%s", host);
	else
		snprintf(buf, cap, "[%s]:%d", host, port);
}

const char *known_hosts_key_type_name(int type)
{
	for (size_t i = 0; i < KEY_TYPE_COUNT; i++)
		if (key_types[i].type == type)
			return key_types[i].name;
	return "unknown";
}

void known_hosts_fingerprint(const char *key, size_t keylen, char *buf, size_t cap)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
	unsigned int mdlen = 0;

	if (cap > 0)
		buf[0] = '\0';
	if (EVP_Digest(key, keylen, md, &mdlen, EVP_sha256(), NULL) != 1)
		return;
	int n = EVP_EncodeBlock(b64, md, (int)mdlen);
	while (n > 0 && b64[n - 1] == '=')
		b64[--n] = '\0';
	snprintf(buf, cap, "SHA256:%s", (const char *)b64);
}

static int key_bits(int type)
{
	for (size_t i = 0; i < KEY_TYPE_COUNT; i++)
		if (key_types[i].type == type)
			return key_types[i].bits;
	return -1;
}

static bool line_is_blank(const char *line)
{
	line += strspn(line, " \t\r\n");
	return *line == '\0' || *line == '#';
}

static int read_entries(known_hosts *kh, FILE *f, int *skipped)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int bad = 0;

	while ((len = getline(&line, &cap, f)) > 0) {
		if (line_is_blank(line))
			continue;
		if (libssh2_knownhost_readline(kh->list, line, (size_t)len,
		                               LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0)
			bad++;
	}
	free(line);
	if (skipped)
		*skipped = bad;
	return ferror(f) ? -1 : 0;
}

int known_hosts_load(known_hosts **out, LIBSSH2_SESSION *session, const char *path, int *skipped,
                     char *err, size_t errlen)
{
	known_hosts *kh = calloc(1, sizeof *kh);
	FILE *f = NULL;

	*out = NULL;
	if (skipped)
		*skipped = 0;
	if (kh == NULL || (kh->list = libssh2_knownhost_init(session)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	f = fopen(path, "re");
	if (f == NULL && errno != ENOENT) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	if (f && read_entries(kh, f, skipped) != 0) {
		snprintf(err, errlen, "cannot read %s", path);
		goto fail;
	}
	if (f)
		fclose(f);
	*out = kh;
	return KNOWN_HOSTS_OK;
fail:
	if (f)
		fclose(f);
	known_hosts_free(kh);
	return KNOWN_HOSTS_EIO;
}

void known_hosts_free(known_hosts *kh)
{
	if (kh == NULL)
		return;
	if (kh->list)
		libssh2_knownhost_free(kh->list);
	free(kh);
}

/* True if name has an entry with key type bits (whatever the key). A
 * base64 key of "-" can never match, so a known name answers MISMATCH. */
static bool type_known(known_hosts *kh, const char *name, int bits)
{
	int mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_BASE64 | bits;
	return libssh2_knownhost_checkp(kh->list, name, -1, "-", 1, mask, NULL) ==
	       LIBSSH2_KNOWNHOST_CHECK_MISMATCH;
}

int known_hosts_types(known_hosts *kh, const char *host, int port, char *buf, size_t cap)
{
	char name[300];
	int n = 0;
	size_t used = 0;

	known_hosts_name(name, sizeof name, host, port);
	if (cap > 0)
		buf[0] = '\0';
	for (size_t i = 0; i < KEY_TYPE_COUNT; i++) {
		if (!type_known(kh, name, key_types[i].bits))
			continue;
		int w = snprintf(buf + used, used < cap ? cap - used : 0, "%s%s", n ? "," : "",
		                 key_types[i].methods);
		if (w > 0 && used + (size_t)w < cap)
			used += (size_t)w;
		n++;
	}
	return n;
}

known_hosts_status known_hosts_check(known_hosts *kh, const char *host, int port, const char *key,
                                     size_t keylen, int type)
{
	char name[300];
	char other[256];
	int bits = key_bits(type);

	if (bits < 0)
		return KNOWN_HOSTS_MISMATCH; /* invariant 3: fail closed */
	known_hosts_name(name, sizeof name, host, port);
	int rc = libssh2_knownhost_checkp(
	        kh->list, name, -1, key, keylen,
	        LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | bits, NULL);
	if (rc == LIBSSH2_KNOWNHOST_CHECK_MATCH)
		return KNOWN_HOSTS_MATCH;
	if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND &&
	    known_hosts_types(kh, host, port, other, sizeof other) == 0)
		return KNOWN_HOSTS_UNKNOWN;
	return KNOWN_HOSTS_MISMATCH;
}

static void make_parent_dir(const char *path)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return;
	*slash = '\0';
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return; /* open() reports the real error */
}

/* The entry as one OpenSSH line, newline-terminated. */
static int format_line(known_hosts *kh, const char *host, int port, const char *key, size_t keylen,
                       int bits, char *line, size_t cap, size_t *len)
{
	struct libssh2_knownhost *entry = NULL;
	char name[300];

	known_hosts_name(name, sizeof name, host, port);
	if (libssh2_knownhost_addc(kh->list, name, NULL, key, keylen, NULL, 0,
	                           LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
	                                   bits,
	                           &entry) != 0)
		return -1;
	if (libssh2_knownhost_writeline(kh->list, entry, line, cap - 1, len,
	                                LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0)
		return -1;
	if (*len == 0 || line[*len - 1] != '\n')
		line[(*len)++] = '\n';
	line[*len] = '\0';
	return 0;
}

static bool ends_with_newline(int fd)
{
	struct stat st;
	char c = '\n';
	if (fstat(fd, &st) != 0 || st.st_size == 0)
		return true;
	if (pread(fd, &c, 1, st.st_size - 1) != 1)
		return true;
	return c == '\n';
}

/* Under the lock: re-read, compare, append. */
static int add_locked(LIBSSH2_SESSION *session, int fd, const char *path, const char *host,
                      int port, const char *key, size_t keylen, int bits, int type, char *err,
                      size_t errlen)
{
	known_hosts *kh = NULL;
	char line[16384];
	size_t len = 0;
	int rc = known_hosts_load(&kh, session, path, NULL, err, errlen);

	if (rc != KNOWN_HOSTS_OK)
		return rc;
	known_hosts_status st = known_hosts_check(kh, host, port, key, keylen, type);
	if (st == KNOWN_HOSTS_MISMATCH) {
		snprintf(err, errlen, "%s: host recorded meanwhile with another key", path);
		rc = KNOWN_HOSTS_ECHANGED;
	} else if (st == KNOWN_HOSTS_UNKNOWN) {
		rc = KNOWN_HOSTS_EIO;
		if (format_line(kh, host, port, key, keylen, bits, line, sizeof line, &len) != 0)
			snprintf(err, errlen, "cannot format the known_hosts entry");
		else if (!ends_with_newline(fd) && write(fd, "\n", 1) != 1)
			snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		else if (write(fd, line, len) != (ssize_t)len)
			snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		else
			rc = KNOWN_HOSTS_OK;
	}
	known_hosts_free(kh);
	return rc;
}

/* Open path and take an exclusive flock on the file that is at path once
 * the lock is held (invariant 2: a forget may have renamed a new file over
 * the one we locked). Without O_CREAT a missing file gives 0 and *fd -1. */
static int open_locked(const char *path, int flags, int *fd, char *err, size_t errlen)
{
	struct stat held, now;

	for (int tries = 0; tries < 100; tries++) {
		*fd = open(path, flags | O_CLOEXEC, 0600);
		if (*fd < 0 && errno == ENOENT && !(flags & O_CREAT))
			return KNOWN_HOSTS_OK;
		if (*fd < 0) {
			snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
			return KNOWN_HOSTS_EIO;
		}
		if (flock(*fd, LOCK_EX) != 0) {
			snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
			break;
		}
		if (fstat(*fd, &held) == 0 && stat(path, &now) == 0 && held.st_ino == now.st_ino &&
		    held.st_dev == now.st_dev)
			return KNOWN_HOSTS_OK;
		close(*fd); /* replaced (or removed) while we waited: lock the new one */
	}
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	if (err[0] == '\0')
		snprintf(err, errlen, "cannot lock %s: it keeps being replaced", path);
	return KNOWN_HOSTS_EIO;
}

static bool host_name_valid(const char *host)
{
	return host && *host && strpbrk(host, " \t\r\n,#*?!|") == NULL;
}

int known_hosts_add(LIBSSH2_SESSION *session, const char *path, const char *host, int port,
                    const char *key, size_t keylen, int type, char *err, size_t errlen)
{
	int bits = key_bits(type);
	int fd = -1;

	if (bits < 0 || !host_name_valid(host)) {
		snprintf(err, errlen, "cannot record this host key");
		return KNOWN_HOSTS_EINVAL;
	}
	err[0] = '\0';
	pthread_mutex_lock(&add_lock);
	make_parent_dir(path);
	int rc = open_locked(path, O_RDWR | O_CREAT | O_APPEND, &fd, err, errlen);
	if (rc == KNOWN_HOSTS_OK)
		rc = add_locked(session, fd, path, host, port, key, keylen, bits, type, err,
		                errlen);
	if (fd >= 0)
		close(fd); /* releases the flock */
	pthread_mutex_unlock(&add_lock);
	return rc;
}

/* ---- forget ---- */

/* Base64 of n characters into out; the decoded length or -1. */
static int b64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
	if (n == 0 || n % 4 != 0 || n / 4 * 3 > cap)
		return -1;
	int len = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
	for (size_t i = n; len > 0 && i > 0 && in[i - 1] == '='; i--)
		len--;
	return len;
}

/* A hashed pattern's "salt|hash" (after "|1|") names name: HMAC-SHA1 of
 * the name keyed with the salt, as OpenSSH's HashKnownHosts writes it. */
static bool hashed_names(const char *p, size_t n, const char *name)
{
	unsigned char salt[64], hash[64], mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	const char *bar = memchr(p, '|', n);

	if (bar == NULL)
		return false;
	int saltlen = b64_decode(p, (size_t)(bar - p), salt, sizeof salt);
	int hashlen = b64_decode(bar + 1, n - (size_t)(bar - p) - 1, hash, sizeof hash);
	if (saltlen <= 0 || hashlen <= 0 ||
	    HMAC(EVP_sha1(), salt, saltlen, (const unsigned char *)name, strlen(name), mac,
	         &maclen) == NULL)
		return false;
	return maclen == (unsigned)hashlen && memcmp(mac, hash, maclen) == 0;
}

static bool pattern_names(const char *p, size_t n, const char *name)
{
	if (n > 3 && strncmp(p, "|1|", 3) == 0)
		return hashed_names(p + 3, n - 3, name);
	return n == strlen(name) && strncasecmp(p, name, n) == 0;
}

/* The line (without its newline) is an entry whose name list names name.
 * Markers (@cert-authority, @revoked), comments and blank lines never are;
 * wildcard or negated patterns never equal a valid name. */
static bool line_names(const char *line, size_t len, const char *name)
{
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i == len || line[i] == '#' || line[i] == '@')
		return false;
	size_t end = i;
	while (end < len && line[end] != ' ' && line[end] != '\t')
		end++;
	if (end == len)
		return false; /* a name without a key is no entry */
	for (size_t p = i; p < end;) {
		const char *comma = memchr(line + p, ',', end - p);
		size_t plen = comma ? (size_t)(comma - (line + p)) : end - p;
		if (pattern_names(line + p, plen, name))
			return true;
		p += plen + 1;
	}
	return false;
}

/* The whole file, NUL-terminated; *len its size. NULL on error. */
static char *read_all(int fd, size_t *len)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size < 0)
		return NULL;
	char *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
		if (n <= 0) {
			free(buf);
			return NULL;
		}
		got += (size_t)n;
	}
	if (buf)
		buf[got] = '\0';
	*len = got;
	return buf;
}

/* Keep every line that does not name name, in order; *removed counts the
 * others. out must hold len bytes. */
static size_t filter_lines(const char *in, size_t len, const char *name, char *out, int *removed)
{
	size_t used = 0;
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(in + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - in) : len;
		size_t next = nl ? end + 1 : len;
		size_t body = end > pos && in[end - 1] == '\r' ? end - 1 - pos : end - pos;
		if (line_names(in + pos, body, name)) {
			(*removed)++;
		} else {
			memcpy(out + used, in + pos, next - pos);
			used += next - pos;
		}
		pos = next;
	}
	return used;
}

/* Write data to a new file beside path (the mode of fd) and rename it over
 * path. */
static int replace_file(int fd, const char *path, const char *data, size_t len, char *err,
                        size_t errlen)
{
	char tmp[4200];
	struct stat st;

	snprintf(tmp, sizeof tmp, "%s.fk-XXXXXX", path);
	int out = mkostemp(tmp, O_CLOEXEC);
	if (out < 0) {
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return KNOWN_HOSTS_EIO;
	}
	bool ok = fstat(fd, &st) == 0 && fchmod(out, st.st_mode & 07777) == 0;
	for (size_t done = 0; ok && done < len;) {
		ssize_t n = write(out, data + done, len - done);
		ok = n > 0;
		done += ok ? (size_t)n : 0;
	}
	ok = ok && fsync(out) == 0;
	if (close(out) != 0 || !ok || rename(tmp, path) != 0) {
		snprintf(err, errlen, "cannot rewrite %s: %s", path, strerror(errno));
		unlink(tmp);
		return KNOWN_HOSTS_EIO;
	}
	return KNOWN_HOSTS_OK;
}

static int forget_locked(int fd, const char *path, const char *name, int *removed, char *err,
                         size_t errlen)
{
	size_t len = 0;
	char *in = read_all(fd, &len);
	char *out = in ? malloc(len + 1) : NULL;
	int rc = KNOWN_HOSTS_OK;

	if (out == NULL) {
		snprintf(err, errlen, "cannot read %s", path);
		rc = KNOWN_HOSTS_EIO;
	} else {
		size_t kept = filter_lines(in, len, name, out, removed);
		if (*removed > 0)
			rc = replace_file(fd, path, out, kept, err, errlen);
	}
	free(in);
	free(out);
	return rc;
}

int known_hosts_forget(const char *path, const char *host, int port, int *removed, char *err,
                       size_t errlen)
{
	char name[300];
	int fd = -1;

	*removed = 0;
	if (!host_name_valid(host)) {
		snprintf(err, errlen, "not a host name: '%s'", host ? host : "");
		return KNOWN_HOSTS_EINVAL;
	}
	known_hosts_name(name, sizeof name, host, port);
	for (char *c = name; *c; c++)
		*c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
	err[0] = '\0';
	pthread_mutex_lock(&add_lock);
	int rc = open_locked(path, O_RDWR, &fd, err, errlen);
	if (rc == KNOWN_HOSTS_OK && fd >= 0)
		rc = forget_locked(fd, path, name, removed, err, errlen);
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&add_lock);
	return rc;
}
