/*
 * busy_poll.c - the kernel's busy-poll settings for --busy-poll (Linux).
 *
 * Every setting here fails soft: echod spins all the same, and on loopback
 * (no NAPI) the settings would change nothing anyway.
 */
#include "busy_poll.h"

#include "log.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

void busy_poll_explain(const char *what, int err, char *buf, size_t len)
{
	const char *why;

	switch (err) {
	case EPERM:
		why = "needs CAP_NET_ADMIN (start echod as root, --user drops it later)";
		break;
	case ENOPROTOOPT:
		why = "this kernel has no socket busy polling (CONFIG_NET_RX_BUSY_POLL)";
		break;
	case ENOTTY:
	case EINVAL:
		why = "this kernel has no per-epoll busy polling (Linux 6.9 or later)";
		break;
	default:
		why = strerror(err);
		break;
	}
	snprintf(buf, len, "busy-poll: %s: %s; workers spin without it", what, why);
}

static void log_refusal(const char *what, int err)
{
	char line[256];

	busy_poll_explain(what, err, line, sizeof(line));
	log_info("%s", line);
}

void busy_poll_listeners(const struct server *srv)
{
	static const struct {
		int opt;
		int value;
		const char *name;
	} opts[] = {
		{SO_BUSY_POLL, BUSY_POLL_USECS, "SO_BUSY_POLL"},
		{SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"},
	};

	for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
		for (int i = 0; i < srv->nlisteners; i++) {
			const struct listener *l = &srv->listeners[i];

			if (l->type != SOCK_STREAM || l->is_unix)
				continue;
			if (setsockopt(l->fd, SOL_SOCKET, opts[k].opt, &opts[k].value,
				       sizeof(opts[k].value)) < 0) {
				log_refusal(opts[k].name, errno);
				break; /* the same answer for every listener */
			}
		}
}

int busy_poll_epoll(int epfd, bool log)
{
	struct epoll_params p = {.busy_poll_usecs = BUSY_POLL_USECS,
				 .busy_poll_budget = BUSY_POLL_BUDGET,
				 .prefer_busy_poll = 1};

	int err;

	if (ioctl(epfd, EPIOCSPARAMS, &p) == 0)
		return 0;
	err = errno;
	if (log)
		log_refusal("EPIOCSPARAMS", err);
	return -err;
}
