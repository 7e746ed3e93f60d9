/*
 * log.c - diagnostics on standard error, one write(2) per line.
 *
 * Each line is formatted into a local buffer and written with a single
 * write(2), so lines from different worker threads never interleave and no
 * lock is needed.  Longer lines are truncated.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { LOG_LINE_MAX = 1024 };

static const char *log_prog = "echod";
static enum log_level log_max = LOGL_INFO;
static bool log_json;

static const char *const level_names[] = {
	[LOGL_ERROR] = "error",
	[LOGL_WARN] = "warn",
	[LOGL_INFO] = "info",
	[LOGL_DEBUG] = "debug",
};

void log_setup(const char *prog, enum log_level level, bool json)
{
	log_prog = prog;
	log_max = level;
	log_json = json;
}

bool log_enabled(enum log_level level)
{
	return level <= log_max;
}

/* Writes len bytes of line, which has room for a final newline. */
static void write_line(char *line, size_t len)
{
	ssize_t n;

	if (len > LOG_LINE_MAX - 1)
		len = LOG_LINE_MAX - 1;
	line[len++] = '\n';
	do
		n = write(STDERR_FILENO, line, len);
	while (n < 0 && errno == EINTR);
}

/* Appends s to out as the inside of a JSON string; returns the new length. */
static size_t json_escape(char *out, size_t len, size_t cap, const char *s)
{
	for (; *s && len + 7 < cap; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			out[len++] = '\\';
			out[len++] = (char)ch;
		} else if (ch < 0x20) {
			len += (size_t)snprintf(out + len, cap - len, "\\u%04x", ch);
		} else {
			out[len++] = (char)ch;
		}
	}
	return len;
}

static size_t format_json(char *line, enum log_level level, const char *msg)
{
	struct timeval tv;
	struct tm tm;
	size_t len;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	len = strftime(line, LOG_LINE_MAX, "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
	len += (size_t)snprintf(line + len, LOG_LINE_MAX - len,
				".%03ldZ\",\"prog\":\"%s\",\"level\":\"%s\",\"msg\":\"",
				(long)tv.tv_usec / 1000, log_prog, level_names[level]);
	len = json_escape(line, len, LOG_LINE_MAX - 3, msg);
	line[len++] = '"';
	line[len++] = '}';
	return len;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char msg[LOG_LINE_MAX], line[LOG_LINE_MAX + 1];
	va_list ap;
	int len;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_json) {
		write_line(line, format_json(line, level, msg));
		return;
	}
	len = snprintf(line, LOG_LINE_MAX, "%s: %s", log_prog, msg);
	write_line(line, len < 0 ? 0 : (size_t)len);
}

void log_always(const char *fmt, ...)
{
	char line[LOG_LINE_MAX + 1];
	va_list ap;
	int len;

	len = snprintf(line, LOG_LINE_MAX, "%s: ", log_prog);
	va_start(ap, fmt);
	len += vsnprintf(line + len, LOG_LINE_MAX - (size_t)len, fmt, ap);
	va_end(ap);
	write_line(line, len < 0 ? 0 : (size_t)len);
}
