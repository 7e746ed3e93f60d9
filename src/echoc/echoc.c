/*
 * echoc.c - the Echo protocol (RFC 862) client: message, interactive and
 * pipe modes, and the dispatch point for "echoc bench".
 *
 * Each mode is one function over a connected, non-blocking socket (struct
 * session); main() only parses, connects and picks the mode.  Every mode
 * sends and receives concurrently from one poll(2) loop, so no message or
 * file is ever too big for the socket buffers: a client that only wrote
 * until it had sent everything would deadlock against a server that stops
 * reading while its echo is not read (echod's backpressure).
 *
 * Standard input and output are left in whatever blocking mode they came in:
 * they may be shared with the shell, and a blocking write to standard output
 * only waits for whoever reads it, never for the server.  SIGPIPE is left
 * alone too (sends use MSG_NOSIGNAL), so "echoc | head" ends like cat does.
 *
 * Once the command line is parsed, every failure prints exactly one line
 * and makes the exit status 1.
 */
#include "echoc.h"

#include "bench.h"
#include "clock.h"
#include "echoc_config.h"
#include "echoc_udp.h"
#include "net.h"
#include "version.h"

#include <err.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Bytes moved per system call; also each pipe-mode buffer's bound. */
#define IO_CHUNK (256 * 1024)

/* A connected server and how long it may stay silent. */
struct session {
	int fd;
	char peer[NET_NAMELEN];
	int timeout_ms;
	bool once;
};

static double seconds(int ms)
{
	return (double)ms / 1000.0;
}

int echoc_write_out(const char *p, size_t n)
{
	int rc = net_write_all(STDOUT_FILENO, p, n);

	if (rc < 0) {
		errno = -rc;
		warn("write to standard output");
		return -1;
	}
	return 0;
}

/*
 * Message and interactive modes: one buffer goes out, its echo comes back
 * and is compared with it byte for byte.
 */
struct exchange {
	const char *msg;
	size_t len;
	size_t sent;
	size_t got;
	bool differs;
};

static int send_some(const struct session *s, struct exchange *x)
{
	ssize_t n = send(s->fd, x->msg + x->sent, x->len - x->sent, MSG_NOSIGNAL);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (n < 0) {
		warn("send to %s", s->peer);
		return -1;
	}
	x->sent += (size_t)n;
	return 0;
}

