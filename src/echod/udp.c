/*
 * udp.c - UDP echo with recvmmsg(2)/sendmmsg(2), on threads of its own.
 *
 * Techniques: one socket per worker and address, bound with SO_REUSEPORT so
 * the kernel spreads sources over the workers; batches of UDP_BATCH
 * datagrams in and out per system call; IP_PKTINFO / IPV6_RECVPKTINFO, so a
 * reply leaves from the address the datagram was sent to even on a wildcard
 * socket of a multi-homed host.  Every buffer is allocated when a worker
 * starts: nothing is allocated per datagram.  Needs Linux (recvmmsg,
 * SO_REUSEPORT, both since 3.9).
 *
 * Deliberately not done: answering in part (a truncated datagram is
 * dropped, never echoed short), queueing replies the socket cannot take
 * right away beyond a short wait (UDP may lose datagrams; we count them),
 * and io_uring (the uring engine may serve UDP itself one day).
 */
#include "udp.h"

#include "clock.h"
#include "engine.h"
#include "log.h"
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* Datagrams per recvmmsg(2); 32 x 64 KiB of buffers per worker. */
#define UDP_BATCH 32
/* Room for the largest datagram: more than NET_UDP_MAX_PAYLOAD6, so none truncates. */
#define UDP_SLOT 65536
/* Batches served from one socket before looking at the others and at stop. */
#define UDP_ROUNDS 16
/* How long a full socket send buffer may hold a batch of replies back. */
#define UDP_SEND_WAIT_MS 100
/* At most one log line per kind and worker this often (h2o's habit). */
#define UDP_LOG_EVERY_MS 60000
/* How long a worker whose poll(2) failed waits before it tries again. */
#define UDP_POLL_RETRY_MS 100
/* How many kinds of guard refusal there are, each logged on its own. */
#define UDP_GUARD_KINDS (UDP_DENY_DEST + 1)

/*
 * Source ports of the classic services that answer unsolicited datagrams:
 * echoing to one of them could start an endless ping-pong between two
 * servers (the "fraggle" loop).  Keep the list here and only here.
 */
static const uint16_t guarded_ports[] = {
	0,   /* not a real port */
	7,   /* echo */
	9,   /* discard */
	13,  /* daytime */
	17,  /* qotd */
	19,  /* chargen */
	37,  /* time */
	53,  /* domain */
	123, /* ntp */
};

union udp_cmsg {
	struct cmsghdr align;
	char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
};

/* The batch a worker receives into and answers from; allocated once. */
struct udp_batch {
	struct mmsghdr rx[UDP_BATCH], tx[UDP_BATCH];
	struct iovec riov[UDP_BATCH], tiov[UDP_BATCH];
	struct sockaddr_storage src[UDP_BATCH];
	union udp_cmsg rctl[UDP_BATCH], tctl[UDP_BATCH];
	unsigned char buf[UDP_BATCH][UDP_SLOT];
};

/* Rate-limits one kind of log line. */
struct udp_loglimit {
	uint64_t next_ms;
	unsigned long quiet; /* events not logged since the last line */
};

struct udp_worker {
	struct udp *u;
	pthread_t tid;
	bool started;
	struct pollfd *pfd; /* stop, quit, then one socket per address */
	struct metrics_worker *m;
	struct udp_batch *b;
	/* One limiter per kind, so one kind's flood does not hide another kind. */
	struct udp_loglimit guard_log[UDP_GUARD_KINDS], rate_log, poll_log;
};

enum { POLL_STOP, POLL_QUIT, POLL_SOCKETS };

struct udp {
	struct server *srv;
	int naddrs, nworkers;
	int *fds; /* fds[w * naddrs + a]: worker w's socket on address a */
	int quit[2];
	atomic_bool quitting; /* udp_stop() was called: for workers that cannot poll */
	bool allow_low_ports;
	int idle_ms; /* udp_run(): return after this long without a datagram; -1: never */
	struct udp_worker *w;
	struct udp_rate rate;
};

/* ---- The guard ---- */

static bool port_guarded(uint16_t port)
{
	for (size_t i = 0; i < sizeof(guarded_ports) / sizeof(guarded_ports[0]); i++)
		if (guarded_ports[i] == port)
			return true;
	return false;
}

/* Unspecified (0.0.0.0/8), limited broadcast or multicast: never a real sender. */
static bool bad_addr4(uint32_t a)
{
	return (a >> 24) == 0 || a == INADDR_BROADCAST || IN_MULTICAST(a);
}

