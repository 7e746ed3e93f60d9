/*
 * bench.h - "echoc bench": a load generator that verifies every echoed byte.
 *
 * The byte pattern it sends and verifies is bench_pattern.h; what its parts
 * share is bench_worker.h.
 */
#ifndef ECHOD_BENCH_H
#define ECHOD_BENCH_H

/*
 * Runs "echoc bench"; argv[0] is "bench".  Returns the exit status: 0 when
 * every echo was verified, 1 when the run could not start or saw errors or
 * mismatches, 2 for a usage error.
 */
int bench_main(int argc, char **argv);

#endif
