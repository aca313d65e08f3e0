/* netmod — see netmod.h. */
#include "netmod.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define MODULE_NAME "fleetkeeper-net.so"

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const fk_net_api *loaded;
static char load_error[640]; /* fits the message and both errors */

/* Beside the executable (a build directory, or a relocated install). */
static bool beside_executable(char *out, size_t cap)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return false;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash == NULL)
		return false;
	*slash = '\0';
	return snprintf(out, cap, "%s/%s", exe, MODULE_NAME) < (int)cap;
}

static const fk_net_api *open_module(const char *path, char *err, size_t errlen)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(err, errlen, "%s", dlerror());
		return NULL;
	}
	const fk_net_api *(*get)(void) = NULL;
	*(void **)&get = dlsym(h, FK_NET_API_SYMBOL);
	const fk_net_api *api = get ? get() : NULL;
	if (api == NULL || api->size != sizeof(fk_net_api) ||
	    strcmp(api->version, FK_VERSION) != 0) {
		snprintf(err, errlen, "%s: not the network module of fleetkeeper %s", path,
		         FK_VERSION);
		dlclose(h);
		return NULL;
	}
	return api; /* the handle stays open for the life of the process */
}

static void load(void)
{
	char here[PATH_MAX], err_here[256] = "", err_inst[256] = "";
	if (beside_executable(here, sizeof here) && access(here, F_OK) == 0) {
		loaded = open_module(here, err_here, sizeof err_here);
		if (loaded)
			return;
	}
	loaded = open_module(FK_NET_MODULE_DIR "/" MODULE_NAME, err_inst, sizeof err_inst);
	if (loaded)
		return;
	snprintf(load_error, sizeof load_error, "cannot load the network module: %s%s%s", err_here,
	         *err_here ? "; " : "", err_inst);
	log_error("core.netmod", "network_module_failed", LOG_ERR(load_error, "module"));
}

const fk_net_api *netmod_get(void)
{
	pthread_once(&load_once, load);
	return loaded;
}

const char *netmod_error(void)
{
	return load_error;
}

bool netmod_loaded(void)
{
	return __atomic_load_n(&loaded, __ATOMIC_ACQUIRE) != NULL;
}
