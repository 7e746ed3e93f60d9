/*
 * bench_pattern.c - the byte pattern of "echoc bench": a corrupted, lost,
 * duplicated or reordered byte of a TCP stream is a mismatch.
 */
#include "bench_pattern.h"

#include <string.h>

static uint64_t mix64(uint64_t x)
{
	/* splitmix64's finaliser: every input bit flips half the output. */
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Bytes [i, i + len) of message m. */
static void fill_message(uint8_t *buf, size_t len, uint64_t key, uint64_t m, uint64_t i)
{
	uint64_t base = mix64(mix64(key) ^ m), word = 0, w = UINT64_MAX;

	for (size_t j = 0; j < len; j++, i++) {
		if ((i & 7) == 0 && len - j >= 8) {
			word = mix64(base + (i >> 3));
			for (unsigned k = 0; k < 8; k++)
				buf[j + k] = (uint8_t)(word >> (8 * k));
			w = i >> 3;
			j += 7;
			i += 7;
			continue;
		}
		if ((i >> 3) != w) {
			w = i >> 3;
			word = mix64(base + w);
		}
		buf[j] = (uint8_t)(word >> (8 * (i & 7)));
	}
}

void bench_fill(uint8_t *buf, size_t len, uint64_t key, uint64_t off, size_t size)
{
	while (len > 0) {
		uint64_t m = off / size, i = off % size;
		size_t n = size - i < len ? (size_t)(size - i) : len;

		fill_message(buf, n, key, m, i);
		buf += n;
		off += n;
		len -= n;
	}
}

size_t bench_verify(const uint8_t *buf, size_t len, uint64_t key, uint64_t off, size_t size)
{
	uint8_t want[4096];
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < sizeof(want) ? len - done : sizeof(want);

		bench_fill(want, n, key, off + done, size);
		if (memcmp(want, buf + done, n)) {
			for (size_t i = 0; i < n; i++)
				if (want[i] != buf[done + i])
					return done + i;
		}
		done += n;
	}
	return len;
}
