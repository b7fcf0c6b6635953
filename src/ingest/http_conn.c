/*
 * http_conn.c — what one HTTP worker knows about each open connection: the
 * deadline of the request head, and whether the connection is over a limit.
 *
 * libmicrohttpd's own timeout is an idle timeout: a client that sends a
 * header line now and then never trips it, and a few hundred such clients
 * hold every connection of a worker.  So the head of each request must
 * have arrived within runra_obs.http_header_timeout, counted from accept
 * (or, on a kept-alive connection, from the end of the previous answer);
 * the worker checks after every MHD_run and shuts down the socket of a
 * connection past it (libmicrohttpd then sees the end of the stream and
 * closes it: no answer can be queued before a head has arrived).
 *
 * Limits: runra_obs.http_max_connections per worker and
 * runra_obs.http_max_connections_per_address over all workers
 * (http_peers.c).  libmicrohttpd's own limit, when reached, leaves new
 * connections waiting in the kernel's backlog without a word, so its
 * limit is set a reserve above ours: a connection past our limit is
 * accepted, its head read, and answered 503 with Retry-After and closed.
 * Its head has the same deadline, so refused connections cannot hold the
 * reserve either.
 *
 * Balance: the kernel hands each new connection to a worker at random
 * (SO_REUSEPORT hashes the addresses and ports), and keep-alive
 * connections stay where they landed.  A few busy clients can so all sit
 * on one worker while the others idle: with 4 connections and 2 workers,
 * one run in eight, and then ingest runs at half speed.  A worker that
 * holds more than its share of the connections (those of the workers
 * taking connections now, divided evenly, plus an eighth) asks one client
 * at a time to reconnect, with Connection: close after its answer; the new
 * connection lands at random again, so the shares even out within a few
 * moves and then nothing moves.
 *
 * Runs inside libmicrohttpd's callbacks: nothing here may throw.
 */
#include "postgres.h"

#include <sys/socket.h>

#include "utils/timestamp.h"

#include "guc.h"
#include "ingest/http.h"

/* One open connection. */
typedef struct HttpConn
{
	struct HttpConn *prev;
	struct HttpConn *next;
	struct MHD_Connection *conn;
	int			fd;
	TimestampTz head_since;		/* waiting for a head since; 0 in a request */
	bool		cut;			/* its socket was shut down at the deadline */
	const char *refusal;		/* over a limit: answered 503 with this */
	bool		moving;			/* its answer said Connection: close, to rebalance */
	bool		counted;		/* in the per-address table under peer */
	HttpPeerKey peer;
} HttpConn;

/* a worker over its share moves one connection per this long at most */
#define MOVE_PERIOD_MS 200

static HttpConn *conns = NULL;
static int	n_conns = 0;
static int	n_moving = 0;		/* of n_conns, told to reconnect, not yet closed */

/* libmicrohttpd's connection limit: ours plus room to say 503. */
unsigned int
http_conn_hard_limit(void)
{
	return (unsigned int) runra_http_max_connections +
		Max(8, runra_http_max_connections / 8);
}

/* The state libmicrohttpd keeps for us with the connection, or NULL. */
static HttpConn *
conn_state(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return info != NULL ? (HttpConn *) info->socket_context : NULL;
}

/* Decides whether a new connection is over a limit (and counts it). */
static void
apply_limits(HttpConn *c)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	int			from_peer = http_peer_enter(info ? info->client_addr : NULL, &c->peer);

	c->counted = from_peer > 0;
	if (n_conns > runra_http_max_connections)
	{
		c->refusal = "This server is at its connection limit (runra_obs.http_max_connections); retry shortly.";
		http_metrics_count_refused(REFUSED_WORKER_FULL);
	}
	else if (runra_http_max_connections_per_address > 0 &&
			 from_peer > runra_http_max_connections_per_address)
	{
		c->refusal = "Too many connections from your address (runra_obs.http_max_connections_per_address); reuse fewer connections or retry shortly.";
		http_metrics_count_refused(REFUSED_PER_ADDRESS);
	}
}

