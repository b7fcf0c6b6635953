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
 * transfer coding other than chunked.  Runs inside libmicrohttpd's
 * callback: nothing here may throw.
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
} FramingCheck;

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
 * Null when the request's headers can be read one way only; else the
 * status to answer and, in *message, why.  The connection is then closed
 * after the answer: what follows on it cannot be trusted to start a
 * request.
 */
unsigned int
http_framing_refusal(struct MHD_Connection *conn, const char **message)
{
	FramingCheck check = {0, true, 0, true, false};

	(void) MHD_get_connection_values_n(conn, MHD_HEADER_KIND, note_header, &check);
	if (check.bad_name)
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
