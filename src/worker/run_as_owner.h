/*
 * run_as_owner.h — running code that users wrote (SQL handlers, alert
 * contact point functions, query rules) with its owner's privileges, never
 * the worker's.
 */
#ifndef RUNRA_OBS_RUN_AS_OWNER_H
#define RUNRA_OBS_RUN_AS_OWNER_H

#include "fmgr.h"

/* what user code finds unqualified names on: PostgreSQL's default */
#define RUNRA_USER_SEARCH_PATH "\"$user\", public"

typedef struct OwnerScope
{
	Oid			save_user;
	int			save_sec;
	int			save_nestlevel;
} OwnerScope;

extern void runra_enter_owner(Oid owner, const char *search_path, OwnerScope *scope);
extern void runra_leave_owner(OwnerScope *scope);
extern Datum runra_call_as_owner(Oid function, Datum arg, const char *what);

#endif
