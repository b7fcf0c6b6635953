/*
 * json_sanitize.c — repairs the three kinds of text that JSONB refuses, so
 * that they never cost an event:
 *
 *   - bytes that are not valid UTF-8 (including raw NUL bytes),
 *   - the escape \u0000,
 *   - \uXXXX escapes of lone UTF-16 surrogates.
 *
 * Each becomes U+FFFD, the Unicode replacement character.  Escapes are
 * rewritten in place (\u0000 and \ufffd have the same length), so error
 * positions found later still point into the text the client sent.  Only
 * invalid UTF-8, which is rare, needs a new buffer.
 *
 * Backslashes can only appear inside JSON strings (anywhere else the JSON
 * parser rejects the text), so escapes are found with memchr without
 * tracking string state.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "store/json_sanitize.h"

static const char replacement_utf8[] = "\xEF\xBF\xBD";

/* Value of four hex digits at p, or -1 if they are not all hex. */
static int
hex4(const char *p, const char *end)
{
	int			value = 0;

	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++)
	{
		char		c = p[i];
		int			digit;

		if (c >= '0' && c <= '9')
			digit = c - '0';
		else if (c >= 'a' && c <= 'f')
			digit = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			digit = c - 'A' + 10;
		else
			return -1;
		value = value * 16 + digit;
	}
	return value;
}

/*
 * Rewrites \u0000 and lone-surrogate escapes to \uFFFD in place; returns how
 * many it rewrote.
 */
static int
repair_escapes(char *text, int len)
{
	char	   *p = text;
	char	   *end = text + len;
	int			repaired = 0;

	while ((p = memchr(p, '\\', end - p)) != NULL)
	{
		int			code;

		if (p + 1 >= end)
			break;
		if (p[1] != 'u' || (code = hex4(p + 2, end)) < 0)
		{
			p += 2;				/* \n, \\, \" ...: skip the escaped char */
			continue;
		}
		if (code >= 0xD800 && code <= 0xDBFF &&
			end - p >= 12 && p[6] == '\\' && p[7] == 'u')
		{
			int			low = hex4(p + 8, end);

			if (low >= 0xDC00 && low <= 0xDFFF)
			{
				p += 12;		/* a proper surrogate pair */
				continue;
			}
		}
		if (code == 0 || (code >= 0xD800 && code <= 0xDFFF))
		{
			memcpy(p + 2, "FFFD", 4);
			repaired++;
		}
		p += 6;
	}
	return repaired;
}

/* Copies text into a new buffer with each invalid UTF-8 byte replaced. */
static char *
repair_utf8(const char *text, int *len, int *repaired)
{
	StringInfoData out;
	int			pos = 0;

	initStringInfo(&out);
	while (pos < *len)
	{
		int			valid = pg_encoding_verifymbstr(PG_UTF8, text + pos, *len - pos);

		appendBinaryStringInfo(&out, text + pos, valid);
		pos += valid;
		if (pos < *len)
		{
			appendBinaryStringInfo(&out, replacement_utf8, 3);
			(*repaired)++;
			pos++;				/* drop one bad byte, then look again */
		}
	}
	*len = out.len;
	return out.data;
}

/*
 * Returns text (or a repaired copy of it) that JSONB can hold; *len is
 * updated and *replacements counts what was replaced.
 */
char *
json_sanitize(char *text, int *len, int *replacements)
{
	int			repaired = 0;

	if (pg_encoding_verifymbstr(PG_UTF8, text, *len) != *len)
		text = repair_utf8(text, len, &repaired);
	repaired += repair_escapes(text, *len);
	*replacements = repaired;
	return text;
}
