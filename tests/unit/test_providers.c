/* Unit tests: Time4VPS lists and details (src/providers.c) and Ansible
 * inventory JSON (src/inventory.c). The concurrent details requests are
 * covered here for their failures; test_http covers http_get_many and the
 * server_sync integration test the concurrency. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inventory.h"
#include "providers.h"

static void test_t4v_list(void **state)
{
	(void)state;
	const char *ok = "[{\"server_id\": 7, \"domain\": \"a.example\", \"ip\": \"10.0.0.7\","
	                 " \"status\": \"Active\"}, {\"id\": \"8\"}]";
	provider_list l = {0};
	char err[256];
	assert_int_equal(providers_time4vps_parse_list(ok, strlen(ok), &l, err, sizeof err), 0);
	assert_int_equal(l.count, 2);
	assert_string_equal(l.items[0].handle, "vps-7");
	assert_string_equal(l.items[0].ip, "10.0.0.7");
	assert_string_equal(l.items[0].name, "a.example");
	assert_string_equal(l.items[1].handle, "vps-8");
	assert_null(l.items[1].ip);
	static const char *const bad[] = {
	        "{}", "[{}]", "[{\"server_id\": -1}]", "[{\"server_id\": \"../x\"}]", "[7]",
	        "[",  NULL};
	for (size_t i = 0; bad[i]; i++) {
		assert_int_equal(
		        providers_time4vps_parse_list(bad[i], strlen(bad[i]), &l, err, sizeof err),
		        -1);
		assert_int_equal(l.count, 2); /* unchanged */
	}
	provider_list_free(&l);
}

static void test_t4v_details(void **state)
{
	(void)state;
	char err[128];
	const char *d = "{\"cpu_cores\": 2, \"os\": \"debian\", \"fetched_at\": 1}";
	char *out = providers_time4vps_parse_details(d, strlen(d), 1234.5, err, sizeof err);
	assert_non_null(out);
	assert_true(providers_details_fetched_at(out) == 1234.5);
	free(out);
	/* a provider's duplicate keys: every copy replaced, none read back */
	const char *dup = "{\"in\": 2, \"fetched_at\": 2, \"fetched_at\": 5}";
	out = providers_time4vps_parse_details(dup, strlen(dup), 1234.5, err, sizeof err);
	assert_non_null(out);
	assert_true(providers_details_fetched_at(out) == 1234.5);
	free(out);
	assert_null(providers_time4vps_parse_details("[]", 2, 1, err, sizeof err));
	assert_true(providers_details_fetched_at(NULL) == 0);
	assert_true(providers_details_fetched_at("{\"fetched_at\": \"x\"}") == 0);
}

static void test_t4v_details_many_failures(void **state)
{
	(void)state;
	http_options o = {.user_agent = "t",
	                  .connect_timeout_ms = 2000,
	                  .timeout_ms = 2000,
	                  .backoff_ms = 1,
	                  .cancel_fd = -1};
	http_client *c = http_client_new(&o);
	assert_non_null(c);
	assert_int_equal(providers_time4vps_details_many(c, "http://127.0.0.1:1", NULL, 0, 1), 0);
	/* Port 1 on loopback: refused. Each item fails on its own, with a message. */
	t4v_details items[] = {{.id = "7"}, {.id = "8"}};
	assert_int_equal(providers_time4vps_details_many(c, "http://127.0.0.1:1/api", items, 2, 1),
	                 0);
	for (size_t i = 0; i < 2; i++) {
		assert_null(items[i].details);
		assert_non_null(strstr(items[i].err, "http://127.0.0.1:1/api/server/"));
	}
	assert_non_null(strstr(items[1].err, "/server/8"));
	assert_int_equal(http_client_stats(c)->requests, 2);
	http_client_free(c);
}

static void test_inventory(void **state)
{
	(void)state;
	const char *j = "{\"_meta\": {\"hostvars\": {\"web1\": {\"ansible_host\": \"10.1.1.1\","
	                " \"ansible_port\": \"2222\", \"ansible_user\": \"deploy\"}}},"
	                " \"all\": {\"children\": [\"ungrouped\", \"prod\"]},"
	                " \"prod\": {\"children\": [\"web\", \"prod\"]},"
	                " \"web\": {\"hosts\": [\"web1\", \"web2\"]},"
	                " \"ungrouped\": {\"hosts\": [\"lone\"]}}";
	provider_list l = {0};
	char err[256];
	assert_int_equal(inventory_parse(j, strlen(j), &l, err, sizeof err), 0);
	assert_int_equal(l.count, 3);
	assert_string_equal(l.items[0].handle, "lone");
	assert_null(l.items[0].labels);
	assert_string_equal(l.items[0].ip, "lone");
	assert_string_equal(l.items[1].handle, "web1");
	assert_int_equal(l.items[1].port, 2222);
	assert_string_equal(l.items[1].ssh_user, "deploy");
	assert_string_equal(l.items[1].labels, "[\"prod\",\"web\"]");
	assert_string_equal(l.items[2].ip, "web2");
	provider_list_free(&l);
	assert_int_equal(inventory_parse("[]", 2, &l, err, sizeof err), -1);
	assert_int_equal(inventory_parse("{\"web\": {\"hosts\": 5}}", 21, &l, err, sizeof err), 0);
	assert_int_equal(l.count, 0);
	provider_list_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_t4v_list),
	        cmocka_unit_test(test_t4v_details),
	        cmocka_unit_test(test_t4v_details_many_failures),
	        cmocka_unit_test(test_inventory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
