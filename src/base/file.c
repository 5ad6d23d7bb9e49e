#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

sg_err sg_file_read(const char *path, size_t maxlen, char **out, size_t *outlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? SG_ERR_NOTFOUND : SG_ERR_IO;
	size_t cap = 4096, len = 0;
	char *p = malloc(cap);
	sg_err e = p ? SG_OK : SG_ERR_NOMEM;
	while (!e) {
		if (len + 1 >= cap) {
			if (cap > maxlen + 1) {
				e = SG_ERR_LIMIT;
				break;
			}
			char *np = realloc(p, cap * 2);
			if (!np) {
				e = SG_ERR_NOMEM;
				break;
			}
			p = np;
			cap *= 2;
		}
		ssize_t n = read(fd, p + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			e = SG_ERR_IO;
		else if (n == 0)
			break;
		else
			len += (size_t)n;
		if (len > maxlen)
			e = SG_ERR_LIMIT;
	}
	close(fd);
	if (e) {
		free(p);
		return e;
	}
	p[len] = '\0';
	*out = p;
	if (outlen)
		*outlen = len;
	return SG_OK;
}

static sg_err fsync_dir_of(const char *path)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", path);
	int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return SG_ERR_IO;
	int rc = fsync(fd);
	close(fd);
	return rc == 0 ? SG_OK : SG_ERR_IO;
}

sg_err sg_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
		return SG_ERR_LIMIT;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return SG_ERR_IO;
	const char *p = data;
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			unlink(tmp);
			return SG_ERR_IO;
		}
		off += (size_t)n;
	}
	if (fchmod(fd, mode) != 0 || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		return SG_ERR_IO;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return SG_ERR_IO;
	}
	return fsync_dir_of(path);
}

sg_err sg_mkdirs(const char *path, mode_t mode)
{
	char tmp[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof tmp)
		return SG_ERR_INVALID;
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) != 0 && errno != EEXIST)
			return SG_ERR_IO;
		*p = '/';
	}
	if (mkdir(tmp, mode) != 0 && errno != EEXIST)
		return SG_ERR_IO;
	return SG_OK;
}

sg_err sg_path_join(char *out, size_t outlen, const char *dir, const char *name)
{
	int n = snprintf(out, outlen, "%s/%s", dir, name);
	return (n < 0 || (size_t)n >= outlen) ? SG_ERR_LIMIT : SG_OK;
}

int sg_file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}
