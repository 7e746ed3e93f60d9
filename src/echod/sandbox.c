/*
 * sandbox.c - confining echod once it has started (Linux).
 *
 * After start-up echod only moves bytes between descriptors it already
 * holds, so everything else is taken away, in three layers:
 *
 *   - no new privileges (prctl PR_SET_NO_NEW_PRIVS): nothing it could exec
 *     gains rights, and the two layers below need it when not root;
 *   - Landlock (Linux 5.13, raw system calls, ABI probed): no filesystem
 *     access at all, except removing files beneath the directory of each
 *     unix socket, so the sockets can still be removed at exit;
 *   - seccomp (libseccomp): an allow-list of the system calls the engine in
 *     use makes while serving, tables below.  Any other call kills the
 *     whole process with SIGSYS (SCMP_ACT_KILL_PROCESS) rather than failing
 *     with EPERM: a call missing from the list is a bug that must show at
 *     once (the kernel log names the call, audit type=1326), not a server
 *     that limps on with an error path nobody tested; and code injected
 *     into echod gets no second try.
 *
 * The uring engine adds two things (sandbox_ring_start() and
 * sandbox_forbid_new_rings()): each ring is created disabled, restricted to
 * the operations the engine submits (IORING_REGISTER_RESTRICTIONS) and
 * only then enabled; once every worker's ring runs, io_uring_setup(2) is
 * forbidden, because a new ring would run any operation, unseen by seccomp.
 *
 * Threads: seccomp filters are loaded with TSYNC, so every thread of the
 * process is covered, also a sanitizer runtime's; Landlock covers only the
 * thread that applies it and the ones it starts later, so echod.c applies
 * the sandbox before it starts any thread of its own.
 *
 * Sanitizer builds (ASan, TSan) keep the seccomp filter with the calls
 * their runtime needs added (reports, LeakSanitizer's ptrace at exit), and
 * skip Landlock: the runtime reads /proc and writes its reports to files.
 *
 * Without libseccomp at build time the seccomp part is reported missing at
 * -v and the rest still applies.  A maintainer who changes what an engine
 * calls can build with `make SANDBOX_LOG=1`: refused calls are then allowed
 * and logged by the kernel (dmesg: audit type=1326 ... syscall=N; without
 * auditd, at most 10 lines in 5 s).
 */
#include "sandbox.h"

#include "busy_poll.h"
#include "config.h"
#include "engine.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef HAVE_LIBSECCOMP
#include <seccomp.h>
#endif
#ifdef HAVE_LIBURING
#include <liburing.h>
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANDBOX_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANDBOX_SANITIZER 1
#endif
#endif
#ifndef SANDBOX_SANITIZER
#define SANDBOX_SANITIZER 0
#endif

#define NRULES(t) (sizeof(t) / sizeof((t)[0]))

/* ------------------------------------------------------------------------
 * Landlock, by raw system calls: glibc has no wrappers, and Debian 12's
 * header stops at ABI 2, so the rights of later ABIs are spelled out.
 */

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif

/* Every filesystem right the kernel's Landlock ABI knows: all are denied. */
static uint64_t landlock_fs_rights(int abi)
{
	uint64_t all = (1ULL << 13) - 1; /* ABI 1: execute ... make_sym */

	if (abi >= 2)
		all |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		all |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		all |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	return all;
}

/* Lets the ruleset remove files beneath the directory of the unix socket path. */
static int allow_socket_removal(int ruleset, const char *path)
{
	struct landlock_path_beneath_attr rule = {.allowed_access = LANDLOCK_ACCESS_FS_REMOVE_FILE};
	char dir[sizeof(((struct listener *)0)->path)];
	char *slash;
	int rc = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		slash[slash == dir] = '\0'; /* "/x" keeps its "/" */
	rule.parent_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rule.parent_fd < 0)
		return -errno;
	if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) < 0)
		rc = -errno;
	close(rule.parent_fd);
	return rc;
}

/*
 * Denies the filesystem to this thread and the ones it starts.  Returns 1
 * when applied, 0 when the kernel has no Landlock (the reason is in why),
 * -errno on failure.
 */
