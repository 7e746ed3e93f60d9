/*
 * proxy.c - the PROXY protocol header parser (see proxy.h, docs/proxy.md).
 *
 * Every call parses from the first byte: a header is at most
 * PROXY_HEADER_MAX bytes and arrives in one or a few segments, so keeping no
 * state costs little and leaves nothing to get out of step.  Each step looks
 * only at bytes it has, and refuses at the first byte that no valid header
 * could hold there; a step that runs out of bytes returns PROXY_NEED_MORE.
 * That is what makes every verdict final: it depends only on bytes that a
 * longer input holds too.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

/* PROXY_OK inside this file also means "this step is complete, go on". */
#define STEP_DONE PROXY_OK

static const uint8_t v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* The bytes so far (len), and where the parse is (pos). */
struct scan {
	const uint8_t *buf;
	size_t len;
	size_t pos;
};

/* n literal bytes at pos: err at the first byte that differs. */
static enum proxy_result match(struct scan *s, const void *lit, size_t n, enum proxy_result err)
{
	const uint8_t *want = lit;

	for (size_t i = 0; i < n; i++) {
		if (s->pos + i >= s->len)
			return PROXY_NEED_MORE;
		if (s->buf[s->pos + i] != want[i])
			return err;
	}
	s->pos += n;
	return STEP_DONE;
}