/* Receives, prints and checks the next part of the echo; never past len. */
static int recv_some(const struct session *s, struct exchange *x)
{
	char buf[IO_CHUNK / 4];
	size_t want = x->len - x->got;
	ssize_t n;

	n = recv(s->fd, buf, want < sizeof(buf) ? want : sizeof(buf), 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (n < 0) {
		warnx("receive from %s: %s (got %zu of %zu bytes)", s->peer, strerror(errno),
		      x->got, x->len);
		return -1;
	}
	if (n == 0) {
		warnx("echo ended after %zu of %zu bytes", x->got, x->len);
		return -1;
	}
	if (memcmp(buf, x->msg + x->got, (size_t)n))
		x->differs = true;
	x->got += (size_t)n;
	return echoc_write_out(buf, (size_t)n);
}

static void report_exchange_timeout(const struct session *s, const struct exchange *x)
{
	if (x->sent < x->len)
		warnx("timeout after %g s sending (sent %zu of %zu bytes)", seconds(s->timeout_ms),
		      x->sent, x->len);
	else
		warnx("timeout after %g s waiting for the echo (got %zu of %zu bytes)",
		      seconds(s->timeout_ms), x->got, x->len);
}

/*
 * Sends len bytes of msg and prints their echo as it arrives.  Returns 0
 * when the echo equals msg; -1, after one line saying why, when it differs,
 * ends early, or the server is silent for the timeout.
 */
static int exchange(const struct session *s, const char *msg, size_t len)
{
	struct exchange x = {.msg = msg, .len = len};
	int ev;

	while (x.got < x.len) {
		ev = net_wait(s->fd, POLLIN | (x.sent < x.len ? POLLOUT : 0), s->timeout_ms);
		if (ev == 0) {
			report_exchange_timeout(s, &x);
			return -1;
		}
		if (ev < 0) {
			warnx("poll: %s", strerror(-ev));
			return -1;
		}
		if ((ev & POLLOUT) && send_some(s, &x) < 0)
			return -1;
		if ((ev & (POLLIN | POLLHUP | POLLERR)) && recv_some(s, &x) < 0)
			return -1;
	}
	if (x.differs) {
		warnx("echo differs from what was sent");
		return -1;
	}
	return 0;
}

/*
 * The echo is complete, so the stream must end here: anything more the
 * server sends makes the echo longer than the message.  Shutting our side
 * tells an echo server that nothing more is coming, so it closes (and a
 * server that drains input before closing, as echod --once does to avoid a
 * reset, closes at once).
 */
static int expect_close(const struct session *s)
{
	char buf[512];
	ssize_t n;

	shutdown(s->fd, SHUT_WR);
	n = net_recv(s->fd, buf, sizeof(buf), s->timeout_ms);
	if (n == 0)
		return 0;
	if (n == -ETIMEDOUT)
		warnx("timeout after %g s waiting for the server to close the connection",
		      seconds(s->timeout_ms));
	else if (n < 0)
		warnx("receive from %s: %s", s->peer, strerror((int)-n));
	else if (echoc_write_out(buf, (size_t)n) == 0)
		warnx("echo differs from what was sent: it is longer");
	return -1;
}

char *echoc_join_words(char **words, int n, bool no_newline, size_t *len)
{
	size_t size = 1;
	char *msg, *p;

	for (int i = 0; i < n; i++)
		size += strlen(words[i]) + 1;
	msg = malloc(size);
	if (!msg)
		return NULL;
	p = msg;
	for (int i = 0; i < n; i++) {
		if (i > 0)
			*p++ = ' ';
		p = stpcpy(p, words[i]);
	}
	if (!no_newline)
		*p++ = '\n';
	*len = (size_t)(p - msg);
	return msg;
}

/* Message mode: one message, its echo, a verdict. */
static int send_message(const struct session *s, char **words, int n, bool no_newline)
{
	size_t len;
	char *msg;
	int rc;

	msg = echoc_join_words(words, n, no_newline, &len);
	if (!msg) {
		warnx("out of memory");
		return -1;
	}
	rc = exchange(s, msg, len);
	if (rc == 0)
		rc = expect_close(s);
	free(msg);
	return rc;
}

/* The server spoke while nobody was waiting for an echo: say what it did. */
static int unexpected_input(const struct session *s)
{
	char c;
	ssize_t n = recv(s->fd, &c, 1, MSG_PEEK);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (n < 0)
		warnx("receive from %s: %s", s->peer, strerror(errno));
	else if (n == 0)
		warnx("%s closed the connection", s->peer);
	else
		warnx("%s sent bytes that are not an echo", s->peer);
	return -1;
}

/*
 * Waits for the next line typed, watching the socket meanwhile so that a
 * server that hangs up is reported at once, not at the next line.  Returns
 * the line's length (a terminal hands over one line per read), 0 at end of
 * input, -1 after saying why.
 */
static ssize_t read_line(const struct session *s, char *buf, size_t size)
{
	struct pollfd pfd[2] = {
		{.fd = STDIN_FILENO, .events = POLLIN},
		{.fd = s->fd, .events = POLLIN},
	};
	ssize_t n;

	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			warn("poll");
			return -1;
		}
		if (pfd[1].revents && unexpected_input(s) < 0)
			return -1;
		if (!pfd[0].revents)
			continue;
		n = read(STDIN_FILENO, buf, size);
		if (n >= 0)
			return n;
		if (errno != EINTR && errno != EAGAIN) {
			warn("read standard input");
			return -1;
		}
	}
}

/* Interactive mode: each line typed is sent and its echo printed. */
static int interactive(const struct session *s)
{
	char line[4096];
	ssize_t n;

	for (;;) {
		n = read_line(s, line, sizeof(line));
		if (n <= 0)
			return (int)n;
		if (exchange(s, line, (size_t)n) < 0)
			return -1;
		if (s->once)
			return 0;
	}
}

/*
 * Pipe mode: standard input streams to the server and the echo to standard
 * output at the same time, through two bounded buffers.
 */
struct queue {
	size_t head; /* first byte not yet passed on */
	size_t tail; /* end of the bytes held */
	char data[IO_CHUNK];
};

struct pipe_state {
	struct queue up;   /* standard input -> server */
	struct queue down; /* server -> standard output */
	uint64_t sent;	   /* bytes the socket took */
	uint64_t got;	   /* bytes echoed */
	uint64_t last_ms;  /* when the server last made progress */
	bool in_eof;	   /* standard input ended */
	bool shut;	   /* our write side is shut */
	bool net_eof;	   /* the echo ended */
};

/* Named poll slots, as nc's POLL_NETIN. */
enum { POLL_STDIN, POLL_STDOUT, POLL_NET, POLL_COUNT };

static size_t q_len(const struct queue *q)
{
	return q->tail - q->head;
}