static int apply_landlock(const struct server *srv, int *abi, char *why, size_t whylen)
{
	struct landlock_ruleset_attr attr = {0};
	int fd, rc = 0;

	*abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	if (*abi < 0 && (errno == ENOSYS || errno == EOPNOTSUPP)) {
		snprintf(why, whylen, "%s",
			 errno == ENOSYS ? "kernel without Landlock" : "Landlock disabled at boot");
		return 0;
	}
	if (*abi < 0)
		return -errno;
	attr.handled_access_fs = landlock_fs_rights(*abi);
	fd = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (fd < 0)
		return -errno;
	for (int i = 0; rc == 0 && i < srv->nlisteners; i++)
		if (srv->listeners[i].is_unix && srv->listeners[i].path[0])
			rc = allow_socket_removal(fd, srv->listeners[i].path);
	if (rc == 0 && syscall(SYS_landlock_restrict_self, fd, 0) < 0)
		rc = -errno;
	close(fd);
	return rc < 0 ? rc : 1;
}

#ifdef HAVE_LIBSECCOMP

/* ------------------------------------------------------------------------
 * The seccomp allow-lists.  Each table lists the calls one part of echod
 * makes after start-up; an engine's filter is the union of base_calls, its
 * own table and, when used, udp_calls and unix_calls.
 */

/*
 * One allowed system call, by name (numbers differ between architectures;
 * a name this one lacks is skipped).  arg >= 0: allowed only when
 * (argument arg & mask) == value.
 */
struct rule {
	const char *name;
	int arg;
	uint64_t mask, value;
};

/* The tables read one call a line. */
/* clang-format off */
#define ANY(call)		     {#call, -1, 0, 0}
#define WHEN(call, arg, mask, value) {#call, arg, mask, value}

/* Every engine: memory, threads, signals, time, and the descriptors it holds. */
static const struct rule base_calls[] = {
	/* malloc and thread stacks; never new executable memory */
	ANY(brk),
	WHEN(mmap, 2, PROT_EXEC, 0),
	WHEN(mprotect, 2, PROT_EXEC, 0),
	ANY(munmap),
	ANY(mremap),
	ANY(madvise),
	/* threads: the signal thread, workers; threads only, never processes */
	WHEN(clone, 0, CLONE_THREAD, CLONE_THREAD),
	ANY(set_robust_list),
	ANY(rseq),
	ANY(futex),
	ANY(sched_yield),
	ANY(sched_getaffinity),
	ANY(gettid),
	ANY(getpid),
	ANY(exit),
	ANY(exit_group),
	/* signals: the signal thread's sigwait, the second signal's raise(), abort() */
	ANY(rt_sigprocmask),
	ANY(rt_sigaction),
	ANY(rt_sigreturn),
	ANY(rt_sigtimedwait),
	ANY(tgkill),
	ANY(restart_syscall),
	/* time, where the vDSO falls back on the kernel */
	ANY(clock_gettime),
	ANY(gettimeofday),
	ANY(clock_nanosleep),
	ANY(nanosleep),
	/* the descriptors echod holds: log lines, the stop pipe, sockets */
	ANY(read),
	ANY(write),
	ANY(writev),
	ANY(close),
	ANY(poll),
	ANY(ppoll),
	ANY(shutdown),
	ANY(setsockopt),
	ANY(getsockopt),
	ANY(getsockname),
	ANY(getpeername),
	ANY(fcntl),
	ANY(getrandom),
	/* sd_notify's READY=1 and STOPPING=1, on the socket connected at start-up */
	ANY(sendto),
	/* stdio's fstat of its own stream: a descriptor, never a path */
	WHEN(newfstatat, 3, AT_EMPTY_PATH, AT_EMPTY_PATH),
	ANY(fstat),
};

/* iterative: accept, then blocking recv and send. */
static const struct rule iterative_calls[] = {
	ANY(accept4),
	ANY(recvfrom),
	ANY(sendto),
};

/* threads: the same, one thread per connection, a wake-up pipe. */
static const struct rule threads_calls[] = {
	ANY(accept4),
	ANY(recvfrom),
	ANY(sendto),
	ANY(pipe2),
};

/* epoll: one event loop per worker, set up in the worker. */
static const struct rule epoll_calls[] = {
	ANY(accept4),
	ANY(recvfrom),
	ANY(sendto),
	ANY(epoll_create1),
	ANY(epoll_ctl),
	ANY(epoll_wait),
	ANY(epoll_pwait),
	ANY(eventfd2),
	/* --cpu-affinity: each worker pins itself, and only itself */
	WHEN(sched_setaffinity, 0, 0xffffffff, 0),
	/* --worker-sched: each worker makes itself SCHED_BATCH, and only itself */
	WHEN(sched_setscheduler, 0, 0xffffffff, 0),
};

/*
 * uring: every socket operation goes through the ring (its opcodes are
 * ring_rules below).  io_uring_setup is needed while the workers create
 * their rings, then forbidden by a second filter (seccomp is how).
 */
