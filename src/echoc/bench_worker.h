/*
 * bench_worker.h - what the parts of "echoc bench" share.
 *
 * bench.c parses the options, starts the workers and drives the phases;
 * each worker thread runs bench_worker.c's epoll loop over its own
 * connections, which the TCP modes (bench_tcp.c) or UDP (bench_udp.c) move
 * along; bench_report.c writes the error lines and the results.  Nothing
 * is shared between workers but the phase and their counters (relaxed
 * atomics, read by the progress line); each has its own histogram, merged
 * after the join.
 */
#ifndef ECHOD_BENCH_WORKER_H
#define ECHOD_BENCH_WORKER_H

#include "cpus.h"
#include "hist.h"
#include "net.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define BENCH_BUF_BYTES	  (256 * 1024) /* per worker: one send or recv batch */
#define BENCH_UDP_HEADER  16	       /* u32 connection, u32 zero, u64 sequence */
#define BENCH_MAX_SOURCES 65536	       /* --source A-B: at most a /16 of addresses */

enum bench_mode { MODE_PINGPONG, MODE_CONNRATE, MODE_BULK, MODE_IDLE };
enum bench_phase { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };
enum bconn_state { CS_IDLE, CS_CONNECTING, CS_RUNNING, CS_DRAINING, CS_BACKOFF, CS_DEAD };

/* "pingpong", "connrate"...: indexed by enum bench_mode. */
extern const char *const bench_mode_names[];

/* The command line, filled from bench_opts[]. */
struct bench_cfg {
	const char *mode_name;
	long conns, size, depth, threads, rate;
	long pings; /* idle: messages per connection, then silence (0: no end) */
	long duration_ms, warmup_ms, timeout_ms;
	bool udp, once, json;
	bool ping_on_usr1; /* idle: silent until SIGUSR1, then the schedule */
	bool busy_poll;	   /* spin: epoll_pwait2 never sleeps */
	const char *hist_path;
	const char *source_arg; /* --source as typed */
	const char *cpus_arg;	/* --cpus LIST, as given */
	struct cpu_list cpus;	/* --cpus: thread i runs on cpu[i % n]; n = 0: unpinned */
	enum bench_mode mode;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char target[NET_NAMELEN];
	/* --source: connection i binds to the (i % nsources)-th address from
	 * source on (port 0); nsources is 1 for IPv6, 0 without --source. */
	struct sockaddr_storage source;
	uint32_t nsources;
};

/* Counters a worker bumps and the main thread reads while it runs. */
struct bench_counters {
	_Atomic uint64_t messages, bytes, errors, mismatches, timeouts;
	_Atomic uint64_t sent, lost, duplicates, reordered, late, open;
	_Atomic uint64_t verified; /* idle: connections whose first echo came back intact */
};

/* The run: the options and what the main thread and the workers share. */
struct bench {
	struct bench_cfg cfg;
	int probe_fd; /* -u: the probed socket, which connection 0 goes on with */
	_Atomic int phase;
	_Atomic int live_workers;
	_Atomic int ping_go; /* --ping-on-usr1: SIGUSR1 came */
	_Atomic unsigned error_lines, mismatch_lines;
	uint64_t t_start; /* when the workers were started */
};

/* One connection (or, with -u, one connected UDP socket). */
struct bconn {
	int fd;
	enum bconn_state st;
	uint32_t id;	    /* unique in the run */
	uint32_t gen;	    /* connections this slot has made (connrate) */
	uint64_t started;   /* messages begun: stamped, maybe not yet all sent */
	uint64_t done;	    /* messages fully echoed */
	uint64_t tx_bytes;  /* bytes written to the stream */
	uint64_t rx_bytes;  /* bytes of echo verified */
	uint64_t last_ns;   /* last progress, for --timeout */
	uint64_t t_connect; /* when the connect began */
	uint64_t *stamp;    /* depth slots: the time each message's latency counts from */
	/* UDP only, depth slots each. */
	uint64_t *udp_seq, *udp_sent;
	uint8_t *udp_state;
	uint8_t *udp_prev; /* the state the slot's previous datagram ended in */
	uint64_t udp_high; /* highest sequence answered, plus one */
	bool out_armed;
};

/* Fixed-rate schedule: the worker's j-th send is due at start + j * step. */
struct bench_pacer {
	bool on;
	uint64_t start_ns;
	double step_ns;
	uint64_t next; /* the next j to hand out */
};

/* One worker thread: its connections, its schedule, histogram and counters. */
struct bench_worker {
	struct bench *b;
	const struct bench_cfg *cfg;
	pthread_t tid;
	int epfd;
	struct bconn *conns;
	uint32_t n;
	uint32_t next_connect; /* initial connects not yet begun start here */
	uint32_t connecting;
	uint32_t alive;
	struct bench_pacer pace;
	struct hist hist;
	struct hist first;	/* idle: each connection's first echo, whatever the phase */
	_Atomic uint64_t up_ns; /* when its last initial connect finished (0: not yet) */
	struct bench_counters ct;
	uint8_t *buf;
	uint64_t next_sweep;
};

