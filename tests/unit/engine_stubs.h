/*
 * engine_stubs.h - what an event-loop engine needs from engine.c, stubbed,
 * for the unit tests that #include an engine's .c file to reach its statics
 * (test_epoll.c, test_uring.c): they link with the common objects alone.
 * A server with no --max-conns, never stopping, with no connection flags.
 */
#ifndef ECHOD_TEST_ENGINE_STUBS_H
#define ECHOD_TEST_ENGINE_STUBS_H

#include "engine.h"

bool server_take_slot(struct server *srv)
{
	(void)srv;
	return true;
}

bool server_release_slot(struct server *srv)
{
	(void)srv;
	return false;
}

bool server_stop_requested(const struct server *srv)
{
	(void)srv;
	return false;
}

unsigned server_conn_flags(const struct server *srv)
{
	(void)srv;
	return 0;
}

void engine_log_accept_error(int err)
{
	(void)err;
}

#endif
