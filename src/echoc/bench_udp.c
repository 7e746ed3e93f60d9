/*
 * bench_udp.c - "echoc bench -u": ping-pong over connected UDP sockets.
 *
 * Each datagram carries its connection and a sequence number, then the
 * pattern: loss, duplicates and reordering are counted, and a datagram
 * unanswered for --timeout is lost, so nothing is ever waited on forever.
 * A refusal (ICMP port unreachable) is an error: the probe found the server.
 */
#include "bench_worker.h"

#include "bench_pattern.h"
#include "clock.h"
#include "net.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define UDP_PROBE_ID UINT32_MAX /* the connection field of the probe datagram */

enum slot_state { SLOT_FREE, SLOT_PENDING, SLOT_ANSWERED, SLOT_LOST };

static void dgram_build(struct bench_worker *w, const struct bconn *c, uint64_t seq)
{
	uint32_t hdr[2] = {c->id, 0};
	uint64_t size = (uint64_t)w->cfg->size;

	memcpy(w->buf, hdr, sizeof(hdr));
	memcpy(w->buf + 8, &seq, sizeof(seq));
	bench_fill(w->buf + BENCH_UDP_HEADER, (size_t)size - BENCH_UDP_HEADER, bench_conn_key(c),
		   seq * size + BENCH_UDP_HEADER, (size_t)size);
}

/* Sends every datagram c may send now; a slot frees on an answer or a loss. */
void bench_udp_send(struct bench_worker *w, struct bconn *c, uint64_t now)
{
	uint64_t depth = (uint64_t)w->cfg->depth, from;

	while (c->st == CS_RUNNING && c->udp_state[c->started % depth] != SLOT_PENDING &&
	       bench_may_start(w, c, now, &from)) {
		uint64_t s = c->started % depth;

		dgram_build(w, c, c->started);
		if (send(c->fd, w->buf, (size_t)w->cfg->size, 0) < 0) {
			/* ECONNREFUSED too: the probe found the server, so it refuses us. */
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				bench_conn_error(w, c, "send", errno);
			break;
		}
		c->udp_seq[s] = c->started;
		c->udp_prev[s] = c->udp_state[s];
		c->udp_state[s] = SLOT_PENDING;
		c->udp_sent[s] = now;
		c->stamp[s] = from;
		c->started++;
		bench_count(&w->ct.sent, 1);
	}
}

/* A late copy of the probe's echo: the server answered it twice (connection 0). */
static bool is_probe_echo(const uint8_t *buf, size_t n)
{
	uint32_t id;

	memcpy(&id, buf, sizeof(id));
	return n == BENCH_UDP_HEADER && id == UDP_PROBE_ID;
}

/* Reports an echo of datagram seq whose length differs from what was sent. */
static void dgram_wrong_length(struct bench_worker *w, struct bconn *c, uint64_t seq, size_t n)
{
	bench_count(&w->ct.mismatches, 1);
	if (n < (size_t)w->cfg->size)
		bench_report(&w->b->mismatch_lines, c,
			     "datagram %llu came back truncated: %zu of its %ld bytes",
			     (unsigned long long)seq, n, w->cfg->size);
	else
		bench_report(&w->b->mismatch_lines, c,
			     "datagram %llu came back %zu bytes long, not %ld",
			     (unsigned long long)seq, n, w->cfg->size);
}

/* Checks a datagram's length, header and payload; returns its sequence or -1. */
static int64_t dgram_check(struct bench_worker *w, struct bconn *c, size_t n)
{
	uint64_t size = (uint64_t)w->cfg->size, seq = 0;
	uint32_t id = 0;
	size_t bad;

	if (n >= BENCH_UDP_HEADER) {
		memcpy(&id, w->buf, sizeof(id));
		memcpy(&seq, w->buf + 8, sizeof(seq));
	}
	if (is_probe_echo(w->buf, n)) {
		bench_count(&w->ct.duplicates, 1);
		return -1;
	}
	if (n < BENCH_UDP_HEADER || id != c->id || seq >= c->started) {
		bench_count(&w->ct.mismatches, 1);
		bench_report(&w->b->mismatch_lines, c,
			     "a datagram of %zu bytes that was never sent", n);
		return -1;
	}
	if (n != size) {
		dgram_wrong_length(w, c, seq, n);
		return -1;
	}
	bad = bench_verify(w->buf + BENCH_UDP_HEADER, n - BENCH_UDP_HEADER, bench_conn_key(c),
			   seq * size + BENCH_UDP_HEADER, (size_t)size);
	if (bad < n - BENCH_UDP_HEADER) {
		bench_mismatch(w, c, seq * size + BENCH_UDP_HEADER + bad,
			       w->buf[BENCH_UDP_HEADER + bad]);
		return -1;
	}
	return (int64_t)seq;
}

