/*
 * bench_pattern.h - the bytes "echoc bench" sends, as two pure functions.
 *
 * What a connection sends is a function of its key and the offset in its
 * stream, so checking an echo needs no copy of what was sent, and the
 * verifier can be tested without sockets.
 */
#ifndef ECHOD_BENCH_PATTERN_H
#define ECHOD_BENCH_PATTERN_H

#include <stddef.h>
#include <stdint.h>

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
