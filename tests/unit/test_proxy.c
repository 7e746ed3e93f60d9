/*
 * test_proxy.c - the PROXY protocol header parser, from two tables.
 *
 * Valid headers: the whole header gives PROXY_OK with the addresses it
 * carries; every proper prefix of it gives PROXY_NEED_MORE (a header that
 * arrives a byte at a time is never refused); the header followed by payload
 * consumes exactly the header, so the payload is echoed.
 *
 * Refused inputs: each entry is the SHORTEST input with its verdict, so the
 * table also checks that the parser decides as early as it can: the entry
 * gives its error, the entry without its last byte gives PROXY_NEED_MORE,
 * and the entry with more bytes after it gives the same error.
 *
 * Every input is copied into a buffer of exactly its length, so an ASan build
 * (make check) catches a read past len.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

#define BYTES(lit) (const uint8_t *)(lit), sizeof(lit) - 1
#define V2SIG	   "\r\n\r\n\0\r\nQUIT\n"

static const char payload[] = "hello\r\n";

/* proxy_parse on an exact-size copy of buf[0..len). */
static enum proxy_result parse_exact(const uint8_t *buf, size_t len, struct proxy_header *h)
{
	uint8_t *copy = malloc(len ? len : 1);
	enum proxy_result r;

	assert_non_null(copy);
	memcpy(copy, buf, len);
	r = proxy_parse(copy, len, h);
	free(copy);
	return r;
}

/* buf followed by extra: a header and the bytes of the same segment. */
static enum proxy_result parse_with(const uint8_t *buf, size_t len, const void *extra, size_t n,
				    struct proxy_header *h)
{
	uint8_t *joined = malloc(len + n);
	enum proxy_result r;

	assert_non_null(joined);
	memcpy(joined, buf, len);
	memcpy(joined + len, extra, n);
	r = parse_exact(joined, len + n, h);
	free(joined);
	return r;
}

/* ---- valid headers ---- */

struct good {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	unsigned version;
	enum proxy_command command;
	int family, socktype;
	const char *src, *dst; /* as inet_ntop writes them, or the unix path */
	unsigned sport, dport;
};

