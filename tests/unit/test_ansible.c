/* Unit tests: ansible — parsing the jsonl callback per task and per host,
 * the inventory, redaction of secrets, and the secret values of extra vars. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ansible.h"

typedef struct {
	char lines[8][160];
	int n;
} seen;

static void collect(void *ctx, const char *task, const char *host, const char *status,
                    const char *msg)
{
	seen *s = ctx;
	if (s->n < 8)
		snprintf(s->lines[s->n++], sizeof s->lines[0], "%s|%s|%s|%s", task, host, status,
		         msg ? msg : "-");
}

static void test_parse_results(void **state)
{
	(void)state;
	ansible_stats st = {0};
	seen s = {0};
	const char *ok = "{\"_event\":\"v2_runner_on_ok\",\"hosts\":{\"a\":{\"changed\":false},"
	                 "\"b\":{\"changed\":true}},\"task\":{\"name\":\"t1\"}}";
	const char *failed = "{\"_event\":\"v2_runner_on_failed\",\"hosts\":{\"a\":{\"msg\":"
	                     "\"boom\",\"failed\":true}},\"task\":{\"name\":\"t2\"}}";
	const char *unreach = "{\"_event\":\"v2_runner_on_unreachable\",\"hosts\":{\"c\":{}},"
	                      "\"task\":{\"name\":\"t3\"}}";
	const char *skipped = "{\"_event\":\"v2_runner_on_skipped\",\"hosts\":{\"a\":{}},"
	                      "\"task\":{\"name\":\"t4\"}}";
	assert_int_equal(ansible_parse_line(ok, &st, collect, &s), ANSIBLE_LINE_RESULT);
	assert_int_equal(ansible_parse_line(failed, &st, collect, &s), ANSIBLE_LINE_RESULT);
	assert_int_equal(ansible_parse_line(unreach, &st, collect, &s), ANSIBLE_LINE_RESULT);
	assert_int_equal(ansible_parse_line(skipped, &st, collect, &s), ANSIBLE_LINE_RESULT);
	assert_int_equal(s.n, 5);
	assert_string_equal(s.lines[0], "t1|a|ok|-");
	assert_string_equal(s.lines[1], "t1|b|changed|-");
	assert_string_equal(s.lines[2], "t2|a|failed|boom");
	assert_string_equal(s.lines[3], "t3|c|unreachable|-");
	assert_string_equal(s.lines[4], "t4|a|skipped|-");
	assert_false(st.have_stats);
}

static void test_parse_stats_and_noise(void **state)
{
	(void)state;
	ansible_stats st = {0};
	const char *stats = "{\"_event\":\"v2_playbook_on_stats\",\"stats\":{\"a\":{\"ok\":3,"
	                    "\"changed\":1,\"failures\":1,\"unreachable\":0,\"skipped\":2},"
	                    "\"b\":{\"ok\":1,\"changed\":0,\"failures\":0,\"unreachable\":1,"
	                    "\"skipped\":0}}}";
	assert_int_equal(ansible_parse_line(stats, &st, NULL, NULL), ANSIBLE_LINE_STATS);
	assert_true(st.have_stats);
	assert_int_equal(st.ok, 4);
	assert_int_equal(st.changed, 1);
	assert_int_equal(st.failed, 1);
	assert_int_equal(st.unreachable, 1);
	assert_int_equal(st.skipped, 2);
	assert_int_equal(ansible_parse_line("not json", &st, NULL, NULL), ANSIBLE_LINE_OTHER);
	assert_int_equal(ansible_parse_line("[WARNING]: x", &st, NULL, NULL), ANSIBLE_LINE_OTHER);
	assert_int_equal(ansible_parse_line("{\"_event\":\"v2_playbook_on_task_start\","
	                                    "\"hosts\":{},\"task\":{\"name\":\"x\"}}",
	                                    &st, NULL, NULL),
	                 ANSIBLE_LINE_OTHER);
}

static void test_inventory(void **state)
{
	(void)state;
	ansible_spec spec = {.server_handle = "vps-1",
	                     .host = "10.0.0.5",
	                     .port = 2222,
	                     .user = "deploy",
	                     .key_file = "/k/id"};
	char *inv = ansible_inventory_render(&spec, "p\"w d");
	assert_non_null(inv);
	cJSON *root = cJSON_Parse(inv);
	cJSON *h = cJSON_GetObjectItem(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(root, "all"), "hosts"), "vps-1");
	assert_string_equal(cJSON_GetObjectItem(h, "ansible_host")->valuestring, "10.0.0.5");
	assert_int_equal(cJSON_GetObjectItem(h, "ansible_port")->valueint, 2222);
	assert_string_equal(cJSON_GetObjectItem(h, "ansible_user")->valuestring, "deploy");
	assert_string_equal(cJSON_GetObjectItem(h, "ansible_ssh_private_key_file")->valuestring,
	                    "/k/id");
	assert_string_equal(cJSON_GetObjectItem(h, "ansible_password")->valuestring, "p\"w d");
	cJSON_Delete(root);
	free(inv);
	spec = (ansible_spec){.server_handle = "h"};
	inv = ansible_inventory_render(&spec, NULL);
	assert_null(strstr(inv, "ansible_password"));
	assert_non_null(strstr(inv, "\"root\""));
	free(inv);
}

static void test_redact(void **state)
{
	(void)state;
	const char *secrets[] = {"hunter2", "", "hunter2plus", "ab", NULL};
	char *r = ansible_redact("a hunter2 b hunter2plus ab", secrets);
	assert_string_equal(r, "a *** b *** ***");
	free(r);
	r = ansible_redact("nothing here", NULL);
	assert_string_equal(r, "nothing here");
	free(r);
	r = ansible_redact("", secrets);
	assert_string_equal(r, "");
	free(r);
}

static void test_secret_values(void **state)
{
	(void)state;
	cJSON *v = cJSON_Parse("{\"api_token\":\"t1\",\"color\":\"blue\",\"service_env\":"
	                       "{\"DB_PASSWORD\":\"p1\",\"PORT\":\"80\"},\"secret_n\":5,"
	                       "\"empty_secret\":\"\"}");
	const char *out[8];
	size_t n = ansible_secret_values(v, out, 8);
	assert_int_equal(n, 2);
	assert_string_equal(out[0], "t1");
	assert_string_equal(out[1], "p1");
	cJSON_Delete(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_results), cmocka_unit_test(test_parse_stats_and_noise),
	        cmocka_unit_test(test_inventory),     cmocka_unit_test(test_redact),
	        cmocka_unit_test(test_secret_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
