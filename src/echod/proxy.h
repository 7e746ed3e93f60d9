/*
 * proxy.h - the PROXY protocol header (HAProxy's proxy-protocol.txt, v1 and
 * v2) that a load balancer puts in front of a connection's bytes to say whom
 * the connection is really from.
 *
 * A pure parser: no system calls, no state, no name lookups (addresses are
 * numeric by definition; inet_pton is all it uses).  The caller keeps the
 * bytes received since the connection started and calls proxy_parse() on all
 * of them each time more arrive, until the answer is no longer
 * PROXY_NEED_MORE:
 *
 *   PROXY_OK         the header is the first out->consumed bytes: drop them,
 *                    echo what follows (bytes of the same segment included);
 *                    out says whose connection it is (proxy_has_address).
 *   PROXY_NEED_MORE  everything so far is the start of a valid header.  Never
 *                    returned once len >= PROXY_HEADER_MAX, so a buffer of
 *                    that size always suffices to reach a verdict.
 *   anything else    not a valid header: close the connection, and count it
 *                    under proxy_result_reason() (a metrics label).
 *
 * Verdicts are final and early: a prefix that can no longer become a valid
 * header is refused as soon as the offending byte is seen (a first byte
 * other than 'P' or '\r' at once), and a verdict given for some bytes is the
 * verdict for any longer input that starts with them.  The caller's own
 * verdicts, a header too slow to arrive (PROXY_ERR_TIMEOUT) or a peer that
 * closes before it is complete (PROXY_ERR_TRUNCATED), are in the same enum so
 * that every refusal is counted in one place.
 *
 * What is accepted (the spec's wording, in docs/proxy.md):
 * - v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n", the same with TCP6,
 *   and "PROXY UNKNOWN[ <anything>]\r\n" (use the real peer), at most 107
 *   bytes; single spaces, ports 0-65535 without leading zeros, IPv4 dotted
 *   quads without leading zeros, IPv6 as inet_pton reads it.
 * - v2: the 12-byte signature, version 2, command LOCAL (a health check: use
 *   the real peer; the rest of the block is ignored) or PROXY, family 0x00,
 *   0x11, 0x12, 0x21, 0x22, 0x31 or 0x32, an address block at least as long
 *   as the family needs, then TLVs, skipped but each required to fit in the
 *   block.  The whole header is at most PROXY_HEADER_MAX bytes.
 */
#ifndef ECHOD_PROXY_H
#define ECHOD_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest v1 line the spec allows, "\r\n" included. */
#define PROXY_V1_MAX 107
/* The fixed part of a v2 header: signature, version/command, family, length. */
#define PROXY_V2_FIXED 16
/*
 * The longest header accepted (v2: 16 bytes plus the block it announces).
 * The spec lets a v2 header run to 65551 bytes; a connection's address needs
 * 216 at most (two unix paths) and the TLVs load balancers add (AWS, Azure,
 * GCP: endpoint ids, TLS facts) fit the rest.  A longer header is refused as
 * PROXY_ERR_V2_TOO_LONG as soon as its length field arrives.
 */
#define PROXY_HEADER_MAX 1024
/*
 * How long a connection may take by default (--proxy-timeout) to deliver its
 * header before the caller closes it (PROXY_ERR_TIMEOUT).  The spec asks for
 * at least 3 s, to cover a TCP retransmit; a proxy sends the header at once,
 * so a slower one is not a proxy, or a client holding a connection open for
 * nothing.
 */
#define PROXY_TIMEOUT_MS 5000

enum proxy_result {
	PROXY_OK,
	PROXY_NEED_MORE,
	PROXY_ERR_SIGNATURE,   /* neither "PROXY" nor the v2 signature */
	PROXY_ERR_V1_SYNTAX,   /* v1: not the line's grammar (spaces, protocol, CRLF) */
	PROXY_ERR_V1_ADDRESS,  /* v1: an address that is not its family's */
	PROXY_ERR_V1_PORT,     /* v1: a port that is not 0-65535 without leading zeros */
	PROXY_ERR_V1_TOO_LONG, /* v1: no CRLF within PROXY_V1_MAX bytes */
	PROXY_ERR_V2_VERSION,  /* v2: a version other than 2 */
	PROXY_ERR_V2_COMMAND,  /* v2: neither LOCAL nor PROXY */
	PROXY_ERR_V2_FAMILY,   /* v2 PROXY: a family/transport byte the spec does not list */
	PROXY_ERR_V2_TOO_LONG, /* v2: the header would exceed PROXY_HEADER_MAX */
	PROXY_ERR_V2_ADDRESS,  /* v2 PROXY: a block shorter than the family's addresses */
	PROXY_ERR_V2_TLV,      /* v2: a TLV that runs past the end of the block */
	PROXY_ERR_TIMEOUT,     /* the caller's: no complete header in time */
	PROXY_ERR_TRUNCATED,   /* the caller's: the peer closed before the header ended */
	PROXY_RESULTS
};

/* Why a connection was refused, coarse enough for a metrics label. */
enum proxy_reason {
	PROXY_REASON_NONE,	  /* PROXY_OK, PROXY_NEED_MORE: not refused */
	PROXY_REASON_MISSING,	  /* no PROXY header at all */
	PROXY_REASON_MALFORMED,	  /* a header, but not a valid one */
	PROXY_REASON_OVERSIZED,	  /* a header longer than accepted */
	PROXY_REASON_UNSUPPORTED, /* a v2 version, command or family the spec does not define */
	PROXY_REASON_TIMEOUT,
	PROXY_REASON_TRUNCATED,
	PROXY_REASONS
};

enum proxy_command {
	PROXY_CMD_LOCAL, /* v2 LOCAL: the proxy's own connection (health check) */
	PROXY_CMD_PROXY, /* relayed for a client (every v1 header) */
};

struct proxy_header {
	size_t consumed;  /* the header's length: drop this many bytes */
	unsigned version; /* 1 or 2 */
	enum proxy_command command;
	/*
	 * AF_INET, AF_INET6 or AF_UNIX: src and dst hold the client's and the
	 * address it connected to.  AF_UNSPEC (LOCAL, v1 UNKNOWN, v2 family
	 * 0x00): no address; the real peer's is the one to use.
	 */
	int family;
	int socktype;			  /* SOCK_STREAM, SOCK_DGRAM; 0 for AF_UNSPEC */
	struct sockaddr_storage src, dst; /* ports in network order, as bind() takes them */
	socklen_t src_len, dst_len;	  /* for net_format_sockaddr; 0 for AF_UNSPEC */
};

/*
 * Parses the first len bytes a connection received.  On PROXY_OK *out is the
 * header; otherwise out->consumed is 0 and the rest of *out is unspecified.
 */
enum proxy_result proxy_parse(const uint8_t *buf, size_t len, struct proxy_header *out);

/* True when the header carries the address to log instead of the real peer's. */
bool proxy_has_address(const struct proxy_header *h);

/* The reason a result refuses a connection (PROXY_REASON_NONE if it does not). */
enum proxy_reason proxy_result_reason(enum proxy_result r);
/*
 * A short stable name for a reason: "none", "missing", "malformed",
 * "oversized", "unsupported", "timeout", "truncated".  Metrics labels.
 */
const char *proxy_reason_name(enum proxy_reason reason);
/* proxy_reason_name(proxy_result_reason(r)), with "ok" and "incomplete" for the others. */
const char *proxy_result_name(enum proxy_result r);
/* One line for a log message: what exactly was wrong ("v1: bad port"). */
const char *proxy_result_str(enum proxy_result r);

#endif
