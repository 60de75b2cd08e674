/* Runs a fuzz target on files instead of under libFuzzer: every file named on the command line,
 * and every file in each directory named (sorted, so runs are repeatable). This is how the seed
 * corpora (corpus/<target>/) and the inputs that once crashed a target (regress/<target>/) run
 * as ordinary tests in every build, sanitized or not. A missing directory is skipped, but at
 * least one input must run. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cigt/file.h"
#include "fuzz.h"

static int run_file(const char *path)
{
	/* An exact-size heap copy, so ASan sees any read past the end of the input. */
	void *buf;
	size_t n;
	char err[512];
	if (cigt_file_read(path, (size_t)1 << 30, &buf, &n, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	FUZZ_NOTE("%s: ", path);
	LLVMFuzzerTestOneInput(buf, n);
	FUZZ_NOTE("\n");
	free(buf);
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	int ran = 0;
	fuzz_verbose = getenv("FUZZ_VERBOSE") != NULL;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st)) {
			fprintf(stderr, "replay: %s does not exist, skipped\n", argv[i]);
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]))
				return 1;
			ran++;
			continue;
		}
		struct dirent **ents;
		int n = scandir(argv[i], &ents, NULL, NULL);
		if (n < 0) {
			perror(argv[i]);
			return 1;
		}
		char **names = calloc((size_t)n + 1, sizeof *names);
		int k = 0;
		for (int j = 0; j < n; j++) {
			if (ents[j]->d_name[0] != '.')
				names[k++] = strdup(ents[j]->d_name);
			free(ents[j]);
		}
		free(ents);
		qsort(names, (size_t)k, sizeof *names, cmp);
		for (int j = 0; j < k; j++) {
			char path[4096];
			snprintf(path, sizeof path, "%s/%s", argv[i], names[j]);
			if (run_file(path))
				return 1;
			ran++;
			free(names[j]);
		}
		free(names);
	}
	printf("replay: %d inputs ran without a crash or a violated property\n", ran);
	return ran > 0 ? 0 : 1;
}
