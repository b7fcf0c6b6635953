/*
 * citus.h — what runra_obs does differently under Citus (src/citus/).
 */
#ifndef RUNRA_OBS_CITUS_H
#define RUNRA_OBS_CITUS_H

/* inline.c: our SQL functions inlined before Citus plans a query */
extern void citus_install_planner_hook(void);

/* node_lost.c: an error Citus raised without an errcode for a node lost */
extern bool citus_error_is_node_lost(ErrorData *error);

#endif