static enum proxy_result match_str(struct scan *s, const char *lit, enum proxy_result err)
{
	return match(s, lit, strlen(lit), err);
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(uint8_t c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* ---- v1: "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n" ---- */

/*
 * What an address typed so far may still become.  The checks are necessary
 * conditions only (inet_pton decides when the field ends), so a valid
 * address is never refused early.
 */
struct addr_prefix {
	size_t n;	 /* characters so far */
	unsigned run;	 /* digits (IPv4) or hex digits (IPv6) since the last separator */
	unsigned value;	 /* IPv4: the octet's value so far */
	unsigned dots;	 /* IPv4 */
	unsigned colons; /* IPv6: consecutive colons */
	bool elided;	 /* IPv6: "::" seen */
};

/* Dotted quad, no leading zeros ("01" could be octal), octets 0-255. */
static bool ipv4_step(struct addr_prefix *a, uint8_t c)
{
	if (is_digit(c)) {
		if (a->run > 0 && a->value == 0)
			return false;
		a->value = a->value * 10 + (unsigned)(c - '0');
		a->run++;
		return a->value <= 255;
	}
	if (c != '.' || a->run == 0 || ++a->dots > 3)
		return false;
	a->run = 0;
	a->value = 0;
	return true;
}

/* Groups of at most 4 hex digits, one "::" at most, an IPv4 tail allowed. */
static bool ipv6_step(struct addr_prefix *a, uint8_t c)
{
	if (is_hex(c)) {
		a->colons = 0;
		return ++a->run <= 4;
	}
	a->run = 0;
	if (c == '.')
		return true;
	if (c != ':' || ++a->colons > 2)
		return false;
	if (a->colons == 2) {
		if (a->elided)
			return false;
		a->elided = true;
	}
	return true;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* A complete address field (text of n bytes) into ss. */
static bool ip_from_text(int family, const uint8_t *text, size_t n, struct sockaddr_storage *ss,
			 socklen_t *sslen)
{
	char s[INET6_ADDRSTRLEN];

	if (n == 0 || n >= sizeof(s))
		return false;
	memcpy(s, text, n);
	s[n] = '\0';
	memset(ss, 0, sizeof(*ss));
	ss->ss_family = (sa_family_t)family;
	if (family == AF_INET) {
		*sslen = sizeof(struct sockaddr_in);
		return inet_pton(AF_INET, s, &((struct sockaddr_in *)ss)->sin_addr) == 1;
	}
	*sslen = sizeof(struct sockaddr_in6);
	return inet_pton(AF_INET6, s, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1;
}

/* An address, then one space. */
static enum proxy_result v1_address(struct scan *s, int family, struct sockaddr_storage *ss,
				    socklen_t *sslen)
{
	size_t longest = family == AF_INET ? INET_ADDRSTRLEN - 1 : INET6_ADDRSTRLEN - 1;
	struct addr_prefix a = {0};
	size_t start = s->pos;

	for (; s->pos < s->len; s->pos++) {
		uint8_t c = s->buf[s->pos];

		if (c == ' ') {
			if (!ip_from_text(family, s->buf + start, a.n, ss, sslen))
				return PROXY_ERR_V1_ADDRESS;
			s->pos++;
			return STEP_DONE;
		}
		if (c == '\r' || c == '\n')
			return PROXY_ERR_V1_SYNTAX;
		if (++a.n > longest || !(family == AF_INET ? ipv4_step(&a, c) : ipv6_step(&a, c)))
			return PROXY_ERR_V1_ADDRESS;
	}
	return PROXY_NEED_MORE;
}

/* A port, 0-65535 without leading zeros, then the byte end. */
static enum proxy_result v1_port(struct scan *s, uint8_t end, uint16_t *port)
{
	unsigned value = 0, digits = 0;

	for (; s->pos < s->len; s->pos++) {
		uint8_t c = s->buf[s->pos];

		if (c == end && digits > 0) {
			*port = (uint16_t)value;
			s->pos++;
			return STEP_DONE;
		}
		if (c == ' ' || c == '\r' || c == '\n')
			return PROXY_ERR_V1_SYNTAX;
		if (!is_digit(c) || (digits > 0 && value == 0))
			return PROXY_ERR_V1_PORT;
		value = value * 10 + (unsigned)(c - '0');
		digits++;
		if (value > 65535)
			return PROXY_ERR_V1_PORT;
	}
	return PROXY_NEED_MORE;
}

/* "TCP4 ", "TCP6 " or "UNKNOWN"; the family it names. */
static enum proxy_result v1_protocol(struct scan *s, int *family)
{
	static const struct {
		const char *word;
		int family;
	} protocols[] = {
		{"TCP4 ", AF_INET},
		{"TCP6 ", AF_INET6},
		{"UNKNOWN", AF_UNSPEC},
	};
	bool prefix = false;

	for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++) {
		struct scan t = *s;
		enum proxy_result r = match_str(&t, protocols[i].word, PROXY_ERR_V1_SYNTAX);

		if (r == STEP_DONE) {
			*s = t;
			*family = protocols[i].family;
			return STEP_DONE;
		}
		prefix |= r == PROXY_NEED_MORE;
	}
	return prefix ? PROXY_NEED_MORE : PROXY_ERR_V1_SYNTAX;
}

/* UNKNOWN: "\r\n" at once, or a space and anything up to "\r\n" (ignored). */
static enum proxy_result v1_unknown_rest(struct scan *s)
{
	if (s->pos >= s->len)
		return PROXY_NEED_MORE;
	if (s->buf[s->pos] != ' ' && s->buf[s->pos] != '\r')
		return PROXY_ERR_V1_SYNTAX;
	for (; s->pos < s->len; s->pos++) {
		if (s->buf[s->pos] == '\n')
			return PROXY_ERR_V1_SYNTAX; /* a bare LF does not end the line */
		if (s->buf[s->pos] == '\r')
			return match_str(s, "\r\n", PROXY_ERR_V1_SYNTAX);
	}
	return PROXY_NEED_MORE;
}

static enum proxy_result v1_addresses(struct scan *s, struct proxy_header *out)
{
	uint16_t sport, dport;
	enum proxy_result r;

	if ((r = v1_address(s, out->family, &out->src, &out->src_len)) != STEP_DONE ||
	    (r = v1_address(s, out->family, &out->dst, &out->dst_len)) != STEP_DONE ||
	    (r = v1_port(s, ' ', &sport)) != STEP_DONE ||
	    (r = v1_port(s, '\r', &dport)) != STEP_DONE ||
	    (r = match_str(s, "\n", PROXY_ERR_V1_SYNTAX)) != STEP_DONE)
		return r;
	set_port(&out->src, sport);
	set_port(&out->dst, dport);
	return STEP_DONE;
}

static enum proxy_result v1_line(struct scan *s, struct proxy_header *out)
{
	enum proxy_result r;

	if ((r = match_str(s, "PROXY", PROXY_ERR_SIGNATURE)) != STEP_DONE ||
	    (r = match_str(s, " ", PROXY_ERR_V1_SYNTAX)) != STEP_DONE ||
	    (r = v1_protocol(s, &out->family)) != STEP_DONE)
		return r;
	out->version = 1;
	out->command = PROXY_CMD_PROXY;
	if (out->family == AF_UNSPEC)
		return v1_unknown_rest(s);
	out->socktype = SOCK_STREAM;
	return v1_addresses(s, out);
}

static enum proxy_result parse_v1(const uint8_t *buf, size_t len, struct proxy_header *out)
{
	/* The line must end within PROXY_V1_MAX bytes: look no further. */
	struct scan s = {buf, len < PROXY_V1_MAX ? len : PROXY_V1_MAX, 0};
	enum proxy_result r = v1_line(&s, out);

	if (r == PROXY_NEED_MORE && len >= PROXY_V1_MAX)
		return PROXY_ERR_V1_TOO_LONG;
	if (r == STEP_DONE)
		out->consumed = s.pos;
	return r;
}

/* ---- v2: signature, ver_cmd, fam, length (big endian), block ---- */

struct v2_family {
	uint8_t fam;
	int family, socktype;
	size_t addr_len; /* bytes of the block the addresses take */
};

/* The spec's list; PROXY with any other value is refused. */
static const struct v2_family v2_families[] = {
	{0x00, AF_UNSPEC, 0, 0},	  {0x11, AF_INET, SOCK_STREAM, 12},
	{0x12, AF_INET, SOCK_DGRAM, 12},  {0x21, AF_INET6, SOCK_STREAM, 36},
	{0x22, AF_INET6, SOCK_DGRAM, 36}, {0x31, AF_UNIX, SOCK_STREAM, 216},
	{0x32, AF_UNIX, SOCK_DGRAM, 216},
};

enum { V2_UNIX_PATH = 108 }; /* bytes per unix address on the wire */

static const struct v2_family *v2_family_of(uint8_t fam)
{
	for (size_t i = 0; i < sizeof(v2_families) / sizeof(v2_families[0]); i++)
		if (v2_families[i].fam == fam)
			return &v2_families[i];
	return NULL;
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/*
 * TLVs from pos to the block's end, each a type byte, a 16-bit length and
 * its value: all skipped, but each must end inside the block.  Checked on
 * the bytes there are, so a bad one is refused before the rest arrives.
 */
static enum proxy_result v2_tlvs(const uint8_t *buf, size_t len, size_t pos, size_t end)
{
	while (pos < end) {
		if (end - pos < 3)
			return PROXY_ERR_V2_TLV;
		if (pos + 3 > len)
			return PROXY_NEED_MORE;
		pos += 3 + (size_t)be16(buf + pos + 1);
		if (pos > end)
			return PROXY_ERR_V2_TLV;
	}
	return STEP_DONE;
}

static void v2_ip(const uint8_t *p, const struct v2_family *f, struct proxy_header *out)
{
	size_t alen = f->family == AF_INET ? 4 : 16;
	const uint8_t *ports = p + 2 * alen;
	struct sockaddr_storage *ss[2] = {&out->src, &out->dst};

	for (int i = 0; i < 2; i++) {
		uint16_t port = be16(ports + 2 * i);

		ss[i]->ss_family = (sa_family_t)f->family;
		if (f->family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)ss[i];

			memcpy(&sin->sin_addr, p + i * alen, alen);
			sin->sin_port = htons(port);
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss[i];

			memcpy(&sin6->sin6_addr, p + i * alen, alen);
			sin6->sin6_port = htons(port);
		}
	}
	out->src_len = out->dst_len =
		f->family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

/* 108 bytes per path, NUL padded; cut to this system's sun_path (104 on BSDs). */
static void v2_unix(const uint8_t *p, struct proxy_header *out)
{
	struct sockaddr_un *sun[2] = {(struct sockaddr_un *)&out->src,
				      (struct sockaddr_un *)&out->dst};
	size_t n =
		sizeof(sun[0]->sun_path) < V2_UNIX_PATH ? sizeof(sun[0]->sun_path) : V2_UNIX_PATH;

	for (int i = 0; i < 2; i++) {
		sun[i]->sun_family = AF_UNIX;
		memcpy(sun[i]->sun_path, p + i * V2_UNIX_PATH, n);
	}
	out->src_len = out->dst_len = sizeof(struct sockaddr_un);
}

/* Byte 12: version 2, command LOCAL or PROXY. */
static enum proxy_result v2_ver_cmd(uint8_t ver_cmd, enum proxy_command *cmd)
{
	if (ver_cmd >> 4 != 2)
		return PROXY_ERR_V2_VERSION;
	if ((ver_cmd & 0x0F) > PROXY_CMD_PROXY)
		return PROXY_ERR_V2_COMMAND;
	*cmd = (enum proxy_command)(ver_cmd & 0x0F);
	return STEP_DONE;
}

/* After the fixed 16 bytes: what the block must hold, decided on those alone. */
static enum proxy_result v2_block_fits(const struct v2_family *f, size_t block)
{
	if (PROXY_V2_FIXED + block > PROXY_HEADER_MAX)
		return PROXY_ERR_V2_TOO_LONG;
	if (f && block < f->addr_len)
		return PROXY_ERR_V2_ADDRESS;
	return STEP_DONE;
}

static enum proxy_result parse_v2(const uint8_t *buf, size_t len, struct proxy_header *out)
{
	struct scan s = {buf, len, 0};
	const struct v2_family *f = NULL; /* NULL: LOCAL, whose block is ignored */
	enum proxy_result r;
	size_t end;

	if ((r = match(&s, v2_signature, sizeof(v2_signature), PROXY_ERR_SIGNATURE)) != STEP_DONE)
		return r;
	if (len <= 12)
		return PROXY_NEED_MORE;
	if ((r = v2_ver_cmd(buf[12], &out->command)) != STEP_DONE)
		return r;
	if (len <= 13)
		return PROXY_NEED_MORE;
	if (out->command == PROXY_CMD_PROXY && !(f = v2_family_of(buf[13])))
		return PROXY_ERR_V2_FAMILY;
	if (len < PROXY_V2_FIXED)
		return PROXY_NEED_MORE;
	end = PROXY_V2_FIXED + (size_t)be16(buf + 14);
	if ((r = v2_block_fits(f, end - PROXY_V2_FIXED)) != STEP_DONE)
		return r;
	if (f && f->family != AF_UNSPEC &&
	    (r = v2_tlvs(buf, len, PROXY_V2_FIXED + f->addr_len, end)) != STEP_DONE)
		return r;
	if (len < end)
		return PROXY_NEED_MORE;

	out->version = 2;
	out->consumed = end;
	out->family = f ? f->family : AF_UNSPEC;
	out->socktype = f ? f->socktype : 0;
	if (out->family == AF_INET || out->family == AF_INET6)
		v2_ip(buf + PROXY_V2_FIXED, f, out);
	else if (out->family == AF_UNIX)
		v2_unix(buf + PROXY_V2_FIXED, out);
	return PROXY_OK;
}

enum proxy_result proxy_parse(const uint8_t *buf, size_t len, struct proxy_header *out)
{
	enum proxy_result r;

	memset(out, 0, sizeof(*out));
	out->family = AF_UNSPEC;
	if (len == 0)
		return PROXY_NEED_MORE;
	if (buf[0] == 'P')
		r = parse_v1(buf, len, out);
	else if (buf[0] == v2_signature[0])
		r = parse_v2(buf, len, out);
	else
		r = PROXY_ERR_SIGNATURE;
	if (r != PROXY_OK)
		out->consumed = 0;
	return r;
}

bool proxy_has_address(const struct proxy_header *h)
{
	return h->command == PROXY_CMD_PROXY && h->family != AF_UNSPEC;
}

/* ---- names ---- */

static const struct {
	enum proxy_reason reason;
	const char *text;
} results[PROXY_RESULTS] = {
	[PROXY_OK] = {PROXY_REASON_NONE, "ok"},
	[PROXY_NEED_MORE] = {PROXY_REASON_NONE, "incomplete header"},
	[PROXY_ERR_SIGNATURE] = {PROXY_REASON_MISSING, "no PROXY protocol header"},
	[PROXY_ERR_V1_SYNTAX] = {PROXY_REASON_MALFORMED, "v1: malformed line"},
	[PROXY_ERR_V1_ADDRESS] = {PROXY_REASON_MALFORMED, "v1: bad address"},
	[PROXY_ERR_V1_PORT] = {PROXY_REASON_MALFORMED, "v1: bad port"},
	[PROXY_ERR_V1_TOO_LONG] = {PROXY_REASON_OVERSIZED, "v1: no CRLF within 107 bytes"},
	[PROXY_ERR_V2_VERSION] = {PROXY_REASON_UNSUPPORTED, "v2: unsupported version"},
	[PROXY_ERR_V2_COMMAND] = {PROXY_REASON_UNSUPPORTED, "v2: unsupported command"},
	[PROXY_ERR_V2_FAMILY] = {PROXY_REASON_UNSUPPORTED, "v2: unsupported address family"},
	[PROXY_ERR_V2_TOO_LONG] = {PROXY_REASON_OVERSIZED, "v2: header too long"},
	[PROXY_ERR_V2_ADDRESS] = {PROXY_REASON_MALFORMED, "v2: address block too short"},
	[PROXY_ERR_V2_TLV] = {PROXY_REASON_MALFORMED, "v2: TLV past the end of the header"},
	[PROXY_ERR_TIMEOUT] = {PROXY_REASON_TIMEOUT, "no complete header in time"},
	[PROXY_ERR_TRUNCATED] = {PROXY_REASON_TRUNCATED, "connection closed inside the header"},
};

static const char *const reason_names[PROXY_REASONS] = {
	[PROXY_REASON_NONE] = "none",
	[PROXY_REASON_MISSING] = "missing",
	[PROXY_REASON_MALFORMED] = "malformed",
	[PROXY_REASON_OVERSIZED] = "oversized",
	[PROXY_REASON_UNSUPPORTED] = "unsupported",
	[PROXY_REASON_TIMEOUT] = "timeout",
	[PROXY_REASON_TRUNCATED] = "truncated",
};

enum proxy_reason proxy_result_reason(enum proxy_result r)
{
	return (unsigned)r < PROXY_RESULTS ? results[r].reason : PROXY_REASON_MALFORMED;
}

const char *proxy_reason_name(enum proxy_reason reason)
{
	return (unsigned)reason < PROXY_REASONS ? reason_names[reason] : "?";
}

const char *proxy_result_name(enum proxy_result r)
{
	if (r == PROXY_OK)
		return "ok";
	if (r == PROXY_NEED_MORE)
		return "incomplete";
	return proxy_reason_name(proxy_result_reason(r));
}

const char *proxy_result_str(enum proxy_result r)
{
	return (unsigned)r < PROXY_RESULTS ? results[r].text : "?";
}
