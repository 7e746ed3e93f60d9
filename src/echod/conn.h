/*
 * conn.h - the echo protocol, independent of how bytes move.
 *
 * A connection is a small state machine over a bounded count of unsent
 * bytes.  The engine tells it what arrived and what left, and follows its
 * verdicts: read or not (conn_wants_read), shut the write side now
 * (conn_wants_shutdown), close now (conn_done).  It never calls read or
 * write itself, so every engine serves the same semantics and the unit
 * tests drive it without sockets.
 *
 * Where the bytes live is the engine's choice, one of three modes, each
 * with its own calls (the rest are common to all):
 *
 *   mode      engine              the bytes are in                 calls
 *   owned     iterative, threads  conn's buffer, for its whole     conn_read_buf, conn_read_done,
 *                                 life (given to conn_init)        conn_send_buf
 *   lent      epoll               conn's buffer, lent from a pool  the owned calls, plus conn_lend
 *                                 only while bytes are in flight   before a read, conn_reclaim
 *                                                                  after a flush
 *   borrowed  uring               the engine's buffers (a ring    conn_borrowed_room,
 *                                 the kernel picks from): conn     conn_borrowed_arrived
 *                                 only counts them
 *
 * The rules it encodes:
 * - stream (RFC 862): echo everything, in order, until the peer's EOF; then
 *   flush what is pending, shut the write side and close.
 * - backpressure: when cap bytes are unsent, stop reading, so a peer that
 *   never reads costs at most cap bytes here.
 * - once (the tutorial): echo the first chunk read, then shut the write side
 *   and drain (discard) input until the peer's EOF, so unread input never
 *   turns the close into a reset before the echo is delivered.  The engine
 *   bounds the drain in time (CONN_DRAIN_MS).
 */
#ifndef ECHOD_CONN_H
#define ECHOD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How long a lingering close may drain a peer's input before giving up. */
#define CONN_DRAIN_MS 2000

enum conn_flags {
	CONN_ONCE = 1 << 0, /* echo one chunk, then close */
};

/*
 * 24 bytes: every idle connection of every engine holds one.  Counts fit 32
 * bits: cap is --buffer (at most 16 MiB), and what a borrowed connection
 * holds past cap is one receive's overshoot.
 */
struct conn {
	unsigned char *buf; /* owned and lent modes; NULL while lent out or borrowed */
	uint32_t cap;
	uint32_t head; /* first byte not yet echoed */
	uint32_t tail; /* end of the bytes received */
	uint8_t flags;
	bool peer_eof;	 /* the peer shut its write side */
	bool got_chunk;	 /* once mode: the one chunk has arrived */
	bool write_shut; /* our write side is shut: only draining remains */
};

/* ---- every mode */

/* Starts a connection of at most cap unsent bytes; buf: owned mode's, else NULL. */
void conn_init(struct conn *c, unsigned char *buf, size_t cap, unsigned flags);
/* True when the connection wants input now. */
bool conn_wants_read(const struct conn *c);
/*
 * True when reading stops only because cap bytes wait to be echoed: the peer
 * is not reading its echo fast enough (not EOF, once mode or draining).
 */
bool conn_backpressured(const struct conn *c);
/* How many bytes wait to be echoed. */
size_t conn_unsent(const struct conn *c);
/* n of the unsent bytes were sent. */
void conn_sent(struct conn *c, size_t n);
/* True when every echo is flushed and no more will come: shut the write side. */
bool conn_wants_shutdown(const struct conn *c);
/* The engine shut the write side; from now on input is only drained. */
void conn_shutdown(struct conn *c);
/* True while the write side is shut and the peer's EOF is awaited. */
bool conn_draining(const struct conn *c);
/* True when the connection may be closed without losing an echo. */
bool conn_done(const struct conn *c);

/* ---- owned and lent: conn's buffer holds the bytes */

/*
 * Where to read next and how much, or 0 to stop reading (backpressure, or
 * no more input wanted).  While draining, the room is scratch space: what
 * lands there is discarded.
 */
size_t conn_read_buf(struct conn *c, unsigned char **p);
/* n bytes arrived where conn_read_buf said; n == 0 is the peer's EOF. */
void conn_read_done(struct conn *c, size_t n);
/* The unsent bytes, at *p; returns their count. */
size_t conn_send_buf(const struct conn *c, const unsigned char **p);

/* ---- lent: the buffer is the connection's only while bytes are in flight */

/* Lends an empty connection its buffer of cap bytes, before a read. */
void conn_lend(struct conn *c, unsigned char *buf);
/* Takes the buffer back if nothing is unsent; else returns NULL. */
unsigned char *conn_reclaim(struct conn *c);

/* ---- borrowed: the engine holds the bytes; conn counts them */

/*
 * How many more bytes the connection takes before it stops reading: what a
 * receive that can be sized should ask for at most.  0 when it wants none;
 * while draining, cap (the bytes are discarded).
 */
size_t conn_borrowed_room(const struct conn *c);
/*
 * n bytes arrived in a buffer the engine holds: returns how many of the
 * first ones to echo (the engine keeps those until conn_sent), 0 to discard
 * them all (draining, or once mode's chunk already taken).  n == 0 is the
 * peer's EOF.  cap bounds the count through conn_wants_read, though a
 * receive that cannot be told "enough" (multishot) may deliver more before
 * the engine stops it: in stream mode those bytes are kept too.
 */
size_t conn_borrowed_arrived(struct conn *c, size_t n);

#endif
