/*
 * log.h - echod's diagnostics, and only echod's: echoc reports with warnx(3),
 * as a short-lived command does.
 *
 * Lines go to standard error, prefixed with the program name, lower-case and
 * without a trailing period.  With the json format each line is one JSON
 * object.  Addresses are always passed in numerically: nothing here resolves.
 */
#ifndef ECHOD_LOG_H
#define ECHOD_LOG_H

#include <stdbool.h>

enum log_level {
	LOGL_ERROR,
	LOGL_WARN,
	LOGL_INFO,
	LOGL_DEBUG,
};

/* prog prefixes every line; level is the most verbose level printed. */
void log_setup(const char *prog, enum log_level level, bool json);
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A named value of a structured line: a string, or a number when str is NULL. */
struct log_field {
	const char *key;
	const char *str;
	unsigned long long num;
};
/*
 * A structured line: text "prog: msg key=value ...", json one object with
 * each field a member ("key":"value" or "key":123).  Values are escaped like
 * messages; keys are echod's own.
 */
void log_fields(enum log_level level, const char *msg, const struct log_field *f, int n);
/* Always printed, always plain text: the lines scripts wait for. */
void log_always(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_error(...) log_msg(LOGL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOGL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOGL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LOGL_DEBUG))                                                       \
			log_msg(LOGL_DEBUG, __VA_ARGS__);                                          \
	} while (0)

#endif