static const struct rule uring_calls[] = {
	ANY(io_uring_setup),
	ANY(io_uring_enter),
	ANY(io_uring_register),
	ANY(eventfd2),
	ANY(seccomp),
	/* --max-conns: the ring polls the listeners, the worker accepts itself,
	 * one connection per free slot (engines.md) */
	ANY(accept4),
	/* --cpu-affinity: each worker pins itself, and only itself */
	WHEN(sched_setaffinity, 0, 0xffffffff, 0),
	/* --worker-sched: each worker makes itself SCHED_BATCH, and only itself */
	WHEN(sched_setscheduler, 0, 0xffffffff, 0),
};

/* epoll --busy-poll: each worker sets its epoll instance's busy-poll parameters. */
static const struct rule epoll_busy_poll_calls[] = {
	WHEN(ioctl, 1, 0xffffffff, EPIOCSPARAMS),
};

/* uring --busy-poll: each worker reads its hot connection directly (engine_uring.c, poll_hot()). */
static const struct rule uring_busy_poll_calls[] = {
	ANY(recvfrom),
	ANY(sendto),
};

/* --udp: batched datagrams, a wake-up pipe. */
static const struct rule udp_calls[] = {
	ANY(recvmmsg),
	ANY(sendmmsg),
	ANY(pipe2),
};

/*
 * --metrics: the HTTP thread (metrics_http.c) accepts and answers scrapes,
 * and re-reads /proc/self/stat and /proc/self/fd through descriptors it
 * opened before the sandbox (it never opens a file afterwards).
 */
static const struct rule metrics_calls[] = {
	ANY(accept4),
	ANY(recvfrom),
	ANY(getrusage),
	ANY(prlimit64),
	ANY(pread64),
	ANY(lseek),
	ANY(getdents64),
};

/* unix: listeners: removed at exit (Landlock limits where). */
static const struct rule unix_calls[] = {
	ANY(unlink),
	ANY(unlinkat),
};

/*
 * Sanitizer runtimes.  Found by running the suite built with SANDBOX_LOG=1:
 * LeakSanitizer stops the world at exit from a tracer process it clones,
 * which lists /proc/PID/task and ptraces every thread; each thread runs on
 * an alternate signal stack.  Added from the runtimes' report path, which
 * no passing test takes: a report written to its log_path file, and the
 * symbolizer run as a child process (fork, pipes, execve).
 */
static const struct rule sanitizer_calls[] = {
	/* LeakSanitizer at exit, TSan's background thread */
	ANY(clone),
	ANY(ptrace),
	ANY(wait4),
	ANY(prctl),
	ANY(getppid),
	ANY(sigaltstack),
	ANY(open),
	ANY(openat),
	ANY(getdents),
	ANY(getdents64),
	ANY(lseek),
	/* reports and the symbolizer */
	ANY(readlink),
	ANY(pipe),
	ANY(pipe2),
	ANY(dup2),
	ANY(execve),
	ANY(kill),
};

/*
 * Calls glibc makes on its own and copes without: refused with an error
 * rather than fatal.
 */
static const struct refusal {
	const char *name;
	int err;
} refusals[] = {
	/*
	 * pthread_create tries clone3 first and falls back on clone when the
	 * kernel says ENOSYS.  clone3 takes its flags in memory, where seccomp
	 * cannot look; clone's it can check (base_calls).
	 */
	{"clone3", ENOSYS},
	/*
	 * malloc, at its ninth arena (many threads at once), counts the CPUs
	 * in /sys/devices/system/cpu/online, then falls back on
	 * sched_getaffinity.  Landlock would refuse the open just the same.
	 */
	{"openat", EACCES},
	{"open", EACCES},
};

/* clang-format on */

struct table {
	const struct rule *rules;
	size_t n;
};

#define TABLE(t) ((struct table){t, NRULES(t)})

/* The engine's own table; an empty one for an engine without. */
static struct table engine_table(const char *engine)
{
	if (!strcmp(engine, "iterative"))
		return TABLE(iterative_calls);
	if (!strcmp(engine, "threads"))
		return TABLE(threads_calls);
	if (!strcmp(engine, "epoll"))
		return TABLE(epoll_calls);
	if (!strcmp(engine, "uring"))
		return TABLE(uring_calls);
	return (struct table){NULL, 0};
}

static bool has_unix_listener(const struct server *srv)
{
	for (int i = 0; i < srv->nlisteners; i++)
		if (srv->listeners[i].is_unix)
			return true;
	return false;
}

