/* fuzz/fuzz.h: shared by the fuzz targets in fuzz/ (docs/testing.md "Fuzzing"). Each target
 * defines LLVMFuzzerTestOneInput; it is built twice: with libFuzzer (clang, `make fuzz`) to
 * search for new inputs, and with fuzz/replay.c into a plain program that ctest runs over the
 * target's corpus in fuzz/corpus/NAME/ on every `make check` (and under ASan + UBSan with
 * SAN=1). A target checks properties of what the code under test returns, not only that it
 * does not crash: FUZZ_CHECK aborts, which both drivers report as a failure. */
#ifndef SG_FUZZ_H
#define SG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__,      \
			        #cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A fresh directory /tmp/sg-fuzz-NAME-XXXXXX for a target's files, removed when the process
 * exits. Once per process. */
static inline char *fuzz_dir_(void)
{
	static char d[64];
	return d;
}

static inline void fuzz_dir_rm_(void)
{
	char cmd[96];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_());
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir_());
}

static inline const char *fuzz_tmpdir(const char *name)
{
	char *d = fuzz_dir_();
	snprintf(d, 64, "/tmp/sg-fuzz-%.16s-XXXXXX", name);
	FUZZ_CHECK(mkdtemp(d) != NULL);
	atexit(fuzz_dir_rm_);
	return d;
}

#endif
