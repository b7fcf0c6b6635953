/*
 * event_fields.c — the rules for each envelope field of an event.
 *
 *   timestamp  ISO 8601 / RFC 3339 with seconds and a zone: Z or an offset
 *   sandboxId  non-empty, at most 256 bytes
 *   type       family.name, lowercase [a-z0-9_-] segments, at most 128 bytes
 *   traceId    32 hex digits, not all zero (a W3C trace id); stored lowercase
 *
 * The timestamp parser is strict on purpose: PostgreSQL's timestamptz input
 * accepts times without a zone and reads them in the session's time zone,
 * which would silently shift events sent by a sandbox in another zone.
 */
#include "postgres.h"

#include <errno.h>

#include "utils/datetime.h"

#include "store/event_fields.h"

/* Reads exactly n digits at *p; advances *p.  Returns -1 if not digits. */
static int
read_digits(const char **p, int n)
{
	int			value = 0;

	for (int i = 0; i < n; i++)
	{
		char		c = (*p)[i];

		if (c < '0' || c > '9')
			return -1;
		value = value * 10 + (c - '0');
	}
	*p += n;
	return value;
}

/* Reads an optional fraction of a second, rounded to microseconds. */
static bool
read_fraction(const char **p, int64 *usec)
{
	int64		scaled = 0;
	int			digits = 0;
	bool		round_up = false;

	*usec = 0;
	if (**p != '.' && **p != ',')
		return true;
	(*p)++;
	while (**p >= '0' && **p <= '9')
	{
		if (digits < 6)
			scaled = scaled * 10 + (**p - '0');
		else if (digits == 6)
			round_up = (**p >= '5');
		digits++;
		(*p)++;
	}
	if (digits == 0 || digits > 9)
		return false;
	for (int i = digits; i < 6; i++)
		scaled *= 10;
	*usec = scaled + (round_up ? 1 : 0);
	return true;
}

/* Reads the zone: Z, +HH:MM, +HHMM or +HH (and the same with -). */
static bool
read_zone(const char **p, int *offset_s)
{
	int			sign,
				hours,
				minutes = 0;

	if (**p == 'Z' || **p == 'z')
	{
		(*p)++;
		*offset_s = 0;
		return true;
	}
	if (**p != '+' && **p != '-')
		return false;
	sign = (**p == '-') ? -1 : 1;
	(*p)++;
	if ((hours = read_digits(p, 2)) < 0 || hours > 23)
		return false;
	if (**p == ':')
	{
		(*p)++;					/* after a colon the minutes must follow */
		if ((minutes = read_digits(p, 2)) < 0 || minutes > 59)
			return false;
	}
	else if (**p >= '0' && **p <= '9' && ((minutes = read_digits(p, 2)) < 0 || minutes > 59))
		return false;
	*offset_s = sign * (hours * 3600 + minutes * 60);
	return true;
}

/*
 * Parses an ISO 8601 timestamp with a zone.  On failure returns false and
 * points *problem at a phrase saying what is wrong.
 */
bool
parse_iso8601_timestamp(const char *text, TimestampTz *result, const char **problem)
{
	const char *p = text;
	int			year, month, day, hour, minute, second, offset_s;
	int64		usec;
	int64		days;

	*problem = "must look like 2026-06-15T10:30:00.000Z";
	if ((year = read_digits(&p, 4)) < 1 || *p++ != '-' ||
		(month = read_digits(&p, 2)) < 1 || month > 12 || *p++ != '-' ||
		(day = read_digits(&p, 2)) < 1)
		return false;
	if (day > day_tab[isleap(year)][month - 1])
	{
		*problem = "is not a date in the calendar";
		return false;
	}
	if ((*p != 'T' && *p != 't' && *p != ' ') || (p++, false) ||
		(hour = read_digits(&p, 2)) < 0 || hour > 23 || *p++ != ':' ||
		(minute = read_digits(&p, 2)) < 0 || minute > 59 || *p++ != ':' ||
		(second = read_digits(&p, 2)) < 0 || second > 60 ||
		!read_fraction(&p, &usec))
		return false;
	if (!read_zone(&p, &offset_s) || *p != '\0')
	{
		*problem = "needs a time zone: Z or an offset such as +02:00";
		return false;
	}
	days = date2j(year, month, day) - POSTGRES_EPOCH_JDATE;
	*result = ((((days * 24 + hour) * 60 + minute) * 60 + second) - offset_s)
		* USECS_PER_SEC + usec;
	return true;
}

