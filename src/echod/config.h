/*
 * config.h - echod's configuration, parsed from its command line.
 */
#ifndef ECHOD_CONFIG_H
#define ECHOD_CONFIG_H

#include "cpus.h"
#include "opts.h"

/* echod's configuration. */
struct config {
	struct addr_list listen; /* empty: every address, NET_DEFAULT_PORT */
	bool once;
	const char *model;
	long workers;	   /* 0: number of CPUs */
	long buffer_bytes; /* 0: CONFIG_ONCE_BUFFER with --once, else CONFIG_STREAM_BUFFER */
	long backlog;
	long max_conns;	      /* 0: unlimited */
	long idle_timeout_ms; /* 0: off */
	long grace_ms;
	const char *user;
	long verbose;
	bool quiet;
	const char *log_format;
	bool udp;		  /* also serve UDP echo on the same addresses */
	long udp_rate;		  /* datagrams/s per source, 0 = unlimited */
	bool udp_allow_low_ports; /* answer the well-known service ports too */
	bool inetd;		  /* serve the socket on standard input, then exit */
	bool no_sandbox;	  /* do not confine the process after start-up */
	struct addr_list metrics; /* --metrics: where to serve /metrics (TCP only) */
	bool proxy_protocol;	  /* every stream connection starts with a PROXY header */
	long proxy_timeout_ms;	  /* the header's deadline from the accept */
	const char *cpu_affinity; /* "auto", "off" or a CPU list (then in cpu_list) */
	struct cpu_list cpu_list; /* --cpu-affinity LIST: worker i's CPU is cpu[i] */
	const char *worker_sched; /* --worker-sched: auto, batch or normal */
	bool busy_poll;		  /* epoll, uring: workers spin instead of sleeping */
};

#define CONFIG_ONCE_BUFFER   1024
#define CONFIG_STREAM_BUFFER 16384
#define CONFIG_UDP_RATE	     1000 /* --udp-rate default; the help text says why */
#define CONFIG_UDP_RATE_MAX  1000000

/*
 * Parses and validates echod's command line into cfg.  On OPTS_ERROR, err
 * holds one line naming the option and the value.
 */
enum opts_result config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen);
/* Prints echod's usage, generated from its option table. */
void config_usage(FILE *out);

#endif
