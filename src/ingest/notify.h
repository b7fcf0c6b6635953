/*
 * notify.h — the NOTIFY listener: a libpq connection to our own server that
 * LISTENs on runra_obs.notify_channel (notify_conn.c, notify_conninfo.c),
 * the queue that turns notification payloads into event batches
 * (notify_queue.c), who sent a notification (notify_sender.c), and the
 * worker that drives them (notify_worker.c).
 */
#ifndef RUNRA_OBS_NOTIFY_H
#define RUNRA_OBS_NOTIFY_H

#include "libpq-fe.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

/* ---- notify_conninfo.c ---- */

#define NOTIFY_MAX_PARAMS 40

/* keyword/value arrays for PQconnectStartParams, NULL-terminated */
typedef struct NotifyConnParams
{
	const char *keywords[NOTIFY_MAX_PARAMS + 1];
	const char *values[NOTIFY_MAX_PARAMS + 1];
	int			n;
} NotifyConnParams;

extern bool notify_conn_params(NotifyConnParams *params, const char *superuser,
							   char **error);
extern int	notify_conn_timeout_s(const NotifyConnParams *params);

/* ---- notify_conn.c ---- */

typedef enum NotifyConnState
{
	NOTIFY_DISCONNECTED,		/* no connection; retry_at says when to try */
	NOTIFY_CONNECTING,			/* PQconnectPoll in progress */
	NOTIFY_LISTEN_SENT,			/* LISTEN sent, waiting for its result */
	NOTIFY_LISTENING			/* notifications arrive */
} NotifyConnState;

/* called with each payload received and its sender's pid; it may write the queue */
typedef void (*NotifyPayloadFn) (void *arg, const char *payload, int sender_pid);

typedef struct NotifyConn
{
	PGconn	   *conn;
	NotifyConnState state;
	uint32		wait_events;	/* WL_SOCKET_* this state waits for */
	uint64		generation;		/* bumped for each new connection */
	char		channel[NAMEDATALEN];	/* what we LISTEN on */
	TimestampTz retry_at;		/* when DISCONNECTED: next attempt */
	TimestampTz give_up_at;		/* while connecting: connect_timeout, or 0 */
	int			failures;		/* failed attempts since last listening */
	TimestampTz down_since;		/* start of the current outage, or 0 */
	bool		ever_listened;
	char		server_said[256];	/* last message sent outside a query */
} NotifyConn;

extern void notify_conn_start(NotifyConn *nc, const char *channel,
							  const char *superuser);
extern void notify_conn_advance(NotifyConn *nc, NotifyPayloadFn fn, void *arg);
extern void notify_conn_check_timeout(NotifyConn *nc, TimestampTz now);
extern void notify_conn_close(NotifyConn *nc);

/* ---- notify_queue.c ---- */

/* A payload waiting to be written. */
typedef struct NotifyPayload
{
	char	   *text;
	int			len;
	int			events;			/* how many events it holds (estimate) */
	Oid			sender_role;	/* who sent it (InvalidOid: unknown) */
} NotifyPayload;

typedef struct NotifyQueue
{
	MemoryContext cxt;			/* payloads live here; reset when empty */
	List	   *payloads;
	int64		events;			/* events queued (estimate) */
	TimestampTz first_at;		/* arrival of the oldest queued payload */
	int			write_failures; /* consecutive failed writes */
	TimestampTz retry_at;		/* after a failed write: next attempt */
	int			last_sqlerrcode;	/* why the last write failed */
} NotifyQueue;

extern void notify_queue_init(NotifyQueue *queue);
extern void notify_queue_add(NotifyQueue *queue, const char *payload, Oid sender_role);
extern TimestampTz notify_queue_deadline(NotifyQueue *queue);
extern bool notify_queue_due(NotifyQueue *queue, TimestampTz now);
extern void notify_queue_flush(NotifyQueue *queue);

/* ---- notify_sender.c ---- */

extern void notify_sender_shmem_request(void);
extern void notify_sender_shmem_startup(void);
extern void notify_sender_install_hooks(void);
extern Oid	notify_sender_role(int pid);

/* ---- notify_worker.c ---- */

extern PGDLLEXPORT void runra_notify_worker_main(Datum arg);

#endif
