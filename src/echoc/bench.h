/*
 * bench.h - "echoc bench": a load generator that verifies every echoed byte.
 *
 * The verifier is exported as two pure functions so it can be tested
 * without sockets: what a connection sends is a function of its key and the
 * offset in its stream, so checking an echo needs no copy of what was sent.
 */
#ifndef ECHOD_BENCH_H
#define ECHOD_BENCH_H

#include <stddef.h>
#include <stdint.h>

/*
 * Runs "echoc bench"; argv[0] is "bench".  Returns the exit status: 0 when
 * every echo was verified, 1 when the run could not start or saw errors or
 * mismatches, 2 for a usage error.
 */
int bench_main(int argc, char **argv);

/*
 * Fills buf with the len bytes found at offset off of the stream of a
 * connection with the given key, made of messages of size bytes back to
 * back.  Byte i of message m depends on (key, m, i), so every message of
 * every connection is different.
 */
void bench_fill(uint8_t *buf, size_t len, uint64_t key, uint64_t off, size_t size);

/* The index of the first byte of buf that differs from the stream at off, or len. */
size_t bench_verify(const uint8_t *buf, size_t len, uint64_t key, uint64_t off, size_t size);

#endif