/* Free space at the end of q, after moving the held bytes to the front. */
static size_t q_room(struct queue *q)
{
	if (q->head == q->tail)
		q->head = q->tail = 0;
	else if (q->tail == sizeof(q->data) && q->head > 0) {
		memmove(q->data, q->data + q->head, q_len(q));
		q->tail -= q->head;
		q->head = 0;
	}
	return sizeof(q->data) - q->tail;
}

/* Moves stdin into the up queue; returns 0, or -1 after saying why. */
static int pipe_read_stdin(struct pipe_state *p)
{
	ssize_t n = read(STDIN_FILENO, p->up.data + p->up.tail, q_room(&p->up));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n < 0) {
		warn("read standard input");
		return -1;
	}
	if (n == 0)
		p->in_eof = true;
	p->up.tail += (size_t)n;
	return 0;
}

static int pipe_write_stdout(struct pipe_state *p)
{
	ssize_t n = write(STDOUT_FILENO, p->down.data + p->down.head, q_len(&p->down));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n < 0) {
		warn("write to standard output");
		return -1;
	}
	p->down.head += (size_t)n;
	return 0;
}

static int pipe_send(const struct session *s, struct pipe_state *p)
{
	ssize_t n = send(s->fd, p->up.data + p->up.head, q_len(&p->up), MSG_NOSIGNAL);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (n < 0 && s->once && (errno == EPIPE || errno == ECONNRESET)) {
		/* The server closed, as --once expects: stop sending, keep reading. */
		p->in_eof = p->shut = true;
		p->up.head = p->up.tail;
		return 0;
	}
	if (n < 0) {
		warn("send to %s", s->peer);
		return -1;
	}
	p->up.head += (size_t)n;
	p->sent += (uint64_t)n;
	p->last_ms = clock_now_ms();
	return 0;
}

static int pipe_recv(const struct session *s, struct pipe_state *p)
{
	ssize_t n = recv(s->fd, p->down.data + p->down.tail, q_room(&p->down), 0);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (n < 0) {
		warnx("receive from %s: %s (got %" PRIu64 " of %" PRIu64 " bytes)", s->peer,
		      strerror(errno), p->got, p->sent);
		return -1;
	}
	if (n == 0)
		p->net_eof = true;
	p->down.tail += (size_t)n;
	p->got += (uint64_t)n;
	p->last_ms = clock_now_ms();
	return 0;
}

/* Which descriptors the next poll watches, and for what. */
static void pipe_events(const struct session *s, struct pipe_state *p, struct pollfd *pfd)
{
	bool want_in = !p->in_eof && !p->net_eof && q_room(&p->up) > 0;
	bool want_send = !p->net_eof && q_len(&p->up) > 0;
	bool want_recv = !p->net_eof && q_room(&p->down) > 0;

	pfd[POLL_STDIN].fd = want_in ? STDIN_FILENO : -1;
	pfd[POLL_STDIN].events = POLLIN;
	pfd[POLL_STDOUT].fd = q_len(&p->down) ? STDOUT_FILENO : -1;
	pfd[POLL_STDOUT].events = POLLOUT;
	pfd[POLL_NET].fd = want_send || want_recv ? s->fd : -1;
	pfd[POLL_NET].events = (short)((want_recv ? POLLIN : 0) | (want_send ? POLLOUT : 0));
}

/*
 * How long the next poll may wait: forever while we wait for standard
 * input or output, the rest of the timeout while the server owes us an
 * echo or its end of stream.  0 means the server ran out of time.
 */
static int pipe_timeout(const struct session *s, struct pipe_state *p)
{
	bool owed = p->got < p->sent || p->shut;
	int64_t left;

	if (p->net_eof || !owed || q_room(&p->down) == 0)
		return -1;
	left = (int64_t)(p->last_ms + (uint64_t)s->timeout_ms - clock_now_ms());
	return left > 0 ? (int)left : 0;
}

static void report_pipe_timeout(const struct session *s, const struct pipe_state *p)
{
	if (p->got < p->sent)
		warnx("timeout after %g s waiting for the echo (got %" PRIu64 " of %" PRIu64
		      " bytes)",
		      seconds(s->timeout_ms), p->got, p->sent);
	else
		warnx("timeout after %g s waiting for the server to close the connection",
		      seconds(s->timeout_ms));
}

