/*
 * floor.c - the latency floor: two threads that spin, no server logic.
 *
 *   build/echod-floor [-n ROUNDTRIPS] [-s BYTES] [--json] [--hist FILE] [-p PORT]
 *   build/echod-floor -l PORT
 *
 * A "server" thread pinned to CPU 0 and a "client" thread pinned to CPU 1
 * (where bench/run.sh puts echod and echoc) exchange one message of -s
 * bytes (default 64) over one loopback TCP connection, -n times (default
 * 200000, after a tenth as many unmeasured).  Both use non-blocking
 * recv(2) and send(2) in a loop that never sleeps, so a round trip costs
 * what the kernel's TCP path costs and nothing else: the figure
 * `echod --busy-poll` against `echoc bench --busy-poll` is held up to.
 *
 * Latency is counted as echoc counts it: from before the send to when the
 * last byte of the echo arrived, in the same histogram (src/echoc/hist.c),
 * so p50 and p99 mean the same.  Prints one line, or with --json one
 * object with the fields bench/lib.py reads from echoc bench --json.
 *
 * -p PORT: no server thread; the spinning client runs against the echo
 * server on 127.0.0.1:PORT (pinned by the caller), so the server's share of
 * a round trip shows without a load generator's own costs.
 *
 * -l PORT: the other half: only the spinning server, pinned to CPU 0, on
 * 127.0.0.1:PORT, for a client of the caller's (echoc bench --busy-poll,
 * pinned to CPU 1), so the client's share shows without echod's.  It
 * echoes what each connection sends, one connection at a time, and exits
 * once a connection that sent bytes ends (echoc's probe sends none).
 */
#include "clock.h"
#include "hist.h"

#include <arpa/inet.h>
#include <err.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SERVER_CPU 0
#define CLIENT_CPU 1
#define MAX_BYTES  65536

struct side {
	int fd, cpu;
	size_t size;
	long rounds; /* warm-up included */
};

/* Pins the calling thread to cpu, when the machine has it. */
static void pin(int cpu)
{
	cpu_set_t set;

	if (cpu >= sysconf(_SC_NPROCESSORS_ONLN))
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Spins until len bytes are read; false at EOF or on an error. */
static bool recv_all(int fd, unsigned char *p, size_t len)
{
	while (len) {
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			return false;
		}
	}
	return true;
}

/* Spins until len bytes are sent; false on an error. */
static bool send_all(int fd, const unsigned char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			return false;
		}
	}
	return true;
}

/* The server: echoes each message back, nothing else. */
static void *serve(void *arg)
{
	struct side *s = arg;
	unsigned char buf[MAX_BYTES];

	pin(s->cpu);
	for (long i = 0; i < s->rounds; i++)
		if (!recv_all(s->fd, buf, s->size) || !send_all(s->fd, buf, s->size))
			errx(1, "server: round trip %ld: %s", i, strerror(errno));
	return NULL;
}

/*
 * -l PORT: serves connections on 127.0.0.1:port one after another, echoing
 * whatever arrives as soon as it arrives, with the same spinning recv and
 * send as serve(); returns once a connection that sent bytes has ended.
 */
static void serve_port(uint16_t port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
				   .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	static unsigned char buf[MAX_BYTES];
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	long echoed = 0;

	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(l, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(l, 16) < 0)
		err(1, "-l %u: listener on 127.0.0.1", port);
	pin(SERVER_CPU);
	while (!echoed) {
		int fd = accept(l, NULL, NULL);

		if (fd < 0)
			err(1, "accept");
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		for (;;) {
			ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

			if (n > 0 && send_all(fd, buf, (size_t)n))
				echoed += n;
			else if (n >= 0 || (errno != EAGAIN && errno != EINTR))
				break; /* EOF, or the client went away */
		}
		close(fd);
	}
	close(l);
}

/* The client: sends, waits for the echo, records the round trip once warm. */
static void run_client(const struct side *c, long warmup, struct hist *h)
{
	unsigned char out[MAX_BYTES], in[MAX_BYTES];

	pin(c->cpu);
	memset(out, 'x', c->size);
	for (long i = 0; i < c->rounds; i++) {
		uint64_t t0 = clock_now_ns();

		out[0] = (unsigned char)i;
		if (!send_all(c->fd, out, c->size) || !recv_all(c->fd, in, c->size))
			errx(1, "client: round trip %ld: %s", i, strerror(errno));
		if (memcmp(in, out, c->size))
			errx(1, "client: round trip %ld: the echo differs", i);
		if (i >= warmup)
			hist_record(h, clock_now_ns() - t0);
	}
}

