/*
 * echoc_udp.c - the echo client over UDP (echoc -u).
 *
 * One connected UDP socket, so the kernel drops datagrams from anyone but
 * the server and reports an ICMP port-unreachable as ECONNREFUSED.  UDP
 * neither retransmits nor orders: a datagram whose echo does not come back
 * within --timeout is reported lost and the exit status is 1; pipe mode
 * matches echoes to what it sent by content, so a reordered echo is fine,
 * and writes them out in the order of the input.
 *
 * Deliberately not done: retransmission (an echo could then not tell a late
 * reply from a duplicate), and pacing: a server's --udp-rate limit shows up
 * here as lost datagrams.
 */
#include "echoc_udp.h"

#include "clock.h"
#include "echoc.h"
#include "net.h"

#include <err.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Room for any datagram, so a longer echo is seen as such, not cut short. */
#define RECV_MAX 65536

struct dsession {
	int fd;
	char peer[NET_NAMELEN];
	int timeout_ms;
	char buf[RECV_MAX];
};

/* Sends one datagram.  Returns 0, or -1 after saying why. */
static int send_dgram(const struct dsession *s, const char *p, size_t len)
{
	ssize_t n;

	for (;;) {
		n = send(s->fd, p, len, 0);
		if (n >= 0)
			return 0;
		if (errno == EINTR)
			continue;
		/* A full send buffer drains by itself: wait for it. */
		if ((errno == EAGAIN || errno == ENOBUFS) &&
		    net_wait(s->fd, POLLOUT, s->timeout_ms) > 0)
			continue;
		warn("send to %s (%zu bytes)", s->peer, len);
		return -1;
	}
}

/* Receives one datagram into s->buf.  Returns its length, -EAGAIN, or -1 after saying why. */
static ssize_t recv_dgram(struct dsession *s)
{
	ssize_t n;

	do
		n = recv(s->fd, s->buf, sizeof(s->buf), MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return -EAGAIN;
	if (n < 0) {
		warnx("receive from %s: %s", s->peer, strerror(errno));
		return -1;
	}
	if ((size_t)n > sizeof(s->buf)) {
		warnx("echo differs from what was sent: a %zd-byte datagram", n);
		return -1;
	}
	return n;
}

/*
 * Sends msg as one datagram, waits for its echo, prints it.  Returns 0 when
 * the echo equals msg, -1 after one line saying why.
 */
static int dgram_exchange(struct dsession *s, const char *msg, size_t len)
{
	uint64_t deadline = clock_now_ms() + (uint64_t)s->timeout_ms;
	ssize_t n = -EAGAIN;
	int64_t left;

	if (send_dgram(s, msg, len) < 0)
		return -1;
	while (n == -EAGAIN) {
		left = (int64_t)(deadline - clock_now_ms());
		if (left <= 0 || net_wait(s->fd, POLLIN, (int)left) == 0) {
			warnx("timeout after %g s waiting for the echo of a %zu-byte datagram "
			      "(lost?)",
			      (double)s->timeout_ms / 1000.0, len);
			return -1;
		}
		n = recv_dgram(s);
	}
	if (n < 0 || echoc_write_out(s->buf, (size_t)n) < 0)
		return -1;
	if ((size_t)n != len || memcmp(s->buf, msg, len)) {
		warnx("echo differs from what was sent");
		return -1;
	}
	return 0;
}

/* Message mode: the words as one datagram. */
static int dgram_message(struct dsession *s, char **words, int n, bool no_newline)
{
	size_t len;
	char *msg = echoc_join_words(words, n, no_newline, &len);
	int rc;

	if (!msg) {
		warnx("out of memory");
		return -1;
	}
	/* Checked against IPv6's limit; over IPv4 the kernel says EMSGSIZE between the two. */
	if (len > NET_UDP_MAX_PAYLOAD6) {
		warnx("message of %zu bytes is too long for one datagram (at most %d)", len,
		      NET_UDP_MAX_PAYLOAD6);
		free(msg);
		return -1;
	}
	rc = dgram_exchange(s, msg, len);
	free(msg);
	return rc;
}

/* Interactive mode: one datagram per line typed. */
static int dgram_interactive(struct dsession *s)
{
	char line[4096];
	ssize_t n;

	for (;;) {
		n = read(STDIN_FILENO, line, sizeof(line));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			warn("read standard input");
			return -1;
		}
		if (n == 0)
			return 0;
		if (dgram_exchange(s, line, (size_t)n) < 0)
			return -1;
	}
}

/*
 * Pipe mode: up to ECHOC_UDP_WINDOW datagrams in flight; their echoes are
 * written out in input order as soon as every earlier one is back.
 */
struct dgram {
	size_t len;
	bool echoed;
	uint64_t sent_ms;
	char data[ECHOC_UDP_CHUNK];
};

