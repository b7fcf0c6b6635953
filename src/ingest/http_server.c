/*
 * http_server.c — the libmicrohttpd daemons of one HTTP worker.
 *
 * One daemon per address in runra_obs.http_listen_addresses, each in
 * "external select" mode with epoll (MHD_USE_EPOLL, no internal thread): the
 * worker puts each daemon's epoll fd in its WaitEventSet, waits no longer
 * than MHD_get_timeout says, and calls MHD_run after every wake-up.  Every
 * worker binds the same port with SO_REUSEPORT, so the kernel spreads new
 * connections over them.
 *
 * With runra_obs.http_tls_cert_file and _key_file set, every daemon speaks
 * TLS only (GnuTLS, TLS 1.2 or later).  When a reload changes them (or
 * the files' contents), new daemons are started beside the old ones on
 * the same port (SO_REUSEPORT makes that possible) and only once all of
 * them listen are the old ones stopped, so a bad certificate is logged and
 * the old one kept; at the worker's first start it is an ERROR.
 *
 * libmicrohttpd's log lines and panics never call into PostgreSQL's error
 * machinery from inside the library: log lines are buffered and written to
 * the server log after the library returns; a panic exits the worker with
 * code 1, so the postmaster restarts just this worker after
 * bgw_restart_time instead of the whole cluster.
 */
#include "postgres.h"

#include <limits.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/varlena.h"

#include "guc.h"
#include "ingest/http.h"

#define MAX_DAEMONS 16
#define LOG_BUFFER 1024
/* GnuTLS priorities: its defaults, without the versions before TLS 1.2 */
#define TLS_PRIORITIES "NORMAL:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1"

static struct MHD_Daemon *daemons[MAX_DAEMONS];
static int	n_daemons = 0;
static HttpTls *tls = NULL;		/* what the daemons serve with; NULL: plain HTTP */
static int	my_index = 0;

/* libmicrohttpd's log lines since the last report, written after MHD_run */
static char log_buffer[LOG_BUFFER];
static volatile bool log_pending = false;

/*
 * Keeps libmicrohttpd's messages, joined by "; " (a failed start logs the
 * cause first, then that it failed); the main loop logs them (no ereport
 * here).
 */
static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	size_t		used = log_pending ? strlen(log_buffer) : 0;

	if (used > 0 && used + 2 < sizeof(log_buffer))
	{
		memcpy(log_buffer + used, "; ", 3);
		used += 2;
	}
	vsnprintf(log_buffer + used, sizeof(log_buffer) - used, fmt, ap);
	used = strlen(log_buffer);
	while (used > 0 && (log_buffer[used - 1] == '\n' || log_buffer[used - 1] == '.'))
		log_buffer[--used] = '\0';
	log_pending = true;
}

/* Writes libmicrohttpd's buffered log line, if any, to the server log. */
void
http_server_report_log(void)
{
	if (!log_pending)
		return;
	log_pending = false;
	ereport(LOG, (errmsg("runra_obs http: libmicrohttpd: %s", log_buffer)));
}

/*
 * libmicrohttpd found its own state broken.  It must not return; abort()
 * would make the postmaster restart every backend, so exit with code 1,
 * which restarts only this worker.
 */
static void
mhd_panic(void *cls, const char *file, unsigned int line, const char *reason)
{
	write_stderr("runra_obs http: libmicrohttpd panic at %s:%u: %s\n",
				 file ? file : "?", line, reason ? reason : "(no reason given)");
	proc_exit(1);
}

/* The daemon options that differ between HTTPS and plain HTTP. */
static void
tls_options(struct MHD_OptionItem *options, unsigned int *flags)
{
	int			n = 0;

	if (tls != NULL)
	{
		*flags |= MHD_USE_TLS;
		options[n++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_MEM_CERT, 0, tls->cert};
		options[n++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_MEM_KEY, 0, tls->key};
		options[n++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *) TLS_PRIORITIES};
	}
	options[n] = (struct MHD_OptionItem) {MHD_OPTION_END, 0, NULL};
}

