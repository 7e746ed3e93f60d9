/*
 * bench_tcp.c - the TCP modes of "echoc bench": connect, send the pattern,
 * verify the echo byte by byte.
 *
 * pingpong keeps --depth messages in flight; bulk is pingpong with a deep
 * pipe and big messages; idle is pingpong on a slow schedule; connrate
 * connects, echoes one message and closes, over and over (--once: the
 * server closes first).
 */
#include "bench_worker.h"

#include "bench_pattern.h"
#include "clock.h"
#include "net.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define CONNECT_BATCH 256 /* connects in flight per worker: spare the SYN backlog */

/* ---------------------------------------------------------------- connecting */

/* Starts the initial connects, at most CONNECT_BATCH in flight. */
void bench_tcp_connect_more(struct bench_worker *w)
{
	while (w->next_connect < w->n && w->connecting < CONNECT_BATCH &&
	       bench_phase(w) != PHASE_STOP)
		bench_tcp_connect(w, &w->conns[w->next_connect++]);
}

static void tcp_established(struct bench_worker *w, struct bconn *c)
{
	uint64_t now = clock_now_ns();

	w->connecting--;
	c->st = CS_RUNNING;
	c->started = c->done = c->tx_bytes = c->rx_bytes = 0;
	c->last_ns = now;
	bench_count(&w->ct.open, 1);
	bench_arm_out(w, c, false);
	/* With a schedule, the pacer sends, once every connection is up. */
	if (!w->cfg->rate)
		bench_tcp_send(w, c, now);
	bench_tcp_connect_more(w);
}

void bench_tcp_connect(struct bench_worker *w, struct bconn *c)
{
	const struct bench_cfg *cfg = w->cfg;
	int fd = bench_socket(cfg), rc;

	c->t_connect = clock_now_ns();
	if (fd < 0) {
		c->fd = -1;
		c->st = CS_IDLE;
		bench_conn_error(w, c, "socket", -fd);
		return;
	}
	c->fd = fd;
	c->out_armed = true;
	bench_set_events(w, c, EPOLLIN | EPOLLOUT, EPOLL_CTL_ADD);
	rc = bench_bind_source(cfg, fd, c->id);
	if (rc < 0) {
		c->st = CS_IDLE;
		bench_conn_error(w, c, "bind --source", -rc);
		return;
	}
	if (connect(fd, (struct sockaddr *)&cfg->addr, cfg->addrlen) == 0) {
		c->st = CS_CONNECTING;
		w->connecting++;
		tcp_established(w, c);
		return;
	}
	if (errno != EINPROGRESS) {
		c->st = CS_IDLE;
		bench_conn_error(w, c, "connect", errno);
		return;
	}
	c->st = CS_CONNECTING;
	w->connecting++;
}

void bench_tcp_connected(struct bench_worker *w, struct bconn *c)
{
	socklen_t len = sizeof(int);
	int e = 0;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	if (e) {
		bench_conn_error(w, c, "connect", e);
		bench_tcp_connect_more(w);
		return;
	}
	tcp_established(w, c);
}

int bench_tcp_probe(int fd, const struct bench_cfg *c)
{
	socklen_t len = sizeof(int);
	int e = 0, rc;

	rc = net_wait(fd, POLLOUT, (int)c->timeout_ms);
	if (rc <= 0)
		return rc == 0 ? -ETIMEDOUT : rc;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		return -errno;
	return -e;
}

/* ---------------------------------------------------------------- sending */

/* Stamps new messages and fills buf with what the stream owes; returns the length. */
static size_t build_tx(struct bench_worker *w, struct bconn *c, uint64_t now)
{
	uint64_t size = (uint64_t)w->cfg->size, from;

	while (c->started * size - c->tx_bytes < BENCH_BUF_BYTES &&
	       bench_may_start(w, c, now, &from)) {
		if (c->started == c->done)
			c->last_ns = now; /* the timeout runs while something is in flight */
		c->stamp[c->started % (uint64_t)w->cfg->depth] = from;
		c->started++;
	}
	size = c->started * size - c->tx_bytes;
	if (size > BENCH_BUF_BYTES)
		size = BENCH_BUF_BYTES;
	bench_fill(w->buf, (size_t)size, bench_conn_key(c), c->tx_bytes, (size_t)w->cfg->size);
	return (size_t)size;
}

