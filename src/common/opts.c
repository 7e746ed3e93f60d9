/*
 * opts.c - the table-driven command-line parser both programs use.
 *
 * getopt_long(3) does the scanning; everything it needs (the long options
 * and the short option string) is built from the table, and so is --help.
 * Each value is checked as it is parsed, before main() opens any socket, so
 * a bad value costs the user one clear line and exit status 2.
 */
#include "opts.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { OPTS_MAX = 64, OPT_LONG_ONLY_BASE = 256 };

static void *field(void *dst, const struct opt *o)
{
	return (char *)dst + o->offset;
}

static bool has_arg(const struct opt *o)
{
	return o->argname != NULL;
}

/* The value getopt_long returns for o: its letter, or a code past 255. */
static int opt_val(const struct opt *tab, const struct opt *o)
{
	return o->short_name ? o->short_name : OPT_LONG_ONLY_BASE + (int)(o - tab);
}

static const struct opt *find_by_val(const struct opt *tab, size_t n, int val)
{
	for (size_t i = 0; i < n; i++)
		if (opt_val(tab, &tab[i]) == val)
			return &tab[i];
	return NULL;
}

/* Builds getopt_long's arguments from the table. */
static void build_getopt(const struct opt *tab, size_t n, bool stop_at_operand,
			 struct option *longs, char *shorts)
{
	size_t k = 0;

	if (stop_at_operand)
		shorts[k++] = '+';
	shorts[k++] = ':'; /* report a missing value as ':' */
	for (size_t i = 0; i < n; i++) {
		longs[i] = (struct option){tab[i].name, has_arg(&tab[i]) ? required_argument : 0,
					   NULL, opt_val(tab, &tab[i])};
		if (tab[i].short_name) {
			shorts[k++] = (char)tab[i].short_name;
			if (has_arg(&tab[i]))
				shorts[k++] = ':';
		}
	}
	longs[n] = (struct option){0};
	shorts[k] = '\0';
}

static int parse_num(const struct opt *o, const char *arg, long *out, char *err, size_t errlen)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (end == arg || *end || errno) {
		snprintf(err, errlen, "--%s %s: not a whole number", o->name, arg);
		return -EINVAL;
	}
	if (v < o->min || v > o->max) {
		snprintf(err, errlen, "--%s %s: must be %ld to %ld", o->name, arg, o->min, o->max);
		return -ERANGE;
	}
	*out = v;
	return 0;
}

static int parse_seconds(const struct opt *o, const char *arg, long *ms, char *err, size_t errlen)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (end == arg || *end || errno || !isfinite(v)) {
		snprintf(err, errlen, "--%s %s: not a number of seconds", o->name, arg);
		return -EINVAL;
	}
	if (v < (double)o->min || v > (double)o->max) {
		snprintf(err, errlen, "--%s %s: must be %ld to %ld seconds", o->name, arg, o->min,
			 o->max);
		return -ERANGE;
	}
	/* The resolution is 1 ms: a positive value below it is 1 ms, not 0 (off). */
	*ms = v > 0 && v < 0.001 ? 1 : lround(v * 1000.0);
	return 0;
}

/* arg must be one whole choice: neither a run of several ("a|b") nor a prefix. */
static int parse_choice(const struct opt *o, const char *arg, char *err, size_t errlen)
{
	size_t len = strlen(arg);

	for (const char *c = o->choices; c; c = strchr(c, '|'), c = c ? c + 1 : c)
		if (len && strcspn(c, "|") == len && !strncmp(c, arg, len))
			return 0;
	snprintf(err, errlen, "--%s %s: must be one of %s", o->name, arg, o->choices);
	return -EINVAL;
}

static int parse_addr(const struct opt *o, const char *arg, struct addr_list *l, char *err,
		      size_t errlen)
{
	char why[NET_ERRLEN];

	if (l->n == CONFIG_MAX_LISTEN) {
		snprintf(err, errlen, "--%s %s: at most %d addresses", o->name, arg,
			 CONFIG_MAX_LISTEN);
		return -E2BIG;
	}
	if (net_parse_addr(arg, NET_DEFAULT_PORT, &l->addr[l->n], why, sizeof(why)) < 0) {
		snprintf(err, errlen, "--%s %s: %s", o->name, arg, why);
		return -EINVAL;
	}
	l->n++;
	return 0;
}