/* Starts one daemon listening on addr; ERROR if it cannot. */
static void
start_daemon(const struct sockaddr *addr, const char *host)
{
	unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	struct MHD_OptionItem options[4];
	struct MHD_Daemon *d;

	if (addr->sa_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	tls_options(options, &flags);
	if (n_daemons >= MAX_DAEMONS)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("runra_obs.http_listen_addresses names more than %d addresses", MAX_DAEMONS)));
	log_buffer[0] = '\0';
	log_pending = false;
	d = MHD_start_daemon(flags, (uint16_t) runra_http_port, NULL, NULL,
						 http_access_handler, (void *) (intptr_t) n_daemons,
						 MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,	/* must come first */
						 MHD_OPTION_SOCK_ADDR, addr,
						 MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int) 1,
						 MHD_OPTION_CONNECTION_LIMIT, http_conn_hard_limit(),
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) runra_http_connection_timeout_s,
						 MHD_OPTION_NOTIFY_COMPLETED, http_request_completed, NULL,
						 MHD_OPTION_NOTIFY_CONNECTION, http_conn_notify, NULL,
						 MHD_OPTION_URI_LOG_CALLBACK, http_uri_logger, (void *) (intptr_t) n_daemons,
						 MHD_OPTION_ARRAY, options,
						 MHD_OPTION_END);
	if (d == NULL)
	{
		log_pending = false;
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("runra_obs http could not listen on %s port %d", host, runra_http_port),
				 errdetail("libmicrohttpd: %s.", log_buffer[0] ? log_buffer : "no reason given"),
				 tls != NULL ?
				 errhint("Check runra_obs.http_tls_cert_file (\"%s\") and runra_obs.http_tls_key_file (\"%s\"): PEM, the key matching the certificate.",
						 tls->cert_file, tls->key_file) :
				 errhint("Check runra_obs.http_listen_addresses and runra_obs.http_port; another program may hold the port without SO_REUSEPORT.")));
	}
	daemons[n_daemons++] = d;
}

/* Starts a daemon on every address one host name or literal resolves to. */
static void
listen_on(const char *host)
{
	struct addrinfo hints = {0};
	struct addrinfo *res;
	char		port[16];
	int			rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", runra_http_port);
	rc = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, port, &hints, &res);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("invalid address \"%s\" in runra_obs.http_listen_addresses: %s",
						host, gai_strerror(rc))));
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
		start_daemon(ai->ai_addr, host);
	freeaddrinfo(res);
}

/* Starts a daemon on every address of runra_obs.http_listen_addresses. */
static void
listen_on_all(void)
{
	char	   *raw = pstrdup(runra_http_listen_addresses);
	List	   *hosts;
	ListCell   *lc;

	if (!SplitIdentifierString(raw, ',', &hosts))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("runra_obs.http_listen_addresses is not a comma-separated list: \"%s\"",
						runra_http_listen_addresses)));
	foreach(lc, hosts)
		listen_on((const char *) lfirst(lc));
	if (n_daemons == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("runra_obs.http_listen_addresses is empty"),
				 errhint("Set runra_obs.http_workers = 0 to run without the HTTP server.")));
}

/* Says where this worker listens, and how. */
static void
report_listening(void)
{
	if (tls != NULL)
		ereport(LOG,
				(errmsg("runra_obs http worker %d listening on %s port %d (HTTPS, certificate \"%s\")",
						my_index, runra_http_listen_addresses, runra_http_port, tls->cert_file)));
	else
		ereport(LOG,
				(errmsg("runra_obs http worker %d listening on %s port %d",
						my_index, runra_http_listen_addresses, runra_http_port)));
}

/* Starts listening on every address; an ERROR when it cannot (or the TLS files are bad). */
void
http_server_start(int worker_index)
{
	my_index = worker_index;
	MHD_set_panic_func(mhd_panic, NULL);
	tls = http_tls_read();
	listen_on_all();
	report_listening();
}

/* Stops the first n daemons of list. */
static void
stop_daemons(struct MHD_Daemon **list, int n)
{
	for (int i = 0; i < n; i++)
		MHD_stop_daemon(list[i]);
}

/*
 * Starts daemons serving with next beside the running ones; true when all
 * of them listen.  Otherwise the new ones are stopped, the error logged,
 * and the running ones stay as they were.
 */
