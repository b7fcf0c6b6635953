/*
 * node_lost.c — telling, from an error Citus raised, that a node was lost.
 *
 * A lost worker is a "not now" for the writer's callers (HTTP answers 503
 * with Retry-After, src/ingest/http_batch.c), but Citus relays some of
 * those losses as internal errors, which would read as a lasting failure.
 */
#include "postgres.h"

#include "citus/citus.h"

/*
 * Citus relays some losses of a worker without an errcode, so as internal
 * errors: a worker lost in mid-transaction (remote_transaction.c, "failure
 * on connection marked as essential"); libpq's own error on a dead
 * connection, which has no SQLSTATE (remote_commands.c relays it with the
 * context "while executing command on <node>"); and a worker's message
 * during a COPY to its shards (multi_copy.c relays the text alone: a dying
 * worker's FATAL arrives so).  Their text is the only sign that the cause
 * is a node down; these are PostgreSQL's and libpq's fixed messages for it.
 */
bool
citus_error_is_node_lost(ErrorData *error)
{
	static const char *const node_lost[] = {
		"failure on connection marked as essential",
		"terminating connection due to",	/* a worker shutting down or orphaned */
		"server closed the connection unexpectedly",
		"the database system is",	/* starting up, shutting down, in recovery */
		"could not receive data from server",
		"could not send data to server",
		"no connection to the server",
		"connection to server",
		"SSL SYSCALL error",
	};

	if (error->sqlerrcode != ERRCODE_INTERNAL_ERROR)
		return false;
	if (error->context != NULL && strstr(error->context, "while executing command on ") != NULL)
		return true;
	for (int i = 0; error->message != NULL && i < lengthof(node_lost); i++)
		if (strstr(error->message, node_lost[i]) != NULL)
			return true;
	return false;
}
