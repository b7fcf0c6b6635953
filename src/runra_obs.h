/*
 * runra_obs.h — the entry points each subsystem offers to _PG_init.
 */
#ifndef RUNRA_OBS_H
#define RUNRA_OBS_H

/* registers the workers of every subsystem (workers.c) */
extern void runra_register_subsystem_workers(void);

#endif