static const struct good goods[] = {
	{"v1 TCP4", BYTES("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), 1, PROXY_CMD_PROXY,
	 AF_INET, SOCK_STREAM, "192.168.0.1", "192.168.0.11", 56324, 443},
	{"v1 TCP4 longest", BYTES("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"), 1,
	 PROXY_CMD_PROXY, AF_INET, SOCK_STREAM, "255.255.255.255", "255.255.255.255", 65535, 65535},
	{"v1 TCP4 zeros", BYTES("PROXY TCP4 0.0.0.0 10.0.0.0 0 0\r\n"), 1, PROXY_CMD_PROXY, AF_INET,
	 SOCK_STREAM, "0.0.0.0", "10.0.0.0", 0, 0},
	{"v1 TCP6", BYTES("PROXY TCP6 2001:db8::1 ::1 1234 7\r\n"), 1, PROXY_CMD_PROXY, AF_INET6,
	 SOCK_STREAM, "2001:db8::1", "::1", 1234, 7},
	{"v1 TCP6 upper case, longest",
	 BYTES("PROXY TCP6 FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF "
	       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
	 1, PROXY_CMD_PROXY, AF_INET6, SOCK_STREAM, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535},
	{"v1 TCP6 IPv4-mapped", BYTES("PROXY TCP6 ::ffff:10.0.0.1 :: 40000 80\r\n"), 1,
	 PROXY_CMD_PROXY, AF_INET6, SOCK_STREAM, "::ffff:10.0.0.1", "::", 40000, 80},
	{"v1 UNKNOWN", BYTES("PROXY UNKNOWN\r\n"), 1, PROXY_CMD_PROXY, AF_UNSPEC, 0, NULL, NULL, 0,
	 0},
	{"v1 UNKNOWN with anything", BYTES("PROXY UNKNOWN not parsed: 999.1 \x01\xff\r\n"), 1,
	 PROXY_CMD_PROXY, AF_UNSPEC, 0, NULL, NULL, 0, 0},
	{"v1 UNKNOWN, 107 bytes",
	 BYTES("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
	 1, PROXY_CMD_PROXY, AF_UNSPEC, 0, NULL, NULL, 0, 0},
	{"v2 PROXY TCP4",
	 BYTES(V2SIG "\x21\x11\x00\x0c"
		     "\xc0\x00\x02\x01"
		     "\xc6\x33\x64\x07"
		     "\x9c\x40\x00\x07"),
	 2, PROXY_CMD_PROXY, AF_INET, SOCK_STREAM, "192.0.2.1", "198.51.100.7", 40000, 7},
	{"v2 PROXY UDP4",
	 BYTES(V2SIG "\x21\x12\x00\x0c"
		     "\x7f\x00\x00\x01"
		     "\x7f\x00\x00\x02"
		     "\x00\x35\xff\xff"),
	 2, PROXY_CMD_PROXY, AF_INET, SOCK_DGRAM, "127.0.0.1", "127.0.0.2", 53, 65535},
	{"v2 PROXY TCP6",
	 BYTES(V2SIG "\x21\x21\x00\x24"
		     "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
		     "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"
		     "\x04\xd2\x00\x50"),
	 2, PROXY_CMD_PROXY, AF_INET6, SOCK_STREAM, "2001:db8::1", "::1", 1234, 80},
	{"v2 PROXY UDP6",
	 BYTES(V2SIG "\x21\x22\x00\x24"
		     "\0\0\0\0\0\0\0\0\0\0\xff\xff\x0a\0\0\x01"
		     "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
		     "\0\0\0\0"),
	 2, PROXY_CMD_PROXY, AF_INET6, SOCK_DGRAM, "::ffff:10.0.0.1", "::", 0, 0},
	{"v2 PROXY TCP4 with TLVs (NOOP, AUTHORITY, empty)",
	 BYTES(V2SIG "\x21\x11\x00\x22"
		     "\x0a\x00\x00\x01"
		     "\x0a\x00\x00\x02"
		     "\x30\x39\x00\x07"
		     "\x04\x00\x02"
		     "\0\0"
		     "\x02\x00\x0b"
		     "example.com"
		     "\xe0\x00\x00"),
	 2, PROXY_CMD_PROXY, AF_INET, SOCK_STREAM, "10.0.0.1", "10.0.0.2", 12345, 7},
	{"v2 LOCAL", BYTES(V2SIG "\x20\x00\x00\x00"), 2, PROXY_CMD_LOCAL, AF_UNSPEC, 0, NULL, NULL,
	 0, 0},
	{"v2 LOCAL with an address block (ignored)",
	 BYTES(V2SIG "\x20\x11\x00\x0c"
		     "\x0a\x00\x00\x01"
		     "\x0a\x00\x00\x02"
		     "\x30\x39\x00\x07"),
	 2, PROXY_CMD_LOCAL, AF_UNSPEC, 0, NULL, NULL, 0, 0},
	{"v2 LOCAL, family byte and block ignored",
	 BYTES(V2SIG "\x20\xff\x00\x03"
		     "\x01\x00\x09"),
	 2, PROXY_CMD_LOCAL, AF_UNSPEC, 0, NULL, NULL, 0, 0},
	{"v2 PROXY UNSPEC", BYTES(V2SIG "\x21\x00\x00\x00"), 2, PROXY_CMD_PROXY, AF_UNSPEC, 0, NULL,
	 NULL, 0, 0},
	{"v2 PROXY UNSPEC with a block (ignored)",
	 BYTES(V2SIG "\x21\x00\x00\x02"
		     "\xff\xff"),
	 2, PROXY_CMD_PROXY, AF_UNSPEC, 0, NULL, NULL, 0, 0},
};

static void check_fields(const struct good *g, const struct proxy_header *h, size_t consumed)
{
	char text[INET6_ADDRSTRLEN];
	const struct sockaddr_storage *ss[2] = {&h->src, &h->dst};
	const char *want[2] = {g->src, g->dst};
	unsigned port[2] = {g->sport, g->dport};

	assert_int_equal(h->consumed, consumed);
	assert_int_equal(h->version, g->version);
	assert_int_equal(h->command, g->command);
	assert_int_equal(h->family, g->family);
	assert_int_equal(h->socktype, g->socktype);
	assert_int_equal(proxy_has_address(h), g->src != NULL);
	for (int i = 0; i < 2 && g->family == AF_INET; i++) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss[i];

		assert_int_equal(sin->sin_family, AF_INET);
		assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)));
		assert_string_equal(text, want[i]);
		assert_int_equal(ntohs(sin->sin_port), port[i]);
		assert_int_equal(i ? h->dst_len : h->src_len, sizeof(*sin));
	}
	for (int i = 0; i < 2 && g->family == AF_INET6; i++) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss[i];

		assert_int_equal(sin6->sin6_family, AF_INET6);
		assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)));
		assert_string_equal(text, want[i]);
		assert_int_equal(ntohs(sin6->sin6_port), port[i]);
		assert_int_equal(i ? h->dst_len : h->src_len, sizeof(*sin6));
	}
	for (int i = 0; i < 2 && g->family == AF_UNIX; i++) {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)ss[i];

		assert_int_equal(sun->sun_family, AF_UNIX);
		assert_string_equal(sun->sun_path, want[i]);
	}
}