/* Stores one option's value; returns 0 or -errno with the reason in err. */
static int apply(const struct opt *o, const char *arg, void *dst, char *err, size_t errlen)
{
	switch (o->kind) {
	case OPT_FLAG:
		*(bool *)field(dst, o) = true;
		return 0;
	case OPT_COUNT:
		++*(long *)field(dst, o);
		return 0;
	case OPT_NUM:
		return parse_num(o, arg, field(dst, o), err, errlen);
	case OPT_SECONDS:
		return parse_seconds(o, arg, field(dst, o), err, errlen);
	case OPT_CHOICE:
		if (parse_choice(o, arg, err, errlen) < 0)
			return -EINVAL;
		/* fall through */
	case OPT_STR:
		*(const char **)field(dst, o) = arg;
		return 0;
	case OPT_ADDR:
		return parse_addr(o, arg, field(dst, o), err, errlen);
	case OPT_HELP:
	case OPT_VERSION:
		return 0;
	}
	return -EINVAL;
}

/* Describes the option getopt could not use, from optopt or argv. */
static void describe_bad_option(const struct opt *tab, size_t n, char **argv, int val, char *err,
				size_t errlen)
{
	const struct opt *o = find_by_val(tab, n, optopt);

	if (val == ':' && o)
		snprintf(err, errlen, "option --%s needs a value", o->name);
	else if (o) /* --once=yes */
		snprintf(err, errlen, "option --%s takes no value", o->name);
	else if (optopt)
		snprintf(err, errlen, "unknown option -%c", optopt);
	else
		snprintf(err, errlen, "unknown option %s", argv[optind - 1]);
}

enum opts_result opts_parse(const struct opt *tab, size_t n, void *dst, int argc, char **argv,
			    bool stop_at_operand, int *first_operand, char *err, size_t errlen)
{
	struct option longs[OPTS_MAX + 1];
	char shorts[2 * OPTS_MAX + 3];
	enum opts_result res = OPTS_OK;
	const struct opt *o;
	int val;

	if (n > OPTS_MAX)
		return OPTS_ERROR;
	build_getopt(tab, n, stop_at_operand, longs, shorts);
	optind = 0; /* glibc: start over, so tests may parse many times */
	opterr = 0;
	while ((val = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
		if (val == '?' || val == ':') {
			describe_bad_option(tab, n, argv, val, err, errlen);
			return OPTS_ERROR;
		}
		o = find_by_val(tab, n, val);
		if (apply(o, optarg, dst, err, errlen) < 0)
			return OPTS_ERROR;
		if (o->kind == OPT_HELP && res == OPTS_OK)
			res = OPTS_HELP;
		if (o->kind == OPT_VERSION && res == OPTS_OK)
			res = OPTS_VERSION;
	}
	*first_operand = optind;
	return res;
}

/* Prints text wrapped to fit after a left column of indent characters. */
static void print_wrapped(FILE *out, const char *text, int indent)
{
	enum { WIDTH = 79 };
	int col = indent;

	while (*text) {
		int word = (int)strcspn(text, " ");

		if (col > indent && col + 1 + word > WIDTH) {
			fprintf(out, "\n%*s", indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', out);
			col++;
		}
		fprintf(out, "%.*s", word, text);
		col += word;
		text += word;
		text += strspn(text, " ");
	}
	fputc('\n', out);
}

void opts_usage(const struct opt *tab, size_t n, FILE *out)
{
	enum { LEFT = 28 };
	char left[64];

	for (size_t i = 0; i < n; i++) {
		const struct opt *o = &tab[i];
		int len = o->short_name ? snprintf(left, sizeof(left), "-%c, --%s", o->short_name,
						   o->name)
					: snprintf(left, sizeof(left), "    --%s", o->name);

		if (o->argname)
			snprintf(left + len, sizeof(left) - (size_t)len, " %s", o->argname);
		fprintf(out, "  %-*s", LEFT - 3, left);
		if (strlen(left) > LEFT - 3)
			fprintf(out, "\n%*s", LEFT - 1, "");
		fputc(' ', out);
		print_wrapped(out, o->help, LEFT);
	}
}
