/*
 * inline.c — runra_obs's SQL functions, inlined before Citus plans a query.
 *
 * The analyst API (cost_per_sandbox, error_rate, slow_execs ...) is written
 * as SQL functions that PostgreSQL's planner inlines into the caller's
 * query, so that the caller's time window prunes partitions.  Citus decides
 * whether a query is distributed before the planner inlines anything: for
 * `SELECT * FROM runra_obs.cost_per_sandbox(...)` it sees a function call,
 * not a distributed table, hands the query to the standard planner, which
 * then inlines a body that reads the coordinator's empty shell tables.
 * Wrapping the functions in PL/pgSQL would not help, since their bodies
 * call further SQL functions (_exec_events ...) with the same problem.
 *
 * So when Citus is installed, this planner hook (which runs before Citus's:
 * Citus must come first in shared_preload_libraries, and hooks chain in
 * reverse) inlines the set-returning SQL functions of the runra_obs schema
 * itself, with the planner's own inline_set_returning_function(), and then
 * passes the query on.  Citus then sees the tables and plans the query as
 * it would the same SQL written out by hand: pushed down to the shards
 * where it can be.  One definition of every API function, on one node and
 * on Citus alike.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "commands/extension.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "optimizer/planner.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "citus/citus.h"

static planner_hook_type prev_planner_hook = NULL;

typedef struct InlineContext
{
	PlannerInfo *root;			/* a stand-in: collects what the plan depends on */
	Oid			runra_namespace;
} InlineContext;

/* Is the function an SQL function of the runra_obs schema? */
static bool
is_runra_sql_function(Oid funcid, Oid runra_namespace)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	bool		ours = false;

	if (HeapTupleIsValid(tuple))
	{
		Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(tuple);

		ours = proc->pronamespace == runra_namespace && proc->prolang == SQLlanguageId &&
			proc->proretset;
		ReleaseSysCache(tuple);
	}
	return ours;
}

/*
 * Names the body's output columns as the function's result columns.  The
 * planner goes by position alone, but Citus turns subqueries back into SQL
 * text for the workers, where the caller's column names must resolve.
 */
static void
name_output_columns(Query *body, List *colnames)
{
	ListCell   *lc;
	int			i = 0;

	foreach(lc, body->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (tle->resjunk || i >= list_length(colnames))
			continue;
		tle->resname = pstrdup(strVal(list_nth(colnames, i)));
		i++;
	}
}

/*
 * Replaces a FROM-clause call of one of our SQL functions by its body, as
 * the planner's inline_set_returning_functions() would; the walker then
 * goes on into the body, which may call more of them.
 */
static void
inline_function_rte(RangeTblEntry *rte, InlineContext *context)
{
	RangeTblFunction *rtfunc;
	Query	   *body;

	if (rte->rtekind != RTE_FUNCTION || list_length(rte->functions) != 1)
		return;
	rtfunc = linitial_node(RangeTblFunction, rte->functions);
	if (!IsA(rtfunc->funcexpr, FuncExpr) ||
		!is_runra_sql_function(((FuncExpr *) rtfunc->funcexpr)->funcid,
							   context->runra_namespace))
		return;
	/* as the planner does first: default and named arguments filled in */
	rte->functions = (List *) eval_const_expressions(context->root, (Node *) rte->functions);
	body = inline_set_returning_function(context->root, rte);
	if (body == NULL)
		return;					/* not inlinable (SET clause, volatile args ...) */
	rte->rtekind = RTE_SUBQUERY;
	rte->subquery = body;
	rte->security_barrier = false;
	rte->functions = NIL;
	rte->funcordinality = false;
	name_output_columns(body, rte->eref->colnames);
}

/* Visits every range table entry of the query and its subqueries, CTEs and sublinks. */
static bool
inline_walker(Node *node, InlineContext *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		inline_function_rte((RangeTblEntry *) node, context);
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, inline_walker, context,
								 QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, inline_walker, context);
}

/* Does the query call anything in FROM at all (the common case is no)? */
static bool
has_function_rte_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
		return ((RangeTblEntry *) node)->rtekind == RTE_FUNCTION;
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, has_function_rte_walker, context,
								 QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, has_function_rte_walker, context);
}

static PlannedStmt *
runra_planner(Query *parse, const char *query_string, int cursor_options,
			  ParamListInfo bound_params)
{
	PlannerGlobal *glob = NULL;
	PlannedStmt *stmt;

	if (parse->commandType != CMD_UTILITY &&
		has_function_rte_walker((Node *) parse, NULL) &&
		OidIsValid(get_extension_oid("citus", true)))
	{
		Oid			runra_namespace = get_namespace_oid("runra_obs", true);

		if (OidIsValid(runra_namespace))
		{
			InlineContext context;

			glob = makeNode(PlannerGlobal);
			glob->boundParams = bound_params;
			context.root = makeNode(PlannerInfo);
			context.root->glob = glob;
			context.root->parse = parse;
			context.runra_namespace = runra_namespace;
			(void) inline_walker((Node *) parse, &context);
		}
	}
	if (prev_planner_hook)
		stmt = prev_planner_hook(parse, query_string, cursor_options, bound_params);
	else
		stmt = standard_planner(parse, query_string, cursor_options, bound_params);
	/* a cached plan must still be invalidated when an inlined function changes */
	if (glob != NULL)
		stmt->invalItems = list_concat(stmt->invalItems, glob->invalItems);
	return stmt;
}

/* Installs the hook (from _PG_init). */
void
citus_install_planner_hook(void)
{
	prev_planner_hook = planner_hook;
	planner_hook = runra_planner;
}
