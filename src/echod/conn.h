/*
 * conn.h - the echo protocol, independent of how bytes move.
 *
 * A connection is a small state machine over one bounded buffer.  Engines
 * ask it where to read (conn_rspace), tell it what arrived (conn_received),
 * ask what to write (conn_pending), tell it what left (conn_sent), and follow
 * its two verdicts: shut the write side now (conn_wants_shutdown) and close
 * now (conn_done).  It never calls read or write itself, so every engine
 * serves the same semantics and the unit tests drive it without sockets.
 *
 * The rules it encodes:
 * - stream (RFC 862): echo everything, in order, until the peer's EOF; then
 *   flush what is pending, shut the write side and close.
 * - backpressure: when the buffer holds cap unsent bytes, stop reading, so a
 *   peer that never reads costs at most cap bytes here.
 * - once (the tutorial): echo the first chunk read, then shut the write side
 *   and drain (discard) input until the peer's EOF, so unread input never
 *   turns the close into a reset before the echo is delivered.  The engine
 *   bounds the drain in time (CONN_DRAIN_MS).
 */
#ifndef ECHOD_CONN_H
#define ECHOD_CONN_H

#include <stdbool.h>
#include <stddef.h>

/* How long a lingering close may drain a peer's input before giving up. */
#define CONN_DRAIN_MS 2000

enum conn_flags {
	CONN_ONCE = 1 << 0, /* echo one chunk, then close */
};

struct conn {
	unsigned char *buf;
	size_t cap;
	size_t head; /* first byte not yet echoed */
	size_t tail; /* end of the bytes received */
	unsigned flags;
	bool peer_eof;	 /* the peer shut its write side */
	bool got_chunk;	 /* once mode: the one chunk has arrived */
	bool write_shut; /* our write side is shut: only draining remains */
};

/*
 * Starts a connection whose buffer holds cap bytes.  buf (owned by the
 * caller) may be NULL: an engine that lends buffers only to connections with
 * data in flight attaches one before reading (conn_attach) and takes it back
 * when the echo is flushed (conn_detach).
 */
void conn_init(struct conn *c, unsigned char *buf, size_t cap, unsigned flags);
/* Gives an empty connection its buffer of cap bytes. */
void conn_attach(struct conn *c, unsigned char *buf);
/* Takes the buffer back if it holds nothing unsent; else returns NULL. */
unsigned char *conn_detach(struct conn *c);
/* True when the connection wants input now (conn_rspace would not be 0). */
bool conn_wants_read(const struct conn *c);
/*
 * True when reading stops only because cap bytes wait to be echoed: the peer
 * is not reading its echo fast enough (not EOF, once mode or draining).
 */
bool conn_backpressured(const struct conn *c);

/*
 * Room for the next read, or 0 to stop reading (backpressure, or no more
 * input wanted).  While draining, the room is scratch space: what lands
 * there is discarded.
 */
size_t conn_rspace(struct conn *c, unsigned char **p);
/* n bytes arrived at the place conn_rspace gave; n == 0 is the peer's EOF. */
void conn_received(struct conn *c, size_t n);
/* Bytes waiting to be echoed, at *p. */
size_t conn_pending(const struct conn *c, const unsigned char **p);

/*
 * Borrowed buffers (io_uring provided buffer rings, where the kernel picks
 * the buffer): the connection is started without one (buf NULL) and keeps
 * only the count of bytes the engine holds for it; cap still bounds that
 * count (conn_wants_read turns false), though a receive that cannot be told
 * "enough" (multishot) may deliver more before the engine stops it: those
 * bytes are kept too.  n bytes arrived in a buffer the engine holds: returns
 * how many of the first ones to echo, 0 to discard them all (draining, or
 * once mode's chunk already taken).  n == 0 is the peer's EOF.  conn_sent,
 * conn_wants_shutdown and conn_done work as usual.
 */
size_t conn_received_borrowed(struct conn *c, size_t n);
/*
 * How many more bytes the connection takes before it stops reading: what a
 * receive that can be sized should ask for at most.  0 when it wants none;
 * while draining, cap (the bytes are discarded).
 */
size_t conn_room(const struct conn *c);
/* How many bytes wait to be echoed; for borrowed and owned buffers alike. */
size_t conn_pending_bytes(const struct conn *c);
/* n of the pending bytes were sent. */
void conn_sent(struct conn *c, size_t n);

/* True when every echo is flushed and no more will come: shut the write side. */
bool conn_wants_shutdown(const struct conn *c);
/* The engine shut the write side; from now on input is only drained. */
void conn_shutdown(struct conn *c);
/* True while the write side is shut and the peer's EOF is awaited. */
bool conn_draining(const struct conn *c);
/* True when the connection may be closed without losing an echo. */
bool conn_done(const struct conn *c);

#endif