static bool bad_addr6(const struct in6_addr *a)
{
	uint32_t v4;

	if (IN6_IS_ADDR_V4MAPPED(a)) {
		memcpy(&v4, &a->s6_addr[12], sizeof(v4));
		return bad_addr4(ntohl(v4));
	}
	return IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_MULTICAST(a);
}

static bool bad_addr(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return bad_addr4(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
	if (sa->sa_family == AF_INET6)
		return bad_addr6(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return true;
}

static uint16_t sa_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}

enum udp_verdict udp_guard(const struct sockaddr *src, const struct sockaddr *dst,
			   bool allow_low_ports)
{
	uint16_t port;

	if (bad_addr(src))
		return UDP_DENY_SOURCE;
	/* A datagram sent to a broadcast address would be answered by every host. */
	if (dst && bad_addr(dst))
		return UDP_DENY_DEST;
	port = sa_port(src);
	if (port == 0 || (!allow_low_ports && port_guarded(port)))
		return UDP_DENY_PORT;
	return UDP_ANSWER;
}

const char *udp_verdict_name(enum udp_verdict v)
{
	switch (v) {
	case UDP_ANSWER:
		return "answered";
	case UDP_DENY_PORT:
		return "source port is a well-known UDP service (loop guard)";
	case UDP_DENY_SOURCE:
		return "source is a broadcast, multicast or unspecified address";
	case UDP_DENY_DEST:
		return "sent to a broadcast or multicast address";
	}
	return "?";
}

/* ---- The rate limit ---- */

bool udp_bucket_take(uint64_t *tat_ns, uint64_t now_ns, uint64_t interval_ns, uint64_t burst)
{
	uint64_t tat = *tat_ns > now_ns ? *tat_ns : now_ns;

	/* Up to burst - 1 intervals of credit may be spent ahead of time. */
	if (tat - now_ns > (burst - 1) * interval_ns)
		return false;
	*tat_ns = tat + interval_ns;
	return true;
}

void udp_rate_init(struct udp_rate *r, long per_sec, uint64_t seed0, uint64_t seed1)
{
	memset(r, 0, sizeof(*r));
	for (int i = 0; i < UDP_RATE_SETS; i++)
		atomic_flag_clear(&r->set[i].lock);
	r->seed[0] = seed0;
	r->seed[1] = seed1;
	if (per_sec <= 0)
		return;
	r->interval_ns = 1000000000u / (uint64_t)per_sec;
	/* One second's worth at once: a client's short burst is never cut. */
	r->burst = (uint64_t)per_sec;
}

/* The source address as 16 bytes, IPv4 mapped into IPv6. */
static void addr_key(const struct sockaddr *sa, uint64_t key[2])
{
	struct in6_addr a6 = IN6ADDR_ANY_INIT;

	if (sa->sa_family == AF_INET) {
		a6.s6_addr[10] = a6.s6_addr[11] = 0xff;
		memcpy(&a6.s6_addr[12], &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else {
		a6 = ((const struct sockaddr_in6 *)sa)->sin6_addr;
	}
	memcpy(key, &a6, sizeof(a6));
}

/* A keyed mix (not cryptographic): enough that no one can choose a set. */
static size_t set_of(const struct udp_rate *r, const uint64_t key[2])
{
	uint64_t h = (key[0] ^ r->seed[0]) * 0x9e3779b97f4a7c15u;

	h = (h ^ (h >> 32) ^ key[1] ^ r->seed[1]) * 0xbf58476d1ce4e5b9u;
	h ^= h >> 31;
	return (size_t)(h % UDP_RATE_SETS);
}

/* The entry for key in s, or the one to give it: free, else most tokens left. */
static struct udp_rate_entry *find_entry(struct udp_rate_set *s, const uint64_t key[2])
{
	struct udp_rate_entry *victim = &s->e[0];

	for (int i = 0; i < UDP_RATE_WAYS; i++) {
		struct udp_rate_entry *e = &s->e[i];

		if (e->tat_ns && e->key[0] == key[0] && e->key[1] == key[1])
			return e;
		if (e->tat_ns < victim->tat_ns)
			victim = e;
	}
	victim->key[0] = key[0];
	victim->key[1] = key[1];
	victim->tat_ns = 0; /* a full bucket */
	return victim;
}

bool udp_rate_allow(struct udp_rate *r, const struct sockaddr *src, uint64_t now_ns)
{
	struct udp_rate_set *s;
	uint64_t key[2];
	bool ok;

	if (!r->interval_ns)
		return true;
	addr_key(src, key);
	s = &r->set[set_of(r, key)];
	while (atomic_flag_test_and_set_explicit(&s->lock, memory_order_acquire))
		; /* held for a few instructions only */
	ok = udp_bucket_take(&find_entry(s, key)->tat_ns, now_ns, r->interval_ns, r->burst);
	atomic_flag_clear_explicit(&s->lock, memory_order_release);
	return ok;
}

/* ---- Logging what was dropped ---- */

/* True when l lets a line through now; else counts one more it keeps quiet about. */
static bool log_due(struct udp_loglimit *l)
{
	uint64_t now = clock_now_ms();

	if (now < l->next_ms) {
		l->quiet++;
		return false;
	}
	l->next_ms = now + UDP_LOG_EVERY_MS;
	return true;
}

/* Logs one drop now and then; counts the ones it keeps quiet about. */
static void log_drop(struct udp_loglimit *l, const struct sockaddr *sa, socklen_t len,
		     const char *why)
{
	char name[NET_NAMELEN];

	if (!log_due(l))
		return;
	net_format_sockaddr(sa, len, name, sizeof(name));
	if (l->quiet)
		log_warn("udp: not answering %s: %s (and %lu more like it since the last report)",
			 name, why, l->quiet);
	else
		log_warn("udp: not answering %s: %s", name, why);
	l->quiet = 0;
}

/* ---- The datagram path ---- */

/* Points rx[i] at its buffers (again: recvmmsg overwrites the lengths). */
static void reset_rx(struct udp_batch *b, int i)
{
	struct msghdr *h = &b->rx[i].msg_hdr;

	b->riov[i] = (struct iovec){b->buf[i], UDP_SLOT};
	*h = (struct msghdr){
		.msg_name = &b->src[i],
		.msg_namelen = sizeof(b->src[i]),
		.msg_iov = &b->riov[i],
		.msg_iovlen = 1,
		.msg_control = b->rctl[i].buf,
		.msg_controllen = sizeof(b->rctl[i].buf),
	};
}

/*
 * The address rx was sent to, from its pktinfo, into dst; the reply's
 * pktinfo into ctl.  Returns the reply's control length, 0 if none came.
 */
static size_t take_pktinfo(struct msghdr *rx, struct sockaddr_storage *dst, union udp_cmsg *ctl)
{
	struct cmsghdr *c, *out = &ctl->align;

	for (c = CMSG_FIRSTHDR(rx); c; c = CMSG_NXTHDR(rx, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi, *reply = (struct in_pktinfo *)CMSG_DATA(out);

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			*(struct sockaddr_in *)dst = (struct sockaddr_in){.sin_family = AF_INET,
									  .sin_addr = pi.ipi_addr};
			*out = (struct cmsghdr){.cmsg_len = CMSG_LEN(sizeof(pi)),
						.cmsg_level = IPPROTO_IP,
						.cmsg_type = IP_PKTINFO};
			/* From the address it was sent to; let routing pick the interface. */
			*reply = (struct in_pktinfo){.ipi_spec_dst = pi.ipi_addr};
			return CMSG_SPACE(sizeof(pi));
		}
		if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			*(struct sockaddr_in6 *)dst = (struct sockaddr_in6){
				.sin6_family = AF_INET6, .sin6_addr = pi.ipi6_addr};
			*out = (struct cmsghdr){.cmsg_len = CMSG_LEN(sizeof(pi)),
						.cmsg_level = IPPROTO_IPV6,
						.cmsg_type = IPV6_PKTINFO};
			/* The interface matters for link-local addresses: keep it. */
			memcpy(CMSG_DATA(out), &pi, sizeof(pi));
			return CMSG_SPACE(sizeof(pi));
		}
	}
	return 0;
}

/* Decides whether datagram i is answered, counting and logging the ones that are not. */
static bool answerable(struct udp_worker *w, int i, const struct sockaddr *dst, uint64_t now_ns)
{
	struct msghdr *h = &w->b->rx[i].msg_hdr;
	const struct sockaddr *src = h->msg_name;
	enum udp_verdict v;

	if (h->msg_flags & MSG_TRUNC) {
		metrics_add(w->m, METRICS_UDP_TRUNCATED, 1);
		return false;
	}
	v = udp_guard(src, dst, w->u->allow_low_ports);
	if (v != UDP_ANSWER) {
		metrics_add(w->m, METRICS_UDP_GUARD_DROPS, 1);
		log_drop(&w->guard_log[v], src, h->msg_namelen, udp_verdict_name(v));
		return false;
	}
	if (!udp_rate_allow(&w->u->rate, src, now_ns)) {
		metrics_add(w->m, METRICS_UDP_RATE_DROPS, 1);
		log_drop(&w->rate_log, src, h->msg_namelen, "over --udp-rate");
		return false;
	}
	return true;
}

/* Fills tx[k] with the reply to rx[i]: same payload, back to its source. */
static void build_reply(struct udp_batch *b, int i, int k, size_t ctl_len)
{
	struct msghdr *rx = &b->rx[i].msg_hdr;

	b->tiov[k] = (struct iovec){b->buf[i], b->rx[i].msg_len};
	b->tx[k].msg_hdr = (struct msghdr){
		.msg_name = rx->msg_name,
		.msg_namelen = rx->msg_namelen,
		.msg_iov = &b->tiov[k],
		.msg_iovlen = 1,
		.msg_control = ctl_len ? b->tctl[k].buf : NULL,
		.msg_controllen = ctl_len,
	};
}

/* Turns the n datagrams received into replies; returns how many. */
static int prepare_replies(struct udp_worker *w, int n)
{
	struct udp_batch *b = w->b;
	struct sockaddr_storage dst;
	uint64_t now_ns = clock_now_ns();
	size_t ctl_len;
	int k = 0;

	for (int i = 0; i < n; i++) {
		dst.ss_family = AF_UNSPEC;
		ctl_len = take_pktinfo(&b->rx[i].msg_hdr, &dst, &b->tctl[k]);
		if (!answerable(w, i, dst.ss_family ? (struct sockaddr *)&dst : NULL, now_ns))
			continue;
		build_reply(b, i, k++, ctl_len);
	}
	return k;
}

/*
 * Sends the k replies in tx.  A reply the kernel refuses (say, a source it
 * cannot send from) is counted and skipped; when the send buffer stays full
 * for UDP_SEND_WAIT_MS the rest are dropped and counted.
 */
static void send_replies(struct udp_worker *w, int fd, int k)
{
	int off = 0, n;

	while (off < k) {
		n = sendmmsg(fd, &w->b->tx[off], (unsigned)(k - off), MSG_DONTWAIT);
		if (n > 0) {
			metrics_add(w->m, METRICS_UDP_ECHOED, (unsigned long)n);
			off += n;
		} else if (errno == EINTR) {
			continue;
		} else if ((errno == EAGAIN || errno == ENOBUFS) &&
			   net_wait(fd, POLLOUT, UDP_SEND_WAIT_MS) > 0) {
			continue;
		} else if (errno == EAGAIN || errno == ENOBUFS) {
			metrics_add(w->m, METRICS_UDP_SEND_ERRORS, (unsigned long)(k - off));
			return;
		} else {
			metrics_add(w->m, METRICS_UDP_SEND_ERRORS, 1);
			off++;
		}
	}
}

/* Receives and answers one batch.  Returns datagrams received, 0 if none waited. */
static int serve_batch(struct udp_worker *w, int fd)
{
	int n, k;

	do
		n = recvmmsg(fd, w->b->rx, UDP_BATCH, MSG_DONTWAIT, NULL);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		reset_rx(w->b, 0); /* in case a failed call left its mark */
		return 0;
	}
	k = prepare_replies(w, n);
	if (k)
		send_replies(w, fd, k);
	/* Only the slots that received were touched: a ping-pong resets one. */
	for (int i = 0; i < n; i++)
		reset_rx(w->b, i);
	return n;
}

/*
 * Serves fd until it is drained or UDP_ROUNDS batches went by.  A short
 * batch means the queue was empty a moment ago: back to poll(2) rather than
 * one more recvmmsg(2) that would most likely find nothing.
 */
static void serve_socket(struct udp_worker *w, int fd)
{
	for (int r = 0; r < UDP_ROUNDS; r++)
		if (serve_batch(w, fd) < UDP_BATCH)
			return;
}

/*
 * After poll(2) failed with err (out of memory, a descriptor limit lowered
 * under us): says so now and then, and waits a little before the next try.
 * The worker goes on rather than ending UDP service while TCP runs on; a
 * failure that lasts shows in the log once a minute.  Returns false when the
 * worker should end instead.
 */
static bool poll_failed(struct udp_worker *w, int err)
{
	struct timespec pause = {0, UDP_POLL_RETRY_MS * 1000000L};
	struct udp_loglimit *l = &w->poll_log;

	if (log_due(l)) {
		if (l->quiet)
			log_error("udp: poll: %s; retrying every %d ms (and %lu more failures "
				  "since the last report)",
				  strerror(err), UDP_POLL_RETRY_MS, l->quiet);
		else
			log_error("udp: poll: %s; retrying every %d ms", strerror(err),
				  UDP_POLL_RETRY_MS);
		l->quiet = 0;
	}
	/* The stop pipe cannot be polled now: udp_stop() raises a flag too. */
	while (nanosleep(&pause, &pause) < 0 && errno == EINTR)
		;
	return !atomic_load(&w->u->quitting);
}

static void *worker_main(void *arg)
{
	struct udp_worker *w = arg;
	nfds_t nfds = (nfds_t)(POLL_SOCKETS + w->u->naddrs);

	for (;;) {
		int rc = poll(w->pfd, nfds, w->u->idle_ms);

		if (rc < 0) {
			if (errno != EINTR && !poll_failed(w, errno))
				return NULL;
			continue;
		}
		if (rc == 0) /* idle for idle_ms: udp_run() is done */
			return NULL;
		if (w->pfd[POLL_STOP].revents || w->pfd[POLL_QUIT].revents)
			return NULL;
		for (nfds_t i = POLL_SOCKETS; i < nfds; i++)
			if (w->pfd[i].revents)
				serve_socket(w, w->pfd[i].fd);
	}
}

/* ---- Setting up and tearing down ---- */

static void close_fds(struct udp *u)
{
	for (int i = 0; i < u->naddrs * u->nworkers; i++)
		if (u->fds[i] >= 0)
			close(u->fds[i]);
}

/* Opens the workers' sockets on the address of listener fd, as address number a. */
static int bind_address(struct udp *u, int lfd, int a, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char name[NET_NAMELEN];
	int fd;

	if (getsockname(lfd, (struct sockaddr *)&ss, &len) < 0) {
		fd = -errno;
		snprintf(err, errlen, "udp: getsockname: %s", strerror(-fd));
		return fd;
	}
	for (int w = 0; w < u->nworkers; w++) {
		fd = net_bind_dgram((struct sockaddr *)&ss, len, err, errlen);
		if (fd < 0)
			return fd;
		u->fds[w * u->naddrs + a] = fd;
	}
	net_format_sockaddr((struct sockaddr *)&ss, len, name, sizeof(name));
	log_always("listening on udp %s", name);
	return 0;
}

static int count_ip_listeners(const struct server *srv)
{
	int n = 0;

	for (int i = 0; i < srv->nlisteners; i++)
		n += !srv->listeners[i].is_unix && listener_is_first(&srv->listeners[i]);
	return n;
}

/* Allocates u and its fd table, every fd -1. */
static struct udp *udp_alloc(struct server *srv, int naddrs)
{
	struct udp *u = calloc(1, sizeof(*u));
	uint64_t seed[2] = {0, 0};

	if (!u)
		return NULL;
	u->srv = srv;
	u->naddrs = naddrs;
	u->nworkers = srv->workers > 0 ? srv->workers : 1;
	u->quit[0] = u->quit[1] = -1;
	u->idle_ms = -1;
	atomic_init(&u->quitting, false);
	u->allow_low_ports = srv->cfg->udp_allow_low_ports;
	u->fds = malloc(sizeof(*u->fds) * (size_t)(naddrs * u->nworkers));
	if (!u->fds) {
		free(u);
		return NULL;
	}
	for (int i = 0; i < naddrs * u->nworkers; i++)
		u->fds[i] = -1;
	/* A predictable seed only costs evenness, so a failure is no reason to stop. */
	if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) < 0)
		seed[0] = clock_now_ns();
	udp_rate_init(&u->rate, srv->cfg->udp_rate, seed[0], seed[1]);
	return u;
}

