/*
 * test_udp.c - the UDP loop guard and the per-source rate limit, as pure
 * functions: tables of inputs and the expected verdicts.
 *
 * Includes udp.c itself (no sockets are opened) so the test links with the
 * common objects alone.
 */
#include "../../src/echod/udp.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define MS	  1000000u /* in ns */

/* Fills ss with addr:port, IPv4 or IPv6 as the text says. */
static const struct sockaddr *sockaddr_of(struct sockaddr_storage *ss, const char *addr,
					  uint16_t port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
	} else {
		assert_int_equal(inet_pton(AF_INET6, addr, &sin6->sin6_addr), 1);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
	}
	return (const struct sockaddr *)ss;
}

static void test_guard_table(void **state)
{
	static const struct {
		const char *src;
		uint16_t port;
		const char *dst; /* NULL: unknown */
		bool allow_low;
		enum udp_verdict want;
	} cases[] = {
		{"127.0.0.1", 40000, "127.0.0.1", false, UDP_ANSWER},
		{"192.0.2.1", 1024, NULL, false, UDP_ANSWER},
		{"127.0.0.1", 7, "127.0.0.1", false, UDP_DENY_PORT},
		{"127.0.0.1", 9, NULL, false, UDP_DENY_PORT},
		{"127.0.0.1", 13, NULL, false, UDP_DENY_PORT},
		{"127.0.0.1", 17, NULL, false, UDP_DENY_PORT},
		{"127.0.0.1", 19, NULL, false, UDP_DENY_PORT},
		{"127.0.0.1", 37, NULL, false, UDP_DENY_PORT},
		{"127.0.0.1", 53, NULL, false, UDP_DENY_PORT},
		{"127.0.0.1", 123, NULL, false, UDP_DENY_PORT},
		{"127.0.0.1", 8, NULL, false, UDP_ANSWER}, /* not a service that answers */
		{"127.0.0.1", 19, NULL, true, UDP_ANSWER},
		{"127.0.0.1", 123, NULL, true, UDP_ANSWER},
		{"127.0.0.1", 0, NULL, false, UDP_DENY_PORT},
		{"127.0.0.1", 0, NULL, true, UDP_DENY_PORT}, /* never port 0 */
		{"0.0.0.0", 40000, NULL, false, UDP_DENY_SOURCE},
		{"255.255.255.255", 40000, NULL, true, UDP_DENY_SOURCE},
		{"224.0.0.1", 40000, NULL, false, UDP_DENY_SOURCE},
		{"239.255.255.250", 40000, NULL, false, UDP_DENY_SOURCE},
		{"192.0.2.1", 40000, "255.255.255.255", false, UDP_DENY_DEST},
		{"192.0.2.1", 40000, "224.0.0.251", false, UDP_DENY_DEST},
		{"::1", 40000, "::1", false, UDP_ANSWER},
		{"2001:db8::1", 7, NULL, false, UDP_DENY_PORT},
		{"2001:db8::1", 7, NULL, true, UDP_ANSWER},
		{"::", 40000, NULL, false, UDP_DENY_SOURCE},
		{"ff02::1", 40000, NULL, false, UDP_DENY_SOURCE},
		{"::ffff:255.255.255.255", 40000, NULL, false, UDP_DENY_SOURCE},
		{"::ffff:192.0.2.1", 40000, NULL, false, UDP_ANSWER},
		{"2001:db8::1", 40000, "ff02::1", false, UDP_DENY_DEST},
	};
	struct sockaddr_storage src, dst;

	(void)state;
	for (size_t i = 0; i < NELEMS(cases); i++) {
		const struct sockaddr *d =
			cases[i].dst ? sockaddr_of(&dst, cases[i].dst, 7127) : NULL;
		enum udp_verdict got = udp_guard(sockaddr_of(&src, cases[i].src, cases[i].port), d,
						 cases[i].allow_low);

		if (got != cases[i].want)
			fail_msg("case %zu: %s port %u: got %s, want %s", i, cases[i].src,
				 cases[i].port, udp_verdict_name(got),
				 udp_verdict_name(cases[i].want));
	}
}

/* One step of a token bucket: at now_ms, is a datagram let through? */
struct bucket_step {
	uint64_t now_ms;
	bool want;
};

static void run_bucket(const struct bucket_step *steps, size_t n, uint64_t per_sec, uint64_t burst)
{
	uint64_t tat = 0;

	for (size_t i = 0; i < n; i++)
		if (udp_bucket_take(&tat, steps[i].now_ms * MS, 1000 * MS / per_sec, burst) !=
		    steps[i].want)
			fail_msg("step %zu at %lu ms: want %s", i, (unsigned long)steps[i].now_ms,
				 steps[i].want ? "pass" : "drop");
}

static void test_bucket_burst_then_rate(void **state)
{
	/* 10/s, burst 3: three at once, then one every 100 ms. */
	static const struct bucket_step steps[] = {
		{1000, true}, {1000, true},  {1000, true},  {1000, false}, {1050, false},
		{1100, true}, {1100, false}, {1199, false}, {1200, true},  {1200, false},
		{5000, true}, {5000, true},  {5000, true},  {5000, false}, /* refilled, capped */
	};

	(void)state;
	run_bucket(steps, NELEMS(steps), 10, 3);
}

static void test_bucket_burst_of_one(void **state)
{
	static const struct bucket_step steps[] = {
		{10, true}, {10, false}, {1009, false}, {1010, true}, {1010, false}, {9000, true},
	};

	(void)state;
	run_bucket(steps, NELEMS(steps), 1, 1);
}