static bool
start_beside(HttpTls *next, struct MHD_Daemon **old, int n_old)
{
	MemoryContext context = CurrentMemoryContext;
	HttpTls    *previous = tls;
	volatile bool ok = false;

	memcpy(old, daemons, sizeof(daemons[0]) * n_old);
	n_daemons = 0;
	tls = next;
	PG_TRY();
	{
		listen_on_all();
		ok = true;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		EmitErrorReport();
		FlushErrorState();
		stop_daemons(daemons, n_daemons);
		memcpy(daemons, old, sizeof(daemons[0]) * n_old);
		n_daemons = n_old;
		tls = previous;
	}
	PG_END_TRY();
	return ok;
}

/* The settings' TLS files, or NULL after logging why they cannot be read. */
static bool
read_tls_files(HttpTls **next)
{
	MemoryContext context = CurrentMemoryContext;
	volatile bool ok = false;

	PG_TRY();
	{
		*next = http_tls_read();
		ok = true;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		EmitErrorReport();
		FlushErrorState();
	}
	PG_END_TRY();
	return ok;
}

/*
 * After SIGHUP: when the TLS settings or files changed, serve with the
 * new ones.  True when the daemons were replaced (the caller must rebuild
 * its wait set: their epoll fds changed).  Connections open on the old
 * daemons are closed; the caller has answered every queued request.
 */
bool
http_server_reload_tls(void)
{
	HttpTls    *next = NULL;
	HttpTls    *previous = tls;
	struct MHD_Daemon *old[MAX_DAEMONS];
	int			n_old = n_daemons;

	if (!read_tls_files(&next))
	{
		ereport(LOG,
				(errmsg("runra_obs http worker %d keeps serving with its previous TLS settings", my_index)));
		return false;
	}
	if (http_tls_same(next, tls))
	{
		http_tls_free(next);
		return false;
	}
	if (!start_beside(next, old, n_old))
	{
		ereport(LOG,
				(errmsg("runra_obs http worker %d keeps serving with its previous TLS settings", my_index)));
		http_tls_free(next);
		return false;
	}
	stop_daemons(old, n_old);
	http_tls_free(previous);
	report_listening();
	return true;
}

/* Stops every daemon (queued requests must have been answered and resumed). */
void
http_server_stop(void)
{
	for (int i = 0; i < n_daemons; i++)
		MHD_stop_daemon(daemons[i]);
	n_daemons = 0;
}

/* How many daemons (listening addresses) this worker runs. */
int
http_server_count(void)
{
	return n_daemons;
}

/* The epoll fd of daemon i, for the worker's WaitEventSet. */
int
http_server_epoll_fd(int i)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemons[i], MHD_DAEMON_INFO_EPOLL_FD);

	if (info == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("libmicrohttpd has no epoll fd for runra_obs http")));
	return info->epoll_fd;
}

/* Connections open on all daemons of this worker. */
int
http_server_connections(void)
{
	int			n = 0;

	for (int i = 0; i < n_daemons; i++)
	{
		const union MHD_DaemonInfo *info =
			MHD_get_daemon_info(daemons[i], MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

		if (info != NULL)
			n += (int) info->num_connections;
	}
	return n;
}

/* How long the worker may sleep: the shortest libmicrohttpd timeout, or -1. */
long
http_server_timeout_ms(void)
{
	long		shortest = -1;

	for (int i = 0; i < n_daemons; i++)
	{
		MHD_UNSIGNED_LONG_LONG t;

		if (MHD_get_timeout(daemons[i], &t) == MHD_YES)
		{
			long		ms = (long) Min(t, (MHD_UNSIGNED_LONG_LONG) LONG_MAX);

			if (shortest < 0 || ms < shortest)
				shortest = ms;
		}
	}
	return shortest;
}

/*
 * Lets every daemon accept, read, call back and write what is ready, then
 * shuts down the connections whose request head is late (closed on the
 * next run).
 */
void
http_server_run(void)
{
	for (int i = 0; i < n_daemons; i++)
		(void) MHD_run(daemons[i]);
	http_conn_enforce_deadlines();
	http_server_report_log();
}
