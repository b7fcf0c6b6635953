/*
 * notify_conninfo.c — where the NOTIFY listener connects to.
 *
 * By default, to this very server over its first Unix socket directory
 * (unix_socket_directories, the port PostgreSQL listens on), as the
 * bootstrap superuser, in runra_obs.database.  Anything given in
 * runra_obs.notify_conninfo (a key=value string or a postgresql:// URI)
 * overrides those defaults key by key, so "user=listener" alone is enough
 * to connect as another role.  The connection only LISTENs: the role needs
 * nothing beyond the right to connect.
 */
#include "postgres.h"

#include "libpq-fe.h"
#include "postmaster/postmaster.h"
#include "utils/varlena.h"

#include "guc.h"
#include "ingest/notify.h"

/* Sets keyword to value, replacing an earlier value for the same keyword. */
static void
set_param(NotifyConnParams *params, const char *keyword, const char *value)
{
	for (int i = 0; i < params->n; i++)
	{
		if (strcmp(params->keywords[i], keyword) == 0)
		{
			params->values[i] = value;
			return;
		}
	}
	if (params->n >= NOTIFY_MAX_PARAMS)
		return;					/* libpq has fewer keywords than this */
	params->keywords[params->n] = keyword;
	params->values[params->n] = value;
	params->n++;
	params->keywords[params->n] = NULL;
	params->values[params->n] = NULL;
}

/*
 * The first directory of unix_socket_directories, or "localhost" when the
 * server has no Unix socket (then TCP on the same port is tried).
 */
static const char *
default_host(void)
{
	char	   *raw = pstrdup(Unix_socket_directories ? Unix_socket_directories : "");
	List	   *dirs = NIL;

	if (SplitDirectoriesString(raw, ',', &dirs) && dirs != NIL)
		return (const char *) linitial(dirs);
	return "localhost";
}

/* The defaults: this server's own socket, as superuser, in runra_obs.database. */
static void
set_defaults(NotifyConnParams *params, const char *superuser)
{
	set_param(params, "host", default_host());
	set_param(params, "port", psprintf("%d", PostPortNumber));
	set_param(params, "user", superuser);
	set_param(params, "dbname", runra_database);
	set_param(params, "application_name", "runra_obs notify listener");
	set_param(params, "client_encoding", "UTF8");
	/* a listening session is idle by design: do not let a timeout end it */
	set_param(params, "options", "-c idle_session_timeout=0");
	/* enforced by notify_conn.c: libpq does not time out PQconnectPoll */
	set_param(params, "connect_timeout", "10");
}

/*
 * Fills params for PQconnectStartParams.  Returns false with *error set
 * when runra_obs.notify_conninfo cannot be parsed.
 */
bool
notify_conn_params(NotifyConnParams *params, const char *superuser, char **error)
{
	PQconninfoOption *options;
	char	   *parse_error = NULL;

	params->n = 0;
	params->keywords[0] = params->values[0] = NULL;
	set_defaults(params, superuser);
	if (runra_notify_conninfo == NULL || runra_notify_conninfo[0] == '\0')
		return true;
	options = PQconninfoParse(runra_notify_conninfo, &parse_error);
	if (options == NULL)
	{
		*error = psprintf("invalid runra_obs.notify_conninfo: %s",
						  parse_error ? parse_error : "out of memory");
		if (parse_error)
			PQfreemem(parse_error);
		return false;
	}
	for (PQconninfoOption *o = options; o->keyword != NULL; o++)
	{
		if (o->val != NULL && o->val[0] != '\0')
			set_param(params, pstrdup(o->keyword), pstrdup(o->val));
	}
	PQconninfoFree(options);
	return true;
}

/*
 * connect_timeout in seconds (0: wait forever), as libpq reads it.  The
 * non-blocking connect does not enforce it, so notify_conn.c does.
 */
int
notify_conn_timeout_s(const NotifyConnParams *params)
{
	for (int i = params->n - 1; i >= 0; i--)
	{
		if (strcmp(params->keywords[i], "connect_timeout") == 0)
			return Max(atoi(params->values[i]), 0);
	}
	return 0;
}
