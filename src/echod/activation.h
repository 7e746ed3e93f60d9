/*
 * activation.h - sockets handed over by systemd, and telling it how we are.
 *
 * Socket activation (sd_listen_fds(3)): systemd, or systemd-socket-activate,
 * binds the sockets and starts echod with them open from descriptor 3 on,
 * and LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES in the environment.  echod
 * then serves exactly those sockets instead of binding its own: listening
 * stream sockets (TCP, unix) go to the engine, UDP sockets to the UDP
 * workers.  Anything else is refused before serving starts.
 *
 * Readiness (sd_notify(3)): with NOTIFY_SOCKET set, echod sends READY=1 once
 * it serves and STOPPING=1 when a stop is asked for.  The datagram is
 * written here rather than with libsystemd: it is a dozen lines, the
 * protocol is stable and documented, and echod stays free of a library
 * dependency for two one-word messages.  The socket is opened and connected
 * at start-up, so that after it only send(2) is needed: no path lookup,
 * which the sandbox (Landlock) forbids, and no new socket.
 */
#ifndef ECHOD_ACTIVATION_H
#define ECHOD_ACTIVATION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

struct server;

/* The first descriptor systemd passes (SD_LISTEN_FDS_START). */
#define ACTIVATION_FDS_START 3
/* More than any sane socket unit passes; beyond it LISTEN_FDS is refused. */
#define ACTIVATION_MAX_FDS 64
#define ACTIVATION_ERRLEN  256

/* The datagram sockets systemd passed, for udp_adopt(). */
struct activated_udp {
	int fds[ACTIVATION_MAX_FDS];
	int n;
};

/*
 * Reads LISTEN_PID and LISTEN_FDS for a process whose pid is self.  Returns
 * how many descriptors were passed to it: 0 when none were, or when they
 * were meant for another process (LISTEN_PID differs, as when a parent's
 * variables leaked into ours); -EINVAL with the reason in why when the
 * variables are malformed.  pid or fds may be NULL (unset).
 */
int activation_count(const char *pid, const char *fds, pid_t self, char *why, size_t whylen);

/*
 * The i-th name of the colon-separated LISTEN_FDNAMES names (which may be
 * NULL) into buf; "" when it has none.
 */
void activation_fd_name(const char *names, int i, char *buf, size_t buflen);

/*
 * Takes the sockets systemd passed to this process, if any, and unsets
 * LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES so that nothing we start
 * inherits them.  Listening stream sockets are appended to srv->listeners
 * (allocated here when systemd passed any); UDP sockets go to udp.  Each is
 * checked (type, listening, address family), made non-blocking and
 * close-on-exec, and announced with the same "listening on" line as a bound
 * one.  --listen and --udp are ignored then, with a warning: the sockets
 * come from the socket unit.  Returns how many were taken, 0 when none were passed, -EINVAL with
 * one line naming the descriptor in why when one cannot be served.
 */
int activation_take(struct server *srv, struct activated_udp *udp, char *why, size_t whylen);

/*
 * Parses NOTIFY_SOCKET (an absolute path, or "@name" in the abstract
 * namespace) into sa and len.  Returns 0, or -EINVAL / -ENAMETOOLONG.
 */
int notify_address(const char *env, struct sockaddr_un *sa, socklen_t *len);

/*
 * With NOTIFY_SOCKET set, opens and connects the socket to systemd, and
 * unsets the variable.  Returns 0 (also when it is not set), or -errno with
 * the reason in why: echod runs on, but systemd will not hear from it.
 */
int notify_open(char *why, size_t whylen);
/* Tells systemd that echod serves (READY=1).  Nothing without NOTIFY_SOCKET. */
void notify_ready(void);
/* Tells systemd that echod is stopping (STOPPING=1).  Safe from any thread. */
void notify_stopping(void);

#endif
