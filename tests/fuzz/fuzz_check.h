/*
 * fuzz_check.h - CHECK(cond) for the libFuzzer targets: an invariant that
 * does not hold aborts with its file, line and text, and libFuzzer saves
 * the input that got there.
 */
#ifndef ECHOD_FUZZ_CHECK_H
#define ECHOD_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__,       \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
