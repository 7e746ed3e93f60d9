/*
 * config.h - command-line options, from one table per program.
 *
 * Each program describes its options once, as a table of struct opt.  The
 * same table drives getopt_long(3), the range checks and the --help text, so
 * the three can never drift apart.  Parsing fills a plain struct whose
 * fields the table names by offset; nothing here is global except getopt's
 * own cursor, and nothing here exits.
 */
#ifndef ECHOD_CONFIG_H
#define ECHOD_CONFIG_H

#include "net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CONFIG_ERRLEN	  256
#define CONFIG_MAX_LISTEN 16

enum opt_kind {
	OPT_FLAG,    /* bool set to true */
	OPT_COUNT,   /* long incremented each time (-v -v) */
	OPT_NUM,     /* long within [min, max] */
	OPT_SECONDS, /* decimal seconds within [min, max], stored in ms as a long */
	OPT_STR,     /* const char * */
	OPT_CHOICE,  /* const char *, one of the '|'-separated choices */
	OPT_ADDR,    /* appended to a struct addr_list */
	OPT_HELP,
	OPT_VERSION,
};

struct opt {
	const char *name; /* long name, without the dashes */
	int short_name;	  /* 0 if none */
	enum opt_kind kind;
	size_t offset;	     /* of the field in the target struct */
	const char *argname; /* in --help; NULL for options without a value */
	long min, max;	     /* OPT_NUM, OPT_SECONDS (in seconds) */
	const char *choices; /* OPT_CHOICE: "a|b|c" */
	const char *help;
};

enum opts_result {
	OPTS_ERROR = -1, /* a usage error; the reason is in err */
	OPTS_OK = 0,
	OPTS_HELP,
	OPTS_VERSION,
};

/*
 * Parses argv against the n options of tab into dst.  Stops at the first
 * operand when stop_at_operand (echoc: MESSAGE words may start with '-'),
 * else permutes.  *first_operand is the index of the first operand.
 */
enum opts_result opts_parse(const struct opt *tab, size_t n, void *dst, int argc, char **argv,
			    bool stop_at_operand, int *first_operand, char *err, size_t errlen);
/* Prints the option list generated from tab, one option a line. */
void opts_usage(const struct opt *tab, size_t n, FILE *out);

/* The addresses of a repeatable -l. */
struct addr_list {
	struct net_addr addr[CONFIG_MAX_LISTEN];
	int n;
};

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
	bool no_sandbox; /* do not confine the process after start-up */
	long verbose;
	bool quiet;
	const char *log_format;
	bool udp;		  /* also serve UDP echo on the same addresses */
	long udp_rate;		  /* datagrams/s per source, 0 = unlimited */
	bool udp_allow_low_ports; /* answer the well-known service ports too */
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

/* echoc's configuration (message, interactive and pipe modes). */
struct client_config {
	struct net_addr target;
	bool udp;
	bool once;
	bool no_newline;
	long timeout_ms;
	int first_word; /* index in argv of the first MESSAGE word, argc if none */
};

enum opts_result client_config_parse(struct client_config *cfg, int argc, char **argv, char *err,
				     size_t errlen);
void client_config_usage(FILE *out);

#endif
