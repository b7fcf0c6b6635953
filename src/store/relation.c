/*
 * relation.c — finding runra_obs's own tables from C, with an error that
 * says what is missing when the extension is not installed.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"

#include "store/relation.h"

/* The OID of runra_obs.<name>; an ERROR if there is none. */
Oid
runra_relation_oid(const char *name)
{
	Oid			namespace = get_namespace_oid("runra_obs", false);
	Oid			relid = get_relname_relid(name, namespace);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation runra_obs.%s does not exist", name),
				 errhint("Is the runra_obs extension installed in database \"%s\"?",
						 get_database_name(MyDatabaseId))));
	return relid;
}