/* ------------------------------------------------------------------------
 * seccomp, through libseccomp.
 */

#ifdef ECHOD_SANDBOX_LOG
#define REFUSE SCMP_ACT_LOG /* make SANDBOX_LOG=1: learn what is missing */
#else
#define REFUSE SCMP_ACT_KILL_PROCESS
#endif

/*
 * Set by sandbox_apply() once its filter is loaded, for
 * sandbox_forbid_new_rings(): the filter is process-wide kernel state, and
 * so is this flag.
 */
static bool seccomp_loaded;

static bool in_table(const char *name, struct table t)
{
	for (size_t i = 0; i < t.n; i++)
		if (!strcmp(t.rules[i].name, name))
			return true;
	return false;
}

/*
 * Adds parts[k]'s rules to ctx.  Returns how many calls they allow that
 * this architecture has and no earlier part allows, or -errno.
 */
static int add_rules(scmp_filter_ctx ctx, const struct table *parts, int k)
{
	int n = 0, rc;

	for (size_t i = 0; i < parts[k].n; i++) {
		const struct rule *r = &parts[k].rules[i];
		int nr = seccomp_syscall_resolve_name(r->name);
		bool seen = false;

		if (nr == __NR_SCMP_ERROR)
			continue;
		if (r->arg < 0)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		else
			rc = seccomp_rule_add(
				ctx, SCMP_ACT_ALLOW, nr, 1,
				SCMP_CMP((unsigned)r->arg, SCMP_CMP_MASKED_EQ, r->mask, r->value));
		if (rc < 0)
			return rc;
		for (int j = 0; j < k; j++)
			seen |= in_table(r->name, parts[j]);
		n += !seen;
	}
	return n;
}

/* Adds the refusals, but of the calls the sanitizer runtime needs. */
static int add_refusals(scmp_filter_ctx ctx)
{
	for (size_t i = 0; i < NRULES(refusals); i++) {
		int nr = seccomp_syscall_resolve_name(refusals[i].name);
		int rc;

		if (nr == __NR_SCMP_ERROR ||
		    (SANDBOX_SANITIZER && in_table(refusals[i].name, TABLE(sanitizer_calls))))
			continue;
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(refusals[i].err), nr, 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A filter of the calls echod makes with this engine; sets *ncalls. */
static int build_filter(scmp_filter_ctx ctx, const struct server *srv, const char *engine,
			int *ncalls)
{
	struct table parts[7] = {TABLE(base_calls), engine_table(engine)};
	int nparts = 2, rc;

	if (srv->cfg->busy_poll && !strcmp(engine, "epoll"))
		parts[nparts++] = TABLE(epoll_busy_poll_calls);
	if (srv->cfg->busy_poll && !strcmp(engine, "uring"))
		parts[nparts++] = TABLE(uring_busy_poll_calls);

	if (srv->serves_udp)
		parts[nparts++] = TABLE(udp_calls);
	if (has_unix_listener(srv))
		parts[nparts++] = TABLE(unix_calls);
	if (srv->cfg->metrics.n > 0)
		parts[nparts++] = TABLE(metrics_calls);
	if (SANDBOX_SANITIZER)
		parts[nparts++] = TABLE(sanitizer_calls);
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (rc == 0)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, REFUSE);
	if (rc == 0)
		rc = add_refusals(ctx);
	*ncalls = 0;
	for (int i = 0; rc == 0 && i < nparts; i++) {
		rc = add_rules(ctx, parts, i);
		*ncalls += rc > 0 ? rc : 0;
		rc = rc < 0 ? rc : 0;
	}
	return rc;
}

/*
 * Loads the allow-list on every thread.  Returns 1 when loaded, 0 when the
 * kernel has no seccomp filters (reason in why), -errno on failure.
 */
static int apply_seccomp(const struct server *srv, const char *engine, int *ncalls, char *why,
			 size_t whylen)
{
	scmp_filter_ctx ctx = seccomp_init(REFUSE);
	int rc;

	if (!ctx)
		return -ENOMEM;
	rc = build_filter(ctx, srv, engine, ncalls);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc == -EINVAL && prctl(PR_GET_SECCOMP) < 0 && errno == EINVAL) {
		snprintf(why, whylen, "kernel without seccomp");
		return 0;
	}
	seccomp_loaded = rc == 0;
	return rc < 0 ? rc : 1;
}

