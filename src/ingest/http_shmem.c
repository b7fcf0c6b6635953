/*
 * http_shmem.c — the HTTP workers' shared hash tables: the connections per
 * client address (http_peers.c) and the per-token rate buckets
 * (http_ratelimit.c).
 *
 * Each is a fixed-size dynahash in shared memory under an LWLock of its
 * own, made by one pair of shmem hooks here, so the two files only say
 * what their table holds and how large it is.  Fixed size, because
 * libmicrohttpd's callbacks use them: HASH_ENTER_NULL then returns NULL
 * when a table is full instead of throwing.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "ingest/http.h"

#define TABLES_TRANCHE "runra_obs http tables"

static HttpSharedHash *const tables[] = {&http_peers_hash, &http_rate_hash};

static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

/* Asks for every table and a lock each (shmem_request_hook). */
static void
tables_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	for (int i = 0; i < (int) lengthof(tables); i++)
		RequestAddinShmemSpace(hash_estimate_size(tables[i]->size(), tables[i]->entrysize));
	RequestNamedLWLockTranche(TABLES_TRANCHE, lengthof(tables));
}

/* Creates or attaches to every table (shmem_startup_hook). */
static void
tables_shmem_startup(void)
{
	LWLockPadded *locks;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	locks = GetNamedLWLockTranche(TABLES_TRANCHE);
	for (int i = 0; i < (int) lengthof(tables); i++)
	{
		HASHCTL		info;
		long		size = tables[i]->size();

		info.keysize = tables[i]->keysize;
		info.entrysize = tables[i]->entrysize;
		tables[i]->table = ShmemInitHash(tables[i]->name, size, size, &info,
										 HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
		tables[i]->lock = &locks[i].lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Reserves the tables; called from _PG_init (through http_register_workers). */
void
http_shmem_install(void)
{
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = tables_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = tables_shmem_startup;
}
