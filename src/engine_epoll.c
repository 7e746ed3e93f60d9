/* placeholder while the epoll engine is written */
#include "engine.h"
#include <errno.h>
static int probe(char *why, size_t whylen)
{
	(void)why;
	(void)whylen;
	return 0;
}
static int run(struct server *srv)
{
	(void)srv;
	return -ENOSYS;
}
const struct engine engine_epoll = {
	.name = "epoll", .has_workers = true, .probe = probe, .run = run};