int udp_open(struct server *srv, struct udp **out, char *err, size_t errlen)
{
	struct udp *u = udp_alloc(srv, count_ip_listeners(srv));
	int a = 0, rc;

	if (!u) {
		snprintf(err, errlen, "udp: out of memory");
		return -ENOMEM;
	}
	for (int i = 0; i < srv->nlisteners; i++) {
		/* One UDP twin per address, also where TCP has one listener per worker. */
		if (srv->listeners[i].is_unix || !listener_is_first(&srv->listeners[i]))
			continue;
		rc = bind_address(u, srv->listeners[i].fd, a++, err, errlen);
		if (rc < 0)
			goto out_close;
	}
	*out = u;
	return 0;
out_close:
	close_fds(u);
	free(u->fds);
	free(u);
	return rc;
}

/* Asks for each datagram's destination address, as net_bind_dgram() does. */
static void ask_pktinfo(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int one = 1;

	/* Best effort: without it replies still go out, from the routing's choice. */
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET)
		setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
	else if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
}

int udp_adopt(struct server *srv, const int *fds, int n, struct udp **out, char *err, size_t errlen)
{
	struct udp *u = udp_alloc(srv, n);
	int rc = 0;

	if (!u) {
		snprintf(err, errlen, "udp: out of memory");
		for (int a = 0; a < n; a++)
			close(fds[a]);
		return -ENOMEM;
	}
	for (int a = 0; a < n; a++) {
		ask_pktinfo(fds[a]);
		u->fds[a] = fds[a];
	}
	/* Every worker polls the same sockets: no SO_REUSEPORT twins exist. */
	for (int i = n; rc == 0 && i < n * u->nworkers; i++) {
		u->fds[i] = fcntl(fds[i % n], F_DUPFD_CLOEXEC, 0);
		if (u->fds[i] < 0) {
			rc = -errno;
			snprintf(err, errlen, "udp: dup: %s", strerror(errno));
		}
	}
	if (rc == 0) {
		*out = u;
		return 0;
	}
	close_fds(u);
	free(u->fds);
	free(u);
	return rc;
}

