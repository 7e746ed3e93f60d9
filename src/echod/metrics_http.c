/*
 * metrics_http.c - the --metrics thread: a small HTTP/1.x server with one
 * page, /metrics (metrics_http.h says what it answers and its limits).
 *
 * After start-up the thread makes only these system calls: poll, accept4,
 * recvfrom, sendto, shutdown, close, clock_gettime, getrusage, prlimit64
 * (getrlimit), pread64, lseek and getdents64 -- no open: the /proc files it
 * reads were opened before privileges were dropped.
 */
#include "metrics_http.h"

#include "clock.h"
#include "log.h"
#include "net.h"
#include "version.h"

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- the request parser: a pure function of the bytes ---- */

static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A control character: never allowed, but HT in a header value. */
static bool is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* The index of the first LF in p[from, n), or n. */
static size_t find_lf(const unsigned char *p, size_t from, size_t n)
{
	const unsigned char *lf = memchr(p + from, '\n', n - from);

	return lf ? (size_t)(lf - p) : n;
}

/*
 * The line p[from, eol) without its CR; false when a CR is anywhere but
 * last (a bare CR, which RFC 9112 lets a server refuse).
 */
static bool line_end(const unsigned char *p, size_t from, size_t eol, size_t *end)
{
	*end = eol > from && p[eol - 1] == '\r' ? eol - 1 : eol;
	return !memchr(p + from, '\r', *end - from);
}

/* The verdict of the complete request line p[0, n), CR stripped. */
static enum http_verdict judge_request_line(const unsigned char *p, size_t n)
{
	static const char path[] = "/metrics";
	size_t m = 0, t, tlen;
	bool get, head;

	while (m < n && is_tchar(p[m]))
		m++;
	if (!m || m == n || p[m] != ' ')
		return HTTP_BAD_REQUEST;
	t = m + 1;
	for (tlen = 0; t + tlen < n && p[t + tlen] > ' ' && p[t + tlen] < 0x7f; tlen++)
		;
	if (!tlen || n - (t + tlen) != 9 || p[t + tlen] != ' ' ||
	    (memcmp(p + t + tlen + 1, "HTTP/1.0", 8) && memcmp(p + t + tlen + 1, "HTTP/1.1", 8)))
		return HTTP_BAD_REQUEST;
	get = m == 3 && !memcmp(p, "GET", 3);
	head = m == 4 && !memcmp(p, "HEAD", 4);
	/* The query, if any, is ignored: ?name[]=... selects nothing here. */
	if ((tlen != sizeof(path) - 1 && (tlen < sizeof(path) || p[t + sizeof(path) - 1] != '?')) ||
	    memcmp(p + t, path, sizeof(path) - 1))
		return HTTP_NOT_FOUND;
	return get ? HTTP_GET : head ? HTTP_HEAD : HTTP_BAD_METHOD;
}

/* A complete header line p[0, n), CR stripped: NAME ":" VALUE, no obs-fold. */
static bool header_ok(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n && is_tchar(p[i]))
		i++;
	if (!i || i == n || p[i] != ':')
		return false;
	for (i++; i < n; i++)
		if (is_ctl(p[i]) && p[i] != '\t')
			return false;
	return true;
}

/* The verdict on an incomplete line p[from, n): a control character already condemns it. */
static enum http_verdict judge_partial(const unsigned char *p, size_t from, size_t n, size_t len)
{
	for (size_t i = from; i < n; i++) {
		bool cr_last = p[i] == '\r' && i + 1 == n;

		if (is_ctl(p[i]) && p[i] != '\t' && !cr_last)
			return HTTP_BAD_REQUEST;
	}
	return len >= HTTP_REQUEST_MAX ? HTTP_TOO_LARGE : HTTP_NEED_MORE;
}

