/*
 * fuzz_time4vps — the Time4VPS server list and server details parsers: any
 * input is parsed or rejected with a message; details come back as a JSON
 * object carrying fetched_at.
 */
#include <assert.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "fuzz_util.h"
#include "providers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	if (size > 1 << 20)
		return 0;
	provider_list l = {0};
	if (providers_time4vps_parse_list((const char *)data, size, &l, err, sizeof err) != 0)
		assert(err[0] != '\0');
	provider_list_free(&l);
	char *d = providers_time4vps_parse_details((const char *)data, size, 1700000000.0, err,
	                                           sizeof err);
	if (d != NULL) {
		cJSON *o = cJSON_Parse(d);
		assert(cJSON_IsObject(o));
		cJSON_Delete(o);
		assert(providers_details_fetched_at(d) == 1700000000.0);
		free(d);
	}
	return 0;
}