/* Gives worker i its buffers and its poll set. */
static int worker_init(struct udp *u, int i)
{
	struct udp_worker *w = &u->w[i];

	w->u = u;
	w->m = &u->srv->metrics.w[i % u->srv->metrics.nworkers];
	w->b = malloc(sizeof(*w->b));
	w->pfd = calloc((size_t)(POLL_SOCKETS + u->naddrs), sizeof(*w->pfd));
	if (!w->b || !w->pfd)
		return -ENOMEM;
	for (int j = 0; j < UDP_BATCH; j++)
		reset_rx(w->b, j);
	w->pfd[POLL_STOP] = (struct pollfd){.fd = u->srv->stop_fd, .events = POLLIN};
	w->pfd[POLL_QUIT] = (struct pollfd){.fd = u->quit[0], .events = POLLIN};
	for (int a = 0; a < u->naddrs; a++)
		w->pfd[POLL_SOCKETS + a] =
			(struct pollfd){.fd = u->fds[i * u->naddrs + a], .events = POLLIN};
	return 0;
}

int udp_start(struct udp *u)
{
	int rc;

	if (pipe2(u->quit, O_CLOEXEC) < 0)
		return -errno;
	u->w = calloc((size_t)u->nworkers, sizeof(*u->w));
	if (!u->w)
		return -ENOMEM;
	for (int i = 0; i < u->nworkers; i++) {
		rc = worker_init(u, i);
		if (rc < 0)
			return rc;
		rc = -pthread_create(&u->w[i].tid, NULL, worker_main, &u->w[i]);
		if (rc < 0)
			return rc;
		u->w[i].started = true;
	}
	return 0;
}

int udp_run(struct udp *u, int idle_ms)
{
	int rc;

	if (pipe2(u->quit, O_CLOEXEC) < 0)
		return -errno;
	u->w = calloc((size_t)u->nworkers, sizeof(*u->w)); /* only w[0] runs */
	if (!u->w)
		return -ENOMEM;
	rc = worker_init(u, 0);
	if (rc < 0)
		return rc;
	u->idle_ms = idle_ms;
	worker_main(&u->w[0]);
	return 0;
}

void udp_stop(struct udp *u)
{
	if (!u)
		return;
	/* The engine may return before any stop was asked for: wake the workers. */
	atomic_store(&u->quitting, true);
	if (u->quit[1] >= 0 && write(u->quit[1], "", 1) < 0)
		log_error("udp: cannot wake the workers: %s", strerror(errno));
	for (int i = 0; u->w && i < u->nworkers; i++) {
		if (u->w[i].started)
			pthread_join(u->w[i].tid, NULL);
		free(u->w[i].b);
		free(u->w[i].pfd);
	}
	if (u->quit[0] >= 0) {
		close(u->quit[0]);
		close(u->quit[1]);
	}
	close_fds(u);
	free(u->w);
	free(u->fds);
	free(u);
}
