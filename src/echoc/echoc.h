/*
 * echoc.h - what echoc.c lends the datagram modes (echoc_udp.c): the
 * message built from the command line, and the standard output writer.
 */
#ifndef ECHOD_ECHOC_H
#define ECHOD_ECHOC_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The n words joined by single spaces, plus a newline unless no_newline, in
 * a buffer the caller frees; its length in *len.  NULL when out of memory.
 */
char *echoc_join_words(char **words, int n, bool no_newline, size_t *len);

/* Writes n bytes to standard output; 0, or -1 after one line saying why. */
int echoc_write_out(const char *p, size_t n);

#endif