static void dgram_answer(struct bench_worker *w, struct bconn *c, uint64_t seq, uint64_t now)
{
	uint64_t depth = (uint64_t)w->cfg->depth, s = seq % depth;

	/* The slot went on to the next datagram: seq's was answered, or lost. */
	if (c->udp_seq[s] != seq) {
		bool answered = seq + depth == c->udp_seq[s] && c->udp_prev[s] == SLOT_ANSWERED;

		bench_count(answered ? &w->ct.duplicates : &w->ct.late, 1);
		return;
	}
	if (c->udp_state[s] == SLOT_LOST) {
		bench_count(&w->ct.late, 1); /* already given up on */
		return;
	}
	if (c->udp_state[s] == SLOT_ANSWERED) {
		bench_count(&w->ct.duplicates, 1);
		return;
	}
	if (seq + 1 < c->udp_high)
		bench_count(&w->ct.reordered, 1);
	else
		c->udp_high = seq + 1;
	c->udp_state[s] = SLOT_ANSWERED;
	c->done++;
	c->last_ns = now;
	bench_record(w, c->stamp[s], now);
}

void bench_udp_recv(struct bench_worker *w, struct bconn *c)
{
	uint64_t now = clock_now_ns();
	int64_t seq;
	ssize_t n;

	for (int i = 0; i < 64; i++) {
		n = recv(c->fd, w->buf, BENCH_BUF_BYTES, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) { /* an ICMP error, such as ECONNREFUSED */
			bench_conn_error(w, c, "recv", errno);
			return;
		}
		seq = dgram_check(w, c, (size_t)n);
		if (seq >= 0)
			dgram_answer(w, c, (uint64_t)seq, now);
	}
	bench_udp_send(w, c, now);
}

/* Declares lost the datagrams unanswered for --timeout, freeing their slots. */
void bench_udp_expire(struct bench_worker *w, struct bconn *c, uint64_t now)
{
	uint64_t limit = (uint64_t)w->cfg->timeout_ms * 1000000u;

	for (long s = 0; s < w->cfg->depth; s++) {
		if (c->udp_state[s] == SLOT_PENDING && now - c->udp_sent[s] > limit) {
			c->udp_state[s] = SLOT_LOST;
			c->done++;
			bench_count(&w->ct.lost, 1);
		}
	}
	bench_udp_send(w, c, now);
}

/*
 * Connection 0 goes on with the socket the probe used: a server that locks
 * onto the first source port it hears from (socat UDP-LISTEN) keeps
 * answering it.  Only worker 0 holds connection 0, so nothing races here.
 */
static int take_probe(struct bench *b, const struct bconn *c)
{
	int fd = b->probe_fd;

	if (c->id != 0)
		return -1;
	b->probe_fd = -1;
	return fd;
}

/* A new connected UDP socket in c->fd; on failure c is failed and counted. */
static int dgram_connect(struct bench_worker *w, struct bconn *c)
{
	const struct bench_cfg *cfg = w->cfg;
	int fd = bench_socket(cfg);

	if (fd < 0) {
		bench_conn_error(w, c, "socket", -fd);
		return fd;
	}
	c->fd = fd;
	if (connect(fd, (struct sockaddr *)&cfg->addr, cfg->addrlen) < 0) {
		bench_conn_error(w, c, "connect", errno);
		return -1;
	}
	return 0;
}

void bench_udp_open(struct bench_worker *w, struct bconn *c)
{
	c->fd = take_probe(w->b, c);
	if (c->fd < 0 && dgram_connect(w, c) < 0)
		return;
	bench_set_events(w, c, EPOLLIN, EPOLL_CTL_ADD);
	c->st = CS_RUNNING;
	bench_count(&w->ct.open, 1);
}

int bench_udp_probe(int fd, const struct bench_cfg *c)
{
	uint8_t buf[BENCH_UDP_HEADER] = {0};
	uint32_t id = UDP_PROBE_ID;
	ssize_t n;

	memcpy(buf, &id, sizeof(id));
	if (send(fd, buf, sizeof(buf), 0) < 0)
		return -errno;
	n = net_recv(fd, buf, sizeof(buf), (int)c->timeout_ms);
	return n < 0 ? (int)n : 0;
}
