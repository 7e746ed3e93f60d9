/*
 * proxy_stage.h - the header phase of a connection under --proxy-protocol.
 *
 * Until the PROXY header is complete, a connection's bytes go into the
 * stage's header buffer (PROXY_HEADER_MAX bytes, allocated for this phase
 * only) and proxy_parse() judges all of them after each receive.  Then the
 * bytes that followed the header in the same receive are the client's first
 * data: the engine hands them to conn as if just received.  The stage stays
 * with the connection for its address (a few hundred bytes, and only with
 * the option).  No MSG_PEEK: a partial header would leave the socket
 * readable and a level-triggered loop spinning.
 *
 * Deadline: --proxy-timeout (PROXY_TIMEOUT_MS by default) from the accept,
 * however the bytes trickle in.
 */
#ifndef ECHOD_PROXY_STAGE_H
#define ECHOD_PROXY_STAGE_H

#include "proxy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct proxy_stage {
	uint8_t *hdr;		     /* PROXY_HEADER_MAX bytes; NULL once the header is done */
	size_t len;		     /* bytes in hdr */
	size_t consumed;	     /* PROXY_OK: the header's length; hdr[consumed..len) is data */
	uint64_t deadline;	     /* ms: no verdict by then is PROXY_ERR_TIMEOUT */
	struct sockaddr_storage src; /* the client, when src_len > 0 */
	socklen_t src_len;	     /* 0: use the real peer (LOCAL, UNKNOWN, UNSPEC) */
	enum proxy_result err;	     /* a refusal's detail, for the log (conn_stats_refused) */
};

/* A stage for a connection accepted at now_ms, its header due timeout_ms
 * later; NULL if out of memory. */
struct proxy_stage *proxy_stage_new(uint64_t now_ms, uint64_t timeout_ms);
void proxy_stage_free(struct proxy_stage *ps);

/* True while the header is awaited (the engine's only check on its hot path). */
static inline bool proxy_stage_pending(const struct proxy_stage *ps)
{
	return ps && ps->hdr;
}

/* Where the next receive goes, and at most how much (never 0 while pending). */
static inline uint8_t *proxy_stage_room(const struct proxy_stage *ps, size_t *room)
{
	*room = PROXY_HEADER_MAX - ps->len;
	return ps->hdr + ps->len;
}

/*
 * n bytes arrived at proxy_stage_room() (n == 0: the peer's EOF).  Returns
 * PROXY_NEED_MORE, PROXY_OK (then take the data with proxy_stage_data()),
 * or the refusal.
 */
enum proxy_result proxy_stage_arrived(struct proxy_stage *ps, size_t n);

/* PROXY_OK: the bytes that came after the header, at *p; returns their count. */
static inline size_t proxy_stage_data(const struct proxy_stage *ps, const uint8_t **p)
{
	*p = ps->hdr + ps->consumed;
	return ps->len - ps->consumed;
}

/* The engine took the data: frees the header buffer, keeps the address. */
void proxy_stage_done(struct proxy_stage *ps);

#endif