/* A connection was accepted: start its head clock and apply the limits. */
static void
conn_started(struct MHD_Connection *conn, void **socket_context)
{
	HttpConn   *c = calloc(1, sizeof(HttpConn));
	const union MHD_ConnectionInfo *fd =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

	if (c == NULL)
	{
		/* cannot keep track of it: better not to serve it */
		if (fd != NULL)
			(void) shutdown(fd->connect_fd, SHUT_RDWR);
		return;
	}
	c->conn = conn;
	c->fd = fd != NULL ? fd->connect_fd : -1;
	c->head_since = GetCurrentTimestamp();
	c->next = conns;
	if (conns != NULL)
		conns->prev = c;
	conns = c;
	n_conns++;
	*socket_context = c;
	apply_limits(c);
}

/* A connection was closed: forget it. */
static void
conn_closed(HttpConn *c)
{
	if (c->counted)
		http_peer_leave(&c->peer);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	n_conns--;
	if (c->moving)
		n_moving--;
	free(c);
}

/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback. */
void
http_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
				 enum MHD_ConnectionNotificationCode toe)
{
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
	{
		http_metrics_count_connection(1);
		conn_started(conn, socket_context);
	}
	else
	{
		http_metrics_count_connection(-1);
		if (*socket_context != NULL)
			conn_closed((HttpConn *) *socket_context);
		*socket_context = NULL;
	}
}

/*
 * A request's head has arrived: its clock stops.  Returns the 503 message
 * when the connection is over a limit, else NULL.
 */
const char *
http_conn_head_arrived(struct MHD_Connection *conn)
{
	HttpConn   *c = conn_state(conn);

	if (c == NULL)
		return NULL;
	c->head_since = 0;
	return c->refusal;
}

/* A request is over: the next head on this connection has its own deadline. */
void
http_conn_request_done(struct MHD_Connection *conn)
{
	HttpConn   *c = conn_state(conn);

	if (c != NULL && !c->cut)
		c->head_since = GetCurrentTimestamp();
}

/*
 * Should the answer on conn ask the client to reconnect elsewhere?  True
 * while this worker, not counting the connections already told to leave,
 * holds more than its share, and for one answer per MOVE_PERIOD_MS at
 * most: a moved connection is out of every count until its client
 * reconnects, and deciding again before then would move too many.  Asked
 * again for the same connection (a replaced answer), the answer stays the
 * same.
 */
bool
http_conn_should_move(struct MHD_Connection *conn)
{
	static TimestampTz last_move = 0;
	HttpConn   *c = conn_state(conn);
	TimestampTz now;
	uint64		open;
	int			workers;
	int			share;

	if (c == NULL)
		return false;
	if (c->moving)
		return true;
	now = GetCurrentTimestamp();
	if (now - last_move < MOVE_PERIOD_MS * 1000)
		return false;
	http_metrics_connection_spread(&open, &workers);
	if (workers < 2)
		return false;
	share = (int) ((open + workers - 1) / workers);
	if (n_conns - n_moving <= share + share / 8)
		return false;
	c->moving = true;
	n_moving++;
	last_move = now;
	http_metrics_count_moved();
	return true;
}

/*
 * Shuts down every connection whose head is late.  Checked after each
 * MHD_run, which the worker calls at least once a second; libmicrohttpd
 * closes the connection on its next run.
 */
void
http_conn_enforce_deadlines(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz allowed = (TimestampTz) runra_http_header_timeout_s * USECS_PER_SEC;

	for (HttpConn *c = conns; c != NULL; c = c->next)
	{
		if (c->cut || c->head_since == 0 || now - c->head_since < allowed)
			continue;
		c->cut = true;
		if (c->fd >= 0)
			(void) shutdown(c->fd, SHUT_RDWR);
		http_metrics_count_header_timeout();
	}
}
