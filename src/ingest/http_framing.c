/*
 * http_framing.c — refuses a request whose headers could be read two ways.
 *
 * libmicrohttpd takes the first Content-Length of several, serves a
 * request that has both Content-Length and Transfer-Encoding, ignores a
 * header whose name ends in a space ("Content-Length : 5").  A proxy in
 * front of us may read each of those differently, and
 * the bytes it thinks are a body become a second, authenticated request
 * here (request smuggling).  RFC 9112 says what a server must do, and this
 * does it before anything else looks at the request: 400 and close the
 * connection for ambiguous framing and malformed header lines, 501 for a
 * transfer coding other than chunked.
 *
 * libmicrohttpd 0.9.75 also cuts a header value (or the request target) at
 * a NUL byte: "Authorization: Bearer <token>\0junk" is handed out as
 * "Bearer <token>", which a proxy may have read otherwise.  Its strictness
 * option (MHD_OPTION_STRICT_FOR_CLIENT) only checks Host and spaces.  So
 * the head is accounted for byte by byte without parsing it again:
 * libmicrohttpd parses in place, so every name and value it hands out
 * points into the raw head, whose length it also tells
 * (MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE).  Between the end of one line's
 * value and the next name there must be exactly one line end (the same
 * length, 1 or 2 bytes, all through the head), and the head must end with
 * two more.  A NUL makes a line look shorter than it was, and a folded
 * line is moved out of the buffer, so either leaves bytes unaccounted for:
 * 400, and the connection is closed.  Control characters that survive the
 * parse (RFC 9110 allows only HTAB in a field value) are looked for in the
 * values, and in the target when libmicrohttpd logs it (before it cuts
 * and unescapes it in place).  One case cannot be told apart: a NUL right
 * before a bare LF looks like CRLF once parsed (nothing follows it on the
 * line, so nothing hides behind it).
 *
 * Runs inside libmicrohttpd's callback: nothing here may throw.
 */
#include "postgres.h"

#include "ingest/http.h"

/* What the header walk found. */
typedef struct FramingCheck
{
	int			content_lengths;
	bool		content_length_digits;	/* every one is a plain decimal */
	int			transfer_encodings;
	bool		chunked_only;	/* every Transfer-Encoding is "chunked" */
	bool		bad_name;		/* a name that is not an RFC 9110 token */
	/* accounting for the raw head, line by line */
	const char *pos;			/* end of the last line's content */
	const char *end;			/* end of the head */
	int			eol;			/* length of the first line end: 1 (LF) or 2 (CRLF) */
	bool		unaccounted;	/* bytes the parse does not explain (a NUL, a fold) */
	bool		control;		/* a control character in a header value */
} FramingCheck;

/* Is c a control character RFC 9110 forbids in a field value (all but HTAB)? */
static bool
is_forbidden_control(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* Does s hold a forbidden control character within len bytes? */
bool
http_framing_has_control(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (is_forbidden_control((unsigned char) s[i]))
			return true;
	return false;
}

/*
 * Moves from the end of one line's content to next, the start of the
 * following one: exactly one line end must lie between them, as long as
 * the head's first.  False when the bytes between are not a line end.
 */
static bool
skip_line_end(FramingCheck *check, const char *next)
{
	ptrdiff_t	gap = next - check->pos;

	if (next < check->pos || next > check->end)
		return false;
	if (check->eol == 0 && (gap == 1 || gap == 2))
		check->eol = (int) gap;
	if (gap != check->eol)
		return false;
	check->pos = next;
	return true;
}

/*
 * Accounts for one header line: a line end since the last one, the name,
 * the colon (now a NUL), optional spaces or tabs, and the value.
 */
static void
account_header(FramingCheck *check, const char *key, size_t key_size,
			   const char *value, size_t value_size)
{
	const char *after_colon = key + key_size + 1;

	if (check->unaccounted || value == NULL || !skip_line_end(check, key) ||
		value < after_colon || value + value_size > check->end)
	{
		check->unaccounted = true;
		return;
	}
	for (const char *p = after_colon; p < value; p++)
		if (*p != ' ' && *p != '\t')
			check->unaccounted = true;
	if (http_framing_has_control(value, value_size))
		check->control = true;
	check->pos = value + value_size;
}

/* tchar of RFC 9110: what a header name may be made of. */
static bool
is_token(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (!isalnum(c) && (c == '\0' || strchr("!#$%&'*+-.^_`|~", c) == NULL))
			return false;
	}
	return true;
}

