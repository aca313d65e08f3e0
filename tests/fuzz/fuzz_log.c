/*
 * fuzz_log — log_render_json with arbitrary logger, event, keys and string
 * values (NUL-separated pieces of the input; the first byte of a value picks
 * its type): the rendering is always one valid JSON object, secret keys are
 * never rendered in clear, and the size reported for a short buffer is the
 * size actually needed.
 */
#include <assert.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "fuzz_util.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 16

static void check_secret(const cJSON *root, const log_field *f)
{
	if (f->key == NULL || !log_key_is_secret(f->key) || f->type != LOG_T_STR)
		return;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, f->key);
	if (cJSON_IsString(v))
		assert(strcmp(v->valuestring, "***") == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	char *s = fuzz_cstr(data, size);
	const char *piece[2 + 2 * MAX_FIELDS];
	size_t np = 0;
	for (size_t off = 0; off <= size && np < 2 + 2 * MAX_FIELDS; off += strlen(s + off) + 1)
		piece[np++] = s + off;
	const char *logger = np > 0 ? piece[0] : "fuzz";
	const char *event = np > 1 ? piece[1] : "fuzz_event";
	log_field f[MAX_FIELDS];
	size_t nf = 0;
	for (size_t i = 2; i + 1 < np; i += 2) {
		const char *v = piece[i + 1];
		switch ((unsigned char)v[0] % 5) {
		case 0:
			f[nf++] = LOG_INT(piece[i], (int64_t)strtoll(v, NULL, 0));
			break;
		case 1:
			f[nf++] = LOG_DBL(piece[i], strtod(v, NULL));
			break;
		case 2:
			f[nf++] = LOG_BOOL(piece[i], v[0] & 1);
			break;
		case 3:
			f[nf++] = LOG_NULL(piece[i]);
			break;
		default:
			f[nf++] = LOG_STR(piece[i], v);
			break;
		}
	}
	char small[64];
	size_t need = log_render_json(small, sizeof small, 1700000000123456, LOG_INFO, logger,
	                              event, f, nf);
	char *buf = malloc(need + 1);
	assert(buf != NULL);
	size_t got =
	        log_render_json(buf, need + 1, 1700000000123456, LOG_INFO, logger, event, f, nf);
	assert(got == need && strlen(buf) == need);
	cJSON *root = cJSON_ParseWithLength(buf, got);
	assert(cJSON_IsObject(root));
	for (size_t i = 0; i < nf; i++)
		check_secret(root, &f[i]);
	cJSON_Delete(root);
	free(buf);
	free(s);
	return 0;
}
