/*
 * worker_metrics.c — the workers' counters behind GET /metrics, in shared
 * memory.
 *
 * Why shared memory and not a table or the worker's status slot: the slot
 * is wiped when its worker restarts (a maintenance worker that crashed
 * would forget its runs and its last success), and a table row written on
 * every run, evaluation and attempt would be write traffic (and a schema)
 * for numbers that Prometheus keeps anyway.  Here they last as long as
 * the server does; a server restart starts them at zero, which Prometheus's
 * rate() and increase() read as a counter reset.  Whichever HTTP worker
 * answers a scrape reads them.
 *
 * Updates are rare (a worker start, a maintenance run, a rule evaluation,
 * a notification attempt), so one spinlock guards them all.
 *
 * A role's restarts are its starts beyond the most of its workers that
 * ever ran at once: N HTTP workers starting count no restart, one of them
 * started again counts one, whatever the order.
 */
#include "postgres.h"

#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "worker/worker_metrics.h"

#define ROLES 16

/* The outcomes of a notification attempt, as deliver.c names them. */
static const char *const notification_outcomes[] = {"sent", "failed", "refused"};

#define N_OUTCOMES lengthof(notification_outcomes)

/* What maintenance did to a partition, in the order of WorkerMetrics.partitions. */
static const char *const partition_actions[] = {"created", "dropped", "skipped"};

typedef struct RoleStarts
{
	char		role[32];		/* '' when unused */
	uint64		starts;
	int			peak;			/* most of this role running at once */
} RoleStarts;

typedef struct WorkerMetrics
{
	slock_t		mutex;
	RoleStarts	roles[ROLES];
	uint64		maintenance_runs;
	uint64		maintenance_failures;
	uint64		partitions[lengthof(partition_actions)];
	uint64		rejected_expired;
	TimestampTz maintenance_last_success;	/* 0: none since the server started */
	double		maintenance_last_seconds;
	uint64		evaluations;
	uint64		evaluation_failures;
	uint64		notifications[N_OUTCOMES];
} WorkerMetrics;

static WorkerMetrics *shared = NULL;

/* Asks for room for the counters (from the module's shmem_request_hook). */
void
worker_metrics_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(WorkerMetrics)));
}

/* Creates or attaches to the counters (from the module's shmem_startup_hook). */
void
worker_metrics_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("runra_obs worker metrics", sizeof(WorkerMetrics), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(WorkerMetrics));
		SpinLockInit(&shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* The entry of role, made when it is new; NULL when all are taken.  Under the lock. */
static RoleStarts *
role_entry(const char *role)
{
	for (int i = 0; i < ROLES; i++)
	{
		RoleStarts *r = &shared->roles[i];

		if (r->role[0] == '\0')
			strlcpy(r->role, role, sizeof(r->role));
		if (strcmp(r->role, role) == 0)
			return r;
	}
	return NULL;
}

/*
 * A worker of role started; running is how many of its role run now,
 * itself included (its restarts are counted from the peak of that).
 */
void
worker_metrics_count_start(const char *role, int running)
{
	RoleStarts *r;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	r = role_entry(role);
	if (r != NULL)
	{
		r->starts++;
		r->peak = Max(r->peak, running);
	}
	SpinLockRelease(&shared->mutex);
}

/*
 * One maintenance run.  It succeeded when it neither failed nor skipped a
 * partition (a skipped one is a partition not made ahead or not dropped).
 */
void
worker_metrics_count_maintenance(const MaintenanceRun *run)
{
	TimestampTz now = GetCurrentTimestamp();

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	shared->maintenance_runs++;
	shared->maintenance_failures += run->failed ? 1 : 0;
	shared->partitions[0] += run->created;
	shared->partitions[1] += run->dropped;
	shared->partitions[2] += run->skipped;
	shared->rejected_expired += run->expired;
	if (!run->failed && run->skipped == 0)
		shared->maintenance_last_success = now;
	shared->maintenance_last_seconds = (double) (now - run->started) / USECS_PER_SEC;
	SpinLockRelease(&shared->mutex);
}

/* One alert rule evaluated (failed: it is in the error state for it). */
void
worker_metrics_count_evaluation(bool failed)
{
	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	shared->evaluations++;
	shared->evaluation_failures += failed ? 1 : 0;
	SpinLockRelease(&shared->mutex);
}

/* One notification attempt recorded, by outcome (sent, failed, refused). */
void
worker_metrics_count_notification(const char *outcome)
{
	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < (int) N_OUTCOMES; i++)
		if (strcmp(outcome, notification_outcomes[i]) == 0)
			shared->notifications[i]++;
	SpinLockRelease(&shared->mutex);
}

