/*
 * relation.h — finding runra_obs's own tables from C.
 */
#ifndef RUNRA_OBS_RELATION_H
#define RUNRA_OBS_RELATION_H

extern Oid	runra_relation_oid(const char *name);

#endif