/* A TCP connection to 127.0.0.1:port, without Nagle's delay (as echoc and echod do). */
static int connect_to(uint16_t port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
				   .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		err(1, "connect 127.0.0.1:%u", port);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* One loopback TCP connection: *a and *b are its two ends. */
static void connect_pair(int *a, int *b)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(addr);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&addr, &len) < 0)
		err(1, "listener on 127.0.0.1");
	*a = connect_to(ntohs(addr.sin_port));
	*b = accept(l, NULL, NULL);
	if (*b < 0)
		err(1, "accept");
	close(l);
	setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void usage(void)
{
	fprintf(stderr,
		"usage: echod-floor [-n ROUNDTRIPS] [-s BYTES] [--json] [--hist FILE] [-p PORT]\n"
		"       echod-floor -l PORT\n");
	exit(2);
}

static long number(const char *opt, const char *v, long lo, long hi)
{
	char *end;
	long n;

	if (!v)
		usage();
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || *end || n < lo || n > hi)
		errx(2, "%s %s: must be %ld to %ld", opt, v, lo, hi);
	return n;
}

static void report(const struct hist *h, long n, size_t size, bool json, double secs,
		   const char *label)
{
	double p50 = (double)hist_percentile(h, 50) / 1000.0;
	double p99 = (double)hist_percentile(h, 99) / 1000.0;

	if (!json) {
		printf("%s, 1 conn x %zu B over loopback TCP, %ld round trips: p50 %.1f us, p99 "
		       "%.1f us\n",
		       label, size, n, p50, p99);
		return;
	}
	printf("{\"mode\": \"floor\", \"conns\": 1, \"size\": %zu, \"messages\": %ld, "
	       "\"messages_per_s\": %.1f, \"latency_us\": {\"p50\": %.3f, \"p90\": %.3f, "
	       "\"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f, \"mean\": %.3f}, \"errors\": 0, "
	       "\"mismatches\": 0}\n",
	       size, n, (double)n / secs, p50, (double)hist_percentile(h, 90) / 1000.0, p99,
	       (double)hist_percentile(h, 99.9) / 1000.0, (double)h->max / 1000.0,
	       hist_mean(h) / 1000.0);
}

int main(int argc, char **argv)
{
	long n = 200000;
	size_t size = 64;
	bool json = false;
	const char *hist_path = NULL;
	long port = 0;	      /* 0: the floor's own server thread */
	long listen_port = 0; /* -l: only the server */
	struct side srv, cli;
	struct hist h;
	pthread_t tid;
	uint64_t t0;
	FILE *f;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n"))
			n = number("-n", argv[++i], 1, 100000000);
		else if (!strcmp(argv[i], "-s"))
			size = (size_t)number("-s", argv[++i], 1, MAX_BYTES);
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "-p"))
			port = number("-p", argv[++i], 1, 65535);
		else if (!strcmp(argv[i], "-l"))
			listen_port = number("-l", argv[++i], 1, 65535);
		else if (!strcmp(argv[i], "--hist") && i + 1 < argc)
			hist_path = argv[++i];
		else
			usage();
	}
	if (listen_port) {
		serve_port((uint16_t)listen_port);
		return 0;
	}
	if (hist_init(&h) < 0)
		errx(1, "out of memory");
	if (port)
		cli.fd = connect_to((uint16_t)port);
	else
		connect_pair(&cli.fd, &srv.fd);
	srv.cpu = SERVER_CPU, cli.cpu = CLIENT_CPU;
	srv.size = cli.size = size;
	srv.rounds = cli.rounds = n + n / 10;
	if (!port && (errno = pthread_create(&tid, NULL, serve, &srv)))
		err(1, "pthread_create");
	t0 = clock_now_ns();
	run_client(&cli, n / 10, &h);
	if (!port)
		pthread_join(tid, NULL);
	report(&h, n, size, json, (double)(clock_now_ns() - t0) / 1e9 * n / (n + n / 10),
	       port ? "spinning client against 127.0.0.1" : "floor: 2 spinning threads");
	if (hist_path) {
		f = fopen(hist_path, "w");
		if (!f || hist_write_percentiles(&h, f, 1000.0) < 0 || fclose(f) == EOF)
			err(1, "--hist %s", hist_path);
	}
	hist_free(&h);
	return 0;
}