/* # HELP and # TYPE of one family. */
static void
family(StringInfo out, const char *name, const char *type, const char *help)
{
	appendStringInfo(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One counter family with one unlabelled sample. */
static void
counter(StringInfo out, const char *name, const char *help, uint64 value)
{
	family(out, name, "counter", help);
	appendStringInfo(out, "%s " UINT64_FORMAT "\n", name, value);
}

/* One gauge family with one unlabelled sample. */
static void
gauge(StringInfo out, const char *name, const char *help, double value)
{
	family(out, name, "gauge", help);
	appendStringInfo(out, "%s %.6f\n", name, value);
}

/* One counter family with a sample per value of its one label. */
static void
labelled(StringInfo out, const char *name, const char *help, const char *label,
		 const char *const *values, const uint64 *counts, int n)
{
	family(out, name, "counter", help);
	for (int i = 0; i < n; i++)
		appendStringInfo(out, "%s{%s=\"%s\"} " UINT64_FORMAT "\n", name, label, values[i], counts[i]);
}

/* runra_obs_worker_starts_total and _restarts_total, by role. */
static void
append_starts(StringInfo out, const WorkerMetrics *m)
{
	const char *roles[ROLES];
	uint64		starts[ROLES];
	uint64		restarts[ROLES];
	int			n = 0;

	for (; n < ROLES && m->roles[n].role[0]; n++)
	{
		roles[n] = m->roles[n].role;
		starts[n] = m->roles[n].starts;
		restarts[n] = starts[n] - Min(starts[n], (uint64) m->roles[n].peak);
	}
	labelled(out, "runra_obs_worker_starts_total",
			 "runra_obs worker processes started since the server started, by role.",
			 "role", roles, starts, n);
	labelled(out, "runra_obs_worker_restarts_total",
			 "Starts of a role's workers beyond the most of them that ran at once: restarts after an exit or a crash.",
			 "role", roles, restarts, n);
}

/* The counters that are one number each: name, help, where in WorkerMetrics. */
static const struct
{
	const char *name;
	const char *help;
	size_t		offset;
}			counters[] = {
	{"runra_obs_maintenance_runs_total", "runra_obs.run_maintenance() runs since the server started.",
	offsetof(WorkerMetrics, maintenance_runs)},
	{"runra_obs_maintenance_failures_total",
		"Maintenance runs that ended in an error (worker_status.last_maintenance says which).",
	offsetof(WorkerMetrics, maintenance_failures)},
	{"runra_obs_maintenance_rejected_events_expired_total",
		"Rejected events maintenance deleted past runra_obs.rejected_retention.",
	offsetof(WorkerMetrics, rejected_expired)},
	{"runra_obs_alert_evaluations_total",
		"Alert rule evaluations since the server started, failed ones included.",
	offsetof(WorkerMetrics, evaluations)},
	{"runra_obs_alert_evaluation_failures_total",
		"Alert rule evaluations that failed (the rule is in the error state; alert_rule_status says why).",
	offsetof(WorkerMetrics, evaluation_failures)},
};

/* The maintenance worker's partitions, last success and last duration. */
static void
append_maintenance(StringInfo out, const WorkerMetrics *m)
{
	labelled(out, "runra_obs_maintenance_partitions_total",
			 "Day partitions maintenance created, dropped (retention), or skipped (a lock it could not get in time).",
			 "action", partition_actions, m->partitions, lengthof(partition_actions));
	gauge(out, "runra_obs_maintenance_last_success_timestamp_seconds",
		  "When the last maintenance run that neither failed nor skipped a partition ended (Unix time; 0: none since the server started).",
		  m->maintenance_last_success == 0 ? 0.0
		  : (double) (m->maintenance_last_success - SetEpochTimestamp()) / USECS_PER_SEC);
	gauge(out, "runra_obs_maintenance_last_duration_seconds", "How long the last maintenance run took.",
		  m->maintenance_last_seconds);
}

/* The alert worker's notification attempts. */
static void
append_alerts(StringInfo out, const WorkerMetrics *m)
{
	labelled(out, "runra_obs_alert_notification_attempts_total",
			 "Attempts to deliver an alert notification, by outcome: sent, failed (tried again) or refused (dead at once).",
			 "outcome", notification_outcomes, m->notifications, N_OUTCOMES);
}

/* Appends every counter here, in Prometheus text, to out. */
void
worker_metrics_append(StringInfo out)
{
	WorkerMetrics copy;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	memcpy(&copy, shared, sizeof(copy));
	SpinLockRelease(&shared->mutex);
	append_starts(out, &copy);
	for (int i = 0; i < (int) lengthof(counters); i++)
		counter(out, counters[i].name, counters[i].help,
				*(const uint64 *) ((const char *) &copy + counters[i].offset));
	append_maintenance(out, &copy);
	append_alerts(out, &copy);
}