/* Whole, every proper prefix, and followed by payload. */
static void check_good(const struct good *g)
{
	struct proxy_header h;

	if (parse_exact(g->bytes, g->len, &h) != PROXY_OK)
		fail_msg("%s: not accepted", g->name);
	check_fields(g, &h, g->len);
	for (size_t n = 0; n < g->len; n++) {
		if (parse_exact(g->bytes, n, &h) != PROXY_NEED_MORE)
			fail_msg("%s: the first %zu bytes are not PROXY_NEED_MORE", g->name, n);
		assert_int_equal(h.consumed, 0);
	}
	assert_int_equal(parse_with(g->bytes, g->len, payload, strlen(payload), &h), PROXY_OK);
	check_fields(g, &h, g->len);
}

static void test_valid_headers(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++)
		check_good(&goods[i]);
}

/* A v2 header: fixed part, then block (blen bytes). */
static size_t v2_build(uint8_t *buf, uint8_t ver_cmd, uint8_t fam, const uint8_t *block,
		       size_t blen)
{
	memcpy(buf, V2SIG, 12);
	buf[12] = ver_cmd;
	buf[13] = fam;
	buf[14] = (uint8_t)(blen >> 8);
	buf[15] = (uint8_t)blen;
	memcpy(buf + PROXY_V2_FIXED, block, blen);
	return PROXY_V2_FIXED + blen;
}

/* Two 108-byte paths: one filling all 108 bytes, one short and NUL padded. */
static void test_v2_unix(void **state)
{
	uint8_t block[216] = {0}, buf[PROXY_V2_FIXED + sizeof(block)];
	char longest[109];
	struct good g = {
		"v2 PROXY UNIX",   buf, 0, 2, PROXY_CMD_PROXY, AF_UNIX, SOCK_STREAM, longest,
		"/run/echod.sock", 0,	0};

	(void)state;
	memset(longest, 'a', 108);
	longest[108] = '\0';
	memcpy(block, longest, 108);
	memcpy(block + 108, "/run/echod.sock", strlen("/run/echod.sock"));
	for (uint8_t fam = 0x31; fam <= 0x32; fam++) {
		g.len = v2_build(buf, 0x21, fam, block, sizeof(block));
		g.socktype = fam == 0x31 ? SOCK_STREAM : SOCK_DGRAM;
		check_good(&g);
	}
}

/* The longest header accepted: PROXY_HEADER_MAX bytes, a TLV filling the block. */
static void test_v2_longest(void **state)
{
	uint8_t block[PROXY_HEADER_MAX - PROXY_V2_FIXED] = {0}, buf[PROXY_HEADER_MAX];
	size_t tlv = sizeof(block) - 12 - 3;
	struct good g = {"v2 PROXY TCP4, PROXY_HEADER_MAX bytes",
			 buf,
			 0,
			 2,
			 PROXY_CMD_PROXY,
			 AF_INET,
			 SOCK_STREAM,
			 "0.0.0.0",
			 "0.0.0.0",
			 0,
			 0};

	(void)state;
	block[12] = 0x04; /* NOOP */
	block[13] = (uint8_t)(tlv >> 8);
	block[14] = (uint8_t)tlv;
	g.len = v2_build(buf, 0x21, 0x11, block, sizeof(block));
	assert_int_equal(g.len, PROXY_HEADER_MAX);
	check_good(&g);
}

