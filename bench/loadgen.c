/*
 * loadgen.c - a small echo load generator for bench/uring_vs_epoll.sh.
 *
 * One thread, one epoll(7) loop, level-triggered.  Each of -c connections
 * keeps -d messages of -s bytes in flight (ping-pong when -d is 1); every
 * echoed byte is checked against what was sent (a pattern derived from the
 * connection, the message number and the offset, so nothing is stored).
 * After a warm-up it measures for -t seconds and prints one line:
 *
 *   msgs_per_s=... p50_us=... p99_us=... cpu_us_per_msg=... errors=...
 *
 * cpu_us_per_msg is the server's utime+stime (from /proc/PID/stat, -p PID)
 * over the measured window divided by the messages echoed in it.
 *
 * A stop-gap until `echoc bench` exists; it only does what the script needs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEPTH_MAX 64

struct lconn {
	int fd;
	uint64_t next_msg; /* next message to send */
	size_t out_off;	   /* bytes of next_msg already sent (partial write) */
	uint64_t in_bytes; /* echoed bytes received and checked */
	uint64_t sent_ns[DEPTH_MAX];
};

struct opts {
	const char *host;
	int port, conns, size, depth;
	double warmup_s, measure_s;
	int pid;
};

struct stats {
	uint64_t msgs, errors;
	uint32_t *lat_us;
	size_t nlat, caplat;
	bool recording;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned char pattern(int conn, uint64_t msg, int off)
{
	return (unsigned char)(conn * 131 + msg * 7 + (uint64_t)off * 13);
}

/* The server's user+system CPU time in microseconds; -1 if unknown. */
static long long cpu_us(int pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	/* Fields after the command name, which may hold spaces: skip to ')'. */
	if (!p || !(p = strrchr(buf, ')')))
		return -1;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)((ut + st) * 1000000ull / (unsigned long long)sysconf(_SC_CLK_TCK));
}

