/* credentials — see credentials.h. */
#include "credentials.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

bool credentials_available(const config_section *sec, const char *prefix)
{
	char key[64];
	const char *v;

	if (sec == NULL)
		return false;
	snprintf(key, sizeof key, "%s_file", prefix);
	v = config_get(sec, key);
	if (v && *v && access(v, R_OK) == 0)
		return true;
	snprintf(key, sizeof key, "%s_env", prefix);
	v = config_get(sec, key);
	if (v && *v) {
		const char *val = getenv(v);
		if (val && *val)
			return true;
	}
	return false;
}
