/*
 * citus.h — what runra_obs does differently under Citus (src/citus/).
 */
#ifndef RUNRA_OBS_CITUS_H
#define RUNRA_OBS_CITUS_H

/* inline.c: our SQL functions inlined before Citus plans a query */
extern void citus_install_planner_hook(void);

#endif
