/*
 * locality.c - pinning workers to CPUs and steering connections to them.
 *
 * Steering: the listeners of one address form a SO_REUSEPORT group whose
 * sockets are numbered in the order they started listening (echod.c opens
 * them worker by worker).  A classic BPF program attached to the group with
 * SO_ATTACH_REUSEPORT_CBPF runs on each SYN and returns the number of the
 * socket to queue it on; it loads the CPU running it (the one handling the
 * packet's softirq) and maps it to that CPU's position in the pinned list.
 * An index past the group (a CPU not in the list) makes the kernel pick by
 * hash, as without a program, so nothing is ever refused.  This is the
 * technique of the kernel's reuseport_bpf_cpu selftest.
 *
 * Where the kernel refuses the program (before Linux 4.5, or a filter size
 * limit), each listener gets SO_INCOMING_CPU set to its worker's CPU
 * instead.  On a listener that option only sets sk_incoming_cpu; since
 * Linux 6.1 (b261eda84ec1, "soreuseport: Fix socket selection for
 * SO_INCOMING_CPU") a reuseport group whose sockets set it picks, among
 * the sockets the hash would choose from, the one whose CPU matches the
 * CPU handling the SYN.  On older kernels it does nothing for the choice,
 * and the group is hashed as plain SO_REUSEPORT is: still correct, only not
 * steered.  On one listener shared by every worker (systemd's socket) it
 * cannot steer at all: there is one queue, so echod does not set it there.
 *
 * Scheduling (--worker-sched): a pinned worker cannot move away from a task
 * that shares its CPU, and on a loopback or same-host client (a proxy in
 * front, a sidecar, the benchmark) that task is the one feeding it: every
 * message the client sends wakes the worker.  In the fair class a wake-up
 * may preempt the waker, so the worker ran for one or two messages, slept,
 * and the client ran again: measured on 2 CPUs with uring and 50
 * connections, 1.1 context switches per message against 0.14 without
 * wake-up preemption.  SCHED_BATCH turns wake-up preemption off for the
 * worker (the kernel's check_preempt_wakeup_fair() ignores batch tasks'
 * wake-ups): the waker runs on to its own next wait, and the worker then
 * finds a batch of messages.  It changes nothing on an otherwise idle CPU
 * (a waking task there runs at once); on a CPU shared with a busy task, a
 * worker's wake-up waits for that task's slice or next sleep, up to a tick.
 * docs/scaling.md has the figures; "normal" keeps the default policy.
 */
#include "locality.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif
#ifndef SO_INCOMING_CPU
#define SO_INCOMING_CPU 49
#endif

void locality_plan(struct locality *loc, const char *mode, const struct cpu_list *list, int workers,
		   bool engine_workers, const struct cpu_list *allowed)
{
	memset(loc, 0, sizeof(*loc));
	loc->steering = STEER_NONE;
	if (!engine_workers) {
		snprintf(loc->why, sizeof(loc->why), "the engine has no workers to pin");
		return;
	}
	if (!strcmp(mode, "off")) {
		snprintf(loc->why, sizeof(loc->why), "--cpu-affinity off");
		return;
	}
	if (!strcmp(mode, "auto")) {
		if (workers != allowed->n) {
			snprintf(loc->why, sizeof(loc->why),
				 "%d worker%s, %d CPU%s allowed: auto pins only when they match",
				 workers, workers == 1 ? "" : "s", allowed->n,
				 allowed->n == 1 ? "" : "s");
			return;
		}
		list = allowed;
	}
	loc->pin = true;
	loc->cpus = *list;
	/* One worker already has the only listener to itself. */
	loc->per_worker = workers > 1;
	loc->steering = loc->per_worker ? STEER_BPF : STEER_NONE;
}

void locality_no_steering(struct locality *loc, const char *why)
{
	loc->per_worker = false;
	locality_note(loc, STEER_NONE, why);
}

int locality_program(const struct cpu_list *cpus, struct sock_filter *prog, int max)
{
	bool contiguous = true;
	int n = 0;

	for (int i = 1; i < cpus->n; i++)
		contiguous = contiguous && cpus->cpu[i] == cpus->cpu[0] + i;
	if (max < (contiguous ? 3 : 2 * cpus->n + 2))
		return -1;
	/* A = the CPU running the program: the one handling the SYN. */
	prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_CPU);
	if (contiguous) {
		/* CPUs first..first+n-1 are positions 0..n-1; a lower CPU wraps past the group. */
		prog[n++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_SUB | BPF_K,
							 (unsigned)cpus->cpu[0]);
		prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_A, 0);
		return n;
	}
	/* Any other set: a jump table, one compare per listed CPU. */
	for (int i = 0; i < cpus->n; i++) {
		prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
							 (unsigned)cpus->cpu[i], 0, 1);
		prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (unsigned)i);
	}
	prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0xffffffffu);
	return n;
}

