/*
 * echoc_config.h - echoc's configuration (message, interactive and pipe
 * modes), parsed from its command line.
 */
#ifndef ECHOD_ECHOC_CONFIG_H
#define ECHOD_ECHOC_CONFIG_H

#include "opts.h"

/* echoc's configuration (message, interactive and pipe modes). */
struct client_config {
	struct net_addr target;
	bool udp;
	bool once;
	bool no_newline;
	long timeout_ms;
	int first_word; /* index in argv of the first MESSAGE word, argc if none */
};

enum opts_result client_config_parse(struct client_config *cfg, int argc, char **argv, char *err,
				     size_t errlen);
void client_config_usage(FILE *out);

#endif
