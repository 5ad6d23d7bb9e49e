#include "auth/keyfile.h"
#include "base/file.h"
#include "base/rand.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int from_env(const char *name, unsigned char out[SG_KEY_LEN])
{
	char var[64];
	snprintf(var, sizeof var, "SEALGUARD_%s_KEY", name);
	for (char *p = var; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	const char *hex = getenv(var);
	if (!hex)
		return 0;
	if (strlen(hex) != 2 * SG_KEY_LEN)
		return -1;
	for (size_t i = 0; i < SG_KEY_LEN; i++) {
		unsigned v;
		if (!isxdigit((unsigned char)hex[2 * i]) ||
		    !isxdigit((unsigned char)hex[2 * i + 1]) || sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (unsigned char)v;
	}
	return 1;
}

sg_err sg_keyfile_load(const char *state_dir, const char *name, int create,
                       unsigned char out[SG_KEY_LEN], char *err, size_t errlen)
{
	int env = from_env(name, out);
	if (env < 0)
		return sg_fail(err, errlen, SG_ERR_CONFIG,
		               "SEALGUARD_%s_KEY must be 64 hexadecimal digits", name);
	if (env > 0)
		return SG_OK;
	char dir[4096], path[4200], file[64];
	snprintf(file, sizeof file, "%s%s", name, strcmp(name, "master") == 0 ? ".key" : "");
	if (sg_path_join(dir, sizeof dir, state_dir, "secrets") != SG_OK ||
	    sg_path_join(path, sizeof path, dir, file) != SG_OK)
		return sg_fail(err, errlen, SG_ERR_LIMIT, "state directory path too long");
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT && create) {
		unsigned char fresh[SG_KEY_LEN];
		if (sg_mkdirs(dir, 0700) != SG_OK)
			return sg_fail(err, errlen, SG_ERR_IO, "cannot create %s: %s", dir,
			               strerror(errno));
		if (sg_random_bytes(fresh, sizeof fresh) != SG_OK)
			return sg_fail(err, errlen, SG_ERR_INTERNAL, "no randomness");
		/* O_EXCL: of two processes creating it at once, exactly one file survives. */
		char tmp[4300];
		snprintf(tmp, sizeof tmp, "%s.new.%ld", path, (long)getpid());
		int w = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		int ok = w >= 0 && write(w, fresh, sizeof fresh) == (ssize_t)sizeof fresh &&
		         fsync(w) == 0;
		if (w >= 0)
			close(w);
		OPENSSL_cleanse(fresh, sizeof fresh);
		if (!ok || link(tmp, path) != 0) {
			int e = errno;
			unlink(tmp);
			if (!ok || e != EEXIST)
				return sg_fail(err, errlen, SG_ERR_IO, "cannot create %s: %s", path,
				               strerror(e));
		} else {
			unlink(tmp);
		}
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0)
		return sg_fail(err, errlen, errno == ENOENT ? SG_ERR_NOTFOUND : SG_ERR_IO,
		               "cannot read %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || (st.st_mode & 077) != 0 || st.st_size != SG_KEY_LEN) {
		close(fd);
		return sg_fail(err, errlen, SG_ERR_CONFIG,
		               "%s must be a %d-byte file readable only by its owner (mode 0600)",
		               path, SG_KEY_LEN);
	}
	ssize_t n = read(fd, out, SG_KEY_LEN);
	close(fd);
	if (n != SG_KEY_LEN) {
		OPENSSL_cleanse(out, SG_KEY_LEN);
		return sg_fail(err, errlen, SG_ERR_IO, "cannot read %s", path);
	}
	return SG_OK;
}

static sg_err gcm(int enc, const unsigned char *key, const unsigned char *iv, const void *aad,
                  size_t aadlen, const unsigned char *in, size_t n, unsigned char *out,
                  unsigned char *tag)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int len = 0, ok = c && n <= 0x7fffffff && aadlen <= 0x7fffffff &&
	                  EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv, enc) == 1 &&
	                  (aadlen == 0 || EVP_CipherUpdate(c, NULL, &len, aad, (int)aadlen) == 1) &&
	                  (n == 0 || EVP_CipherUpdate(c, out, &len, in, (int)n) == 1) &&
	                  (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1) &&
	                  EVP_CipherFinal_ex(c, out + len, &len) == 1 &&
	                  (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1);
	EVP_CIPHER_CTX_free(c);
	return ok ? SG_OK : enc ? SG_ERR_INTERNAL : SG_ERR_DENIED;
}

sg_err sg_seal(const unsigned char key[SG_KEY_LEN], const void *aad, size_t aadlen,
               const void *plain, size_t n, unsigned char *out)
{
	if (sg_random_bytes(out, 12) != SG_OK)
		return SG_ERR_INTERNAL;
	return gcm(1, key, out, aad, aadlen, plain, n, out + 12, out + 12 + n);
}

sg_err sg_unseal(const unsigned char key[SG_KEY_LEN], const void *aad, size_t aadlen,
                 const unsigned char *sealed, size_t sealed_len, unsigned char *out, size_t *outlen)
{
	if (sealed_len < 28)
		return SG_ERR_DENIED;
	size_t n = sealed_len - 28;
	unsigned char tag[16];
	memcpy(tag, sealed + 12 + n, 16);
	sg_err e = gcm(0, key, sealed, aad, aadlen, sealed + 12, n, out, tag);
	if (e != SG_OK) {
		OPENSSL_cleanse(out, n);
		return e;
	}
	*outlen = n;
	return SG_OK;
}
