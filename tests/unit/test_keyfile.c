/* Unit tests of auth/keyfile: state secrets in 0600 files or the environment, AES-GCM sealing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth/keyfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void test_create_and_reload(void **state)
{
	(void)state;
	char dir[] = "/tmp/sg-kf-XXXXXX";
	assert_non_null(mkdtemp(dir));
	unsigned char a[SG_KEY_LEN], b[SG_KEY_LEN];
	char err[256];
	assert_int_equal(sg_keyfile_load(dir, "pepper", 0, a, err, sizeof err), SG_ERR_NOTFOUND);
	assert_int_equal(sg_keyfile_load(dir, "pepper", 1, a, err, sizeof err), SG_OK);
	assert_int_equal(sg_keyfile_load(dir, "pepper", 1, b, err, sizeof err), SG_OK);
	assert_memory_equal(a, b, SG_KEY_LEN);
	assert_int_equal(sg_keyfile_load(dir, "master", 1, b, err, sizeof err), SG_OK);
	assert_memory_not_equal(a, b, SG_KEY_LEN);
	char path[256];
	snprintf(path, sizeof path, "%s/secrets/master.key", dir);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* a key file others can read is refused */
	chmod(path, 0644);
	assert_int_equal(sg_keyfile_load(dir, "master", 1, b, err, sizeof err), SG_ERR_CONFIG);
	assert_non_null(strstr(err, "0600"));
	/* the environment wins */
	setenv("SEALGUARD_MASTER_KEY",
	       "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 1);
	assert_int_equal(sg_keyfile_load(dir, "master", 1, b, err, sizeof err), SG_OK);
	assert_int_equal(b[0], 0);
	assert_int_equal(b[31], 0x1f);
	setenv("SEALGUARD_MASTER_KEY", "zz", 1);
	assert_int_equal(sg_keyfile_load(dir, "master", 1, b, err, sizeof err), SG_ERR_CONFIG);
	unsetenv("SEALGUARD_MASTER_KEY");
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_seal(void **state)
{
	(void)state;
	unsigned char key[SG_KEY_LEN] = {1, 2, 3}, other[SG_KEY_LEN] = {9};
	const char msg[] = "a signing key";
	unsigned char sealed[SG_SEALED_LEN(sizeof msg)], sealed2[sizeof sealed], out[64];
	size_t n = 0;
	assert_int_equal(sg_seal(key, "rec:1:v1", 8, msg, sizeof msg, sealed), SG_OK);
	assert_int_equal(sg_seal(key, "rec:1:v1", 8, msg, sizeof msg, sealed2), SG_OK);
	assert_memory_not_equal(sealed, sealed2, sizeof sealed); /* fresh nonce */
	assert_null(memmem(sealed, sizeof sealed, msg, sizeof msg - 1));
	assert_int_equal(sg_unseal(key, "rec:1:v1", 8, sealed, sizeof sealed, out, &n), SG_OK);
	assert_int_equal(n, sizeof msg);
	assert_string_equal((char *)out, msg);
	/* wrong aad (moved to another record), wrong key, flipped bit, truncated: all refused */
	assert_int_equal(sg_unseal(key, "rec:2:v1", 8, sealed, sizeof sealed, out, &n),
	                 SG_ERR_DENIED);
	assert_int_equal(sg_unseal(other, "rec:1:v1", 8, sealed, sizeof sealed, out, &n),
	                 SG_ERR_DENIED);
	sealed[14] ^= 1;
	assert_int_equal(sg_unseal(key, "rec:1:v1", 8, sealed, sizeof sealed, out, &n),
	                 SG_ERR_DENIED);
	assert_int_equal(sg_unseal(key, "rec:1:v1", 8, sealed, 20, out, &n), SG_ERR_DENIED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_and_reload),
	    cmocka_unit_test(test_seal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
