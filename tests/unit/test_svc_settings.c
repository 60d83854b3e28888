/* test_svc_settings.c - streambusd's settings table: defaults within their
 * bounds, precedence flag > environment > config file > default, and every
 * bad value rejected with a message naming the setting. */
#include "sb_test.h"

#include "sb_settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int load(struct sb_settings *s, int argc, char **argv, char *err, size_t cap)
{
	FILE *f = fmemopen(err, cap, "w");
	sb_settings_default(s);
	int rc = sb_settings_load(s, argc, argv, f);
	fclose(f);
	return rc;
}

static void test_defaults_are_sane(void **state)
{
	struct sb_settings s;
	char err[512] = "";
	char *argv[] = {"streambusd"};
	(void)state;
	unsetenv("STREAMBUS_LISTEN");
	assert_int_equal(load(&s, 1, argv, err, sizeof err), 0);
	assert_string_equal(s.listen, "127.0.0.1:7070");
	assert_string_equal(s.data_dir, "./data");
	assert_string_equal(s.io, "auto");
	assert_int_equal(s.workers, 2);
	assert_int_equal(s.max_message_bytes, 8388608);
}

static void test_flag_beats_env_beats_file(void **state)
{
	struct sb_settings s;
	char err[512] = "", path[4200];
	char *dir = sbt_tmpdir("settings");
	(void)state;
	snprintf(path, sizeof path, "%s/sb.conf", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "# comment\nlisten = 127.0.0.1:1111\nworkers = 3\nio = sync # trailing\n");
	fclose(f);
	setenv("STREAMBUS_WORKERS", "4", 1);
	char cfg[4300];
	snprintf(cfg, sizeof cfg, "--config=%s", path);
	char *argv[] = {"streambusd", cfg, "--listen", "127.0.0.1:2222", "--data-dir=/x"};
	assert_int_equal(load(&s, 5, argv, err, sizeof err), 0);
	assert_string_equal(s.listen, "127.0.0.1:2222"); /* flag */
	assert_int_equal(s.workers, 4);                   /* env over file */
	assert_string_equal(s.io, "sync");                /* file */
	assert_string_equal(s.data_dir, "/x");
	unsetenv("STREAMBUS_WORKERS");
	free(dir);
}

static void test_bad_values_are_rejected_with_the_setting_named(void **state)
{
	struct sb_settings s;
	char err[512];
	(void)state;
	const char *cases[][2] = {{"--workers", "0"}, {"--workers", "abc"}, {"--io", "fast"},
				  {"--max-message-bytes", "10"}, {"--nope", "1"}, {"--fsync-policy", "sometimes"}};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *argv[] = {"streambusd", (char *)cases[i][0], (char *)cases[i][1]};
		memset(err, 0, sizeof err);
		assert_int_equal(load(&s, 3, argv, err, sizeof err), SB_EBADCONFIG);
		assert_non_null(strstr(err, cases[i][0] + 2));
	}
	char *argv[] = {"streambusd", "--listen"};
	assert_int_equal(load(&s, 2, argv, err, sizeof err), SB_EBADCONFIG);
	setenv("STREAMBUS_SEGMENT_BYTES", "12", 1);
	char *argv2[] = {"streambusd"};
	assert_int_equal(load(&s, 1, argv2, err, sizeof err), SB_EBADCONFIG);
	assert_non_null(strstr(err, "STREAMBUS_SEGMENT_BYTES"));
	unsetenv("STREAMBUS_SEGMENT_BYTES");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_are_sane),
		cmocka_unit_test(test_flag_beats_env_beats_file),
		cmocka_unit_test(test_bad_values_are_rejected_with_the_setting_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
