/* Where a request ends, decided once, from its headers, before any body byte is read (RFC 9112
 * sections 3.2, 5, 6). libmicrohttpd 0.9.75's own strictness (MHD_OPTION_STRICT_FOR_CLIENT = 1:
 * HTTP/1.1 without Host, a space in the request target) is not used: its Host refusal writes the
 * status line and headers twice (tests/RELIABILITY.md), so both are checked here. It reads the
 * rest leniently: it takes the first of two Content-Length headers, prefers chunked over
 * Content-Length, waits for the close on a Transfer-Encoding it does not know, and stores a header
 * name with the whitespace before its colon or a value cut at a NUL. Everything it lets through
 * that a front end could read differently is refused here; the caller answers and closes. */
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cigt/error.h"
#include "srv.h"

/* RFC 9110 5.6.2 token characters. */
static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

struct scan {
	struct MHD_Connection *mc;
	const char *blk, *blk_end; /* the request head as libmicrohttpd parsed it in place */
	const char *prev_end;      /* end of the previous header's value, NULL before the first */
	int n_cl, n_te, n_host;
	const char *cl, *te;
	int status;
	char *msg;
	size_t msglen;
};

/* At most a CRLF (two bytes libmicrohttpd turned into NULs) separates a header's value from the
 * next line (max_gap 2; 4 after the last value, whose empty line follows). Anything else there is
 * the rest of a value libmicrohttpd cut at a NUL byte, or a folded continuation line (obs-fold,
 * which it glues onto the header's name). Returns NULL or what was found. */
static const char *leftover(const char *end, const char *next, ptrdiff_t max_gap)
{
	const char *p = end;
	while (p < next && !*p)
		p++;
	if (p < next)
		return *p == ' ' || *p == '\t' ? "a folded header line (obs-fold): continuation lines "
						 "are not accepted"
					       : "a NUL byte inside a header value";
	return next < end || next - end > max_gap ? "a NUL byte inside a header value" : NULL;
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
				   size_t key_size, const char *value, size_t value_size)
{
	struct scan *s = cls;
	if (s->status)
		return MHD_NO;
#define REFUSE(code, ...)                                            \
	do {                                                         \
		s->status = code;                                    \
		snprintf(s->msg, s->msglen, __VA_ARGS__);            \
		return MHD_NO;                                       \
	} while (0)
	if (key_size == 0)
		REFUSE(400, "a header line has an empty name");
	if (key[key_size - 1] == ' ' || key[key_size - 1] == '\t')
		REFUSE(400, "whitespace between the header name '%.*s' and its colon",
		       (int)strcspn(key, " \t") > 64 ? 64 : (int)strcspn(key, " \t"), key);
	for (size_t i = 0; i < key_size; i++)
		if (!is_tchar((unsigned char)key[i]))
			REFUSE(400, "header name '%.*s' has a byte 0x%02x that is not allowed in a "
				    "name", key_size > 64 ? 64 : (int)key_size, key,
			       (unsigned char)key[i]);
	for (size_t i = 0; i < value_size; i++) {
		unsigned char c = (unsigned char)value[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			REFUSE(400, "header %.*s has a control byte 0x%02x in its value",
			       key_size > 64 ? 64 : (int)key_size, key, c);
	}
	/* Values are parsed in place: a NUL inside one shows as bytes left over before the next. */
	bool in_block = key >= s->blk && value + value_size <= s->blk_end;
	const char *bad = in_block && s->prev_end ? leftover(s->prev_end, key, 2) : NULL;
	if (bad)
		REFUSE(400, "%s (before the header line of %.*s)", bad,
		       key_size > 64 ? 64 : (int)key_size, key);
	s->prev_end = in_block ? value + value_size : NULL;
	if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
		s->n_cl++;
		s->cl = value;
	} else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
		s->n_te++;
		s->te = value;
	} else if (!strcasecmp(key, MHD_HTTP_HEADER_HOST)) {
		s->n_host++;
	}
	return MHD_YES;
#undef REFUSE
}

int srv_framing_check(struct MHD_Connection *mc, const char *method, const char *version,
		      char *msg, size_t msglen)
{
	struct scan s = {.mc = mc, .msg = msg, .msglen = msglen};
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(mc, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	s.blk = method;
	s.blk_end = ci ? method + ci->header_size : method;
	MHD_get_connection_values_n(mc, MHD_HEADER_KIND, scan_header, &s);
	if (s.status)
		return s.status;
	/* The last value: only the line end and the empty line's (up to 4 NULs) follow it. */
	const char *bad = s.prev_end ? leftover(s.prev_end, s.blk_end, 4) : NULL;
	if (bad)
		return cigt_fail(msg, msglen, 400, "%s (in the last header)", bad);
	bool http11 = !strcmp(version, MHD_HTTP_VERSION_1_1);
	if (http11 && s.n_host != 1)
		return cigt_fail(msg, msglen, 400, "an HTTP/1.1 request needs exactly one Host "
						   "header (it has %d)", s.n_host);
	if (s.n_cl > 1)
		return cigt_fail(msg, msglen, 400, "%d Content-Length headers (one at most)",
				 s.n_cl);
	if (s.n_cl && s.n_te)
		return cigt_fail(msg, msglen, 400, "both Content-Length and Transfer-Encoding: "
						   "the body's end is ambiguous");
	if (s.n_cl) {
		size_t n = strlen(s.cl);
		if (n == 0 || n > 18 || strspn(s.cl, "0123456789") != n)
			return cigt_fail(msg, msglen, 400, "Content-Length '%.32s' is not a decimal "
							   "byte count", s.cl);
	}
	if (s.n_te && !http11)
		return cigt_fail(msg, msglen, 400, "Transfer-Encoding in an %s request",
				 version[0] ? version : "HTTP/0.9");
	if (s.n_te > 1 || (s.n_te && strcasecmp(s.te, "chunked")))
		return cigt_fail(msg, msglen, 501, "Transfer-Encoding '%.64s' is not implemented "
						   "(only a single 'chunked')",
				 s.n_te > 1 ? "(several headers)" : s.te);
	return 0;
}

bool srv_framing_target_ok(const char *target)
{
	const unsigned char *p = (const unsigned char *)target;
	for (; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	/* The request line is cut in place at the space before the version, which
	 * libmicrohttpd has checked (a line without one never gets here): anything else after the
	 * target's end is the rest of a target cut at a NUL byte. */
	return !strncmp((const char *)p + 1, "HTTP/", 5);
}