enum http_verdict http_parse_request(const char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)buf;
	size_t n = len < HTTP_REQUEST_MAX ? len : HTTP_REQUEST_MAX;
	size_t eol = find_lf(p, 0, n), end;
	enum http_verdict verdict;

	if (eol == n)
		return judge_partial(p, 0, n, len);
	if (!line_end(p, 0, eol, &end))
		return HTTP_BAD_REQUEST;
	verdict = judge_request_line(p, end);
	if (verdict == HTTP_BAD_REQUEST)
		return verdict;
	for (size_t from = eol + 1;; from = eol + 1) {
		eol = find_lf(p, from, n);
		if (eol == n)
			return judge_partial(p, from, n, len);
		if (!line_end(p, from, eol, &end))
			return HTTP_BAD_REQUEST;
		if (end == from) /* the empty line: the end of the headers */
			return verdict;
		if (!header_ok(p + from, end - from))
			return HTTP_BAD_REQUEST;
	}
}

static const char *status_line(enum http_verdict v)
{
	switch (v) {
	case HTTP_GET:
	case HTTP_HEAD:
		return "200 OK";
	case HTTP_NOT_FOUND:
		return "404 Not Found";
	case HTTP_BAD_METHOD:
		return "405 Method Not Allowed";
	case HTTP_TOO_LARGE:
		return "431 Request Header Fields Too Large";
	case HTTP_NEED_MORE:
	case HTTP_BAD_REQUEST:
		break;
	}
	return "400 Bad Request";
}

const char *http_error_body(enum http_verdict v)
{
	switch (v) {
	case HTTP_NOT_FOUND:
		return "not found: the metrics are at /metrics\n";
	case HTTP_BAD_METHOD:
		return "method not allowed: use GET or HEAD\n";
	case HTTP_TOO_LARGE:
		return "request too large\n";
	default:
		return "bad request\n";
	}
}

