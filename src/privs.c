/*
 * privs.c - giving up root after the listeners are bound (POSIX plus
 * initgroups(3), which Linux and the BSDs have).
 *
 * Groups first, then gid, then uid: once the uid is gone the others can no
 * longer be changed.  The final check makes sure root cannot be regained.
 */
#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int privs_drop(const char *user, char *err, size_t errlen)
{
	struct passwd *pw;
	int rc;

	errno = 0;
	pw = getpwnam(user);
	if (!pw) {
		rc = errno ? -errno : -ENOENT;
		snprintf(err, errlen, "--user %s: no such user", user);
		return rc;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		rc = -errno;
		snprintf(err, errlen, "--user %s: %s", user, strerror(-rc));
		return rc;
	}
	if (pw->pw_uid != 0 && setuid(0) == 0) {
		snprintf(err, errlen, "--user %s: root could be regained", user);
		return -EPERM;
	}
	return 0;
}
