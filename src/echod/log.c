/*
 * log.c - diagnostics on standard error, one write(2) per line.
 *
 * Each line is formatted into a local buffer and written with a single
 * write(2), so lines from different worker threads never interleave and no
 * lock is needed.  Longer lines are truncated.  Every message is escaped
 * (see text_escape and json_escape): what a peer controls cannot end a line.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
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

/*
 * Peer-controlled text (a unix client's socket path, later a PROXY header)
 * reaches the log inside messages, so every message is escaped as a whole:
 * a newline must not start a forged line, a terminal escape must not reach
 * an operator's terminal, and a JSON line must stay valid UTF-8 JSON.  The
 * messages echod writes itself are printable ASCII, which passes unchanged.
 */

/* The valid UTF-8 sequence at s: its length (2 to 4) and code point, or 0. */
static size_t utf8_seq(const unsigned char *s, uint32_t *cp)
{
	size_t n;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, *cp = s[0] & 0x1fu;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, *cp = s[0] & 0x0fu;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, *cp = s[0] & 0x07u;
	else
		return 0;
	/* The terminating NUL fails this test, so nothing past it is read. */
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = *cp << 6 | (s[i] & 0x3fu);
	}
	if ((n == 3 && *cp < 0x800) || (n == 4 && (*cp < 0x10000 || *cp > 0x10ffff)) ||
	    (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0; /* overlong, beyond Unicode, or a surrogate */
	return n;
}

/*
 * Appends s to out for a text line: printable ASCII as it is, a backslash
 * as two, any other byte (controls, DEL, everything from 0x80) as \xNN.
 * Stops before an escape that would not fit in cap.  Returns the new length.
 */
static size_t text_escape(char *out, size_t len, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	for (const unsigned char *p = (const unsigned char *)s; *p && len + 4 <= cap; p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '\\') {
			out[len++] = (char)*p;
		} else if (*p == '\\') {
			out[len++] = '\\';
			out[len++] = '\\';
		} else {
			out[len++] = '\\';
			out[len++] = 'x';
			out[len++] = hex[*p >> 4];
			out[len++] = hex[*p & 15];
		}
	}
	return len;
}

/*
 * Appends s to out as the inside of a JSON string.  Valid UTF-8 passes
 * through; controls (C0, DEL and C1) are written \u00XX; a byte that is not
 * part of valid UTF-8 is written \u00XX too, the code point of the same
 * number (its Latin-1 reading), so the line always parses.  Stops before an
 * escape or a character that would not fit in cap.  Returns the new length.
 */
static size_t json_escape(char *out, size_t len, size_t cap, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p && len + 7 < cap) {
		uint32_t cp = 0;
		size_t n = *p >= 0x80 ? utf8_seq(p, &cp) : 1;

		if (n <= 1) /* ASCII, or a byte that is not valid UTF-8 */
			cp = *p;
		if (*p == '"' || *p == '\\') {
			out[len++] = '\\';
			out[len++] = (char)*p;
		} else if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || n == 0) {
			len += (size_t)snprintf(out + len, cap - len, "\\u%04x", (unsigned)cp);
		} else {
			memcpy(out + len, p, n);
			len += n;
		}
		p += n ? n : 1;
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

/* "prog: msg", escaped; returns its length (at most LOG_LINE_MAX - 1). */
static size_t format_text(char *line, const char *msg)
{
	int n = snprintf(line, LOG_LINE_MAX, "%s: ", log_prog);

	return text_escape(line, n < 0 ? 0 : (size_t)n, LOG_LINE_MAX - 1, msg);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char msg[LOG_LINE_MAX], line[LOG_LINE_MAX + 1];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_json)
		write_line(line, format_json(line, level, msg));
	else
		write_line(line, format_text(line, msg));
}

/*
 * Appends the fields to a json line whose closing brace was taken off.  A
 * member that does not fit whole is left out, with every one after it; a
 * string value is cut cleanly as messages are.  Leaves room for the brace.
 */
static size_t json_fields(char *line, size_t len, const struct log_field *f, int n)
{
	enum { NUM_MAX = 24 }; /* digits of an unsigned long long, and slack */
	const size_t cap = LOG_LINE_MAX - 2;

	for (int i = 0; i < n; i++) {
		size_t head = strlen(f[i].key) + 4; /* ,"key": */

		if (len + head + (f[i].str ? 2 : NUM_MAX) > cap)
			break;
		len += (size_t)snprintf(line + len, cap - len, ",\"%s\":", f[i].key);
		if (!f[i].str) {
			len += (size_t)snprintf(line + len, cap - len, "%llu", f[i].num);
			continue;
		}
		line[len++] = '"';
		len = json_escape(line, len, cap - 1, f[i].str);
		line[len++] = '"';
	}
	return len;
}

/*
 * Appends " key=value" to a text message, the value in double quotes (with
 * \" and \\ inside) when it holds a space or a quote, so that key=value
 * pairs split unambiguously.  Returns the new length (>= cap when cut).
 */
static size_t text_field(char *out, size_t len, size_t cap, const char *key, const char *v)
{
	bool quote = strpbrk(v, " \"") != NULL;

	len += (size_t)snprintf(out + len, cap - len, " %s=%s", key, quote ? "\"" : "");
	if (len >= cap)
		return cap;
	if (!quote) {
		len += (size_t)snprintf(out + len, cap - len, "%s", v);
		return len < cap ? len : cap;
	}
	/* Room for an escaped character, the closing quote and the NUL. */
	for (; *v && len + 4 <= cap; v++) {
		if (*v == '"' || *v == '\\')
			out[len++] = '\\';
		out[len++] = *v;
	}
	if (len + 2 > cap)
		return cap; /* snprintf left it terminated */
	out[len++] = '"';
	out[len] = '\0';
	return len;
}

void log_fields(enum log_level level, const char *msg, const struct log_field *f, int n)
{
	char text[LOG_LINE_MAX], line[LOG_LINE_MAX + 1];
	size_t len;

	if (!log_enabled(level))
		return;
	if (log_json) {
		len = format_json(line, level, msg);
		len = json_fields(line, len - 1, f, n); /* over the closing brace */
		line[len++] = '}';
		write_line(line, len);
		return;
	}
	len = (size_t)snprintf(text, sizeof(text), "%s", msg);
	for (int i = 0; i < n && len < sizeof(text); i++) {
		if (f[i].str)
			len = text_field(text, len, sizeof(text), f[i].key, f[i].str);
		else
			len += (size_t)snprintf(text + len, sizeof(text) - len, " %s=%llu",
						f[i].key, f[i].num);
	}
	write_line(line, format_text(line, text));
}

void log_always(const char *fmt, ...)
{
	char msg[LOG_LINE_MAX], line[LOG_LINE_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	write_line(line, format_text(line, msg));
}
