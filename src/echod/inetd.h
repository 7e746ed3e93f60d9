/*
 * inetd.h - echod --inetd: serve the socket on standard input, then exit.
 *
 * For inetd's "nowait" TCP services, xinetd, and systemd's Accept=yes
 * sockets: the connection is on descriptor 0 (and usually 1), served with
 * the same conn logic and limits as a connection echod accepted itself
 * (--buffer, --once, --idle-timeout, --grace on SIGTERM).  For inetd's
 * "wait" UDP services, descriptor 0 is the bound UDP socket: its datagrams
 * are answered as by --udp until none came for --idle-timeout (default
 * INETD_UDP_IDLE_MS), so the next datagram starts a fresh echod.
 *
 * Descriptor 1, and often 2, are the same socket: nothing is ever written
 * to standard output, and log lines go to standard error only when it is
 * not the socket (otherwise to nowhere), so that no line ends up in the
 * echo.
 */
#ifndef ECHOD_INETD_H
#define ECHOD_INETD_H

#include <stddef.h>

struct config;
struct server;

/* How long a UDP socket on standard input waits for the next datagram. */
#define INETD_UDP_IDLE_MS 10000

/*
 * The options that mean nothing with --inetd (--listen, --udp, --workers,
 * --model, --max-conns).  Returns 0, or -EINVAL with one line naming the
 * option in why.
 */
int inetd_check_options(const struct config *cfg, char *why, size_t whylen);

/*
 * Points standard error at /dev/null when it is the socket on standard
 * input.  Call before anything is logged.
 */
void inetd_keep_logs_off_the_socket(void);

/*
 * Serves standard input as described above.  srv->cfg, srv->stop_fd and
 * srv->metrics (one worker) must be ready.  Returns the exit status: 0
 * once served, 1 when standard input is not a socket echod can serve.
 */
int inetd_serve(struct server *srv);

#endif
