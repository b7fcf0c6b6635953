/*
 * notify_sender.c — who sent a notification: the role of the backend whose
 * pid it carries.
 *
 * NOTIFY needs no privilege at all, so the listener must not store what
 * any role sends: only members of runra_obs_writer may send events
 * (notify_queue.c checks).  A notification carries the sender's pid; while
 * the sender runs, its PGPROC has its role.  But a sender may be gone by
 * the time the notification reaches us (psql -c "NOTIFY ..." exits right
 * after its commit), so every client backend notes its pid and role in a
 * shared ring of recently ended sessions as it exits.  A pid is reused
 * only after the whole pid space has wrapped, long after a notification
 * is read, and the ring holds the last NOTIFY_SENDER_RING sessions to end;
 * a sender found in neither place is unknown, and its events are refused.
 */
#include "postgres.h"

#include "libpq/auth.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "ingest/notify.h"

#define NOTIFY_SENDER_RING 4096

typedef struct EndedSession
{
	int			pid;
	Oid			role;
} EndedSession;

typedef struct EndedSessions
{
	slock_t		mutex;
	int			next;
	EndedSession ring[NOTIFY_SENDER_RING];
} EndedSessions;

static EndedSessions *ended = NULL;
static ClientAuthentication_hook_type prev_client_auth_hook = NULL;

/* Asks for the ring (shmem_request_hook). */
void
notify_sender_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(EndedSessions)));
}

/* Creates or attaches to the ring (shmem_startup_hook). */
void
notify_sender_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ended = ShmemInitStruct("runra_obs ended sessions", sizeof(EndedSessions), &found);
	if (!found)
	{
		memset(ended, 0, sizeof(EndedSessions));
		SpinLockInit(&ended->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* At a session's end: its pid and role go into the ring. */
static void
note_ended_session(int code, Datum arg)
{
	if (ended == NULL || MyProc == NULL || !OidIsValid(MyProc->roleId))
		return;
	SpinLockAcquire(&ended->mutex);
	ended->ring[ended->next].pid = MyProcPid;
	ended->ring[ended->next].role = MyProc->roleId;
	ended->next = (ended->next + 1) % NOTIFY_SENDER_RING;
	SpinLockRelease(&ended->mutex);
}

/* Every client backend, once authenticated, will note its end. */
static void
on_client_authenticated(Port *port, int status)
{
	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);
	if (status == STATUS_OK)
		before_shmem_exit(note_ended_session, (Datum) 0);
}

/* Installs the hook (from _PG_init, when preloaded). */
void
notify_sender_install_hooks(void)
{
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = on_client_authenticated;
}

/* The role of the ended session with this pid, newest first; InvalidOid if none. */
static Oid
ended_session_role(int pid)
{
	Oid			role = InvalidOid;

	if (ended == NULL)
		return InvalidOid;
	SpinLockAcquire(&ended->mutex);
	for (int i = 1; i <= NOTIFY_SENDER_RING && !OidIsValid(role); i++)
	{
		EndedSession *s = &ended->ring[(ended->next - i + NOTIFY_SENDER_RING) % NOTIFY_SENDER_RING];

		if (s->pid == pid)
			role = s->role;
	}
	SpinLockRelease(&ended->mutex);
	return role;
}

/*
 * The role of the backend that sent a notification: the running backend
 * with that pid, else the ended session; InvalidOid when neither is known.
 * Needs no transaction.
 */
Oid
notify_sender_role(int pid)
{
	PGPROC	   *proc = BackendPidGetProc(pid);
	Oid			role = proc != NULL ? proc->roleId : InvalidOid;

	return OidIsValid(role) ? role : ended_session_role(pid);
}
