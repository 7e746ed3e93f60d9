/*
 * test_locality.c - --cpu-affinity's decisions and the steering program.
 *
 * The program is run twice: by a small classic-BPF interpreter here (every
 * CPU number, every shape of list), and by the kernel, on a real reuseport
 * group on 127.0.0.1, connecting from a thread pinned to each CPU this
 * process may use: on loopback the SYN is handled on the connecting CPU, so
 * the connection must wait on the listener of that CPU's position.
 */
#include "../../src/echod/locality.c"

#include "net.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

/* Runs the ops locality_program() emits, with `cpu` as the receiving CPU. */
static uint32_t run_program(const struct sock_filter *p, int len, uint32_t cpu)
{
	uint32_t a = 0;

	for (int pc = 0; pc < len; pc++) {
		const struct sock_filter *f = &p[pc];

		switch (f->code) {
		case BPF_LD | BPF_W | BPF_ABS:
			assert_int_equal(f->k, (uint32_t)(SKF_AD_OFF + SKF_AD_CPU));
			a = cpu;
			break;
		case BPF_ALU | BPF_SUB | BPF_K:
			a -= f->k;
			break;
		case BPF_JMP | BPF_JEQ | BPF_K:
			pc += a == f->k ? f->jt : f->jf;
			break;
		case BPF_RET | BPF_A:
			return a;
		case BPF_RET | BPF_K:
			return f->k;
		default:
			fail_msg("unexpected op 0x%x at %d", f->code, pc);
		}
	}
	fail_msg("the program runs off its end");
	return 0;
}

/* Every CPU maps to its position in the list, every other CPU past the list. */
static void check_mapping(const char *list)
{
	static struct sock_filter prog[LOCALITY_PROGRAM_MAX];
	static struct cpu_list cpus;
	char err[128];
	int len;

	assert_int_equal(cpus_parse(list, &cpus, err, sizeof(err)), 0);
	len = locality_program(&cpus, prog, LOCALITY_PROGRAM_MAX);
	assert_true(len > 0 && len <= BPF_MAXINSNS);
	for (uint32_t cpu = 0; cpu < CPUS_MAX + 8; cpu++) {
		uint32_t got = run_program(prog, len, cpu);
		int want = cpu < CPUS_MAX ? cpus_index(&cpus, (int)cpu) : -1;

		if (want >= 0 ? got != (uint32_t)want : got < (uint32_t)cpus.n)
			fail_msg("%s: CPU %u gave %u, want %d", list, cpu, got, want);
	}
}

static void maps_cpu_to_position(void **state)
{
	(void)state;
	check_mapping("0");
	check_mapping("0-1");
	check_mapping("0-127");
	check_mapping("4-7");	   /* contiguous, not from 0: ld cpu; sub 4 */
	check_mapping("1,0");	   /* reversed: the jump table */
	check_mapping("0-3,8-11"); /* a gap */
	check_mapping("9,2,30");
	check_mapping("0-1023");
}

static void program_fits_or_refuses(void **state)
{
	static struct sock_filter prog[4];
	static struct cpu_list cpus;
	char err[128];

	(void)state;
	assert_int_equal(cpus_parse("0-7", &cpus, err, sizeof(err)), 0);
	assert_int_equal(locality_program(&cpus, prog, 4), 3);
	assert_int_equal(cpus_parse("0,2", &cpus, err, sizeof(err)), 0);
	assert_int_equal(locality_program(&cpus, prog, 4), -1);
}

static void plans(void **state)
{
	static struct cpu_list allowed, list;
	static struct locality loc;
	char err[128];

	(void)state;
	assert_int_equal(cpus_parse("2,3", &allowed, err, sizeof(err)), 0);
	/* auto: workers == allowed CPUs pins, in the allowed set's order */
	locality_plan(&loc, "auto", &list, 2, true, &allowed);
	assert_true(loc.pin && loc.per_worker);
	assert_int_equal(loc.cpus.n, 2);
	assert_int_equal(loc.cpus.cpu[0], 2);
	assert_int_equal(loc.steering, STEER_BPF);
	/* auto, another count: as before */
	locality_plan(&loc, "auto", &list, 3, true, &allowed);
	assert_false(loc.pin || loc.per_worker);
	assert_non_null(strstr(loc.why, "3 workers, 2 CPUs allowed"));
	locality_plan(&loc, "off", &list, 2, true, &allowed);
	assert_false(loc.pin || loc.per_worker);
	locality_plan(&loc, "auto", &list, 2, false, &allowed);
	assert_false(loc.pin);
	/* a list: its order */
	assert_int_equal(cpus_parse("3,2", &list, err, sizeof(err)), 0);
	locality_plan(&loc, "3,2", &list, 2, true, &allowed);
	assert_true(loc.pin && loc.per_worker);
	assert_int_equal(loc.cpus.cpu[0], 3);
	/* one worker: pinned, its one listener needs no steering */
	assert_int_equal(cpus_parse("2", &allowed, err, sizeof(err)), 0);
	locality_plan(&loc, "auto", &list, 1, true, &allowed);
	assert_true(loc.pin);
	assert_false(loc.per_worker);
}

