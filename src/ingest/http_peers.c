/*
 * http_peers.c — how many connections each client address holds, over all
 * HTTP workers.
 *
 * The workers share one port and the kernel spreads a client's
 * connections over them, so a limit per address only means something if
 * the count is shared: a hash table in shared memory (address -> open
 * connections) under one LWLock.  IPv4 addresses are kept in their
 * IPv4-mapped IPv6 form, so a dual-stack listener counts a client once
 * (http_shmem.c makes the table).
 * Each entry counts per worker, so a worker that exited without closing
 * its connections one by one (a libmicrohttpd panic) has its share
 * dropped when it starts again.  The table has room for every connection
 * the workers can hold (capped); when it is full, a new address is not
 * counted (and not limited) rather than refused.  Called from libmicrohttpd's connection callback: nothing
 * here may throw (HASH_ENTER_NULL on a fixed-size table returns NULL).
 */
#include "postgres.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include "storage/lwlock.h"
#include "utils/hsearch.h"

#include "guc.h"
#include "ingest/http.h"

#define PEERS_MAX_ENTRIES 65536

typedef struct PeerEntry
{
	HttpPeerKey key;			/* hash key: must be first */
	int			connections[MAX_HTTP_WORKERS];	/* by worker index */
} PeerEntry;

static int	my_worker = 0;

/* Every connection all workers may hold, within the cap. */
static long
peers_table_size(void)
{
	long		n = (long) runra_http_workers * http_conn_hard_limit();

	return Max(Min(n, PEERS_MAX_ENTRIES), 16);
}

/* The table (made by http_shmem.c) */
HttpSharedHash http_peers_hash = {
	"runra_obs http peers", peers_table_size, sizeof(HttpPeerKey), sizeof(PeerEntry), NULL, NULL
};

/* Connections of one address over all workers. */
static int
entry_total(const PeerEntry *entry)
{
	int			total = 0;

	for (int i = 0; i < MAX_HTTP_WORKERS; i++)
		total += entry->connections[i];
	return total;
}

/*
 * A starting worker holds no connection yet: forgets what its predecessor
 * counted (it may have exited without closing them one by one).
 */
void
http_peers_worker_start(int worker_index)
{
	HASH_SEQ_STATUS scan;
	PeerEntry  *entry;

	my_worker = worker_index % MAX_HTTP_WORKERS;
	LWLockAcquire(http_peers_hash.lock, LW_EXCLUSIVE);
	hash_seq_init(&scan, http_peers_hash.table);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		entry->connections[my_worker] = 0;
		if (entry_total(entry) == 0)
			(void) hash_search(http_peers_hash.table, &entry->key, HASH_REMOVE, NULL);
	}
	LWLockRelease(http_peers_hash.lock);
}

/* The table's key of a client address; false for non-IP sockets. */
static bool
peer_key(const struct sockaddr *addr, HttpPeerKey *key)
{
	memset(key, 0, sizeof(*key));
	if (addr == NULL)
		return false;
	if (addr->sa_family == AF_INET)
	{
		const struct sockaddr_in *in = (const struct sockaddr_in *) addr;

		key->addr[10] = 0xff;
		key->addr[11] = 0xff;
		memcpy(&key->addr[12], &in->sin_addr, 4);
		return true;
	}
	if (addr->sa_family == AF_INET6)
	{
		memcpy(key->addr, &((const struct sockaddr_in6 *) addr)->sin6_addr, 16);
		return true;
	}
	return false;
}

/*
 * A connection from addr opened: counts it and returns how many that
 * address now holds, or 0 when it is not counted (not IP, table full).
 * *key is what http_peer_leave needs when the connection closes.
 */
int
http_peer_enter(const struct sockaddr *addr, HttpPeerKey *key)
{
	PeerEntry  *entry;
	bool		found;
	int			count = 0;

	if (!peer_key(addr, key))
		return 0;
	LWLockAcquire(http_peers_hash.lock, LW_EXCLUSIVE);
	entry = hash_search(http_peers_hash.table, key, HASH_ENTER_NULL, &found);
	if (entry != NULL)
	{
		if (!found)
			memset(entry->connections, 0, sizeof(entry->connections));
		entry->connections[my_worker]++;
		count = entry_total(entry);
	}
	LWLockRelease(http_peers_hash.lock);
	return count;
}

/* A counted connection closed; the address leaves the table at zero. */
void
http_peer_leave(const HttpPeerKey *key)
{
	PeerEntry  *entry;

	LWLockAcquire(http_peers_hash.lock, LW_EXCLUSIVE);
	entry = hash_search(http_peers_hash.table, key, HASH_FIND, NULL);
	if (entry != NULL && entry->connections[my_worker] > 0)
		entry->connections[my_worker]--;
	if (entry != NULL && entry_total(entry) == 0)
		(void) hash_search(http_peers_hash.table, key, HASH_REMOVE, NULL);
	LWLockRelease(http_peers_hash.lock);
}
