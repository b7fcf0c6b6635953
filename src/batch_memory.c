/*
 * batch_memory.c — lets a process keep the memory a batch frees for its
 * next batch.
 *
 * A batch (an ingest call of 1000 events, an HTTP group commit, a forward
 * request) allocates megabytes, the bodies, the COPY tuples and COPY's own
 * slots and heap tuples, and frees all of it at the end.  By default glibc
 * maps blocks above 128 kB (a little more once it has seen bigger ones)
 * afresh and unmaps them when freed, and gives the top of its heap back to
 * the kernel once about 1 MB is free there; so every batch faulted in its
 * pages again.  That was a fifth of the forward worker's time when behind,
 * and a quarter of ingest_jsonl()'s CPU (perf: page faults, palloc0 in
 * table_slot_create, heap_form_tuple; strace: 1.6 MB of heap trimmed and
 * grown again per call), where a COPY statement of the same rows stays
 * below the trim threshold.
 *
 * Fixed thresholds instead: blocks up to the batch size come from the heap,
 * and up to four batches' worth of freed heap is kept.  A process's memory
 * stays at its busiest batch's size; anything larger still goes back when
 * freed.  glibc only; elsewhere this does nothing.
 */
#include "postgres.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "batch_memory.h"

/*
 * Raises the thresholds for batches of up to batch_bytes; never lowers what
 * an earlier call set (an HTTP worker's 64 MB stays when its ingest batch
 * asks for 4 MB).
 */
void
runra_keep_freed_memory(Size batch_bytes)
{
#ifdef M_MMAP_THRESHOLD
	static Size kept = 0;

	if (batch_bytes <= kept)
		return;
	kept = batch_bytes;
	(void) mallopt(M_MMAP_THRESHOLD, (int) batch_bytes);
	(void) mallopt(M_TRIM_THRESHOLD, (int) (4 * batch_bytes));
#endif
}
