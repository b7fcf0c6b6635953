/*
 * run_as_owner.c — running user code as its owner, restricted.
 *
 * Whoever may change a function's body (or a rule's query) decides what
 * it does, so it runs as that role: never as the worker's superuser, in a
 * security-restricted operation (no SET ROLE, no temporary objects, as for
 * an index expression or a materialized view's query), on a search_path we
 * choose.  Every setting it changes, set_config(..., false) included, is
 * undone when it returns: the worker's own SQL must not run on a
 * search_path user code chose.  After an error the caller's
 * (sub)transaction abort undoes both the user and the settings.  While it
 * runs a SIGTERM stops the worker as it would stop a backend: user code
 * may run for as long as it likes otherwise.
 */
#include "postgres.h"

#include "catalog/pg_proc.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "worker/run_as_owner.h"
#include "worker/worker_common.h"

/* Becomes `owner`, restricted, on search_path; runra_leave_owner() undoes it. */
void
runra_enter_owner(Oid owner, const char *search_path, OwnerScope *scope)
{
	GetUserIdAndSecContext(&scope->save_user, &scope->save_sec);
	SetUserIdAndSecContext(owner, scope->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	scope->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", search_path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	runra_in_user_code = true;
	/* a SIGTERM that came just before: honoured now */
	if (runra_got_sigterm)
	{
		InterruptPending = true;
		ProcDiePending = true;
	}
}

/* Back to the caller's user and settings. */
void
runra_leave_owner(OwnerScope *scope)
{
	runra_in_user_code = false;
	AtEOXact_GUC(false, scope->save_nestlevel);
	SetUserIdAndSecContext(scope->save_user, scope->save_sec);
}

/* The role that owns `function` now, if it may still execute it. */
static Oid
function_owner(Oid function, const char *what)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(function));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the function of %s no longer exists", what)));
	owner = ((Form_pg_proc) GETSTRUCT(tuple))->proowner;
	ReleaseSysCache(tuple);
	if (pg_proc_aclcheck(function, owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role %s may not execute %s, which it owns",
						GetUserNameFromId(owner, false), format_procedure(function))));
	return owner;
}

/* Calls function(arg) as the function's owner (see the file comment). */
Datum
runra_call_as_owner(Oid function, Datum arg, const char *what)
{
	OwnerScope	scope;
	FmgrInfo	flinfo;
	Datum		result;
	LOCAL_FCINFO(fcinfo, 1);

	runra_enter_owner(function_owner(function, what), RUNRA_USER_SEARCH_PATH, &scope);
	fmgr_info(function, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = arg;
	fcinfo->args[0].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	runra_leave_owner(&scope);
	return result;
}