/* Counters summed over the workers at one instant. */
struct bench_totals {
	uint64_t messages, bytes, errors, mismatches, timeouts;
	uint64_t sent, lost, duplicates, reordered, late, open, verified;
};

static inline void bench_count(_Atomic uint64_t *ctr, uint64_t n)
{
	atomic_fetch_add_explicit(ctr, n, memory_order_relaxed);
}

static inline int bench_phase(const struct bench_worker *w)
{
	return atomic_load_explicit(&w->b->phase, memory_order_relaxed);
}

/* bench_worker.c: a connection's life, the same for TCP and UDP. */

/* What c's pattern is keyed on: its id and, for connrate, its generation. */
uint64_t bench_conn_key(const struct bconn *c);
void bench_set_events(struct bench_worker *w, struct bconn *c, uint32_t ev, int op);
void bench_arm_out(struct bench_worker *w, struct bconn *c, bool on);
void bench_close_conn(struct bench_worker *w, struct bconn *c);
void bench_fail_conn(struct bench_worker *w, struct bconn *c);
/* Counts an error, reports "what: why" and fails the connection. */
void bench_conn_error(struct bench_worker *w, struct bconn *c, const char *what, int e);
/* A non-blocking socket of the run's kind for its target; the fd or -errno. */
int bench_socket(const struct bench_cfg *cfg);
/* Binds fd to connection id's --source address, if any; 0 or -errno. */
int bench_bind_source(const struct bench_cfg *cfg, int fd, uint32_t id);
bool bench_may_start(const struct bench_worker *w, const struct bconn *c, uint64_t now,
		     uint64_t *from);
/* Counts one echoed message; its latency (from..now) only while measuring. */
void bench_record(struct bench_worker *w, uint64_t from, uint64_t now);
/* Counts and reports a wrong byte got at offset off of c's stream. */
void bench_mismatch(struct bench_worker *w, struct bconn *c, uint64_t off, uint8_t got);
int bench_worker_init(struct bench_worker *w, struct bench *b, uint32_t first, uint32_t n);
void bench_worker_free(struct bench_worker *w);
void *bench_worker_main(void *arg);

/* bench_tcp.c: the TCP modes (pingpong, connrate, bulk, idle). */
void bench_tcp_connect_more(struct bench_worker *w);
void bench_tcp_connect(struct bench_worker *w, struct bconn *c);
/* c's connect finished (an event on a connecting socket): run it, or fail it. */
void bench_tcp_connected(struct bench_worker *w, struct bconn *c);
void bench_tcp_send(struct bench_worker *w, struct bconn *c, uint64_t now);
void bench_tcp_recv(struct bench_worker *w, struct bconn *c);
/* Waits for fd's connect to finish (within --timeout); 0 or -errno. */
int bench_tcp_probe(int fd, const struct bench_cfg *c);

/* bench_udp.c: ping-pong over UDP (-u). */
void bench_udp_open(struct bench_worker *w, struct bconn *c);
void bench_udp_send(struct bench_worker *w, struct bconn *c, uint64_t now);
void bench_udp_recv(struct bench_worker *w, struct bconn *c);
void bench_udp_expire(struct bench_worker *w, struct bconn *c, uint64_t now);
/* Sends the probe datagram on connected fd and waits for its echo; 0 or -errno. */
int bench_udp_probe(int fd, const struct bench_cfg *c);

/* bench_report.c: error lines, progress and results. */
const char *bench_explain(int e);
void bench_report(_Atomic unsigned *lines, const struct bconn *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void bench_snapshot(struct bench_worker *ws, long nw, struct bench_totals *t);
void bench_window(struct bench_totals *end, const struct bench_totals *start);
void bench_progress(struct bench_worker *ws, long nw, const struct bench_cfg *c,
		    uint64_t elapsed_ns, uint64_t *last_msgs, uint64_t *last_bytes);
/* The idle mode's own figures: set-up, the first echo of each connection, memory. */
struct bench_idle {
	uint64_t up;	  /* connections established */
	double setup_s;	  /* from the start until every worker's connects finished */
	uint64_t rss_kib; /* echoc's resident memory once every connection was up and echoed */
	bool said_up;	  /* --ping-on-usr1: the "up, waiting" line was printed */
};
int bench_report_results(const struct bench_cfg *c, struct bench_worker *ws, long nw,
			 const struct bench_totals *t, double secs, const struct bench_idle *idle,
			 FILE *hist_out);

#endif
