/*
 * sandbox.h - confining echod once it has started (Linux): no new
 * privileges, a seccomp allow-list per engine, Landlock, and restricted
 * io_uring rings.  See sandbox.c for what each part allows and why.
 */
#ifndef ECHOD_SANDBOX_H
#define ECHOD_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

#define SANDBOX_ERRLEN 256

struct config;
struct server;
struct io_uring;

/*
 * Confines the whole process for serving srv with the named engine: sets
 * no-new-privileges, denies the filesystem with Landlock (but removing the
 * unix sockets at exit), and loads the engine's seccomp allow-list on every
 * thread.  Call it after the listeners are bound and privileges dropped;
 * threads started afterwards inherit all of it.  A part the kernel or the
 * build lacks is skipped with a line at -v.  Returns 0, or -errno with the
 * reason in why: then the process may be partly confined and must not serve.
 */
int sandbox_apply(const struct server *srv, const char *engine, char *why, size_t whylen);

/*
 * For the uring engine, on a ring created with IORING_SETUP_R_DISABLED once
 * its buffers are registered: limits it to the operations the engine uses
 * (unless --no-sandbox), then enables it.  Returns 0 or -errno.
 */
int sandbox_ring_start(struct io_uring *ring, const struct config *cfg);

/*
 * For the uring engine, once every worker's ring is started: from now on
 * any thread that calls io_uring_setup(2) kills the process, so no ring
 * without the restrictions can ever exist.  A no-op without the seccomp
 * part.  Returns 0, or -errno after logging why.
 */
int sandbox_forbid_new_rings(const struct config *cfg);

#endif
