/*
 * housekeeping.h — the periodic runra_obs.run_maintenance() call that the
 * maintenance worker makes.
 */
#ifndef RUNRA_OBS_HOUSEKEEPING_H
#define RUNRA_OBS_HOUSEKEEPING_H

#include "utils/timestamp.h"

extern void housekeeping_run(void);
extern TimestampTz housekeeping_next_run(TimestampTz last_run);

#endif
