/* fuzz/replay.c: runs a fuzz target over files, without libFuzzer: every file named, and every
 * regular file in each directory named, once. ctest runs it over fuzz/corpus/NAME/, so each
 * input a fuzzing run kept (a seed, a new branch, a crash once fixed) stays a regression test.
 * Exit status 0 when every input ran (a violated property aborts). */
#include "fuzz.h"

#include "base/file.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

static int run_file(const char *path)
{
	char *buf = NULL;
	size_t n = 0;
	if (sg_file_read(path, 1u << 20, &buf, &n) != SG_OK) {
		fprintf(stderr, "%s: cannot read (or larger than 1 MiB)\n", path);
		return -1;
	}
	/* an exact-size copy (sg_file_read adds a NUL), so that ASan sees a read past the end */
	uint8_t *exact = malloc(n ? n : 1);
	int rc = exact ? 0 : -1;
	if (exact) {
		memcpy(exact, buf, n);
		LLVMFuzzerTestOneInput(exact, n);
	}
	free(exact);
	free(buf);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned long ran = 0;
	int bad = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			perror(argv[i]);
			bad = 1;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			bad |= run_file(argv[i]) != 0;
			ran++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char p[4096];
			if (sg_path_join(p, sizeof p, argv[i], e->d_name) == SG_OK &&
			    stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
				bad |= run_file(p) != 0;
				ran++;
			}
		}
		if (d)
			closedir(d);
		else
			bad = 1;
	}
	printf("%lu inputs\n", ran);
	return bad || !ran;
}