int sandbox_forbid_new_rings(const struct config *cfg)
{
	scmp_filter_ctx ctx;
	int rc;

	if (cfg->no_sandbox || !seccomp_loaded)
		return 0;
	ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return -ENOMEM;
	/* No-new-privileges is set already: no prctl, which the filter refuses. */
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (rc == 0)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (rc == 0)
		rc = seccomp_rule_add(ctx, REFUSE, SCMP_SYS(io_uring_setup), 0);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0)
		log_error("sandbox: cannot forbid new io_uring rings: %s", strerror(-rc));
	return rc;
}

#else /* !HAVE_LIBSECCOMP */

static int apply_seccomp(const struct server *srv, const char *engine, int *ncalls, char *why,
			 size_t whylen)
{
	(void)srv;
	(void)engine;
	*ncalls = 0;
	snprintf(why, whylen, "built without libseccomp");
	return 0;
}

int sandbox_forbid_new_rings(const struct config *cfg)
{
	(void)cfg;
	return 0;
}

#endif /* HAVE_LIBSECCOMP */

/* ------------------------------------------------------------------------
 * io_uring ring restrictions.
 */

#ifdef HAVE_LIBURING

/*
 * What engine_uring.c submits: multishot accept, receive (sized or
 * multishot, from the provided buffer ring: IOSQE_BUFFER_SELECT), send,
 * cancel, a poll on the stop pipe, a read of the wake-up eventfd.  After
 * the ring is enabled, the only registration left is taking the buffer ring
 * back at exit.
 */
static struct io_uring_restriction ring_rules[] = {
	{.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_ACCEPT},
	{.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_RECV},
	{.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_SEND},
	{.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_ASYNC_CANCEL},
	{.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_POLL_ADD},
	{.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_READ},
	{.opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED, .sqe_flags = IOSQE_BUFFER_SELECT},
	{.opcode = IORING_RESTRICTION_REGISTER_OP, .register_op = IORING_UNREGISTER_PBUF_RING},
};

/*
 * Debian 12's liburing 2.3 declares io_uring_register_restrictions() and
 * io_uring_enable_rings() but its library does not export them: the raw
 * io_uring_register() it does export does the same.
 */
int sandbox_ring_start(struct io_uring *ring, const struct config *cfg)
{
	int rc;

	if (!cfg->no_sandbox) {
		rc = io_uring_register((unsigned)ring->ring_fd, IORING_REGISTER_RESTRICTIONS,
				       ring_rules, NRULES(ring_rules));
		if (rc < 0)
			return rc;
	}
	rc = io_uring_register((unsigned)ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
	return rc < 0 ? rc : 0;
}

#else /* !HAVE_LIBURING */

int sandbox_ring_start(struct io_uring *ring, const struct config *cfg)
{
	(void)ring;
	(void)cfg;
	return -ENOSYS;
}

#endif /* HAVE_LIBURING */

/* ------------------------------------------------------------------------ */

/* One line at -v saying what confines echod now. */
static void log_applied(int landlock, int abi, const char *ll_why, int seccomp, int ncalls,
			const char *sc_why, const char *engine)
{
	char ll[96], sc[96];

	if (landlock > 0)
		snprintf(ll, sizeof(ll), "Landlock ABI %d (no file access)", abi);
	else
		snprintf(ll, sizeof(ll), "no Landlock (%s)", ll_why);
	if (seccomp > 0)
		snprintf(sc, sizeof(sc), "seccomp allows %d system calls (%s)", ncalls, engine);
	else
		snprintf(sc, sizeof(sc), "no seccomp (%s)", sc_why);
	log_debug("sandbox: no new privileges, %s, %s", ll, sc);
}

int sandbox_apply(const struct server *srv, const char *engine, char *why, size_t whylen)
{
	char ll_why[64] = "sanitizer build", sc_why[64] = "";
	int abi = 0, ll = 0, sc, ncalls;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(why, whylen, "sandbox: no new privileges: %s", strerror(errno));
		return -errno;
	}
	if (!SANDBOX_SANITIZER)
		ll = apply_landlock(srv, &abi, ll_why, sizeof(ll_why));
	if (ll < 0) {
		snprintf(why, whylen, "sandbox: Landlock: %s", strerror(-ll));
		return ll;
	}
	sc = apply_seccomp(srv, engine, &ncalls, sc_why, sizeof(sc_why));
	if (sc < 0) {
		snprintf(why, whylen, "sandbox: seccomp: %s", strerror(-sc));
		return sc;
	}
	log_applied(ll, abi, ll_why, sc, ncalls, sc_why, engine);
	return 0;
}
