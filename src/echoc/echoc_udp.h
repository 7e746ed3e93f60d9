/*
 * echoc_udp.h - echoc -u: message, interactive and pipe modes over datagrams.
 */
#ifndef ECHOD_ECHOC_UDP_H
#define ECHOD_ECHOC_UDP_H

#include "echoc_config.h"

/* Largest datagram pipe mode sends: fits a 1500-byte MTU under IPv6, unfragmented. */
#define ECHOC_UDP_CHUNK 1400
/* Datagrams pipe mode keeps in flight before waiting for their echoes. */
#define ECHOC_UDP_WINDOW 16

/*
 * Runs the mode cfg and argv call for over UDP: MESSAGE words as one
 * datagram, else one datagram per line typed on a terminal, else standard
 * input in datagrams of at most ECHOC_UDP_CHUNK bytes.  Returns the exit
 * status: 0 when every echo came back equal, 1 after one line saying why
 * (an echo differs, or none came within the timeout: a datagram was lost).
 */
int echoc_udp_main(const struct client_config *cfg, int argc, char **argv);

#endif
