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

int privs_lookup(const char *user, struct privs *p, char *err, size_t errlen)
{
	struct passwd *pw;

	errno = 0;
	pw = getpwnam(user);
	if (!pw || strlen(user) >= sizeof(p->name)) {
		snprintf(err, errlen, "--user %s: no such user", user);
		return errno ? -errno : -ENOENT;
	}
	snprintf(p->name, sizeof(p->name), "%s", user);
	p->uid = pw->pw_uid;
	p->gid = pw->pw_gid;
	return 0;
}

int privs_drop(const struct privs *p, char *err, size_t errlen)
{
	int rc;

	if (initgroups(p->name, p->gid) < 0 || setgid(p->gid) < 0 || setuid(p->uid) < 0) {
		rc = -errno;
		snprintf(err, errlen, "--user %s: %s", p->name, strerror(-rc));
		return rc;
	}
	if (p->uid != 0 && setuid(0) == 0) {
		snprintf(err, errlen, "--user %s: root could be regained", p->name);
		return -EPERM;
	}
	return 0;
}

int privs_give_path(const struct privs *p, const char *path, char *err, size_t errlen)
{
	int rc;

	/* lchown: a symlink put in the socket's place is not followed. */
	if (lchown(path, p->uid, p->gid) == 0)
		return 0;
	rc = -errno;
	snprintf(err, errlen, "--user %s: chown %s: %s", p->name, path, strerror(-rc));
	return rc;
}