/* Are all len bytes decimal digits (and at least one)? */
static bool
is_decimal(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isdigit((unsigned char) s[i]))
			return false;
	return true;
}

/* libmicrohttpd's header iterator: notes what matters for framing. */
static enum MHD_Result
note_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
			const char *value, size_t value_size)
{
	FramingCheck *check = cls;

	account_header(check, key, key_size, value, value_size);
	if (!is_token(key, key_size))
		check->bad_name = true;
	if (key_size == 14 && pg_strncasecmp(key, "Content-Length", 14) == 0)
	{
		check->content_lengths++;
		if (value == NULL || !is_decimal(value, value_size))
			check->content_length_digits = false;
	}
	else if (key_size == 17 && pg_strncasecmp(key, "Transfer-Encoding", 17) == 0)
	{
		check->transfer_encodings++;
		if (value == NULL || value_size != 7 || pg_strncasecmp(value, "chunked", 7) != 0)
			check->chunked_only = false;
	}
	return MHD_YES;
}

/*
 * Accounts for the request line: the method, the NUL libmicrohttpd wrote
 * over the space after it (and any further spaces), the target as
 * received, one NUL over the space before the version, the version.
 * False when the target held a NUL or the pieces are not where they
 * should be.  Starts the line walk at the end of the version.
 */
static bool
account_request_line(FramingCheck *check, const HttpRequest *req, const char *method,
					 const char *version)
{
	const char *method_end = method + strlen(method);

	if (req->raw_uri == NULL || req->raw_uri <= method_end || version < req->raw_uri ||
		version > check->end)
		return false;
	for (const char *p = method_end + 1; p < req->raw_uri; p++)
		if (*p != ' ')
			return false;
	if (req->raw_uri + req->raw_uri_len + 1 != version)
		return false;
	check->pos = version + strlen(version);
	return check->pos <= check->end;
}

/* Does the head end right after the last line, with one empty line? */
static bool
account_head_end(FramingCheck *check)
{
	ptrdiff_t	gap = check->end - check->pos;

	return check->eol == 0 ? (gap == 2 || gap == 4) : gap == 2 * check->eol;
}

/*
 * Walks the head: every byte accounted for, control characters noted,
 * framing headers counted.  False when the head's length is unknown.
 */
static bool
walk_head(FramingCheck *check, const HttpRequest *req, const char *method,
		  const char *version)
{
	const union MHD_ConnectionInfo *size =
		MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);

	if (size == NULL || method == NULL || version == NULL)
		return false;
	check->end = method + size->header_size;
	check->unaccounted = !account_request_line(check, req, method, version);
	(void) MHD_get_connection_values_n(req->conn, MHD_HEADER_KIND, note_header, check);
	if (!check->unaccounted && !account_head_end(check))
		check->unaccounted = true;
	return true;
}

/*
 * Null when the request's head can be read one way only; else the status
 * to answer and, in *message, why.  The connection is then closed after
 * the answer: what follows on it cannot be trusted to start a request.
 */
unsigned int
http_framing_refusal(const HttpRequest *req, const char *method, const char *version,
					 const char **message)
{
	FramingCheck check = {0, true, 0, true, false};

	if (!walk_head(&check, req, method, version) || check.unaccounted)
		*message = "The request head holds a NUL byte, a folded header line or mixed line ends: every header line must be \"name: value\", end in CRLF and hold no NUL.";
	else if (check.control || req->raw_uri_control)
		*message = "The request head holds a control character: RFC 9110 allows none in the target, and only horizontal tab in a header value.";
	else if (check.bad_name)
		*message = "A header name is not a valid token (no spaces before the colon).";
	else if (check.content_lengths > 1)
		*message = "More than one Content-Length header: the body's length must be given once.";
	else if (check.content_lengths == 1 && !check.content_length_digits)
		*message = "Content-Length must be a decimal number of bytes.";
	else if (check.content_lengths > 0 && check.transfer_encodings > 0)
		*message = "Both Content-Length and Transfer-Encoding: send one of them.";
	else if (check.transfer_encodings > 0 && !(check.transfer_encodings == 1 && check.chunked_only))
	{
		*message = "Unsupported Transfer-Encoding: only chunked is implemented.";
		return MHD_HTTP_NOT_IMPLEMENTED;
	}
	else
		return 0;
	return MHD_HTTP_BAD_REQUEST;
}
