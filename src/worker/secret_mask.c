/*
 * secret_mask.c — credentials out of error texts before they are stored or
 * shown (see secret_mask.h for who calls it).
 *
 * libcurl's messages and a remote server's answers can quote a URL with
 * user:password@, a query string with a token, or the token itself (a
 * receiver that echoes the Authorization it refused).  Two passes:
 *
 *   1. the exact secrets the caller knows (a destination's token and
 *      headers, a contact point's Authorization or Slack URL), wherever
 *      they appear, and the start of one where the text was cut off
 *      inside it;
 *   2. what looks like a credential: the userinfo of any URL (its
 *      user:password@ becomes ***@), the value of a query parameter, header or JSON
 *      member whose name says token, key, secret, password, signature,
 *      auth ..., and the credential after "Bearer " or "Basic ".
 *
 * The list views (destination_list, contact_point_list) show configured
 * URLs through the second pass too (runra_obs._mask_credentials()), so a
 * token in a query string is not read back by every reader.
 *
 * Masking too much costs a word of an error message; masking too little
 * hands a reader of runra_obs.worker_status a credential.  Pure string
 * work: it never throws but for out of memory.
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "worker/secret_mask.h"

/* Parts of names that say the value is a credential (matched lowercased). */
static const char *const secret_words[] = {
	"token", "secret", "pass", "pwd", "key", "signature", "auth", "credential",
	"cookie", "session"
};

/* Authorization schemes whose next word is the credential. */
static const char *const schemes[] = {"bearer", "basic"};

/* ... and those too, after a name that says credential (Authorization: Token x). */
static const char *const value_schemes[] = {"bearer", "basic", "token", "digest", "negotiate"};

/* Is c a character of a name (query parameter, header, JSON member)? */
static bool
is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '_' || c == '-' || c == '.';
}

/*
 * Does the character at p end an unquoted value or credential?  A colon
 * does where a blank follows (message punctuation: "key=x: refused"), not
 * inside a value ("user:password").
 */
static bool
ends_value(const char *p)
{
	return *p == '\0' || strchr(" \t\r\n\"',;<>()[]{}&#", *p) != NULL ||
		(p[0] == ':' && (p[1] == ' ' || p[1] == '\0'));
}

/* Does the name (len bytes) say its value is a credential? */
static bool
names_secret(const char *name, int len)
{
	char	   *lower = pnstrdup(name, len);

	for (char *p = lower; *p; p++)
		*p = pg_ascii_tolower((unsigned char) *p);
	for (int i = 0; i < (int) lengthof(secret_words); i++)
		if (strstr(lower, secret_words[i]) != NULL)
			return true;
	return false;
}

/*
 * When the word at p (len bytes) is one of the schemes and a blank follows,
 * the length of the word and its blanks; else 0.
 */
static int
scheme_length(const char *p, int len, const char *const *words, int n_words)
{
	int			n = len;

	for (int i = 0; i < n_words; i++)
	{
		if (len != (int) strlen(words[i]) || pg_strncasecmp(p, words[i], len) != 0)
			continue;
		if (p[n] != ' ' && p[n] != '\t')
			return 0;
		while (p[n] == ' ' || p[n] == '\t')
			n++;
		return n;
	}
	return 0;
}

/* The end of an unquoted value starting at p. */
static const char *
unquoted_end(const char *p)
{
	while (!ends_value(p))
		p++;
	return p;
}

/* The closing quote of a value opened with quote (JSON's \" skipped), or its end. */
static const char *
quoted_end(const char *p, char quote)
{
	while (*p && *p != quote)
		p += (p[0] == '\\' && p[1] != '\0') ? 2 : 1;
	return p;
}

/* The length of the word of name characters at p. */
static int
word_length(const char *p)
{
	int			n = 0;

	while (is_name_char(p[n]))
		n++;
	return n;
}

/*
 * Appends the value after a credential's name at p (its separator, quotes
 * and scheme kept, the value itself masked); returns where it ends.  When
 * no "=" or ":" value follows, nothing is appended and p is returned.
 */
static const char *
mask_value(StringInfo out, const char *p)
{
	const char *q = p;
	const char *end;
	char		quote = '\0';
	int			scheme;

	if (*q == '"' || *q == '\'')
		q++;					/* the closing quote of a quoted name */
	while (*q == ' ' || *q == '\t')
		q++;
	if (*q != '=' && !(*q == ':' && strncmp(q, "://", 3) != 0))
		return p;
	q++;
	while (*q == ' ' || *q == '\t')
		q++;
	if (*q == '"' || *q == '\'')
		quote = *q++;
	scheme = scheme_length(q, word_length(q), value_schemes, lengthof(value_schemes));
	q += scheme;
	appendBinaryStringInfo(out, p, q - p);
	end = quote ? quoted_end(q, quote) : unquoted_end(q);
	if (end > q)
		appendStringInfoString(out, SECRET_MASK);
	return end;
}

/*
 * Appends the word at p: a scheme's credential masked, a credential's name
 * followed by its masked value; returns where what it took ends.
 */
static const char *
mask_word(StringInfo out, const char *p)
{
	int			len = word_length(p);
	int			scheme = scheme_length(p, len, schemes, lengthof(schemes));
	const char *end;

	if (scheme > 0)
	{
		appendBinaryStringInfo(out, p, scheme);
		end = unquoted_end(p + scheme);
		if (end > p + scheme)
			appendStringInfoString(out, SECRET_MASK);
		return end;
	}
	appendBinaryStringInfo(out, p, len);
	return names_secret(p, len) ? mask_value(out, p + len) : p + len;
}