/* ---- refused inputs: each the shortest with its verdict ---- */

struct bad {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	enum proxy_result want;
};

#define TCP4	   "PROXY TCP4 "
#define TCP4_ADDRS TCP4 "10.0.0.1 10.0.0.2 "
#define TCP6	   "PROXY TCP6 "
#define V2_TCP4	   V2SIG "\x21\x11"

static const struct bad bads[] = {
	/* Not a PROXY header at all: said at the first byte that differs. */
	{"HTTP request", BYTES("G"), PROXY_ERR_SIGNATURE},
	{"TLS hello", BYTES("\x16"), PROXY_ERR_SIGNATURE},
	{"SSH banner", BYTES("S"), PROXY_ERR_SIGNATURE},
	{"NUL byte", BYTES("\0"), PROXY_ERR_SIGNATURE},
	{"lower case proxy", BYTES("p"), PROXY_ERR_SIGNATURE},
	{"PROXI", BYTES("PROXI"), PROXY_ERR_SIGNATURE},
	{"v2 signature, byte 2", BYTES("\r\r"), PROXY_ERR_SIGNATURE},
	{"v2 signature, last byte", BYTES("\r\n\r\n\0\r\nQUIT\r"), PROXY_ERR_SIGNATURE},
	/* v1 grammar */
	{"tab after PROXY", BYTES("PROXY\t"), PROXY_ERR_V1_SYNTAX},
	{"two spaces after PROXY", BYTES("PROXY  "), PROXY_ERR_V1_SYNTAX},
	{"protocol TCP5", BYTES("PROXY TCP5"), PROXY_ERR_V1_SYNTAX},
	{"protocol UDP4", BYTES("PROXY UD"), PROXY_ERR_V1_SYNTAX},
	{"lower case tcp4", BYTES("PROXY t"), PROXY_ERR_V1_SYNTAX},
	{"TCP4 without space", BYTES("PROXY TCP4\r"), PROXY_ERR_V1_SYNTAX},
	{"UNKNOWN followed by a letter", BYTES("PROXY UNKNOWNX"), PROXY_ERR_V1_SYNTAX},
	{"UNKNOWN ended by a bare LF", BYTES("PROXY UNKNOWN x\n"), PROXY_ERR_V1_SYNTAX},
	{"UNKNOWN ended by CR CR", BYTES("PROXY UNKNOWN\r\r"), PROXY_ERR_V1_SYNTAX},
	{"CR inside an address", BYTES(TCP4 "10.0.0.1\r"), PROXY_ERR_V1_SYNTAX},
	{"line ends after the source port", BYTES(TCP4_ADDRS "1\r"), PROXY_ERR_V1_SYNTAX},
	{"two spaces before a port", BYTES(TCP4_ADDRS " "), PROXY_ERR_V1_SYNTAX},
	{"space after the last port", BYTES(TCP4_ADDRS "1 2 "), PROXY_ERR_V1_SYNTAX},
	{"bare LF ends the line", BYTES(TCP4_ADDRS "1 2\n"), PROXY_ERR_V1_SYNTAX},
	{"CR without LF", BYTES(TCP4_ADDRS "1 2\rX"), PROXY_ERR_V1_SYNTAX},
	/* v1 addresses */
	{"empty address", BYTES(TCP4 " "), PROXY_ERR_V1_ADDRESS},
	{"IPv4 leading zero", BYTES(TCP4 "01"), PROXY_ERR_V1_ADDRESS},
	{"IPv4 octet 00", BYTES(TCP4 "10.00"), PROXY_ERR_V1_ADDRESS},
	{"IPv4 octet 256", BYTES(TCP4 "256"), PROXY_ERR_V1_ADDRESS},
	{"IPv4 octet 1000",
	 BYTES(TCP4 "100"
		    "0"),
	 PROXY_ERR_V1_ADDRESS},
	{"IPv4 three octets", BYTES(TCP4 "10.0.0 "), PROXY_ERR_V1_ADDRESS},
	{"IPv4 five octets", BYTES(TCP4 "10.0.0.1."), PROXY_ERR_V1_ADDRESS},
	{"IPv4 empty octet", BYTES(TCP4 "10.."), PROXY_ERR_V1_ADDRESS},
	{"IPv4 leading dot", BYTES(TCP4 "."), PROXY_ERR_V1_ADDRESS},
	{"IPv4 trailing dot", BYTES(TCP4 "10.0.0. "), PROXY_ERR_V1_ADDRESS},
	{"IPv6 after TCP4", BYTES(TCP4 ":"), PROXY_ERR_V1_ADDRESS},
	{"host name after TCP4", BYTES(TCP4 "l"), PROXY_ERR_V1_ADDRESS},
	{"IPv4 destination octet 300", BYTES(TCP4 "10.0.0.1 300"), PROXY_ERR_V1_ADDRESS},
	{"IPv4 after TCP6", BYTES(TCP6 "10.0.0.1 "), PROXY_ERR_V1_ADDRESS},
	{"IPv6 five hex digits", BYTES(TCP6 "12345"), PROXY_ERR_V1_ADDRESS},
	{"IPv6 two ::", BYTES(TCP6 "1::2::"), PROXY_ERR_V1_ADDRESS},
	{"IPv6 :::", BYTES(TCP6 ":::"), PROXY_ERR_V1_ADDRESS},
	{"IPv6 not hex", BYTES(TCP6 "g"), PROXY_ERR_V1_ADDRESS},
	{"IPv6 with a zone", BYTES(TCP6 "fe80::1%"), PROXY_ERR_V1_ADDRESS},
	{"IPv6 in brackets", BYTES(TCP6 "["), PROXY_ERR_V1_ADDRESS},
	{"IPv6 too few groups", BYTES(TCP6 "1:2:3 "), PROXY_ERR_V1_ADDRESS},
	{"IPv6 longer than any address",
	 BYTES(TCP6 "0000:0000:0000:0000:0000:ffff:255.255.255.2550"), PROXY_ERR_V1_ADDRESS},
	/* v1 ports */
	{"port 65536", BYTES(TCP4_ADDRS "65536"), PROXY_ERR_V1_PORT},
	{"port 99999", BYTES(TCP4_ADDRS "99999"), PROXY_ERR_V1_PORT},
	{"port six digits", BYTES(TCP4_ADDRS "1 100000"), PROXY_ERR_V1_PORT},
	{"port leading zero", BYTES(TCP4_ADDRS "08"), PROXY_ERR_V1_PORT},
	{"port 00", BYTES(TCP4_ADDRS "1 00"), PROXY_ERR_V1_PORT},
	{"port negative", BYTES(TCP4_ADDRS "-"), PROXY_ERR_V1_PORT},
	{"port with plus", BYTES(TCP4_ADDRS "1 +"), PROXY_ERR_V1_PORT},
	{"port hex", BYTES(TCP4_ADDRS "0x"), PROXY_ERR_V1_PORT},
	{"port name", BYTES(TCP4_ADDRS "h"), PROXY_ERR_V1_PORT},
	/* v2 fixed part */
	{"v2 version 1", BYTES(V2SIG "\x11"), PROXY_ERR_V2_VERSION},
	{"v2 version 3", BYTES(V2SIG "\x31"), PROXY_ERR_V2_VERSION},
	{"v2 version 0", BYTES(V2SIG "\x01"), PROXY_ERR_V2_VERSION},
	{"v2 command 2", BYTES(V2SIG "\x22"), PROXY_ERR_V2_COMMAND},
	{"v2 command 15", BYTES(V2SIG "\x2f"), PROXY_ERR_V2_COMMAND},
	{"v2 PROXY family 0x13", BYTES(V2SIG "\x21\x13"), PROXY_ERR_V2_FAMILY},
	{"v2 PROXY family 0x10", BYTES(V2SIG "\x21\x10"), PROXY_ERR_V2_FAMILY},
	{"v2 PROXY family 0x01", BYTES(V2SIG "\x21\x01"), PROXY_ERR_V2_FAMILY},
	{"v2 PROXY family 0x41", BYTES(V2SIG "\x21\x41"), PROXY_ERR_V2_FAMILY},
	{"v2 length 65535", BYTES(V2_TCP4 "\xff\xff"), PROXY_ERR_V2_TOO_LONG},
	{"v2 length one past the cap", BYTES(V2_TCP4 "\x03\xf1"), PROXY_ERR_V2_TOO_LONG},
	{"v2 LOCAL length 65535", BYTES(V2SIG "\x20\x00\xff\xff"), PROXY_ERR_V2_TOO_LONG},
	{"v2 TCP4 block of 11 bytes", BYTES(V2_TCP4 "\x00\x0b"), PROXY_ERR_V2_ADDRESS},
	{"v2 TCP4 block of 0 bytes", BYTES(V2_TCP4 "\x00\x00"), PROXY_ERR_V2_ADDRESS},
	{"v2 TCP6 block of 35 bytes", BYTES(V2SIG "\x21\x21\x00\x23"), PROXY_ERR_V2_ADDRESS},
	{"v2 TCP6 block of 12 bytes", BYTES(V2SIG "\x21\x22\x00\x0c"), PROXY_ERR_V2_ADDRESS},
	{"v2 UNIX block of 215 bytes", BYTES(V2SIG "\x21\x31\x00\xd7"), PROXY_ERR_V2_ADDRESS},
	/* v2 TLVs, refused once the TLV's header is in (or the room left for one) */
	{"v2 block 2 bytes longer than the addresses: no room for a TLV", BYTES(V2_TCP4 "\x00\x0e"),
	 PROXY_ERR_V2_TLV},
	{"v2 TLV longer than the block",
	 BYTES(V2_TCP4 "\x00\x10"
		       "\x0a\x00\x00\x01"
		       "\x0a\x00\x00\x02"
		       "\x30\x39\x00\x07"
		       "\x04\x00\x02"),
	 PROXY_ERR_V2_TLV},
	{"v2 second TLV longer than the block",
	 BYTES(V2_TCP4 "\x00\x14"
		       "\x0a\x00\x00\x01"
		       "\x0a\x00\x00\x02"
		       "\x30\x39\x00\x07"
		       "\x04\x00\x01"
		       "\0"
		       "\x02\xff\xff"),
	 PROXY_ERR_V2_TLV},
};