int http_format_head(enum http_verdict v, size_t body_len, char *buf, size_t cap)
{
	bool ok = v == HTTP_GET || v == HTTP_HEAD;
	int n = snprintf(buf, cap,
			 "HTTP/1.1 %s\r\n"
			 "Content-Type: text/plain; %scharset=utf-8\r\n"
			 "Content-Length: %zu\r\n"
			 "Connection: close\r\n"
			 "%s"
			 "\r\n",
			 status_line(v), ok ? "version=0.0.4; " : "", body_len,
			 v == HTTP_BAD_METHOD ? "Allow: GET, HEAD\r\n" : "");

	return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* ---- what the process says about itself ---- */

int metrics_parse_proc_stat(const char *buf, size_t len, struct proc_stat *st)
{
	char text[1024], *p, *save = NULL;
	unsigned long long v[22];
	const char *close_paren = NULL;

	if (len >= sizeof(text))
		return -1;
	memcpy(text, buf, len);
	text[len] = '\0';
	/* The command name, in parentheses, may hold spaces and parentheses: skip to the last ')'.
	 */
	for (p = text; (p = strchr(p, ')')); p++)
		close_paren = p;
	if (!close_paren)
		return -1;
	/* Fields 3 (state) to 24 (rss); state is a letter, the rest numbers. */
	p = strtok_r(text + (close_paren - text) + 1, " \n", &save);
	if (!p)
		return -1;
	for (int i = 1; i < 22; i++) {
		char *end;

		p = strtok_r(NULL, " \n", &save);
		if (!p)
			return -1;
		errno = 0;
		/* Field 20 onwards are unsigned; 4 to 19 may be negative (nice, priority). */
		v[i] = strtoull(p, &end, 10);
		if (*end || errno)
			return -1;
	}
	st->starttime = v[19]; /* field 22 */
	st->vsize = v[20];     /* field 23 */
	st->rss = v[21];       /* field 24 */
	return 0;
}

/* ---- the server ---- */

enum conn_state { CONN_FREE, CONN_READING, CONN_WRITING, CONN_DRAINING };

struct http_conn {
	enum conn_state state;
	int fd;
	uint64_t deadline_ms;
	size_t inlen;
	char in[HTTP_REQUEST_MAX];
	size_t outlen, outoff;
	char out[METRICS_TEXT_MAX + 256]; /* the head and the text */
};

struct metrics_http {
	const struct server *srv;
	const char *engine;
	int lfds[CONFIG_MAX_LISTEN];
	int nlfds;
	int stop_rd, stop_wr;
	int stat_fd; /* /proc/self/stat, or -1 */
	int fd_dir;  /* /proc/self/fd, or -1 */
	long page_size;
	double start_time; /* -1: unknown */
	uint64_t accept_pause_until;
	pthread_t tid;
	bool started;
	char text[METRICS_TEXT_MAX];
	struct http_conn conns[METRICS_HTTP_MAX_CONNS];
};

/* btime from /proc/stat: the boot time, seconds since the epoch; -1 if unknown. */
static double boot_time(void)
{
	FILE *f = fopen("/proc/stat", "re");
	char line[256];
	double t = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %lf", &t) == 1)
			break;
	fclose(f);
	return t;
}

/* Opens the /proc descriptors the gauges re-read at each scrape. */
static void open_proc(struct metrics_http *mh)
{
	char buf[1024];
	struct proc_stat st;
	long ticks = sysconf(_SC_CLK_TCK);
	double boot = boot_time();
	ssize_t n;

	mh->page_size = sysconf(_SC_PAGESIZE);
	mh->stat_fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	mh->fd_dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	mh->start_time = -1;
	if (mh->stat_fd < 0 || ticks <= 0 || boot < 0)
		return;
	n = pread(mh->stat_fd, buf, sizeof(buf), 0);
	if (n > 0 && metrics_parse_proc_stat(buf, (size_t)n, &st) == 0)
		mh->start_time = boot + (double)st.starttime / (double)ticks;
}

/* Entries of /proc/self/fd, re-read through the kept descriptor; -1 if unknown. */
static double count_open_fds(int dir)
{
	char buf[4096] __attribute__((aligned(8)));
	long n, count = 0;

	if (dir < 0 || lseek(dir, 0, SEEK_SET) < 0)
		return -1;
	while ((n = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0)
		for (long off = 0; off < n;) {
			/* struct linux_dirent64: d_ino, d_off, d_reclen, d_type, d_name */
			unsigned short reclen;
			const char *name = buf + off + 19;

			memcpy(&reclen, buf + off + 16, sizeof(reclen));
			if (strcmp(name, ".") && strcmp(name, ".."))
				count++;
			off += reclen;
		}
	return n < 0 ? -1 : (double)count;
}

static void read_process(const struct metrics_http *mh, struct metrics_process *p)
{
	struct rusage ru;
	struct rlimit rl;
	struct proc_stat st;
	char buf[1024];
	ssize_t n;

	*p = (struct metrics_process){-1, -1, -1, -1, -1, mh->start_time};
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		p->cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
				 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		p->max_fds = (double)rl.rlim_cur;
	p->open_fds = count_open_fds(mh->fd_dir);
	n = mh->stat_fd < 0 ? -1 : pread(mh->stat_fd, buf, sizeof(buf), 0);
	if (n > 0 && metrics_parse_proc_stat(buf, (size_t)n, &st) == 0) {
		p->virtual_bytes = (double)st.vsize;
		p->resident_bytes = (double)st.rss * (double)mh->page_size;
	}
}

/* The exposition text into mh->text; its length. */
static size_t render(struct metrics_http *mh)
{
	struct metrics_snapshot s = {
		.active = atomic_load_explicit(&mh->srv->nconns, memory_order_relaxed),
		.version = ECHOD_VERSION,
		.engine = mh->engine,
	};
	int n;

	metrics_snapshot_counters(&mh->srv->metrics, &s);
	read_process(mh, &s.process);
	n = metrics_render(&s, mh->text, sizeof(mh->text));
	if (n < 0) { /* METRICS_TEXT_MAX is too small: a bug, but never a crash */
		mh->text[0] = '\0';
		return 0;
	}
	return (size_t)n;
}

/* Prepares the answer to verdict v in c->out. */
static void answer(struct metrics_http *mh, struct http_conn *c, enum http_verdict v)
{
	bool ok = v == HTTP_GET || v == HTTP_HEAD;
	const char *body = ok ? mh->text : http_error_body(v);
	size_t blen = ok ? render(mh) : strlen(body);
	int h = http_format_head(v, blen, c->out, sizeof(c->out));

	if (h < 0 || (size_t)h + blen > sizeof(c->out)) {
		c->outlen = 0;
	} else {
		if (v != HTTP_HEAD)
			memcpy(c->out + h, body, blen);
		c->outlen = (size_t)h + (v == HTTP_HEAD ? 0 : blen);
	}
	c->outoff = 0;
	c->state = CONN_WRITING;
}

static void drop(struct http_conn *c)
{
	close(c->fd);
	c->fd = -1;
	c->state = CONN_FREE;
}

/* Reads what came; answers once the request is judged. */
static void on_readable(struct metrics_http *mh, struct http_conn *c)
{
	ssize_t n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
	enum http_verdict v;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) { /* gone, or ended before the request did */
		drop(c);
		return;
	}
	c->inlen += (size_t)n;
	v = http_parse_request(c->in, c->inlen);
	if (v != HTTP_NEED_MORE)
		answer(mh, c, v);
}

/* Sends what the socket takes; when all is sent, ends our side and drains theirs. */
static void on_writable(struct http_conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			drop(c);
			return;
		}
		c->outoff += (size_t)n;
	}
	/* Closing with unread input would reset the connection and could
	 * destroy the answer in flight: end ours, read theirs to its end. */
	shutdown(c->fd, SHUT_WR);
	c->state = CONN_DRAINING;
}