/* The fallback: each listener says which CPU it wants (see the top of the file). */
static int set_incoming_cpu(const int *fds, int n, const struct cpu_list *cpus)
{
	for (int i = 0; i < n; i++)
		if (setsockopt(fds[i], SOL_SOCKET, SO_INCOMING_CPU, &cpus->cpu[i],
			       sizeof(cpus->cpu[i])) < 0)
			return -errno;
	return 0;
}

enum steering locality_steer(const int *fds, int n, const struct cpu_list *cpus, char *why,
			     size_t whylen)
{
	static struct sock_filter prog[LOCALITY_PROGRAM_MAX];
	struct sock_fprog fprog = {.filter = prog};
	int len = locality_program(cpus, prog, LOCALITY_PROGRAM_MAX);
	int err;

	if (n != cpus->n || len < 0) {
		snprintf(why, whylen, "%d listeners for %d CPUs", n, cpus->n);
		return STEER_NONE;
	}
	fprog.len = (unsigned short)len;
	/* Attached to one socket, the program serves its whole group. */
	if (setsockopt(fds[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof(fprog)) == 0)
		return STEER_BPF;
	err = errno;
	if (set_incoming_cpu(fds, n, cpus) == 0) {
		snprintf(why, whylen, "the kernel refused SO_ATTACH_REUSEPORT_CBPF: %s",
			 strerror(err));
		return STEER_INCOMING_CPU;
	}
	snprintf(why, whylen,
		 "the kernel refused SO_ATTACH_REUSEPORT_CBPF (%s) and "
		 "SO_INCOMING_CPU (%s)",
		 strerror(err), strerror(errno));
	return STEER_NONE;
}

/* Better steering ranks higher. */
static int rank(enum steering s)
{
	return s == STEER_BPF ? 2 : s == STEER_INCOMING_CPU ? 1 : 0;
}

void locality_note(struct locality *loc, enum steering got, const char *why)
{
	if (got != STEER_NONE)
		loc->groups++;
	if (rank(got) >= rank(loc->steering))
		return;
	loc->steering = got;
	snprintf(loc->why, sizeof(loc->why), "%s", why);
}

void locality_describe(const struct locality *loc, char *buf, size_t buflen)
{
	char cpus[64];

	if (!loc->pin) {
		snprintf(buf, buflen, "cpu affinity: workers not pinned (%s)", loc->why);
		return;
	}
	cpus_format(&loc->cpus, cpus, sizeof(cpus));
	if (loc->cpus.n == 1)
		snprintf(buf, buflen, "cpu affinity: the worker pinned to CPU %s", cpus);
	else if (loc->steering == STEER_BPF && !loc->groups)
		snprintf(buf, buflen,
			 "cpu affinity: %d workers pinned to CPUs %s; no TCP listener to steer",
			 loc->cpus.n, cpus);
	else if (loc->steering == STEER_BPF)
		snprintf(buf, buflen,
			 "cpu affinity: %d workers pinned to CPUs %s; each connection steered to "
			 "the worker on the CPU that receives it (reuseport BPF)",
			 loc->cpus.n, cpus);
	else if (loc->steering == STEER_INCOMING_CPU)
		snprintf(buf, buflen,
			 "cpu affinity: %d workers pinned to CPUs %s; connections steered by "
			 "SO_INCOMING_CPU (%s)",
			 loc->cpus.n, cpus, loc->why);
	else
		snprintf(buf, buflen,
			 "cpu affinity: %d workers pinned to CPUs %s; connections not steered (%s)",
			 loc->cpus.n, cpus, loc->why);
}

bool locality_batch(const char *worker_sched, bool pinned, bool busy_poll)
{
	if (!strcmp(worker_sched, "batch"))
		return true;
	if (!strcmp(worker_sched, "normal"))
		return false;
	/* A spinning worker never sleeps, so it is never woken. */
	return pinned && !busy_poll;
}
