/*
 * fuzz_control — the control socket server, end to end: a real
 * control_open listener; each input is sent by one client (then its write
 * side is shut), control_dispatch runs until the server closes the client,
 * and every reply line must be one JSON object with a boolean "ok", in
 * valid UTF-8. The handler mirrors the daemon's validation of cmd/task and
 * quotes the task name cut at a byte count (as a careless handler would):
 * the server's reply check must still keep the reply valid.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "control.h"
#include "fuzz_util.h"
#include "wheel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static control *server;
static wheel w;
static char sock_path[108];

static char *handle(void *ctx, const cJSON *req)
{
	(void)ctx;
	const char *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd")->valuestring;
	if (strcmp(cmd, "ping") == 0)
		return strdup("{\"ok\":true}");
	if (strcmp(cmd, "trigger") == 0) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "task");
		if (!cJSON_IsString(t) || t->valuestring[0] == '\0')
			return control_error_reply("trigger: missing \"task\"");
		char msg[160];
		snprintf(msg, sizeof msg, "unknown task '%.7s'", t->valuestring);
		return control_error_reply(msg);
	}
	return control_error_reply("unknown command");
}

/* Well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or values
 * above U+10FFFF), checked by decoding. */
static bool utf8_ok(const unsigned char *p, const unsigned char *end)
{
	static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
	while (p < end) {
		int n = *p < 0x80             ? 1
		        : (*p & 0xe0) == 0xc0 ? 2
		        : (*p & 0xf0) == 0xe0 ? 3
		        : (*p & 0xf8) == 0xf0 ? 4
		                              : 0;
		if (n == 0 || end - p < n)
			return false;
		uint32_t cp = n == 1 ? *p : *p & (0x7fu >> n);
		for (int i = 1; i < n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3fu);
		}
		if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n;
	}
	return true;
}

static void check_replies(char *out, size_t len)
{
	assert(utf8_ok((const unsigned char *)out, (const unsigned char *)out + len));
	char *start = out;
	char *nl;
	while ((nl = memchr(start, '\n', len - (size_t)(start - out))) != NULL) {
		*nl = '\0';
		cJSON *r = cJSON_Parse(start);
		assert(cJSON_IsObject(r));
		assert(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(r, "ok")));
		cJSON_Delete(r);
		start = nl + 1;
	}
	assert(start == out + len); /* every reply ends with a newline */
}

static void setup(void)
{
	char err[256];
	snprintf(sock_path, sizeof sock_path, "/tmp/fk-fuzz-control.%d.sock", (int)getpid());
	wheel_init(&w, 0);
	if (control_open(&server, sock_path, &w, handle, NULL, err, sizeof err) != 0)
		abort();
}

static int connect_client(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	strcpy(a.sun_path, sock_path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
		abort();
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 3 * CONTROL_MAX_REQUEST / 2)
		return 0;
	if (server == NULL)
		setup();
	int fd = connect_client();
	size_t sent = 0, cap = 4096, len = 0;
	char *out = malloc(cap);
	bool eof = false, shut = false;
	for (int spins = 0; !eof; spins++) {
		assert(spins < 1000000);
		if (sent < size) {
			ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
			else if (n < 0 && errno != EAGAIN)
				sent = size; /* the server closed: nothing more to send */
		}
		if (sent == size && !shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		control_dispatch(server, 0);
		if (len + 4096 > cap)
			out = realloc(out, cap *= 2);
		ssize_t n = recv(fd, out + len, cap - len, 0);
		if (n > 0)
			len += (size_t)n;
		else if (n == 0 || (errno != EAGAIN && errno != EINTR))
			eof = true;
	}
	check_replies(out, len);
	free(out);
	close(fd);
	return 0;
}
