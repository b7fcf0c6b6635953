/*
 * evaluate.c — evaluating the alert rules that are due.
 *
 * One short transaction finds the rules due now (and advances the safe
 * watermark that match rules read up to); then each rule is evaluated in a
 * transaction of its own (runra_obs._alert_evaluate) and within
 * runra_obs.alert_evaluation_timeout, so a rule whose query fails or
 * takes too long is put in the error state
 * (runra_obs._alert_failed, another transaction) and the others go on.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "alert/alert.h"
#include "guc.h"
#include "worker/secret_mask.h"
#include "worker/worker_common.h"
#include "worker/worker_metrics.h"
#include "worker/worker_xact.h"

#define RULES_PER_ROUND 100

/* One round's rules and where the log may be read up to. */
typedef struct DueRules
{
	WatermarkProbe *probe;
	TimestampTz at;
	int64		watermark;
	int			n;
	int32		ids[RULES_PER_ROUND];
} DueRules;

/* One rule's evaluation (or its failure) at a time. */
typedef struct RuleStep
{
	int32		rule_id;
	TimestampTz at;
	int64		watermark;
	const char *error;			/* for the failure step */
} RuleStep;

/* Reads the rules due at due->at (transaction work). */
static void
find_due(void *arg)
{
	DueRules   *due = arg;
	Oid			types[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2] = {TimestampTzGetDatum(due->at), Int32GetDatum(RULES_PER_ROUND)};
	bool		isnull;

	due->watermark = watermark_advance(due->probe);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT runra_obs._alert_due($1, $2)", 2, types, values,
							  NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "runra_obs._alert_due() failed");
	due->n = (int) SPI_processed;
	for (int i = 0; i < due->n; i++)
		due->ids[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
												  1, &isnull));
	SPI_finish();
}

/* Calls runra_obs._alert_evaluate() for one rule. */
static void
call_evaluate(void *arg)
{
	RuleStep   *step = arg;
	Oid			types[3] = {INT4OID, TIMESTAMPTZOID, INT8OID};
	Datum		values[3] = {Int32GetDatum(step->rule_id), TimestampTzGetDatum(step->at),
	Int64GetDatum(step->watermark)};

	if (SPI_execute_with_args("SELECT runra_obs._alert_evaluate($1, $2, $3)", 3, types, values,
							  NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "runra_obs._alert_evaluate() failed");
}

/*
 * Evaluates one rule (transaction work), within
 * runra_obs.alert_evaluation_timeout: a rule that reads too much fails
 * alone instead of holding up every rule after it.
 */
static void
evaluate_rule(void *arg)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	runra_worker_call_with_timeout(runra_alert_evaluation_timeout_ms, call_evaluate, arg);
	SPI_finish();
}

/* Records that a rule's evaluation failed (transaction work). */
static void
record_failure(void *arg)
{
	RuleStep   *step = arg;
	Oid			types[3] = {INT4OID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[3] = {Int32GetDatum(step->rule_id), TimestampTzGetDatum(step->at),
	CStringGetTextDatum(step->error)};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT runra_obs._alert_failed($1, $2, $3)", 3, types, values,
							  NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "runra_obs._alert_failed() failed");
	SPI_finish();
}

/* Evaluates one rule; a failure is recorded against the rule, not the worker. */
static void
evaluate_one(int32 rule_id, TimestampTz at, int64 watermark)
{
	RuleStep	step = {rule_id, at, watermark, NULL};
	char	   *error;

	if (runra_worker_run_transaction("runra_obs alert evaluation", evaluate_rule, &step,
									 &error, NULL))
	{
		worker_metrics_count_evaluation(false);
		return;
	}
	worker_metrics_count_evaluation(true);
	step.error = secret_mask(error, NIL);	/* readers see it in alert_rule_runs */
	if (!runra_worker_run_transaction("runra_obs alert failure", record_failure, &step,
									  &error, NULL))
		runra_worker_report_error(error);
}

/* Evaluates every rule due now, in rounds of RULES_PER_ROUND. */
int
alert_evaluate_due(WatermarkProbe *probe)
{
	DueRules	due;
	int			total = 0;
	char	   *error;

	do
	{
		CHECK_FOR_INTERRUPTS();
		due.probe = probe;
		due.at = GetCurrentTimestamp();
		if (!runra_worker_run_transaction("runra_obs alert schedule", find_due, &due, &error, NULL))
		{
			runra_worker_report_error(error);
			return total;
		}
		/* each at its own time: windows end when the rule is evaluated */
		for (int i = 0; i < due.n && !runra_got_sigterm; i++)
			evaluate_one(due.ids[i], GetCurrentTimestamp(), due.watermark);
		total += due.n;
	} while (due.n == RULES_PER_ROUND && !runra_got_sigterm);
	return total;
}
