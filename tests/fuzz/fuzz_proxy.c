/*
 * fuzz_proxy.c - the PROXY protocol header parser on arbitrary bytes, as the
 * first bytes of a connection, arriving in any number of pieces.
 *
 * The input is what a connection received.  The target parses it whole and
 * every prefix up to the first verdict, each from a buffer of exactly that
 * many bytes (so AddressSanitizer sees any read past len), and checks what
 * proxy.h promises:
 * - a verdict is final: the first prefix that is not PROXY_NEED_MORE gives
 *   the verdict of every longer one, the whole input included (a header is
 *   never refused because it arrived in pieces, and a refused prefix never
 *   becomes a valid header), with the same header;
 * - PROXY_NEED_MORE only below PROXY_HEADER_MAX bytes, and the parser never
 *   claims the caller's reasons (timeout, truncated);
 * - on PROXY_OK, 0 < consumed <= len: a v1 line ends with CRLF within 107
 *   bytes, a v2 header is 16 bytes plus its length field; otherwise consumed
 *   is 0;
 * - the addresses are consistent with the family, and written out again
 *   (v1 text for TCP4/TCP6, the v2 binary block for any family) they parse to
 *   the same header; a TCP4 line, which has one spelling, is byte for byte
 *   the line the addresses print as;
 * - every result has a metrics label and a description.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_check.h"

static const uint8_t v2_signature[12] = "\r\n\r\n\0\r\nQUIT\n";

/* proxy_parse on an exact-size copy of the first n bytes. */
static enum proxy_result parse_prefix(const uint8_t *data, size_t n, struct proxy_header *h)
{
	uint8_t *copy = malloc(n ? n : 1);
	enum proxy_result r;

	CHECK(copy);
	memcpy(copy, data, n);
	r = proxy_parse(copy, n, h);
	free(copy);
	return r;
}