/*
 * Appends ts as "2026-06-15T10:30:00.000000Z", what the parser above reads
 * back as the same instant (for answers and translated bodies).
 */
void
append_iso8601_timestamp(StringInfo out, TimestampTz ts)
{
	int64		days = ts / USECS_PER_DAY;
	int64		usec = ts % USECS_PER_DAY;
	int			year,
				month,
				day;

	if (usec < 0)
	{
		usec += USECS_PER_DAY;
		days--;
	}
	j2date((int) (days + POSTGRES_EPOCH_JDATE), &year, &month, &day);
	appendStringInfo(out, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", year, month, day,
					 (int) (usec / USECS_PER_HOUR), (int) (usec / USECS_PER_MINUTE % 60),
					 (int) (usec / USECS_PER_SEC % 60), (int) (usec % USECS_PER_SEC));
}

/* NULL if the sandbox id is acceptable, else what is wrong with it. */
const char *
check_sandbox_id(const char *id, int len)
{
	if (len == 0)
		return "sandboxId must not be empty";
	if (len > EVENT_SANDBOX_ID_MAX)
		return "sandboxId is longer than 256 bytes";
	return NULL;
}

static inline bool
is_type_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/*
 * NULL if the event type is family.name in lowercase, else what is wrong.
 * Unknown types are fine: the event model grows.
 */
const char *
check_event_type(const char *type, int len)
{
	int			segment = 0;
	int			dots = 0;

	if (len == 0)
		return "type must not be empty";
	if (len > EVENT_TYPE_MAX)
		return "type is longer than 128 bytes";
	for (int i = 0; i < len; i++)
	{
		if (type[i] == '.')
		{
			if (segment == 0)
				break;
			dots++;
			segment = 0;
		}
		else if (is_type_char(type[i]))
			segment++;
		else
			return "type must be lowercase family.name, such as exec.completed";
	}
	if (dots == 0 || segment == 0)
		return "type must be lowercase family.name, such as exec.completed";
	return NULL;
}

/*
 * Copies a 32-hex-digit trace id, lowercased, into out (33 bytes).  False if
 * it is not a valid W3C trace id (wrong length, not hex, or all zeros).
 */
bool
normalize_trace_id(const char *id, int len, char *out)
{
	bool		nonzero = false;

	if (len != EVENT_TRACE_ID_LEN)
		return false;
	for (int i = 0; i < len; i++)
	{
		char		c = id[i];

		if (c >= 'A' && c <= 'F')
			c = c - 'A' + 'a';
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		nonzero |= (c != '0');
		out[i] = c;
	}
	out[len] = '\0';
	return nonzero;
}

/*
 * Can numeric hold this JSON number exactly?  numeric refuses a value with
 * more than 131072 digits before the decimal point or a scale above 16383
 * ("value overflows numeric format"), which would fail the whole batch's
 * write; we refuse such a number in its own event, with a margin: at most
 * 131000 digits before the point and 16000 after, once the exponent (at
 * most +-1000) is applied.  Short numbers without an exponent, nearly all of them, are
 * accepted at once.
 */
bool
json_number_is_storable(const char *token)
{
	const char *p = token;
	long		integral = 0,
				fraction = 0,
				exponent = 0;

	if (strlen(token) <= 64 && strpbrk(token, "eE") == NULL)
		return true;
	if (*p == '-')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
		integral++;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			fraction++;
	if (*p == 'e' || *p == 'E')
	{
		errno = 0;
		exponent = strtol(p + 1, NULL, 10);
		/* older PostgreSQL 15 releases refuse exponents beyond +-1000 */
		if (errno == ERANGE || exponent > 1000 || exponent < -1000)
			return false;
	}
	return integral + exponent <= 131000 && fraction - exponent <= 16000;
}

/*
 * The member of a jsonb object with this exact key, or NULL: one lookup for
 * every reader of stored or received JSON (the OTLP receiver, the Axiom
 * routes, the forwarders).
 */
JsonbValue *
jsonb_member(JsonbContainer *obj, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(obj, JB_FOBJECT, &k);
}