/* The weakest steering any address got is what the log line says, with its reason. */
static void notes_the_weakest(void **state)
{
	static struct cpu_list allowed, list;
	static struct locality loc;
	char err[128], line[400];

	(void)state;
	assert_int_equal(cpus_parse("0-1", &allowed, err, sizeof(err)), 0);
	locality_plan(&loc, "auto", &list, 2, true, &allowed);
	locality_describe(&loc, line, sizeof(line));
	assert_non_null(strstr(line, "no TCP listener to steer"));
	locality_note(&loc, STEER_BPF, "");
	locality_describe(&loc, line, sizeof(line));
	assert_non_null(strstr(line, "2 workers pinned to CPUs 0-1; each connection steered"));
	locality_note(&loc, STEER_INCOMING_CPU, "refused: X");
	locality_note(&loc, STEER_BPF, "");
	locality_describe(&loc, line, sizeof(line));
	assert_non_null(strstr(line, "SO_INCOMING_CPU (refused: X)"));
	locality_no_steering(&loc, "systemd's");
	locality_describe(&loc, line, sizeof(line));
	assert_non_null(strstr(line, "not steered (systemd's)"));
	assert_false(loc.per_worker);
}

struct connector {
	int cpu;
	struct sockaddr_in to;
	int fd;
};

static void *connect_from_cpu(void *arg)
{
	struct connector *c = arg;

	if (cpus_pin_self(c->cpu) < 0)
		return NULL;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd >= 0 && connect(c->fd, (struct sockaddr *)&c->to, sizeof(c->to)) < 0) {
		close(c->fd);
		c->fd = -1;
	}
	return NULL;
}

/* Which of the n listeners holds the one pending connection (-1: none within 5 s). */
static int listener_with_connection(const int *fds, int n)
{
	struct pollfd p[CPUS_MAX];

	for (int i = 0; i < n; i++)
		p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
	if (poll(p, (nfds_t)n, 5000) <= 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (p[i].revents & POLLIN) {
			int fd = accept(fds[i], NULL, NULL);

			if (fd >= 0)
				close(fd);
			return i;
		}
	return -1;
}

/*
 * The kernel steers: a connection from CPU c waits on listener index(c).
 * by_bpf: the program, else SO_INCOMING_CPU on each listener (the fallback).
 */
static void steer_in_the_kernel(const struct cpu_list *cpus, bool by_bpf)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	static int fds[CPUS_MAX];
	char why[NET_ERRLEN];
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(net_listen_group(fd, 16, fds, cpus->n, why, sizeof(why)), 0);
	if (by_bpf)
		assert_int_equal(locality_steer(fds, cpus->n, cpus, why, sizeof(why)), STEER_BPF);
	else
		assert_int_equal(set_incoming_cpu(fds, cpus->n, cpus), 0);
	assert_int_equal(getsockname(fds[0], (struct sockaddr *)&sin, &len), 0);
	/* Four connections per CPU: a hash that matched by chance would not, four times. */
	for (int k = 0; k < 4 * cpus->n; k++) {
		int i = k % cpus->n;
		struct connector c = {.cpu = cpus->cpu[i], .to = sin, .fd = -1};
		pthread_t t;

		assert_int_equal(pthread_create(&t, NULL, connect_from_cpu, &c), 0);
		pthread_join(t, NULL);
		assert_true(c.fd >= 0);
		assert_int_equal(listener_with_connection(fds, cpus->n), i);
		close(c.fd);
	}
	for (int i = 0; i < cpus->n; i++)
		close(fds[i]);
}

static void kernel_steers_by_cpu(void **state)
{
	static struct cpu_list allowed, reversed;

	(void)state;
	assert_int_equal(cpus_allowed(&allowed), 0);
	steer_in_the_kernel(&allowed, true); /* contiguous or not, as this machine is */
	/* The same CPUs backwards: the jump table, and an order that is not the CPUs' own. */
	reversed.n = allowed.n;
	for (int i = 0; i < allowed.n; i++)
		reversed.cpu[i] = allowed.cpu[allowed.n - 1 - i];
	steer_in_the_kernel(&reversed, true);
}

/* True when the running kernel is at least major.minor. */
static bool kernel_at_least(int major, int minor)
{
	struct utsname u;
	int ma = 0, mi = 0;

	if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
		return false;
	return ma > major || (ma == major && mi >= minor);
}

/* The fallback steers too, where the kernel honours SO_INCOMING_CPU in a group (6.1). */
static void incoming_cpu_steers_since_6_1(void **state)
{
	static struct cpu_list allowed;

	(void)state;
	if (!kernel_at_least(6, 1))
		skip();
	assert_int_equal(cpus_allowed(&allowed), 0);
	steer_in_the_kernel(&allowed, false);
}

/* --worker-sched: auto is batch only for pinned workers that sleep; the others say so outright. */
static void batch_decision(void **state)
{
	(void)state;
	assert_true(locality_batch("auto", true, false));
	assert_false(locality_batch("auto", false, false));
	assert_false(locality_batch("auto", true, true)); /* --busy-poll never sleeps */
	assert_true(locality_batch("batch", false, false));
	assert_true(locality_batch("batch", true, true));
	assert_false(locality_batch("normal", true, false));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(maps_cpu_to_position),
		cmocka_unit_test(program_fits_or_refuses),
		cmocka_unit_test(plans),
		cmocka_unit_test(notes_the_weakest),
		cmocka_unit_test(kernel_steers_by_cpu),
		cmocka_unit_test(incoming_cpu_steers_since_6_1),
		cmocka_unit_test(batch_decision),
	};

	return cmocka_run_group_tests_name("locality", tests, NULL, NULL);
}
