/*
 * watermark.h — the safe watermark of runra_obs.sandbox_events: an id at
 * or below which no event can still become visible.  Consumers (rollups,
 * forward destinations) read the log in id order up to it, so what they
 * have read never changes behind their cursor.
 */
#ifndef RUNRA_OBS_WATERMARK_H
#define RUNRA_OBS_WATERMARK_H

#include "lib/stringinfo.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/timestamp.h"

/*
 * One watermark computation in progress: the sequence value it read, and
 * the transactions (writers of the table) that were running then and have
 * not ended yet, and on Citus the commits not yet done on the workers.
 * Lives in the memory context given to watermark_probe_init.
 */
typedef struct WatermarkProbe
{
	MemoryContext cxt;
	bool		active;
	int64		candidate;
	Oid			sequence;		/* the id sequence candidate was read from */
	int			nwaiting;
	VirtualTransactionId *waiting;
	bool		citus;			/* sandbox_events is distributed */
	ArrayType  *doubt;			/* gids in doubt on Citus workers at the
								 * first check; NULL before it */
} WatermarkProbe;

extern void watermark_shmem_request(void);
extern void watermark_shmem_startup(void);

extern void watermark_probe_init(WatermarkProbe *probe, MemoryContext cxt);
extern int64 watermark_advance(WatermarkProbe *probe);
extern int64 watermark_compute_blocking(void);
extern int64 watermark_published(void);
extern TimestampTz watermark_passed_at(int64 position);
extern double watermark_seconds_behind(int64 position, int64 watermark);
extern void watermark_report_position(const char *name, int64 position);
extern void watermark_forget_consumer(const char *name);
extern void watermark_append_metrics(StringInfo out);

#endif
