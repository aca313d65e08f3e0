/*
 * ssh_options — the pure half of the SSH tester; see ssh_options.h. Kept
 * apart from src/net/ssh.c, which needs libssh2, so that the core reads
 * [ssh] and names results without a libssh2 header (docs/architecture.md).
 */
#include "ssh_options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"

static const char *const stage_names[] = {
        [SSH_STAGE_RESOLVE] = "resolve",     [SSH_STAGE_CONNECT] = "connect",
        [SSH_STAGE_HANDSHAKE] = "handshake", [SSH_STAGE_HOSTKEY] = "hostkey",
        [SSH_STAGE_AUTH] = "auth",           [SSH_STAGE_EXEC] = "exec",
};

static const char *const error_names[] = {
        [SSH_OK] = NULL,
        [SSH_ERR_RESOLVE] = "resolve_failed",
        [SSH_ERR_CONNECT_REFUSED] = "connect_refused",
        [SSH_ERR_CONNECT_TIMEOUT] = "connect_timeout",
        [SSH_ERR_CONNECT] = "connect_failed",
        [SSH_ERR_TIMEOUT] = "timeout",
        [SSH_ERR_HANDSHAKE] = "handshake_failed",
        [SSH_ERR_HOSTKEY_UNKNOWN] = "hostkey_unknown",
        [SSH_ERR_HOSTKEY_MISMATCH] = "hostkey_mismatch",
        [SSH_ERR_KNOWN_HOSTS] = "known_hosts_failed",
        [SSH_ERR_CREDENTIALS] = "credentials_unreadable",
        [SSH_ERR_AUTH] = "auth_failed",
        [SSH_ERR_EXEC] = "exec_failed",
        [SSH_ERR_COMMAND] = "command_failed",
        [SSH_ERR_CANCELLED] = "cancelled",
        [SSH_ERR_INTERNAL] = "internal",
};

const char *ssh_stage_name(ssh_stage stage)
{
	if ((unsigned)stage >= sizeof stage_names / sizeof stage_names[0])
		return "unknown";
	return stage_names[stage];
}

const char *ssh_error_name(ssh_error err)
{
	if ((unsigned)err >= sizeof error_names / sizeof error_names[0])
		return "internal";
	return error_names[err];
}

/* ---- options ---- */

void ssh_options_default(ssh_options *opt)
{
	*opt = (ssh_options){
	        .port = 22,
	        .user = "root",
	        .policy = HOSTKEY_POLICY_ACCEPT_NEW,
	        .timeout_ms = SSH_DEFAULT_TIMEOUT_MS,
	        .connect_timeout_ms = SSH_DEFAULT_CONNECT_TIMEOUT_MS,
	        .handshake_timeout_ms = SSH_DEFAULT_HANDSHAKE_TIMEOUT_MS,
	        .command = SSH_DEFAULT_COMMAND,
	};
}

/* A deadline key of [ssh] (0: the default); absent leaves *ms. */
static int stage_timeout(const config_section *sec, const char *key, int64_t *ms, char *err,
                         size_t errlen)
{
	char why[160];
	int64_t v;
	const char *text = config_get(sec, key);

	if (text == NULL)
		return 0;
	if (duration_parse(text, &v, why, sizeof why) != 0) {
		snprintf(err, errlen, "[ssh] %s: %s", key, why);
		return -1;
	}
	*ms = v;
	return 0;
}

int ssh_options_from_config(ssh_options *opt, const config_section *sec, char *err, size_t errlen)
{
	const char *v;
	long n;
	bool agent_set = false;

	if (sec == NULL)
		goto agent;
	if ((v = config_get(sec, "user")) && *v)
		opt->user = v;
	if ((v = config_get(sec, "port")) && config_parse_int(v, 1, 65535, &n) == 0)
		opt->port = (int)n;
	if ((v = config_get(sec, "key_file")) && *v)
		opt->key_file = v;
	if ((v = config_get(sec, "passphrase_file")) && *v)
		opt->passphrase_file = v;
	if ((v = config_get(sec, "password_file")) && *v)
		opt->password_file = v;
	if ((v = config_get(sec, "known_hosts")) && *v)
		opt->known_hosts = v;
	if ((v = config_get(sec, "use_agent")) && config_parse_bool(v, &opt->use_agent) == 0)
		agent_set = true;
	if ((v = config_get(sec, "host_key_policy")) && hostkey_policy_parse(v, &opt->policy)) {
		snprintf(err, errlen, "[ssh] host_key_policy: unknown policy '%s'", v);
		return -1;
	}
	if (stage_timeout(sec, "timeout", &opt->timeout_ms, err, errlen) != 0 ||
	    stage_timeout(sec, "connect_timeout", &opt->connect_timeout_ms, err, errlen) != 0 ||
	    stage_timeout(sec, "handshake_timeout", &opt->handshake_timeout_ms, err, errlen) != 0)
		return -1;
agent:
	if (!agent_set && opt->key_file == NULL && opt->password_file == NULL)
		opt->use_agent = getenv("SSH_AUTH_SOCK") != NULL;
	return 0;
}

/* ---- host key policies ---- */

static const char *const policy_names[] = {
        [HOSTKEY_POLICY_STRICT] = "strict",
        [HOSTKEY_POLICY_ACCEPT_NEW] = "accept-new",
        [HOSTKEY_POLICY_OFF] = "off",
};

int hostkey_policy_parse(const char *name, hostkey_policy *out)
{
	for (size_t i = 0; name && i < sizeof policy_names / sizeof policy_names[0]; i++) {
		if (strcmp(name, policy_names[i]) == 0) {
			*out = (hostkey_policy)i;
			return 0;
		}
	}
	return -1;
}

const char *hostkey_policy_name(hostkey_policy p)
{
	if ((unsigned)p >= sizeof policy_names / sizeof policy_names[0])
		return "unknown";
	return policy_names[p];
}

/* ---- known_hosts and host key hints ---- */

void ssh_options_known_hosts(ssh_options *opt, const char *state_dir, char *buf, size_t cap)
{
	if (opt->known_hosts)
		return;
	snprintf(buf, cap, "%s/known_hosts", state_dir ? state_dir : ".");
	opt->known_hosts = buf;
}

bool ssh_error_is_hostkey(ssh_error err)
{
	return err == SSH_ERR_HOSTKEY_UNKNOWN || err == SSH_ERR_HOSTKEY_MISMATCH;
}

bool ssh_hostkey_hint(ssh_error err, const char *target, char *buf, size_t cap)
{
	if (cap > 0)
		buf[0] = '\0';
	if (err == SSH_ERR_HOSTKEY_UNKNOWN)
		snprintf(buf, cap, "fleetkeeper known-hosts scan %s --accept", target);
	else if (err == SSH_ERR_HOSTKEY_MISMATCH)
		snprintf(buf, cap,
		         "if the server was rebuilt: fleetkeeper known-hosts forget %s, then "
		         "fleetkeeper known-hosts scan %s --accept",
		         target, target);
	return ssh_error_is_hostkey(err);
}

void ssh_target_address(char *buf, size_t cap, const char *host, int port)
{
	int p = port > 0 ? port : 22;
	if (strchr(host, ':'))
		snprintf(buf, cap, "[%s]:%d", host, p);
	else
		snprintf(buf, cap, "%s:%d", host, p);
}
