/*
 * opts.h - command-line options, from one table per program.
 *
 * Each program describes its options once, as a table of struct opt.  The
 * same table drives getopt_long(3), the range checks and the --help text, so
 * the three can never drift apart.  Parsing fills a plain struct whose
 * fields the table names by offset; nothing here is global except getopt's
 * own cursor, and nothing here exits.
 */
#ifndef ECHOD_OPTS_H
#define ECHOD_OPTS_H

#include "net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CONFIG_ERRLEN	  256
#define EXIT_USAGE	  2 /* exit status for a usage error, in both programs */
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

/* The number of rows of an option table. */
#define OPTS_COUNT(tab) (sizeof(tab) / sizeof((tab)[0]))

#endif
