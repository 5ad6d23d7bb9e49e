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

#endif
