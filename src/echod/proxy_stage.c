/*
 * proxy_stage.c - the header phase of a connection under --proxy-protocol.
 */
#include "proxy_stage.h"

#include <stdlib.h>
#include <string.h>

struct proxy_stage *proxy_stage_new(uint64_t now_ms, uint64_t timeout_ms)
{
	struct proxy_stage *ps = calloc(1, sizeof(*ps));

	if (!ps)
		return NULL;
	ps->hdr = malloc(PROXY_HEADER_MAX);
	if (!ps->hdr) {
		free(ps);
		return NULL;
	}
	ps->deadline = now_ms + timeout_ms;
	return ps;
}

void proxy_stage_free(struct proxy_stage *ps)
{
	if (ps)
		free(ps->hdr);
	free(ps);
}

enum proxy_result proxy_stage_arrived(struct proxy_stage *ps, size_t n)
{
	struct proxy_header h;
	enum proxy_result r;

	if (n == 0)
		return PROXY_ERR_TRUNCATED;
	ps->len += n;
	r = proxy_parse(ps->hdr, ps->len, &h);
	if (r != PROXY_OK)
		return r;
	ps->consumed = h.consumed;
	if (proxy_has_address(&h)) {
		memcpy(&ps->src, &h.src, sizeof(ps->src));
		ps->src_len = h.src_len;
	}
	return PROXY_OK;
}

void proxy_stage_done(struct proxy_stage *ps)
{
	free(ps->hdr);
	ps->hdr = NULL;
	ps->len = ps->consumed = 0;
}