static bool same_header(const struct proxy_header *a, const struct proxy_header *b)
{
	return a->consumed == b->consumed && a->version == b->version && a->command == b->command &&
	       a->family == b->family && a->socktype == b->socktype && a->src_len == b->src_len &&
	       a->dst_len == b->dst_len && !memcmp(&a->src, &b->src, sizeof(a->src)) &&
	       !memcmp(&a->dst, &b->dst, sizeof(a->dst));
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
					      : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

static const void *ip_of(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET
		       ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
		       : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
}

/* The v1 line for an IP header; its length. */
static size_t write_v1(const struct proxy_header *h, char *line, size_t cap)
{
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
	int n;

	CHECK(inet_ntop(h->family, ip_of(&h->src), src, sizeof(src)));
	CHECK(inet_ntop(h->family, ip_of(&h->dst), dst, sizeof(dst)));
	n = snprintf(line, cap, "PROXY %s %s %s %u %u\r\n", h->family == AF_INET ? "TCP4" : "TCP6",
		     src, dst, port_of(&h->src), port_of(&h->dst));
	CHECK(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* The v2 PROXY header (no TLVs) for a header with addresses; its length. */
static size_t write_v2(const struct proxy_header *h, uint8_t *buf)
{
	uint8_t fam = (uint8_t)((h->family == AF_INET	 ? 0x10
				 : h->family == AF_INET6 ? 0x20
							 : 0x30) |
				(h->socktype == SOCK_STREAM ? 0x01 : 0x02));
	uint8_t *p = buf + PROXY_V2_FIXED;

	memcpy(buf, v2_signature, sizeof(v2_signature));
	buf[12] = 0x21;
	buf[13] = fam;
	if (h->family == AF_UNIX) {
		const size_t path = sizeof(((struct sockaddr_un *)0)->sun_path);

		CHECK(path >= 108); /* Linux: the wire's 108 bytes fit */
		memcpy(p, ((const struct sockaddr_un *)&h->src)->sun_path, 108);
		memcpy(p + 108, ((const struct sockaddr_un *)&h->dst)->sun_path, 108);
		p += 216;
	} else {
		size_t alen = h->family == AF_INET ? 4 : 16;

		memcpy(p, ip_of(&h->src), alen);
		memcpy(p + alen, ip_of(&h->dst), alen);
		put16(p + 2 * alen, port_of(&h->src));
		put16(p + 2 * alen + 2, port_of(&h->dst));
		p += 2 * alen + 4;
	}
	put16(buf + 14, (uint16_t)(p - buf - PROXY_V2_FIXED));
	return (size_t)(p - buf);
}

/* Same addresses; the rest of the header as the encoding says. */
static void check_reparsed(const struct proxy_header *h, const uint8_t *buf, size_t n,
			   unsigned version)
{
	struct proxy_header again;

	CHECK(parse_prefix(buf, n, &again) == PROXY_OK);
	CHECK(again.consumed == n && again.version == version);
	CHECK(again.command == PROXY_CMD_PROXY && again.family == h->family);
	CHECK(version == 1 || again.socktype == h->socktype);
	CHECK(again.src_len == h->src_len && again.dst_len == h->dst_len);
	CHECK(!memcmp(&again.src, &h->src, sizeof(h->src)));
	CHECK(!memcmp(&again.dst, &h->dst, sizeof(h->dst)));
}

static void check_addresses(const struct proxy_header *h, const uint8_t *data)
{
	char line[PROXY_V1_MAX + 64];
	uint8_t v2[PROXY_V2_FIXED + 216];
	size_t n;

	if (!proxy_has_address(h)) {
		CHECK(h->family == AF_UNSPEC && h->socktype == 0);
		CHECK(h->src_len == 0 && h->dst_len == 0);
		return;
	}
	CHECK(h->family == AF_INET || h->family == AF_INET6 || h->family == AF_UNIX);
	CHECK(h->src.ss_family == h->family && h->dst.ss_family == h->family);
	CHECK(h->socktype == SOCK_STREAM || h->socktype == SOCK_DGRAM);
	CHECK(h->src_len > 0 && h->src_len <= sizeof(h->src) && h->dst_len == h->src_len);
	if (h->family != AF_UNIX && h->socktype == SOCK_STREAM) {
		n = write_v1(h, line, sizeof(line));
		if (h->version == 1 && h->family == AF_INET) /* one spelling only */
			CHECK(n == h->consumed && !memcmp(line, data, n));
		if (n <= PROXY_V1_MAX)
			check_reparsed(h, (const uint8_t *)line, n, 1);
	}
	n = write_v2(h, v2);
	check_reparsed(h, v2, n, 2);
}

static void check_ok(const struct proxy_header *h, const uint8_t *data, size_t size)
{
	CHECK(h->consumed > 0 && h->consumed <= size && h->consumed <= PROXY_HEADER_MAX);
	if (h->version == 1) {
		CHECK(h->command == PROXY_CMD_PROXY);
		CHECK(h->consumed <= PROXY_V1_MAX && !memcmp(data, "PROXY ", 6));
		CHECK(data[h->consumed - 2] == '\r' && data[h->consumed - 1] == '\n');
		/* The only CRLF in the line is its end. */
		CHECK(!memchr(data, '\n', h->consumed - 1));
	} else {
		CHECK(h->version == 2);
		CHECK(!memcmp(data, v2_signature, sizeof(v2_signature)));
		CHECK(h->consumed == PROXY_V2_FIXED + (size_t)(data[14] << 8 | data[15]));
		CHECK(h->command == (data[12] & 0x0F));
	}
	check_addresses(h, data);
}

static void check_result(enum proxy_result r, const struct proxy_header *h, size_t size)
{
	CHECK((unsigned)r < PROXY_ERR_TIMEOUT); /* timeout and truncated are the caller's */
	CHECK(proxy_result_name(r)[0] && proxy_result_str(r)[0]);
	CHECK((proxy_result_reason(r) == PROXY_REASON_NONE) ==
	      (r == PROXY_OK || r == PROXY_NEED_MORE));
	if (r == PROXY_NEED_MORE)
		CHECK(size < PROXY_HEADER_MAX);
	if (r != PROXY_OK)
		CHECK(h->consumed == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header first, h;
	enum proxy_result verdict = PROXY_NEED_MORE, r;
	size_t k, more[3];

	/* The bytes arrive one at a time: the first verdict, then it must hold. */
	for (k = 0; k <= size && verdict == PROXY_NEED_MORE; k++) {
		verdict = parse_prefix(data, k, &first);
		check_result(verdict, &first, k);
	}
	if (verdict == PROXY_NEED_MORE)
		return 0; /* every prefix, the whole input included, is incomplete */
	k--;
	CHECK(k > 0);
	if (verdict == PROXY_OK) { /* accepted as soon as the header is complete */
		CHECK(first.consumed == k);
		check_ok(&first, data, k);
	}
	/* Longer inputs: the next byte, half-way, and the whole input. */
	more[0] = k + 1;
	more[1] = k + (size - k) / 2;
	more[2] = size;
	for (int i = 0; i < 3; i++) {
		if (more[i] > size)
			continue;
		r = parse_prefix(data, more[i], &h);
		check_result(r, &h, more[i]);
		CHECK(r == verdict);
		CHECK(verdict != PROXY_OK || same_header(&h, &first));
	}
	return 0;
}