static void on_drain(struct http_conn *c)
{
	char sink[512];
	ssize_t n = recv(c->fd, sink, sizeof(sink), 0);

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		drop(c);
}

static struct http_conn *free_slot(struct metrics_http *mh)
{
	for (int i = 0; i < METRICS_HTTP_MAX_CONNS; i++)
		if (mh->conns[i].state == CONN_FREE)
			return &mh->conns[i];
	return NULL;
}

/* Accepts while slots are free and clients wait. */
static void accept_clients(struct metrics_http *mh, int lfd, uint64_t now)
{
	struct http_conn *c;

	while ((c = free_slot(mh))) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			/* Out of descriptors: the listener stays readable, so
			 * leave it be for a while rather than spin on it. */
			if (net_accept_error_is_resource(errno))
				mh->accept_pause_until = now + ENGINE_ACCEPT_PAUSE_MS;
			return;
		}
		c->state = CONN_READING;
		c->fd = fd;
		c->deadline_ms = now + METRICS_HTTP_DEADLINE_MS;
		c->inlen = c->outlen = c->outoff = 0;
	}
}

/* The poll set: stop pipe, listeners (while a slot is free), connections. */
static nfds_t fill_poll(struct metrics_http *mh, struct pollfd *pfd, struct http_conn **owner,
			uint64_t now)
{
	bool can_accept = free_slot(mh) && now >= mh->accept_pause_until;
	nfds_t n = 0;

	pfd[n++] = (struct pollfd){.fd = mh->stop_rd, .events = POLLIN};
	for (int i = 0; can_accept && i < mh->nlfds; i++) {
		owner[n] = NULL;
		pfd[n++] = (struct pollfd){.fd = mh->lfds[i], .events = POLLIN};
	}
	for (int i = 0; i < METRICS_HTTP_MAX_CONNS; i++) {
		struct http_conn *c = &mh->conns[i];

		if (c->state == CONN_FREE)
			continue;
		owner[n] = c;
		pfd[n++] = (struct pollfd){.fd = c->fd,
					   .events = c->state == CONN_WRITING ? POLLOUT : POLLIN};
	}
	return n;
}

/* Milliseconds until the nearest deadline (or the end of an accept pause); -1 if none. */
static int poll_timeout(const struct metrics_http *mh, uint64_t now)
{
	uint64_t next = mh->accept_pause_until > now ? mh->accept_pause_until : UINT64_MAX;

	for (int i = 0; i < METRICS_HTTP_MAX_CONNS; i++)
		if (mh->conns[i].state != CONN_FREE && mh->conns[i].deadline_ms < next)
			next = mh->conns[i].deadline_ms;
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now);
}