/* How many of n datagrams from src at now_ns the table lets through. */
static int allowed(struct udp_rate *r, const char *src, uint16_t port, int n, uint64_t now_ns)
{
	struct sockaddr_storage ss;
	int ok = 0;

	for (int i = 0; i < n; i++)
		ok += udp_rate_allow(r, sockaddr_of(&ss, src, port), now_ns);
	return ok;
}

static struct udp_rate *new_rate(long per_sec)
{
	struct udp_rate *r = malloc(sizeof(*r));

	assert_non_null(r);
	udp_rate_init(r, per_sec, 0x1234, 0x5678);
	return r;
}

static void test_rate_per_source(void **state)
{
	struct udp_rate *r = new_rate(10);
	uint64_t t = 1000 * MS;

	(void)state;
	assert_int_equal(allowed(r, "127.0.0.1", 5000, 100, t), 10);
	/* The limit is per address: another port of the same host shares it. */
	assert_int_equal(allowed(r, "127.0.0.1", 5001, 10, t), 0);
	/* Another address is served in full. */
	assert_int_equal(allowed(r, "127.0.0.2", 5000, 100, t), 10);
	assert_int_equal(allowed(r, "::1", 5000, 100, t), 10);
	/* A tenth of a second later, one more token. */
	assert_int_equal(allowed(r, "127.0.0.1", 5000, 10, t + 100 * MS), 1);
	free(r);
}

static void test_rate_unlimited(void **state)
{
	struct udp_rate *r = new_rate(0);

	(void)state;
	assert_int_equal(allowed(r, "127.0.0.1", 5000, 100000, 1000 * MS), 100000);
	free(r);
}

/*
 * Many sources that come and go must not free a source that is over its
 * limit: it has the fewest tokens of its set, so it is evicted last.
 */
static void test_rate_churn_keeps_heavy_source_limited(void **state)
{
	struct udp_rate *r = new_rate(10);
	uint64_t t = 1000 * MS;
	char addr[32];

	(void)state;
	assert_int_equal(allowed(r, "192.0.2.1", 5000, 20, t), 10);
	for (int i = 0; i < 20000; i++) {
		snprintf(addr, sizeof(addr), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
		assert_int_equal(allowed(r, addr, 5000, 1, t), 1);
	}
	assert_int_equal(allowed(r, "192.0.2.1", 5000, 5, t), 0);
	free(r);
}

/* Memory is fixed by the table's size, whatever the number of sources. */
static void test_rate_table_is_small(void **state)
{
	(void)state;
	assert_true(sizeof(struct udp_rate) <= 256 * 1024);
}

/* ---- Refusal logging ---- */

/* Offers worker w one datagram from src to dst (NULL: unknown) and returns the verdict. */
static bool offer(struct udp_worker *w, const char *src, uint16_t port, const char *dst)
{
	struct sockaddr_storage d;
	struct msghdr *h = &w->b->rx[0].msg_hdr;

	reset_rx(w->b, 0);
	sockaddr_of(&w->b->src[0], src, port);
	h->msg_namelen = w->b->src[0].ss_family == AF_INET ? sizeof(struct sockaddr_in)
							   : sizeof(struct sockaddr_in6);
	h->msg_flags = 0;
	return answerable(w, 0, dst ? sockaddr_of(&d, dst, 7127) : NULL, 0);
}

/* Counts the lines in f that contain what. */
static int count_lines(FILE *f, const char *what)
{
	char line[1024];
	int n = 0;

	rewind(f);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, what) != NULL;
	return n;
}

/* Each kind of refusal has its own once-a-minute limit: one kind's flood hides no other. */
static void test_each_refusal_kind_is_logged(void **state)
{
	static struct metrics_worker m;
	struct udp *u = calloc(1, sizeof(*u));
	struct udp_worker w = {.u = u, .m = &m, .b = calloc(1, sizeof(struct udp_batch))};
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);

	(void)state;
	assert_non_null(u);
	assert_non_null(w.b);
	assert_non_null(f);
	udp_rate_init(&u->rate, 1, 1, 2);
	log_setup("echod", LOGL_INFO, false);
	assert_int_equal(dup2(fileno(f), STDERR_FILENO), STDERR_FILENO);
	for (int i = 0; i < 3; i++) {
		assert_false(offer(&w, "127.0.0.1", 19, "127.0.0.1"));
		assert_false(offer(&w, "0.0.0.0", 40000, NULL));
		assert_false(offer(&w, "192.0.2.1", 40000, "224.0.0.251"));
	}
	assert_true(offer(&w, "192.0.2.9", 40000, "127.0.0.1"));
	assert_false(offer(&w, "192.0.2.9", 40000, "127.0.0.1")); /* over --udp-rate 1 */
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	assert_int_equal(count_lines(f, udp_verdict_name(UDP_DENY_PORT)), 1);
	assert_int_equal(count_lines(f, udp_verdict_name(UDP_DENY_SOURCE)), 1);
	assert_int_equal(count_lines(f, udp_verdict_name(UDP_DENY_DEST)), 1);
	assert_int_equal(count_lines(f, "over --udp-rate"), 1);
	assert_int_equal(count_lines(f, "udp: not answering"), 4);
	fclose(f);
	free(w.b);
	free(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guard_table),
		cmocka_unit_test(test_bucket_burst_then_rate),
		cmocka_unit_test(test_bucket_burst_of_one),
		cmocka_unit_test(test_rate_per_source),
		cmocka_unit_test(test_rate_unlimited),
		cmocka_unit_test(test_rate_churn_keeps_heavy_source_limited),
		cmocka_unit_test(test_rate_table_is_small),
		cmocka_unit_test(test_each_refusal_kind_is_logged),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