struct window {
	struct dgram d[ECHOC_UDP_WINDOW];
	unsigned head;	/* oldest datagram in flight */
	unsigned count; /* datagrams in flight */
	uint64_t seq;	/* datagrams sent, for messages */
	bool in_eof;
};

static struct dgram *window_slot(struct window *w, unsigned i)
{
	return &w->d[(w->head + i) % ECHOC_UDP_WINDOW];
}

/* Reads the next block of standard input and sends it as one datagram. */
static int dgram_pipe_send(struct dsession *s, struct window *w)
{
	struct dgram *d = window_slot(w, w->count);
	ssize_t n;

	do
		n = read(STDIN_FILENO, d->data, sizeof(d->data));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		warn("read standard input");
		return -1;
	}
	if (n == 0) {
		w->in_eof = true;
		return 0;
	}
	d->len = (size_t)n;
	d->echoed = false;
	d->sent_ms = clock_now_ms();
	w->count++;
	w->seq++;
	return send_dgram(s, d->data, d->len);
}

/* Writes out the echoed datagrams at the front of the window. */
static int dgram_pipe_flush(struct window *w)
{
	while (w->count && window_slot(w, 0)->echoed) {
		if (echoc_write_out(window_slot(w, 0)->data, window_slot(w, 0)->len) < 0)
			return -1;
		w->head = (w->head + 1) % ECHOC_UDP_WINDOW;
		w->count--;
	}
	return 0;
}

/* Matches one echo with the datagram in flight it equals. */
static int dgram_pipe_recv(struct dsession *s, struct window *w)
{
	ssize_t n = recv_dgram(s);

	if (n == -EAGAIN)
		return 0;
	if (n < 0)
		return -1;
	for (unsigned i = 0; i < w->count; i++) {
		struct dgram *d = window_slot(w, i);

		if (!d->echoed && d->len == (size_t)n && !memcmp(d->data, s->buf, d->len)) {
			d->echoed = true;
			return dgram_pipe_flush(w);
		}
	}
	warnx("echo differs from what was sent (a %zd-byte datagram matching none in flight)", n);
	return -1;
}

/* How long to wait for the oldest echo; 0 once it is overdue. */
static int dgram_pipe_timeout(const struct dsession *s, struct window *w)
{
	int64_t left;

	if (!w->count)
		return -1;
	left = (int64_t)(window_slot(w, 0)->sent_ms + (uint64_t)s->timeout_ms - clock_now_ms());
	return left > 0 ? (int)left : 0;
}

static int dgram_pipe_step(struct dsession *s, struct window *w)
{
	struct pollfd pfd[2] = {
		{.fd = !w->in_eof && w->count < ECHOC_UDP_WINDOW ? STDIN_FILENO : -1,
		 .events = POLLIN},
		{.fd = w->count ? s->fd : -1, .events = POLLIN},
	};
	int timeout_ms = dgram_pipe_timeout(s, w);

	if (timeout_ms == 0) {
		warnx("timeout after %g s waiting for the echo of datagram %lu (lost?)",
		      (double)s->timeout_ms / 1000.0, (unsigned long)(w->seq - w->count + 1));
		return -1;
	}
	if (poll(pfd, 2, timeout_ms) < 0) {
		if (errno == EINTR)
			return 0;
		warn("poll");
		return -1;
	}
	if (pfd[1].revents && dgram_pipe_recv(s, w) < 0)
		return -1;
	if (pfd[0].revents && dgram_pipe_send(s, w) < 0)
		return -1;
	return 0;
}

static int dgram_pipe_mode(struct dsession *s)
{
	struct window *w = calloc(1, sizeof(*w));
	int rc = 0;

	if (!w) {
		warnx("out of memory");
		return -1;
	}
	while (rc == 0 && !(w->in_eof && w->count == 0))
		rc = dgram_pipe_step(s, w);
	free(w);
	return rc;
}

int echoc_udp_main(const struct client_config *cfg, int argc, char **argv)
{
	struct dsession *s = malloc(sizeof(*s));
	char why[NET_ERRLEN];
	int rc;

	if (!s) {
		warnx("out of memory");
		return EXIT_FAILURE;
	}
	s->timeout_ms = (int)cfg->timeout_ms;
	s->fd = net_connect(&cfg->target, SOCK_DGRAM, s->timeout_ms, why, sizeof(why));
	if (s->fd < 0) {
		warnx("%s", why);
		free(s);
		return EXIT_FAILURE;
	}
	net_format_peer(s->fd, s->peer, sizeof(s->peer));
	if (cfg->first_word < argc)
		rc = dgram_message(s, argv + cfg->first_word, argc - cfg->first_word,
				   cfg->no_newline);
	else if (isatty(STDIN_FILENO))
		rc = dgram_interactive(s);
	else
		rc = dgram_pipe_mode(s);
	close(s->fd);
	free(s);
	return rc < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
