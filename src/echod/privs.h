/*
 * privs.h - giving up root after the listeners are bound.
 */
#ifndef ECHOD_PRIVS_H
#define ECHOD_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

struct privs {
	char name[64];
	uid_t uid;
	gid_t gid;
};

/*
 * Looks user up, before any socket exists, so that a typo is a usage error
 * rather than a server that bound its ports and then died.  Returns 0, or
 * -errno with a reason in err.
 */
int privs_lookup(const char *user, struct privs *p, char *err, size_t errlen);

/*
 * Switches the process to p's uid, gid and supplementary groups.
 * Returns 0, or -errno with a reason in err.
 */
int privs_drop(const struct privs *p, char *err, size_t errlen);

/*
 * Gives the file at path (a unix socket echod just bound) to p's uid and
 * gid, so that it serves p's clients as if p had bound it, and p can remove
 * it at exit where the directory lets p.  Returns 0, or -errno with a reason.
 */
int privs_give_path(const struct privs *p, const char *path, char *err, size_t errlen);

#endif
