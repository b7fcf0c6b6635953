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

static struct MHD_Daemon *daemons[MAX_DAEMONS];
static int	n_daemons = 0;

/* libmicrohttpd's last log line, written to the server log after MHD_run */
static char log_buffer[LOG_BUFFER];
static volatile bool log_pending = false;

/* Keeps libmicrohttpd's message; the main loop logs it (no ereport here). */
static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	vsnprintf(log_buffer, sizeof(log_buffer), fmt, ap);
	log_pending = true;
}

/* Writes libmicrohttpd's buffered log line, if any, to the server log. */
void
http_server_report_log(void)
{
	size_t		len;

	if (!log_pending)
		return;
	log_pending = false;
	len = strlen(log_buffer);
	if (len > 0 && log_buffer[len - 1] == '\n')
		log_buffer[len - 1] = '\0';
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

/* Starts one daemon listening on addr; ERROR if it cannot. */
static void
start_daemon(const struct sockaddr *addr, const char *host)
{
	unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	struct MHD_Daemon *d;

	if (addr->sa_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (n_daemons >= MAX_DAEMONS)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("runra_obs.http_listen_addresses names more than %d addresses", MAX_DAEMONS)));
	log_buffer[0] = '\0';
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
						 MHD_OPTION_END);
	if (d == NULL)
	{
		log_pending = false;
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("runra_obs http could not listen on %s port %d", host, runra_http_port),
				 errdetail("libmicrohttpd: %s", log_buffer[0] ? log_buffer : "no reason given"),
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

/* Starts listening on every address of runra_obs.http_listen_addresses. */
void
http_server_start(int worker_index)
{
	char	   *raw = pstrdup(runra_http_listen_addresses);
	List	   *hosts;
	ListCell   *lc;

	MHD_set_panic_func(mhd_panic, NULL);
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
	ereport(LOG,
			(errmsg("runra_obs http worker %d listening on %s port %d",
					worker_index, runra_http_listen_addresses, runra_http_port)));
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
