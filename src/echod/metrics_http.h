/*
 * metrics_http.h - --metrics ADDR: the Prometheus exposition over HTTP.
 *
 * One thread of its own runs a poll(2) loop over non-blocking sockets: at
 * most METRICS_HTTP_MAX_CONNS clients at once (the rest wait in the
 * backlog), a request of at most HTTP_REQUEST_MAX bytes, and
 * METRICS_HTTP_DEADLINE_MS from accept to close, whatever the client does.
 * GET or HEAD /metrics gets 200 and the text; another path 404, another
 * method 405, a malformed request 400, an oversized one 431; then the
 * connection is closed.  The thread only reads the engines' counters with
 * relaxed atomic loads, so a scrape never slows the echo path.
 *
 * Everything the thread reads about the process comes from descriptors
 * opened at start-up (/proc/self/stat, /proc/self/fd): after start-up it
 * opens no file, so a sandbox can deny the filesystem.
 */
#ifndef ECHOD_METRICS_HTTP_H
#define ECHOD_METRICS_HTTP_H

#include "engine.h"
#include "metrics.h"

#include <stddef.h>

#define HTTP_REQUEST_MAX	 4096 /* request line and headers */
#define METRICS_HTTP_MAX_CONNS	 8
#define METRICS_HTTP_DEADLINE_MS 1000

/* What a request asks for, as far as its bytes tell. */
enum http_verdict {
	HTTP_NEED_MORE,	  /* no verdict yet: read more */
	HTTP_GET,	  /* GET /metrics: 200 and the text */
	HTTP_HEAD,	  /* HEAD /metrics: 200, headers only */
	HTTP_NOT_FOUND,	  /* a path other than /metrics: 404 */
	HTTP_BAD_METHOD,  /* a method other than GET and HEAD: 405 */
	HTTP_BAD_REQUEST, /* not HTTP/1.0 or 1.1 as RFC 9112 writes it: 400 */
	HTTP_TOO_LARGE,	  /* no end of headers within HTTP_REQUEST_MAX bytes: 431 */
};

/*
 * Judges the first len bytes a client sent (any bytes, not NUL-terminated).
 * A verdict other than HTTP_NEED_MORE is final: more bytes never change it.
 * A malformed request line or header line is refused as soon as it is
 * complete, a control character as soon as it arrives.
 */
enum http_verdict http_parse_request(const char *buf, size_t len);

/*
 * Writes the status line and headers answering v (not HTTP_NEED_MORE) for a
 * body of body_len bytes into buf.  Returns the length, or -1 if cap is too
 * small.  The error statuses' bodies are http_error_body(v).
 */
int http_format_head(enum http_verdict v, size_t body_len, char *buf, size_t cap);
const char *http_error_body(enum http_verdict v);

/*
 * The fields of /proc/self/stat's text (man 5 proc_pid_stat) the process
 * gauges use: starttime (clock ticks after boot), vsize (bytes), rss
 * (pages).  Returns 0, or -1 when the text is not such a line.
 */
struct proc_stat {
	unsigned long long starttime, vsize, rss;
};
int metrics_parse_proc_stat(const char *buf, size_t len, struct proc_stat *st);

struct metrics_http;

/*
 * Binds every address of cfg->metrics and opens what the process gauges
 * read, before privileges are dropped or a sandbox closes the filesystem.
 * Returns NULL (and nothing to free) when --metrics was not given; exits 1
 * naming the address when one cannot be bound.
 */
struct metrics_http *metrics_http_open(const struct server *srv, const char *engine);
/* Logs "metrics on http://ADDR/metrics", one line per socket. */
void metrics_http_announce(const struct metrics_http *mh);
/* Starts the thread (srv->metrics must be ready); exits 1 if it cannot. */
void metrics_http_start(struct metrics_http *mh);
/* Stops and joins the thread, closes everything, frees mh (NULL is fine). */
void metrics_http_stop(struct metrics_http *mh);

#endif
