/*
 * query.c — query rules: SQL whose rows are alert instances.
 *
 * A query rule's SQL is one SELECT; its text columns (any column that is
 * not a number) become labels and its one numeric column is the value, as
 * in Grafana's SQL alerting.  It is checked when the rule is written, as
 * the role writing it (runra_alert_check_query), and run at each
 * evaluation (runra_alert_query_series) as the rule's owner: the alert
 * worker is a superuser, and creating a rule must not be a way to run SQL
 * as one: a rule a superuser owns, or whose owner is gone, does not run.
 * It runs restricted (worker/run_as_owner.c), through a read-only cursor
 * (which refuses anything but a single SELECT: no second statement, no
 * data-modifying WITH, no FOR UPDATE), at most MAX_QUERY_ROWS rows; in the
 * worker the whole evaluation runs under runra_obs.alert_evaluation_timeout
 * (evaluate.c).
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/syscache.h"

#include "worker/run_as_owner.h"

#define MAX_QUERY_ROWS 100000

PG_FUNCTION_INFO_V1(runra_alert_check_query);
PG_FUNCTION_INFO_V1(runra_alert_query_series);

/* Is a column of this type the value (a number)? */
static bool
is_number_type(Oid type)
{
	switch (getBaseType(type))
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			return true;
		default:
			return false;
	}
}

/*
 * The value column of a query's result (1-based), after checking that
 * there is exactly one and that every other column's name can be a label.
 */
static int
value_column(TupleDesc desc, const char *rule_name)
{
	int			value = 0;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);

		if (is_number_type(att->atttypid))
		{
			if (value != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("query of alert rule \"%s\" returns two numbers, \"%s\" and \"%s\"",
								rule_name, NameStr(TupleDescAttr(desc, value - 1)->attname), name),
						 errhint("Return one numeric column, the value; the other columns are labels, cast to text.")));
			value = i + 1;
			continue;
		}
		if (strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != strlen(name)
			|| name[0] == '\0' || (name[0] >= '0' && name[0] <= '9') || strcmp(name, "alertname") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" of the query of alert rule \"%s\" cannot be a label", name, rule_name),
					 errdetail("A label name has letters, digits and \"_\" and does not start with a digit; alertname is the rule's name."),
					 errhint("Name the column with AS.")));
	}
	if (value == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query of alert rule \"%s\" returns no number", rule_name),
				 errhint("Return one numeric column, the value; the other columns are labels.")));
	return value;
}

/* Adds which rule's query an error comes from. */
static void
query_error_context(void *arg)
{
	errcontext("query of alert rule \"%s\"", (const char *) arg);
}

/* Refuses a plan that is not one SELECT changing nothing, saying which. */
static void
check_one_select(SPIPlanPtr plan, const char *rule_name)
{
	List	   *sources = SPI_plan_get_plan_sources(plan);
	CachedPlanSource *source;
	Query	   *query;

	if (list_length(sources) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query of alert rule \"%s\" must be one statement, not %d",
						rule_name, list_length(sources))));
	source = linitial(sources);
	query = list_length(source->query_list) == 1 ? linitial(source->query_list) : NULL;
	if (query == NULL || query->commandType != CMD_SELECT || query->utilityStmt != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query of alert rule \"%s\" must be a SELECT, not %s",
						rule_name, GetCommandTagName(source->commandTag))));
	if (query->hasModifyingCTE || query->rowMarks != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query of alert rule \"%s\" must change nothing", rule_name),
				 errdetail("It has a data-modifying WITH or a FOR UPDATE/SHARE clause.")));
}

/* Opens the query as a read-only cursor (errors say what is wrong). */
static Portal
open_query(const char *sql, const char *rule_name)
{
	SPIPlanPtr	plan = SPI_prepare(sql, 0, NULL);

	if (plan == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("query of alert rule \"%s\" could not be prepared: %s",
						rule_name, SPI_result_code_string(SPI_result))));
	check_one_select(plan, rule_name);
	return SPI_cursor_open(NULL, plan, NULL, NULL, true);
}

/* runra_obs._alert_check_query(rule_name, sql), as the calling role. */
Datum
runra_alert_check_query(PG_FUNCTION_ARGS)
{
	char	   *rule_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(1));
	OwnerScope	scope;
	Portal		portal;
	ErrorContextCallback context = {error_context_stack, query_error_context, rule_name};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	runra_enter_owner(GetUserId(), RUNRA_USER_SEARCH_PATH, &scope);
	error_context_stack = &context;
	portal = open_query(sql, rule_name);
	(void) value_column(portal->tupDesc, rule_name);
	SPI_cursor_close(portal);
	error_context_stack = context.previous;
	runra_leave_owner(&scope);
	SPI_finish();
	PG_RETURN_VOID();
}

