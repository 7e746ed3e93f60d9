/*
 * clock.h - monotonic time in the units the deadlines use.
 *
 * Header-only: both programs need it and it is two calls.
 */
#ifndef ECHOD_CLOCK_H
#define ECHOD_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t clock_now_ms(void)
{
	return clock_now_ns() / 1000000u;
}

#endif
