/*
 * udp.h - UDP echo (RFC 862), served by threads of its own.
 *
 * echod --udp binds UDP sockets on the addresses of its TCP listeners (same
 * address, same real port) and answers each datagram with one datagram of
 * the same payload, from the address it was sent to.  This runs beside
 * whichever TCP engine runs: the UDP workers are plain threads doing
 * recvmmsg(2)/sendmmsg(2), whatever --model says.
 *
 * An open UDP echo is a known reflector, so two policies sit in front of the
 * reply: a guard (never answer the well-known service ports nor broadcast,
 * multicast or unspecified addresses) and a per-source rate limit.  Both are
 * pure functions below so they can be tested without sockets.
 */
#ifndef ECHOD_UDP_H
#define ECHOD_UDP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct server;
struct udp;

/*
 * Binds srv->workers UDP sockets (SO_REUSEPORT) on the address of every IP
 * listener in srv, and logs "listening on udp ADDR" once per address.
 * Unix listeners are skipped.  Returns 0 with *out set, or -errno with one
 * line naming the address in err; nothing stays open on failure.
 */
int udp_open(struct server *srv, struct udp **out, char *err, size_t errlen);

/*
 * Serves the n UDP sockets in fds, already bound (by systemd, by inetd),
 * instead of binding twins of srv's listeners; takes them over, whatever
 * it returns.  Logs nothing.  Returns 0 with *out set, or -errno with one
 * line in err.
 */
int udp_adopt(struct server *srv, const int *fds, int n, struct udp **out, char *err,
	      size_t errlen);

/*
 * Serves u's sockets in the calling thread, one worker, instead of
 * udp_start(): until srv->stop_fd is readable, or no datagram came for
 * idle_ms (inetd's wait mode).  srv->metrics must be ready, with one worker
 * at least.  Returns 0 or -errno; udp_stop() still frees u.
 */
int udp_run(struct udp *u, int idle_ms);

/* Starts the worker threads; srv->metrics must be ready.  0 or -errno. */
int udp_start(struct udp *u);

/*
 * Stops the workers (they also stop by themselves once srv->stop_fd is
 * readable), joins them, closes the sockets and frees u.  u may be NULL.
 */
void udp_stop(struct udp *u);

/* Why the guard refuses to answer a datagram. */
enum udp_verdict {
	UDP_ANSWER = 0,
	UDP_DENY_PORT,	 /* source port 0 or a well-known UDP service port */
	UDP_DENY_SOURCE, /* broadcast, multicast or unspecified source address */
	UDP_DENY_DEST,	 /* sent to a broadcast or multicast address */
};

/*
 * The loop and reflection guard.  src is the sender, dst the address the
 * datagram was sent to (NULL if unknown).  allow_low_ports answers the
 * well-known service ports too, but never port 0.
 */
enum udp_verdict udp_guard(const struct sockaddr *src, const struct sockaddr *dst,
			   bool allow_low_ports);
/* A short reason for a verdict, for the log. */
const char *udp_verdict_name(enum udp_verdict v);

/*
 * The token bucket, as GCRA: *tat_ns is the theoretical arrival time of the
 * next datagram.  interval_ns apart on average, up to burst at once.  Takes
 * one token and returns true, or returns false (over the limit) and leaves
 * *tat_ns alone.
 */
bool udp_bucket_take(uint64_t *tat_ns, uint64_t now_ns, uint64_t interval_ns, uint64_t burst);

/*
 * Per-source rate limits in a fixed table: UDP_RATE_SETS sets of
 * UDP_RATE_WAYS entries, keyed by the source address (not port), so memory
 * stays the same whatever the number of sources.  A new source takes a free
 * entry of its set or else evicts the one with the most tokens left, which
 * is the one whose history matters least.  Safe to share between threads:
 * each set has its own spin lock, held for a few instructions.
 */
#define UDP_RATE_SETS 1024
#define UDP_RATE_WAYS 4

struct udp_rate_entry {
	uint64_t key[2]; /* the address, IPv4 as ::ffff:a.b.c.d */
	uint64_t tat_ns; /* 0: free */
};

struct udp_rate_set {
	atomic_flag lock;
	struct udp_rate_entry e[UDP_RATE_WAYS];
};

struct udp_rate {
	uint64_t interval_ns; /* 0: unlimited */
	uint64_t burst;
	uint64_t seed[2]; /* hash key, so sources cannot aim at one set */
	struct udp_rate_set set[UDP_RATE_SETS];
};

/* Sets r up for per_sec datagrams per second per source (0 = unlimited). */
void udp_rate_init(struct udp_rate *r, long per_sec, uint64_t seed0, uint64_t seed1);
/* True if src may be answered at now_ns, and takes its token. */
bool udp_rate_allow(struct udp_rate *r, const struct sockaddr *src, uint64_t now_ns);

#endif