/* At "://": appends it, with the URL's user name and password masked. */
static const char *
mask_userinfo(StringInfo out, const char *p)
{
	const char *host = p + 3;
	const char *at = NULL;

	for (const char *q = host; !ends_value(q) && *q != '/' && *q != '?'; q++)
		if (*q == '@')
			at = q;
	appendStringInfoString(out, "://");
	if (at == NULL)
		return host;
	appendStringInfoString(out, SECRET_MASK "@");
	return at + 1;
}

/* Pass 2: masks what looks like a credential. */
static char *
mask_shapes(const char *s)
{
	StringInfoData out;

	initStringInfo(&out);
	while (*s)
	{
		if (strncmp(s, "://", 3) == 0)
			s = mask_userinfo(&out, s);
		else if (is_name_char(*s))
			s = mask_word(&out, s);
		else
			appendStringInfoChar(&out, *s++);
	}
	return out.data;
}

/* Every occurrence of secret in s masked. */
static char *
replace_all(char *s, const char *secret)
{
	size_t		len = strlen(secret);
	char	   *hit = strstr(s, secret);
	StringInfoData out;

	if (hit == NULL)
		return s;
	initStringInfo(&out);
	for (; hit != NULL; s = hit + len, hit = strstr(s, secret))
	{
		appendBinaryStringInfo(&out, s, hit - s);
		appendStringInfoString(&out, SECRET_MASK);
	}
	appendStringInfoString(&out, s);
	return out.data;
}

/*
 * A text cut off at a byte count (a remote answer kept up to 300 bytes)
 * may end with the start of a secret: that start is masked too.
 */
static char *
mask_cut_secret(char *s, const char *secret)
{
	size_t		n = strlen(s);
	size_t		len = strlen(secret);

	for (size_t k = Min(n, len - 1); k >= SECRET_MASK_MIN_LEN; k--)
		if (memcmp(s + n - k, secret, k) == 0)
			return psprintf("%.*s%s", (int) (n - k), s, SECRET_MASK);
	return s;
}

/* Longer secrets first: one that holds another is masked whole. */
static int
longer_first(const ListCell *a, const ListCell *b)
{
	size_t		la = strlen(lfirst(a));
	size_t		lb = strlen(lfirst(b));

	return la > lb ? -1 : la < lb ? 1 : 0;
}

/*
 * text with its credentials masked (a new palloc'd string; NULL stays
 * NULL): the exact secrets given (a List of C strings, may be NIL), then
 * whatever looks like one (see the file comment).
 */
char *
secret_mask(const char *text, List *secrets)
{
	char	   *s;
	List	   *sorted;
	ListCell   *lc;

	if (text == NULL)
		return NULL;
	s = pstrdup(text);
	sorted = list_copy(secrets);
	list_sort(sorted, longer_first);
	foreach(lc, sorted)
		s = replace_all(s, lfirst(lc));
	foreach(lc, sorted)
		s = mask_cut_secret(s, lfirst(lc));
	list_free(sorted);
	return mask_shapes(s);
}

/*
 * Adds value to the secrets (a copy, in the current memory context), and,
 * when it is an Authorization value ("Bearer xyz"), its credential alone
 * too.  Values too short to look for are left out.
 */
List *
secret_mask_add(List *secrets, const char *value)
{
	int			scheme;

	if (value == NULL || strlen(value) < SECRET_MASK_MIN_LEN)
		return secrets;
	secrets = lappend(secrets, pstrdup(value));
	scheme = scheme_length(value, word_length(value), value_schemes, lengthof(value_schemes));
	if (scheme > 0)
		secrets = secret_mask_add(secrets, value + scheme);
	return secrets;
}

/*
 * Adds a URL that is itself a secret (Slack's): the whole URL, and what
 * follows its host (path and query), which an answer may quote alone.
 */
List *
secret_mask_add_url(List *secrets, const char *url)
{
	const char *host = url ? strstr(url, "://") : NULL;

	secrets = secret_mask_add(secrets, url);
	if (host != NULL)
		secrets = secret_mask_add(secrets, host + 3 + strcspn(host + 3, "/?#"));
	return secrets;
}

/* Adds the value of each "Name: value" line (a destination's secret headers). */
List *
secret_mask_add_header_values(List *secrets, const char *header_lines)
{
	const char *line = header_lines;

	while (line != NULL && *line)
	{
		const char *end = line + strcspn(line, "\n");
		const char *colon = memchr(line, ':', end - line);

		if (colon != NULL)
		{
			colon++;
			while (colon < end && (*colon == ' ' || *colon == '\t'))
				colon++;
			secrets = secret_mask_add(secrets, pnstrdup(colon, end - colon));
		}
		line = *end ? end + 1 : end;
	}
	return secrets;
}

PG_FUNCTION_INFO_V1(runra_mask_credentials);

/*
 * SQL: runra_obs._mask_credentials(text): the text with what looks like a
 * credential (the second pass above) as ***, for the list views.
 */
Datum
runra_mask_credentials(PG_FUNCTION_ARGS)
{
	char	   *input = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_TEXT_P(cstring_to_text(secret_mask(input, NIL)));
}