void bench_tcp_send(struct bench_worker *w, struct bconn *c, uint64_t now)
{
	size_t len;
	ssize_t n;

	while ((len = build_tx(w, c, now)) > 0) {
		n = send(c->fd, w->buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			bench_conn_error(w, c, "send", errno);
			return;
		}
		c->tx_bytes += (uint64_t)n;
		if ((size_t)n < len)
			break;
	}
	bench_arm_out(w, c, len > 0);
}

/* ---------------------------------------------------------------- receiving */

/* connrate: the connection's one message is done; start the next connection. */
static void next_cycle(struct bench_worker *w, struct bconn *c, uint64_t now)
{
	bench_record(w, c->t_connect, now);
	bench_close_conn(w, c);
	c->st = CS_IDLE;
	c->gen++;
	if (bench_phase(w) != PHASE_STOP)
		bench_tcp_connect(w, c);
}

static void after_echo(struct bench_worker *w, struct bconn *c, uint64_t now)
{
	if (w->cfg->mode != MODE_CONNRATE) {
		bench_tcp_send(w, c, now);
	} else if (c->done == 1 && w->cfg->once) {
		c->st = CS_DRAINING; /* the server closes first */
	} else if (c->done == 1) {
		next_cycle(w, c, now);
	}
}

/*
 * idle: the connection's first message came back intact.  Its latency goes
 * to a histogram of its own, warm-up or not: one verified ping on every
 * connection is what the mode reports.
 */
static void first_echo(struct bench_worker *w, struct bconn *c, uint64_t now)
{
	uint64_t from = c->stamp[0];

	hist_record(&w->first, now > from ? now - from : 0);
	bench_count(&w->ct.verified, 1);
}

/* Verifies n echoed bytes in w->buf; completes the messages they finish. */
static void consume(struct bench_worker *w, struct bconn *c, size_t n, uint64_t now)
{
	uint64_t size = (uint64_t)w->cfg->size;
	size_t bad;

	if (c->rx_bytes + n > c->tx_bytes || c->st == CS_DRAINING) {
		bench_count(&w->ct.mismatches, 1);
		bench_report(&w->b->mismatch_lines, c,
			     "the server sent %zu bytes more than it was sent", n);
		bench_fail_conn(w, c);
		return;
	}
	bad = bench_verify(w->buf, n, bench_conn_key(c), c->rx_bytes, (size_t)size);
	if (bad < n) {
		bench_mismatch(w, c, c->rx_bytes + bad, w->buf[bad]);
		bench_fail_conn(w, c);
		return;
	}
	c->rx_bytes += n;
	c->last_ns = now;
	if (w->cfg->mode == MODE_IDLE && c->done == 0 && c->rx_bytes >= size)
		first_echo(w, c, now);
	for (; c->done < c->rx_bytes / size; c->done++)
		if (w->cfg->mode != MODE_CONNRATE)
			bench_record(w, c->stamp[c->done % (uint64_t)w->cfg->depth], now);
	after_echo(w, c, now);
}

static void tcp_eof(struct bench_worker *w, struct bconn *c, uint64_t now)
{
	if (c->st == CS_DRAINING) {
		next_cycle(w, c, now);
		return;
	}
	bench_count(&w->ct.errors, 1);
	bench_report(&w->b->error_lines, c, "the server closed the connection after %llu messages",
		     (unsigned long long)c->done);
	bench_fail_conn(w, c);
}

void bench_tcp_recv(struct bench_worker *w, struct bconn *c)
{
	int fd = c->fd;
	ssize_t n;

	/* Bounded: a few reads, then let the other connections have a turn. */
	for (int i = 0; i < 4 && c->fd == fd; i++) {
		n = recv(fd, w->buf, BENCH_BUF_BYTES, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			bench_conn_error(w, c, "recv", errno);
			return;
		}
		if (n == 0) {
			tcp_eof(w, c, clock_now_ns());
			return;
		}
		consume(w, c, (size_t)n, clock_now_ns());
		if ((size_t)n < BENCH_BUF_BYTES)
			return;
	}
}
