/*
 * event_citus.h — the batch writer's path into a table Citus distributes
 * (event_citus.c).
 */
#ifndef RUNRA_OBS_EVENT_CITUS_H
#define RUNRA_OBS_EVENT_CITUS_H

extern bool events_are_distributed(void);
extern uint64 insert_distributed_events(const char *buf, int len);

#endif