static void serve_ready(struct metrics_http *mh, struct pollfd *pfd, struct http_conn **owner,
			nfds_t n, uint64_t now)
{
	for (nfds_t i = 1; i < n; i++) {
		struct http_conn *c = owner[i];

		if (!pfd[i].revents)
			continue;
		if (!c)
			accept_clients(mh, pfd[i].fd, now);
		else if (c->state == CONN_READING)
			on_readable(mh, c);
		else if (c->state == CONN_WRITING)
			on_writable(c);
		else if (c->state == CONN_DRAINING)
			on_drain(c);
		/* An answer is sent as soon as it is ready, without another poll. */
		if (c && c->state == CONN_WRITING)
			on_writable(c);
	}
}

/* A slow or silent client is dropped at its deadline, answered or not. */
static void drop_late(struct metrics_http *mh, uint64_t now)
{
	for (int i = 0; i < METRICS_HTTP_MAX_CONNS; i++)
		if (mh->conns[i].state != CONN_FREE && now >= mh->conns[i].deadline_ms)
			drop(&mh->conns[i]);
}

static void *metrics_main(void *arg)
{
	struct metrics_http *mh = arg;
	struct pollfd pfd[1 + CONFIG_MAX_LISTEN + METRICS_HTTP_MAX_CONNS];
	struct http_conn *owner[1 + CONFIG_MAX_LISTEN + METRICS_HTTP_MAX_CONNS] = {0};

	for (;;) {
		uint64_t now = clock_now_ms();
		nfds_t n = fill_poll(mh, pfd, owner, now);
		int rc = poll(pfd, n, poll_timeout(mh, now));

		if (rc < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		now = clock_now_ms();
		if (rc > 0)
			serve_ready(mh, pfd, owner, n, now);
		drop_late(mh, now);
	}
	for (int i = 0; i < METRICS_HTTP_MAX_CONNS; i++)
		if (mh->conns[i].state != CONN_FREE)
			drop(&mh->conns[i]);
	return NULL;
}

static void bind_metrics(struct metrics_http *mh, const struct net_addr *a)
{
	char why[NET_ERRLEN];
	int n = net_listen(a, SOCK_STREAM, 16, mh->lfds + mh->nlfds, CONFIG_MAX_LISTEN - mh->nlfds,
			   why, sizeof(why));

	if (n < 0)
		errx(1, "--metrics: %s", why);
	mh->nlfds += n;
}

struct metrics_http *metrics_http_open(const struct server *srv, const char *engine)
{
	const struct config *cfg = srv->cfg;
	struct metrics_http *mh;
	int p[2];

	if (!cfg->metrics.n)
		return NULL;
	mh = calloc(1, sizeof(*mh));
	if (!mh)
		err(1, "metrics");
	mh->srv = srv;
	mh->engine = engine;
	for (int i = 0; i < cfg->metrics.n; i++)
		bind_metrics(mh, &cfg->metrics.addr[i]);
	for (int i = 0; i < METRICS_HTTP_MAX_CONNS; i++)
		mh->conns[i].fd = -1;
	if (pipe2(p, O_CLOEXEC) < 0)
		err(1, "pipe");
	mh->stop_rd = p[0];
	mh->stop_wr = p[1];
	open_proc(mh);
	return mh;
}

void metrics_http_announce(const struct metrics_http *mh)
{
	char name[NET_NAMELEN];

	for (int i = 0; mh && i < mh->nlfds; i++) {
		net_format_local(mh->lfds[i], name, sizeof(name));
		log_always("metrics on http://%s/metrics", name);
	}
}

void metrics_http_start(struct metrics_http *mh)
{
	if (!mh)
		return;
	if (pthread_create(&mh->tid, NULL, metrics_main, mh) != 0)
		errx(1, "cannot start the metrics thread");
	mh->started = true;
}

void metrics_http_stop(struct metrics_http *mh)
{
	if (!mh)
		return;
	if (mh->started) {
		if (write(mh->stop_wr, "", 1) < 0)
			log_warn("cannot stop the metrics thread: %s", strerror(errno));
		else
			pthread_join(mh->tid, NULL);
	}
	for (int i = 0; i < mh->nlfds; i++)
		close(mh->lfds[i]);
	close(mh->stop_rd);
	close(mh->stop_wr);
	if (mh->stat_fd >= 0)
		close(mh->stat_fd);
	if (mh->fd_dir >= 0)
		close(mh->fd_dir);
	free(mh);
}