static int connect_one(const struct opts *o)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0 || inet_pton(AF_INET, o->host, &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("loadgen: connect");
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Sends messages until depth are in flight or the socket is full. */
static void pump(const struct opts *o, struct lconn *lc, int idx)
{
	unsigned char msg[65536];
	uint64_t done_msgs = lc->in_bytes / (uint64_t)o->size;

	while (lc->next_msg - done_msgs < (uint64_t)o->depth) {
		size_t left = (size_t)o->size - lc->out_off;
		ssize_t n;

		for (size_t j = 0; j < left; j++)
			msg[j] = pattern(idx, lc->next_msg, (int)(lc->out_off + j));
		if (lc->out_off == 0)
			lc->sent_ns[lc->next_msg % DEPTH_MAX] = now_ns();
		n = send(lc->fd, msg, left, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0)
			return;
		lc->out_off += (size_t)n;
		if (lc->out_off < (size_t)o->size)
			return;
		lc->out_off = 0;
		lc->next_msg++;
	}
}

static void record(struct stats *s, uint64_t lat_ns)
{
	if (!s->recording)
		return;
	s->msgs++;
	if (s->nlat == s->caplat) {
		s->caplat = s->caplat ? 2 * s->caplat : 1 << 16;
		s->lat_us = realloc(s->lat_us, s->caplat * sizeof(*s->lat_us));
		if (!s->lat_us)
			exit(1);
	}
	s->lat_us[s->nlat++] = (uint32_t)(lat_ns / 1000);
}

/* Reads and checks what came back; each completed message is timed. */
static int drain(const struct opts *o, struct lconn *lc, int idx, struct stats *s)
{
	unsigned char buf[65536];
	ssize_t n = recv(lc->fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n <= 0)
		return n < 0 && errno == EAGAIN ? 0 : -1;
	for (ssize_t i = 0; i < n; i++) {
		uint64_t msg = lc->in_bytes / (uint64_t)o->size;
		int off = (int)(lc->in_bytes % (uint64_t)o->size);

		if (buf[i] != pattern(idx, msg, off))
			s->errors++;
		lc->in_bytes++;
		if (off == o->size - 1)
			record(s, now_ns() - lc->sent_ns[msg % DEPTH_MAX]);
	}
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void usage(void)
{
	fprintf(stderr, "usage: loadgen -P PORT [-H 127.0.0.1] [-c CONNS] [-s SIZE] [-d DEPTH]\n"
			"               [-w WARMUP_S] [-t SECONDS] [-p SERVER_PID]\n");
	exit(2);
}

static void parse(struct opts *o, int argc, char **argv)
{
	int ch;

	*o = (struct opts){.host = "127.0.0.1",
			   .conns = 1,
			   .size = 64,
			   .depth = 1,
			   .warmup_s = 1,
			   .measure_s = 5};
	while ((ch = getopt(argc, argv, "H:P:c:s:d:w:t:p:")) != -1) {
		switch (ch) {
		case 'H':
			o->host = optarg;
			break;
		case 'P':
			o->port = atoi(optarg);
			break;
		case 'c':
			o->conns = atoi(optarg);
			break;
		case 's':
			o->size = atoi(optarg);
			break;
		case 'd':
			o->depth = atoi(optarg);
			break;
		case 'w':
			o->warmup_s = atof(optarg);
			break;
		case 't':
			o->measure_s = atof(optarg);
			break;
		case 'p':
			o->pid = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (o->port <= 0 || o->conns <= 0 || o->size <= 0 || o->size > 65536 || o->depth <= 0 ||
	    o->depth > DEPTH_MAX)
		usage();
}

static void report(const struct opts *o, struct stats *s, double secs, long long cpu)
{
	double p50 = 0, p99 = 0;

	if (s->nlat) {
		qsort(s->lat_us, s->nlat, sizeof(*s->lat_us), cmp_u32);
		p50 = s->lat_us[s->nlat / 2];
		p99 = s->lat_us[(size_t)((double)s->nlat * 0.99)];
	}
	printf("msgs_per_s=%.0f p50_us=%.0f p99_us=%.0f cpu_us_per_msg=%.3f errors=%llu\n",
	       (double)s->msgs / secs, p50, p99,
	       o->pid && s->msgs && cpu >= 0 ? (double)cpu / (double)s->msgs : -1.0,
	       (unsigned long long)s->errors);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct stats s = {0};
	struct epoll_event ev[256];
	struct lconn *lcs;
	uint64_t t0, t_measure, t_end;
	long long cpu0 = 0;
	int ep;

	parse(&o, argc, argv);
	lcs = calloc((size_t)o.conns, sizeof(*lcs));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (!lcs || ep < 0)
		return 1;
	for (int i = 0; i < o.conns; i++) {
		struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};

		lcs[i].fd = connect_one(&o);
		epoll_ctl(ep, EPOLL_CTL_ADD, lcs[i].fd, &e);
		pump(&o, &lcs[i], i);
	}
	t0 = now_ns();
	t_measure = t0 + (uint64_t)(o.warmup_s * 1e9);
	t_end = t_measure + (uint64_t)(o.measure_s * 1e9);
	for (uint64_t t = t0; t < t_end; t = now_ns()) {
		int n = epoll_wait(ep, ev, 256, 100);

		if (!s.recording && t >= t_measure) {
			s.recording = true;
			cpu0 = o.pid ? cpu_us(o.pid) : 0;
		}
		for (int i = 0; i < n; i++) {
			int idx = (int)ev[i].data.u32;

			if (drain(&o, &lcs[idx], idx, &s) < 0) {
				fprintf(stderr, "loadgen: connection %d closed by the server\n",
					idx);
				return 1;
			}
			pump(&o, &lcs[idx], idx);
		}
	}
	report(&o, &s, o.measure_s, o.pid ? cpu_us(o.pid) - cpu0 : -1);
	return s.errors ? 1 : 0;
}