/* The entry's verdict, not decided before its last byte, not changed by more bytes. */
static void check_bad(const char *name, const uint8_t *bytes, size_t len, enum proxy_result want)
{
	static const uint8_t more[] = "\r\n\x21\x11 PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
	struct proxy_header h;
	enum proxy_result r = parse_exact(bytes, len, &h);

	if (r != want)
		fail_msg("%s: %s, not %s", name, proxy_result_str(r), proxy_result_str(want));
	assert_int_equal(h.consumed, 0);
	if (parse_exact(bytes, len - 1, &h) != PROXY_NEED_MORE)
		fail_msg("%s: decided before its last byte", name);
	if (parse_with(bytes, len, more, sizeof(more) - 1, &h) != want)
		fail_msg("%s: more bytes change the verdict", name);
}

static void test_refused_early(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++)
		check_bad(bads[i].name, bads[i].bytes, bads[i].len, bads[i].want);
}

/* v1 lines end within 107 bytes, CRLF included: the 107th byte decides. */
static void test_v1_too_long(void **state)
{
	static const char mapped[] = "0000:0000:0000:0000:0000:ffff:255.255.255.255";
	uint8_t line[PROXY_V1_MAX + 16];
	int n;

	(void)state;
	/* The longest line the spec shows is accepted (in goods): 107 bytes. */
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++)
		assert_true(goods[i].len <= PROXY_V1_MAX || goods[i].version == 2);
	assert_int_equal(strlen("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
				"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			 PROXY_V1_MAX);

	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	check_bad("UNKNOWN, no CRLF in 107 bytes", line, PROXY_V1_MAX, PROXY_ERR_V1_TOO_LONG);
	line[PROXY_V1_MAX - 1] = '\r';
	line[PROXY_V1_MAX] = '\n';
	check_bad("UNKNOWN, CRLF at bytes 107 and 108", line, PROXY_V1_MAX, PROXY_ERR_V1_TOO_LONG);

	/* Valid addresses, but IPv4-mapped in full they make the line too long. */
	n = snprintf((char *)line, sizeof(line), "PROXY TCP6 %s %s 65535 65535\r\n", mapped,
		     mapped);
	assert_true(n > PROXY_V1_MAX && (size_t)n < sizeof(line));
	check_bad("TCP6 with IPv4-mapped addresses in full", line, PROXY_V1_MAX,
		  PROXY_ERR_V1_TOO_LONG);
}

/* The v2 cap, from the other side: exactly at PROXY_HEADER_MAX is accepted (test_v2_longest). */
static void test_v2_cap_is_stated(void **state)
{
	uint8_t buf[PROXY_V2_FIXED];
	struct proxy_header h;
	size_t blen = PROXY_HEADER_MAX - PROXY_V2_FIXED + 1;

	(void)state;
	memcpy(buf, V2SIG "\x21\x11", 14);
	buf[14] = (uint8_t)(blen >> 8);
	buf[15] = (uint8_t)blen;
	assert_int_equal(proxy_parse(buf, sizeof(buf), &h), PROXY_ERR_V2_TOO_LONG);
}

/* An empty input is the start of every header. */
static void test_nothing_yet(void **state)
{
	struct proxy_header h;

	(void)state;
	assert_int_equal(proxy_parse((const uint8_t *)"", 0, &h), PROXY_NEED_MORE);
	assert_int_equal(h.consumed, 0);
}

/* A byte at a time, the header is accepted once and the rest is payload. */
static void test_header_then_payload_in_pieces(void **state)
{
	static const char in[] = "PROXY TCP4 10.1.2.3 10.0.0.1 5555 7\r\nPROXY and more";
	size_t header = strlen("PROXY TCP4 10.1.2.3 10.0.0.1 5555 7\r\n");
	struct proxy_header h;

	(void)state;
	for (size_t n = 0; n <= strlen(in); n++) {
		enum proxy_result r = parse_exact((const uint8_t *)in, n, &h);

		assert_int_equal(r, n < header ? PROXY_NEED_MORE : PROXY_OK);
		assert_int_equal(h.consumed, n < header ? 0 : header);
	}
}

/* Metrics labels: stable, few, and every refusal has one. */
static void test_result_names(void **state)
{
	(void)state;
	assert_string_equal(proxy_result_name(PROXY_OK), "ok");
	assert_string_equal(proxy_result_name(PROXY_NEED_MORE), "incomplete");
	assert_string_equal(proxy_result_name(PROXY_ERR_SIGNATURE), "missing");
	assert_string_equal(proxy_result_name(PROXY_ERR_V1_SYNTAX), "malformed");
	assert_string_equal(proxy_result_name(PROXY_ERR_V1_ADDRESS), "malformed");
	assert_string_equal(proxy_result_name(PROXY_ERR_V1_PORT), "malformed");
	assert_string_equal(proxy_result_name(PROXY_ERR_V2_ADDRESS), "malformed");
	assert_string_equal(proxy_result_name(PROXY_ERR_V2_TLV), "malformed");
	assert_string_equal(proxy_result_name(PROXY_ERR_V1_TOO_LONG), "oversized");
	assert_string_equal(proxy_result_name(PROXY_ERR_V2_TOO_LONG), "oversized");
	assert_string_equal(proxy_result_name(PROXY_ERR_V2_VERSION), "unsupported");
	assert_string_equal(proxy_result_name(PROXY_ERR_V2_COMMAND), "unsupported");
	assert_string_equal(proxy_result_name(PROXY_ERR_V2_FAMILY), "unsupported");
	assert_string_equal(proxy_result_name(PROXY_ERR_TIMEOUT), "timeout");
	assert_string_equal(proxy_result_name(PROXY_ERR_TRUNCATED), "truncated");
	for (int r = PROXY_ERR_SIGNATURE; r < PROXY_RESULTS; r++) {
		assert_int_not_equal(proxy_result_reason((enum proxy_result)r), PROXY_REASON_NONE);
		assert_true(strlen(proxy_result_str((enum proxy_result)r)) > 0);
	}
	for (int a = 0; a < PROXY_REASONS; a++)
		for (int b = a + 1; b < PROXY_REASONS; b++)
			assert_string_not_equal(proxy_reason_name((enum proxy_reason)a),
						proxy_reason_name((enum proxy_reason)b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_headers),
		cmocka_unit_test(test_v2_unix),
		cmocka_unit_test(test_v2_longest),
		cmocka_unit_test(test_refused_early),
		cmocka_unit_test(test_v1_too_long),
		cmocka_unit_test(test_v2_cap_is_stated),
		cmocka_unit_test(test_nothing_yet),
		cmocka_unit_test(test_header_then_payload_in_pieces),
		cmocka_unit_test(test_result_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