/* Moves bytes wherever poll said they can go. */
static int pipe_dispatch(const struct session *s, struct pipe_state *p, const struct pollfd *pfd)
{
	short net = pfd[POLL_NET].revents;

	if (pfd[POLL_STDIN].revents && pipe_read_stdin(p) < 0)
		return -1;
	if ((net & POLLOUT) && pipe_send(s, p) < 0)
		return -1;
	if ((net & (POLLIN | POLLHUP | POLLERR)) && q_room(&p->down) && pipe_recv(s, p) < 0)
		return -1;
	if (pfd[POLL_STDOUT].revents && pipe_write_stdout(p) < 0)
		return -1;
	/* Half-close: the server's EOF then tells us the echo is complete. */
	if (p->in_eof && !q_len(&p->up) && !p->shut) {
		if (shutdown(s->fd, SHUT_WR) < 0) {
			warn("shutdown %s", s->peer);
			return -1;
		}
		p->shut = true;
		p->last_ms = clock_now_ms();
	}
	return 0;
}

/* One turn of the loop: 1 to go on, 0 when the echo ended and is written out. */
static int pipe_step(const struct session *s, struct pipe_state *p)
{
	struct pollfd pfd[POLL_COUNT];
	int timeout_ms;

	if (p->net_eof && !q_len(&p->down))
		return 0;
	pipe_events(s, p, pfd);
	timeout_ms = pipe_timeout(s, p);
	if (timeout_ms == 0) {
		report_pipe_timeout(s, p);
		return -1;
	}
	if (poll(pfd, POLL_COUNT, timeout_ms) < 0) {
		if (errno == EINTR)
			return 1;
		warn("poll");
		return -1;
	}
	return pipe_dispatch(s, p, pfd) < 0 ? -1 : 1;
}

/* The echo ended: was it all of what was sent? */
static int pipe_verdict(const struct session *s, const struct pipe_state *p)
{
	if (s->once)
		return 0; /* the server was expected to stop early */
	if (p->got < p->sent) {
		warnx("echo ended after %" PRIu64 " of %" PRIu64 " bytes", p->got, p->sent);
		return -1;
	}
	if (p->got > p->sent) {
		warnx("echo is longer than what was sent");
		return -1;
	}
	if (!p->shut) {
		warnx("%s closed the connection before the input ended (after %" PRIu64 " bytes)",
		      s->peer, p->got);
		return -1;
	}
	return 0;
}

static int pipe_mode(const struct session *s)
{
	struct pipe_state *p = calloc(1, sizeof(*p));
	int rc;

	if (!p) {
		warnx("out of memory");
		return -1;
	}
	p->last_ms = clock_now_ms();
	do
		rc = pipe_step(s, p);
	while (rc > 0);
	if (rc == 0)
		rc = pipe_verdict(s, p);
	free(p);
	return rc;
}

/* The subcommand "echoc bench" (bench.c).  argv[0] is "bench". */
static int run_bench(int argc, char **argv)
{
	return bench_main(argc, argv);
}

/*
 * Parses the command line into cfg.  Returns -1 to go on, else the exit
 * status main() should return (--help, --version, a usage error).
 */
static int parse_client_args(struct client_config *cfg, int argc, char **argv)
{
	char why[CONFIG_ERRLEN];

	switch (client_config_parse(cfg, argc, argv, why, sizeof(why))) {
	case OPTS_ERROR:
		warnx("%s (see --help)", why);
		return EXIT_USAGE;
	case OPTS_HELP:
		client_config_usage(stdout);
		return EXIT_SUCCESS;
	case OPTS_VERSION:
		printf("echoc %s\n", ECHOD_VERSION);
		return EXIT_SUCCESS;
	case OPTS_OK:
		break;
	}
	return -1;
}

/* Connects to the target.  Returns 0, or -1 after one line saying why. */
static int open_session(struct session *s, const struct client_config *cfg)
{
	char why[NET_ERRLEN];

	s->timeout_ms = (int)cfg->timeout_ms;
	s->once = cfg->once;
	s->fd = net_connect(&cfg->target, SOCK_STREAM, s->timeout_ms, why, sizeof(why));
	if (s->fd < 0) {
		warnx("%s", why);
		return -1;
	}
	net_format_peer(s->fd, s->peer, sizeof(s->peer));
	return 0;
}

int main(int argc, char **argv)
{
	struct client_config cfg;
	struct session s;
	int rc;

	if (argc > 1 && !strcmp(argv[1], "bench"))
		return run_bench(argc - 1, argv + 1);
	rc = parse_client_args(&cfg, argc, argv);
	if (rc >= 0)
		return rc;
	if (cfg.udp)
		return echoc_udp_main(&cfg, argc, argv);
	if (open_session(&s, &cfg) < 0)
		return EXIT_FAILURE;
	if (cfg.first_word < argc)
		rc = send_message(&s, argv + cfg.first_word, argc - cfg.first_word, cfg.no_newline);
	else if (isatty(STDIN_FILENO))
		rc = interactive(&s);
	else
		rc = pipe_mode(&s);
	close(s.fd);
	return rc < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
