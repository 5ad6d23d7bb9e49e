/* base/file.h: whole-file reads and durable, atomic file writes (temp file, fsync, rename,
 * fsync of the directory), and directory creation. */
#ifndef SG_BASE_FILE_H
#define SG_BASE_FILE_H

#include "base/err.h"
#include <stddef.h>
#include <sys/types.h>

/* Reads a whole file (at most maxlen bytes) into a malloc'd, NUL-terminated buffer owned by the
 * caller. Files larger than maxlen give SG_ERR_LIMIT. */
sg_err sg_file_read(const char *path, size_t maxlen, char **out, size_t *outlen);
/* Replaces path atomically and durably with data, created with the given mode (e.g. 0600). */
sg_err sg_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* mkdir -p with the given mode for directories it creates. */
sg_err sg_mkdirs(const char *path, mode_t mode);
/* Joins dir and name with '/' into out; returns SG_ERR_LIMIT when it does not fit. */
sg_err sg_path_join(char *out, size_t outlen, const char *dir, const char *name);
int sg_file_exists(const char *path);

#endif
