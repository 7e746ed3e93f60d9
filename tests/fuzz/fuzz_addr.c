/*
 * fuzz_addr.c - net_parse_addr() against a reference reading of its grammar.
 *
 * The input (up to its first NUL byte) is an address as a user types it
 * after -l or as echoc's target: PORT | HOST | HOST:PORT | [V6ADDR]:PORT |
 * [V6ADDR] | unix:PATH.  net_parse_addr() is purely syntactic (it never
 * resolves: names are looked up later, by net_listen and net_connect), so
 * no input here can cause a name lookup.
 *
 * Checked for every input: no crash or overrun; accepted or refused exactly
 * as the reference parser below (written from net.h's grammar, not from
 * net.c) says, with the same fields; a refusal says why; the default port
 * is used only when no port was given; and an accepted address printed back
 * in its bracketed form parses to the same address.
 */
#include "net.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_check.h"

#define MAX_INPUT 1024

/* PORT: one or more decimal digits, 0 to 65535 (leading zeros allowed). */
static bool ref_port(const char *s, size_t len, uint16_t *port)
{
	unsigned long v = 0;

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
		if (v > 65535)
			return false;
	}
	*port = (uint16_t)v;
	return true;
}

static bool ref_host(const char *s, size_t len, struct net_addr *a)
{
	if (len >= sizeof(a->host))
		return false;
	memcpy(a->host, s, len);
	a->host[len] = '\0';
	return true;
}

/* The grammar of net.h, read independently: true when s is an address. */
static bool ref_parse(const char *s, uint16_t default_port, struct net_addr *a, bool *port_given)
{
	size_t len = strlen(s), colons = 0;
	const char *colon = NULL;

	memset(a, 0, sizeof(*a));
	a->port = default_port;
	*port_given = false;
	if (!strncmp(s, "unix:", 5)) { /* unix:PATH, PATH 1 to sizeof(path) - 1 bytes */
		a->is_unix = true;
		if (len - 5 == 0 || len - 5 >= sizeof(a->path))
			return false;
		memcpy(a->path, s + 5, len - 5 + 1);
		return true;
	}
	if (s[0] == '[') { /* [HOST] or [HOST]:PORT; HOST up to the first ']' */
		const char *close = strchr(s, ']');

		if (!close || close == s + 1 || memchr(s + 1, '[', (size_t)(close - s - 1)) ||
		    !ref_host(s + 1, (size_t)(close - s - 1), a))
			return false;
		if (close[1] == '\0')
			return true;
		*port_given = true;
		return close[1] == ':' && ref_port(close + 2, strlen(close + 2), &a->port);
	}
	if (strpbrk(s, "[]")) /* a bracket belongs around an IPv6 address only */
		return false;
	for (const char *p = s; *p; p++)
		if (*p == ':' && colons++ == 0)
			colon = p;
	if (len && strspn(s, "0123456789") == len) { /* PORT alone */
		*port_given = true;
		return ref_port(s, len, &a->port);
	}
	if (colons != 1) /* HOST, or a bare IPv6 address (two colons or more) */
		return len > 0 && ref_host(s, len, a);
	*port_given = true; /* HOST:PORT, HOST possibly empty (":7" means every address) */
	return ref_host(s, (size_t)(colon - s), a) &&
	       ref_port(colon + 1, strlen(colon + 1), &a->port);
}

static bool same_addr(const struct net_addr *x, const struct net_addr *y)
{
	return x->is_unix == y->is_unix && x->port == y->port && !strcmp(x->host, y->host) &&
	       !strcmp(x->path, y->path);
}

/* Prints a the way a user could type it back, brackets around any host. */
static void unparse(const struct net_addr *a, char *buf, size_t len)
{
	if (a->is_unix)
		snprintf(buf, len, "unix:%s", a->path);
	else if (a->host[0])
		snprintf(buf, len, "[%s]:%u", a->host, a->port);
	else
		snprintf(buf, len, ":%u", a->port);
}

static void check_round_trip(const struct net_addr *a)
{
	char text[sizeof(a->host) + sizeof(a->path) + 16], err[NET_ERRLEN];
	struct net_addr again;

	if (strchr(a->host, ']'))
		return; /* only the plain form can carry a ']': no bracketed form exists */
	unparse(a, text, sizeof(text));
	CHECK(net_parse_addr(text, a->port, &again, err, sizeof(err)) == 0);
	CHECK(same_addr(a, &again));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[MAX_INPUT + 1], err[NET_ERRLEN], err0[NET_ERRLEN];
	struct net_addr got, got0, want;
	bool ok, port_given;
	int rc, rc0;

	if (size > MAX_INPUT)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	err[0] = err0[0] = '\0';

	rc = net_parse_addr(s, NET_DEFAULT_PORT, &got, err, sizeof(err));
	ok = ref_parse(s, NET_DEFAULT_PORT, &want, &port_given);
	CHECK(rc == 0 || rc == -EINVAL);
	CHECK((rc == 0) == ok);
	CHECK(memchr(err, '\0', sizeof(err)));
	if (rc < 0) {
		CHECK(err[0]); /* the user is told why */
		return 0;
	}
	CHECK(same_addr(&got, &want));
	CHECK(memchr(got.host, '\0', sizeof(got.host)) && memchr(got.path, '\0', sizeof(got.path)));

	/* The default port fills in only a missing port. */
	rc0 = net_parse_addr(s, 0, &got0, err0, sizeof(err0));
	CHECK(rc0 == 0);
	CHECK(got0.port == (port_given ? got.port : 0) || got.is_unix);
	got0.port = got.port;
	CHECK(same_addr(&got, &got0));

	check_round_trip(&got);
	return 0;
}
