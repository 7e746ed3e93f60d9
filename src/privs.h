/*
 * privs.h - giving up root after the listeners are bound.
 */
#ifndef ECHOD_PRIVS_H
#define ECHOD_PRIVS_H

#include <stddef.h>

/*
 * Switches the process to user's uid, gid and supplementary groups.
 * Returns 0, or -errno with a reason in err.
 */
int privs_drop(const char *user, char *err, size_t errlen);

#endif
