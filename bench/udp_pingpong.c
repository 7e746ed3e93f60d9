/*
 * udp_pingpong.c - UDP ping-pong load for comparing echo servers.
 *
 * Stand-in until "echoc bench -u" exists.  One connected UDP socket sends a
 * datagram of --size bytes, waits for its echo (checked byte for byte), and
 * sends the next: one message in flight, so messages/s is 1 / round trip.
 * Prints one line: messages/s, p50, p99, p99.9 and max latency in
 * microseconds (of the echoes that came back), and the count of lost
 * datagrams: an echo later than LOST_MS (default 200) counts as lost, and
 * the next datagram goes out; "late" counts the lost ones whose echo did
 * arrive after all (a slow server, not a dropped datagram).
 *
 * usage: udp_pingpong HOST PORT SIZE SECONDS [LOST_MS]
 * Build: cc -O2 -o udp_pingpong udp_pingpong.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (1 << 24)

static int lost_ms = 200; /* an echo this late counts as lost */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Connects a UDP socket to host:port, numeric IPv4 or IPv6. */
static int connect_udp(const char *host, int port)
{
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
	struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(port)};
	int v6 = inet_pton(AF_INET6, host, &s6.sin6_addr) == 1;
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);

	if (fd < 0 || (!v6 && inet_pton(AF_INET, host, &s4.sin_addr) != 1))
		return -1;
	if (connect(fd, v6 ? (struct sockaddr *)&s6 : (struct sockaddr *)&s4,
		    v6 ? sizeof(s6) : sizeof(s4)) < 0)
		return -1;
	return fd;
}

static size_t late; /* echoes of datagrams already given up on */

/* One round trip; returns its latency in ns, or 0 if the echo was lost or wrong. */
static uint64_t round_trip(int fd, unsigned char *out, unsigned char *in, size_t size,
			   uint32_t seq)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	uint64_t t0 = now_ns();
	ssize_t n;

	if (size >= 4)
		memcpy(out, &seq, 4); /* a late echo of an earlier one cannot pass */
	if (send(fd, out, size, 0) != (ssize_t)size)
		return 0;
	for (;;) {
		if (poll(&pfd, 1, lost_ms) <= 0)
			return 0;
		n = recv(fd, in, 65536, 0);
		if (n == (ssize_t)size && !memcmp(in, out, size))
			return now_ns() - t0;
		if (n == (ssize_t)size && size >= 4)
			late++;
		if (n < 0 && errno != EINTR)
			return 0;
	}
}

int main(int argc, char **argv)
{
	static unsigned char out[65536], in[65536];
	uint32_t *lat = malloc(sizeof(*lat) * MAX_SAMPLES);
	uint64_t end, t, start;
	size_t n = 0, lost = 0, size;
	int fd;

	if ((argc != 5 && argc != 6) || !lat)
		return fprintf(stderr, "usage: udp_pingpong HOST PORT SIZE SECONDS [LOST_MS]\n"), 2;
	if (argc == 6)
		lost_ms = atoi(argv[5]);
	size = (size_t)atoi(argv[3]);
	fd = connect_udp(argv[1], atoi(argv[2]));
	if (fd < 0 || size > sizeof(out))
		return perror("udp_pingpong"), 1;
	memset(out, 'x', size);
	start = now_ns();
	end = start + (uint64_t)(atof(argv[4]) * 1e9);
	while (now_ns() < end && n < MAX_SAMPLES) {
		t = round_trip(fd, out, in, size, (uint32_t)(n + lost));
		if (t)
			lat[n++] = (uint32_t)(t > UINT32_MAX ? UINT32_MAX : t);
		else
			lost++;
	}
	t = now_ns() - start;
	if (!n)
		return fprintf(stderr, "udp_pingpong: no echo at all\n"), 1;
	qsort(lat, n, sizeof(*lat), cmp_u32);
	printf("msgs/s %.0f p50_us %.1f p99_us %.1f p999_us %.1f max_us %.1f lost %zu late %zu\n",
	       (double)n / ((double)t / 1e9), lat[n / 2] / 1e3, lat[n * 99 / 100] / 1e3,
	       lat[n * 999 / 1000] / 1e3, lat[n - 1] / 1e3, lost, late);
	return 0;
}