/* The SQL and owner of query rule `rule_id`. */
static void
load_rule(int32 rule_id, char **name, char **sql, Oid *owner)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(rule_id)};
	bool		isnull;
	HeapTuple	row;

	if (SPI_execute_with_args("SELECT name, params ->> 'sql', owner::oid FROM runra_obs.alert_rules"
							  " WHERE id = $1 AND kind = 'query'",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read alert rule %d", rule_id);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("alert rule %d is not a query rule", rule_id)));
	row = SPI_tuptable->vals[0];
	*name = SPI_getvalue(row, SPI_tuptable->tupdesc, 1);
	*sql = SPI_getvalue(row, SPI_tuptable->tupdesc, 2);
	*owner = DatumGetObjectId(SPI_getbinval(row, SPI_tuptable->tupdesc, 3, &isnull));
}

/*
 * The role a rule's SQL runs as: its owner, who must still exist and must
 * not be a superuser (the trigger refuses to stamp one; this holds if a
 * role was made superuser later).
 */
static Oid
checked_owner(const char *rule_name, Oid owner)
{
	HeapTuple	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(owner));
	bool		is_super;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the role that wrote query rule \"%s\" no longer exists", rule_name),
				 errhint("Write the rule's SQL again as a role that may run it.")));
	is_super = ((Form_pg_authid) GETSTRUCT(tuple))->rolsuper;
	ReleaseSysCache(tuple);
	if (is_super)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("query rule \"%s\" is owned by a superuser and does not run", rule_name),
				 errdetail("A query rule runs with the privileges of the role that wrote its SQL."),
				 errhint("Write it again as a role with only the privileges it needs.")));
	return owner;
}

/* One result row as (labels, value): labels from the non-null text columns. */
static void
put_row(Tuplestorestate *store, TupleDesc out_desc, HeapTuple row, TupleDesc desc, int value_col)
{
	JsonbParseState *state = NULL;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	bool		isnull;
	Datum		v;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 1; i <= desc->natts; i++)
	{
		char	   *text;
		JsonbValue	key, val;

		if (i == value_col || (text = SPI_getvalue(row, desc, i)) == NULL)
			continue;
		key.type = jbvString;
		key.val.string.val = NameStr(TupleDescAttr(desc, i - 1)->attname);
		key.val.string.len = strlen(key.val.string.val);
		val.type = jbvString;
		val.val.string.val = text;
		val.val.string.len = strlen(text);
		pushJsonbValue(&state, WJB_KEY, &key);
		pushJsonbValue(&state, WJB_VALUE, &val);
	}
	values[0] = JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
	v = SPI_getbinval(row, desc, value_col, &isnull);
	nulls[1] = isnull;
	if (!isnull)
	{
		Oid			type = getBaseType(TupleDescAttr(desc, value_col - 1)->atttypid);

		values[1] = type == FLOAT8OID ? v
			: DirectFunctionCall1(float8in, CStringGetDatum(SPI_getvalue(row, desc, value_col)));
	}
	tuplestore_putvalues(store, out_desc, values, nulls);
}

/* Fetches the rows of the open query into the result set. */
static void
fetch_rows(Portal portal, ReturnSetInfo *rsinfo, const char *rule_name)
{
	int			value_col = value_column(portal->tupDesc, rule_name);

	SPI_cursor_fetch(portal, true, MAX_QUERY_ROWS + 1);
	if (SPI_processed > MAX_QUERY_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("query of alert rule \"%s\" returned more than %d rows", rule_name, MAX_QUERY_ROWS)));
	for (uint64 i = 0; i < SPI_processed; i++)
		put_row(rsinfo->setResult, rsinfo->setDesc, SPI_tuptable->vals[i],
				SPI_tuptable->tupdesc, value_col);
}

/*
 * runra_obs._alert_query_series(rule_id): the rule's rows, run as its
 * owner when a superuser (the alert worker) asks, else as the caller
 * (preview_alert() by an admin gets only the admin's own privileges).
 */
Datum
runra_alert_query_series(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	char	   *sql;
	Oid			owner;
	OwnerScope	scope;
	ErrorContextCallback context = {error_context_stack, query_error_context, NULL};
	Oid			run_as;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	load_rule(PG_GETARG_INT32(0), &name, &sql, &owner);
	run_as = superuser() ? checked_owner(name, owner) : GetUserId();
	runra_enter_owner(run_as, RUNRA_USER_SEARCH_PATH, &scope);
	context.arg = name;
	error_context_stack = &context;
	{
		Portal		portal = open_query(sql, name);

		fetch_rows(portal, rsinfo, name);
		SPI_cursor_close(portal);
	}
	error_context_stack = context.previous;
	runra_leave_owner(&scope);
	SPI_finish();
	return (Datum) 0;
}
