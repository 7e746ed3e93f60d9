/*
 * busy_poll.h - what --busy-poll sets in the kernel, and the spin's pause.
 *
 * With --busy-poll the epoll and uring workers never sleep: they ask the
 * kernel for events without waiting (epoll_wait with a timeout of 0, an
 * io_uring_enter that waits for nothing) and ask again at once.  That alone
 * takes the cross-CPU wake-up out of every round trip, on loopback too.
 *
 * On a real NIC the kernel can also poll the device queue (NAPI) from the
 * spinning thread instead of waiting for its interrupt; that is what the
 * settings here ask for.  On loopback there is no NAPI context to poll and
 * they change nothing.  docs/engines.md ("busy-poll") says which sysctls
 * and device settings they work with.
 */
#ifndef ECHOD_BUSY_POLL_H
#define ECHOD_BUSY_POLL_H

#include "engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/* For headers older than the kernel (Debian 12's lack EPIOCSPARAMS, Linux 6.9). */
#ifndef SO_BUSY_POLL
#define SO_BUSY_POLL 46
#endif
#ifndef SO_PREFER_BUSY_POLL
#define SO_PREFER_BUSY_POLL 69
#endif
#ifndef EPIOCSPARAMS
struct epoll_params {
	uint32_t busy_poll_usecs;
	uint16_t busy_poll_budget;
	uint8_t prefer_busy_poll;
	uint8_t __pad; /* must be zero */
};
#define EPOLL_IOC_TYPE 0x8A
#define EPIOCSPARAMS   _IOW(EPOLL_IOC_TYPE, 0x01, struct epoll_params)
#endif

/* How long one socket read may poll the device queue when it is empty, in µs. */
#define BUSY_POLL_USECS 50
/* Packets per NAPI poll from epoll: the most the kernel allows without CAP_NET_ADMIN. */
#define BUSY_POLL_BUDGET 64

/*
 * Sets SO_BUSY_POLL and SO_PREFER_BUSY_POLL on every TCP listener; accepted
 * sockets inherit both, so this runs once, before privileges are dropped
 * (SO_PREFER_BUSY_POLL needs CAP_NET_ADMIN).  Logs one line per option the
 * kernel refused; serving goes on without it.
 */
void busy_poll_listeners(const struct server *srv);

/*
 * Sets the epoll instance's own busy-poll parameters (EPIOCSPARAMS, Linux
 * 6.9).  Returns 0 or -errno; when log is true a failure gets one line.
 */
int busy_poll_epoll(int epfd, bool log);

/*
 * Why the kernel refused busy-poll setting what (an option or ioctl name)
 * with err, as one line for the log, in buf.
 */
void busy_poll_explain(const char *what, int err, char *buf, size_t len);

/*
 * Once per empty turn of a spin loop: tells the CPU it spins, which hands a
 * hyper-thread sibling the core for a moment (x86 PAUSE: 10 to 140 cycles).
 */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

#endif
