/*
 * batch_memory.h — processes that work in batches keep the memory a batch
 * frees for the next one (batch_memory.c).
 */
#ifndef RUNRA_BATCH_MEMORY_H
#define RUNRA_BATCH_MEMORY_H

/* what a batch worker (HTTP ingest, forwarding) handles at most at once */
#define RUNRA_WORKER_BATCH_MEMORY ((Size) 64 * 1024 * 1024)

extern void runra_keep_freed_memory(Size batch_bytes);

#endif
