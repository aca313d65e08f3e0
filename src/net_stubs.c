/*
 * net_stubs — the daemon's side of the network module (net_api.h): each
 * function of ssh.c, mirror.c, http.c and notify_sign.c, forwarded to the
 * module, which is loaded on the first call (netmod.h). When it cannot be
 * loaded, each fails the way its header describes for an internal error,
 * with the reason in its message (logged once, network_module_failed).
 *
 * Linked into the fleetkeeper executable only: tests, benchmarks and fuzz
 * targets link the real functions.
 */
#include <stdio.h>
#include <stdlib.h>

#include "net_api.h"
#include "netmod.h"

/* ---- ssh.h ---- */

static void ssh_unavailable(ssh_result *r)
{
	*r = (ssh_result){.stage = SSH_STAGE_RESOLVE, .error = SSH_ERR_INTERNAL, .exit_status = -1};
	snprintf(r->message, sizeof r->message, "%s", netmod_error());
}

int ssh_run_many(const ssh_options *opts, size_t n, size_t concurrency, int cancel_fd,
                 ssh_result *results)
{
	const fk_net_api *net = netmod_get();
	if (net)
		return net->ssh_run_many(opts, n, concurrency, cancel_fd, results);
	for (size_t i = 0; i < n; i++)
		ssh_unavailable(&results[i]);
	return 0;
}

int ssh_test(const ssh_options *opt, int cancel_fd, ssh_result *result)
{
	const fk_net_api *net = netmod_get();
	if (net)
		return net->ssh_test(opt, cancel_fd, result);
	ssh_unavailable(result);
	return 0;
}

/* ---- mirror.h ---- */

void mirror_init(void)
{
	const fk_net_api *net = netmod_get();
	if (net)
		net->mirror_init();
}

void mirror_shutdown(void)
{
	const fk_net_api *net = netmod_get();
	if (net)
		net->mirror_shutdown();
}

bool mirror_name_ok(const char *name)
{
	const fk_net_api *net = netmod_get();
	return net && net->mirror_name_ok(name);
}

int mirror_sync(const char *dir, const char *name, const char *url, const char *token,
                const char *branch, int cancel_fd, mirror_result *out, char *err, size_t errlen)
{
	const fk_net_api *net = netmod_get();
	if (net)
		return net->mirror_sync(dir, name, url, token, branch, cancel_fd, out, err, errlen);
	snprintf(err, errlen, "%s", netmod_error());
	return -1;
}

void mirror_result_free(mirror_result *r)
{
	const fk_net_api *net = netmod_get();
	if (net)
		net->mirror_result_free(r);
}

/* ---- notifiers.h ---- */

int notify_sign(const char *secret, const char *timestamp, const char *body, char *out, size_t cap)
{
	const fk_net_api *net = netmod_get();
	return net ? net->notify_sign(secret, timestamp, body, out, cap) : -1;
}

/* ---- http.h ---- */

http_client *http_client_new(const http_options *opts)
{
	const fk_net_api *net = netmod_get();
	return net ? net->http_client_new(opts) : NULL;
}

void http_client_free(http_client *c)
{
	if (c) /* a client exists only if the module does */
		netmod_get()->http_client_free(c);
}

const http_stats *http_client_stats(const http_client *c)
{
	return netmod_get()->http_client_stats(c);
}

int http_get(http_client *c, const char *url, const char *if_none_match, http_response *out,
             char *err, size_t errlen)
{
	const fk_net_api *net = netmod_get();
	if (net)
		return net->http_get(c, url, if_none_match, out, err, errlen);
	snprintf(err, errlen, "%s", netmod_error());
	return HTTP_ERR_INTERNAL;
}

int http_get_many(http_client *c, http_request *reqs, size_t n, int max_parallel)
{
	const fk_net_api *net = netmod_get();
	if (net)
		return net->http_get_many(c, reqs, n, max_parallel);
	for (size_t i = 0; i < n; i++) {
		reqs[i].rc = HTTP_ERR_INTERNAL;
		snprintf(reqs[i].err, sizeof reqs[i].err, "%s", netmod_error());
	}
	return HTTP_ERR_INTERNAL;
}

void http_response_free(http_response *r)
{
	const fk_net_api *net = netmod_get();
	if (net)
		net->http_response_free(r);
}

int http_post(http_client *c, const char *url, const char *const *headers, const char *body,
              http_response *out, char *err, size_t errlen)
{
	const fk_net_api *net = netmod_get();
	if (net)
		return net->http_post(c, url, headers, body, out, err, errlen);
	snprintf(err, errlen, "%s", netmod_error());
	return HTTP_ERR_INTERNAL;
}
