/* Small shared pieces of the daemon: the status and endpoint tables, leveled logging to stderr
 * and a growable string buffer that remembers an allocation failure instead of crashing, and the
 * parse of a decimal integer that headers, queries and addresses share. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdint.h>
#include <time.h>

#include "srv.h"

static const int status_codes[SRV_S_COUNT] = {
#define SRV_X_CODE(code, text) code,
	SRV_STATUSES(SRV_X_CODE)
#undef SRV_X_CODE
};

static const char *const status_texts[SRV_S_COUNT] = {
#define SRV_X_TEXT(code, text) text,
	SRV_STATUSES(SRV_X_TEXT)
#undef SRV_X_TEXT
};

static const char *const endpoint_names[SRV_EP_COUNT] = {
#define SRV_X_EPN(name, text) text,
	SRV_ENDPOINTS(SRV_X_EPN)
#undef SRV_X_EPN
};

_Static_assert(sizeof status_codes / sizeof status_codes[0] == SRV_S_COUNT, "status table");
_Static_assert(sizeof endpoint_names / sizeof endpoint_names[0] == SRV_EP_COUNT, "endpoints");

int srv_status_index(int code)
{
	for (int i = 0; i < SRV_S_COUNT; i++)
		if (status_codes[i] == code)
			return i;
	return SRV_S_500;
}

int srv_status_code(int idx)
{
	return idx >= 0 && idx < SRV_S_COUNT ? status_codes[idx] : 500;
}

const char *srv_status_text(int code)
{
	return status_texts[srv_status_index(code)];
}

const char *srv_endpoint_name(enum srv_endpoint ep)
{
	return (unsigned)ep < SRV_EP_COUNT ? endpoint_names[ep] : "other";
}

/* -------------------------------------------------------------------------------- logging */

int srv_log_level = SRV_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int srv_log_level_parse(const char *s)
{
	for (int i = 0; i <= SRV_LOG_OFF; i++)
		if (!strcasecmp(s, level_names[i]))
			return i;
	return -1;
}

void srv_log(enum srv_log_level lv, const char *fmt, ...)
{
	if ((int)lv < srv_log_level)
		return;
	char line[1024];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int off = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
	off += snprintf(line + off, sizeof line - (size_t)off, ".%03ldZ %-5s ",
			ts.tv_nsec / 1000000, level_names[lv]);
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(line + off, sizeof line - (size_t)off - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)off + (k < 0 ? 0 : ((size_t)k < sizeof line - (size_t)off - 2 ? (size_t)k : sizeof line - (size_t)off - 2));
	/* One line per event: newlines inside messages would forge log lines. */
	for (size_t i = (size_t)off; i < len; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[len++] = '\n';
	fwrite(line, 1, len, stderr);
}

/* ---------------------------------------------------------------------------- string buffer */

static bool buf_reserve(struct srv_buf *b, size_t extra)
{
	if (b->oom)
		return false;
	if (b->len + extra + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1) {
		if (cap > SIZE_MAX / 2) {
			b->oom = true;
			return false;
		}
		cap *= 2;
	}
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

bool srv_buf_reserve(struct srv_buf *b, size_t extra)
{
	return buf_reserve(b, extra);
}

void srv_buf_put(struct srv_buf *b, const void *s, size_t n)
{
	if (!buf_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

void srv_buf_puts(struct srv_buf *b, const char *s)
{
	srv_buf_put(b, s, strlen(s));
}

void srv_buf_printf(struct srv_buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (k < 0)
		return;
	if ((size_t)k < sizeof tmp) {
		srv_buf_put(b, tmp, (size_t)k);
		return;
	}
	if (!buf_reserve(b, (size_t)k))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)k + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)k;
}

void srv_buf_json_str(struct srv_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	srv_buf_put(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		const unsigned char ch = *p;
		if (ch == '"' || ch == '\\') {
			char e[2] = {'\\', (char)ch};
			srv_buf_put(b, e, 2);
		} else if (ch < 0x20 || ch == 0x7f) {
			char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
			srv_buf_put(b, e, 6);
		} else {
			srv_buf_put(b, p, 1);
		}
	}
	srv_buf_put(b, "\"", 1);
}

void srv_buf_free(struct srv_buf *b)
{
	free(b->p);
	*b = (struct srv_buf){0};
}

long long srv_parse_ll(const char *s, long long lo, long long hi)
{
	if (!s || !*s)
		return -2;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -2;
	return v;
}
