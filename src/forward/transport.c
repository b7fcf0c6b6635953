/*
 * transport.c — HTTP delivery with libcurl's multi interface, driven by the
 * worker's WaitEventSet.
 *
 * libcurl tells us, through its socket and timer callbacks, which sockets
 * it wants watched and when it wants to be called back; transport_wait()
 * builds a WaitEventSet of the latch, postmaster death and those sockets,
 * waits, and hands what happened back to curl_multi_socket_action().  A
 * destination has several requests in flight (runra_obs.forward_requests
 * of them) and many destinations send at once; libcurl keeps the
 * connections open between requests.
 *
 * The callbacks only copy bytes into malloc'd memory and fixed arrays: no
 * PostgreSQL call (which could throw) runs inside a libcurl frame.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/timestamp.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "forward/forward.h"
#include "worker/worker_common.h"

#define MAX_SOCKETS 256
#define MAX_RESPONSE (16 * 1024 * 1024)	/* Axiom names every refused event */

typedef struct WatchedSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN, _OUT, _INOUT */
} WatchedSocket;

static CURLM *multi = NULL;
static WatchedSocket sockets[MAX_SOCKETS];
static int	n_sockets = 0;
static TimestampTz curl_deadline = 0;	/* libcurl's one-shot timer; 0: none */

/* libcurl's socket callback: remember what to watch on which socket. */
static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < n_sockets && sockets[i].fd != fd; i++)
		;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < n_sockets)
			sockets[i] = sockets[--n_sockets];
		return 0;
	}
	if (i == n_sockets)
	{
		if (n_sockets == MAX_SOCKETS)
			return -1;
		n_sockets++;
	}
	sockets[i].fd = fd;
	sockets[i].what = what;
	return 0;
}

/* libcurl's timer callback: remember when it wants to be called (once). */
static int
timer_callback(CURLM *m, long timeout_ms, void *userp)
{
	curl_deadline = timeout_ms < 0 ? 0
		: TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/*
 * Collects the answer body, capped.  It grows as it comes: most answers are
 * tiny, but Axiom's names each event it refused (a time and a reason), and
 * an answer cut short cannot be read, so the whole batch would be re-sent.
 */
static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	InFlight   *req = userp;
	size_t		len = size * nmemb;
	size_t		cap = req->response_cap > 0 ? req->response_cap : MAX_RESPONSE;
	size_t		take = len <= cap - req->response_len ? len : cap - req->response_len;
	char	   *grown;

	if (take == 0)
		return len;
	grown = realloc(req->response, req->response_len + take + 1);
	if (grown == NULL)
		return 0;
	req->response = grown;
	memcpy(req->response + req->response_len, data, take);
	req->response_len += take;
	req->response[req->response_len] = '\0';
	return len;
}

/* Keeps the Retry-After header's value. */
static size_t
header_callback(char *data, size_t size, size_t nitems, void *userp)
{
	InFlight   *req = userp;
	size_t		len = size * nitems;
	static const char name[] = "retry-after:";

	if (len > sizeof(name) - 1 && pg_strncasecmp(data, name, sizeof(name) - 1) == 0)
	{
		const char *v = data + sizeof(name) - 1;
		size_t		vlen = len - (sizeof(name) - 1);

		while (vlen > 0 && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
			vlen--;
		vlen = Min(vlen, sizeof(req->retry_after) - 1);
		memcpy(req->retry_after, v, vlen);
		req->retry_after[vlen] = '\0';
	}
	return len;
}

/* Sets up libcurl once per worker. */
void
transport_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialize libcurl")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_callback);
}

/* Builds the header list: JSON, no Expect: 100-continue, then the extras. */
static struct curl_slist *
build_headers(InFlight *req)
{
	struct curl_slist *h = NULL;
	Destination *dest = req->dest;

	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:");
	if (req->content_encoding)
		h = curl_slist_append(h, psprintf("Content-Encoding: %s", req->content_encoding));
	if (req->auth)
		h = curl_slist_append(h, psprintf("Authorization: %s", req->auth));
	if (dest->headers)
	{
		char	   *copy = pstrdup(dest->headers);
		char	   *save = NULL;

		for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			h = curl_slist_append(h, line);
	}
	return h;
}

/* Starts POSTing req->body to its destination's URL (again, after a failure). */
void
transport_start(InFlight *req)
{
	Destination *dest = req->dest;
	CURL	   *easy;

	transport_detach(req);
	easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	req->easy = easy;
	req->headers = build_headers(req);
	req->retry_after[0] = '\0';
	req->error[0] = '\0';
	curl_easy_setopt(easy, CURLOPT_URL, dest->url);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) dest->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(dest->timeout_ms, 10000));
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "runra_obs-forward");
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_callback);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->error);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	req->state = BATCH_ON_WIRE;
	dest->on_wire++;
	curl_multi_add_handle(multi, easy);
}

/* Tells libcurl about one socket event (or, with fd = CURL_SOCKET_TIMEOUT, its timer). */
static void
curl_act(curl_socket_t fd, int mask)
{
	int			running;

	curl_multi_socket_action(multi, fd, mask, &running);
}

/*
 * Waits until the latch is set, a socket libcurl watches is ready, libcurl's
 * timer is due or timeout_ms (-1: forever) passes, and lets libcurl do its
 * work.  *latch_set says whether the latch woke us.
 */
void
transport_wait(long timeout_ms, bool *latch_set)
{
	WaitEventSet *set = CreateWaitEventSet(CurrentMemoryContext, n_sockets + 2);
	WaitEvent	events[MAX_SOCKETS + 2];
	long		wait_ms = timeout_ms;
	int			n;

	*latch_set = false;
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < n_sockets; i++)
		AddWaitEventToSet(set,
						  ((sockets[i].what & CURL_POLL_IN) ? WL_SOCKET_READABLE : 0) |
						  ((sockets[i].what & CURL_POLL_OUT) ? WL_SOCKET_WRITEABLE : 0),
						  sockets[i].fd, NULL, NULL);
	if (curl_deadline != 0)
	{
		long		due = (long) ((curl_deadline - GetCurrentTimestamp() + 999) / 1000);

		due = Max(due, 0);
		if (wait_ms < 0 || due < wait_ms)
			wait_ms = due;
	}
	n = WaitEventSetWait(set, wait_ms, events, lengthof(events), PG_WAIT_EXTENSION);
	FreeWaitEventSet(set);
	runra_worker_absorb_barriers();

	for (int i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			*latch_set = true;
			continue;
		}
		curl_act(events[i].fd,
				 ((events[i].events & WL_SOCKET_READABLE) ? CURL_CSELECT_IN : 0) |
				 ((events[i].events & WL_SOCKET_WRITEABLE) ? CURL_CSELECT_OUT : 0));
	}
	/* libcurl's own timer (connect and request timeouts, its retries): one-shot */
	if (curl_deadline != 0 && GetCurrentTimestamp() >= curl_deadline)
	{
		curl_deadline = 0;
		curl_act(CURL_SOCKET_TIMEOUT, 0);
	}
}

/*
 * The next finished request, with libcurl's result and the HTTP status;
 * NULL when none has finished.  It stays attached to libcurl until
 * transport_detach() (or the next transport_start()).
 */
InFlight *
transport_next_done(CURLcode *code, long *status)
{
	int			left;
	CURLMsg    *msg;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		InFlight   *req;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		*code = msg->data.result;
		*status = 0;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, status);
		return req;
	}
	return NULL;
}

/*
 * Takes a request off the wire (finished or not) and frees what libcurl and
 * its callbacks allocated for it; the batch itself stays.
 */
void
transport_detach(InFlight *req)
{
	if (req->easy)
	{
		curl_multi_remove_handle(multi, req->easy);
		curl_easy_cleanup(req->easy);
		req->easy = NULL;
		if (req->state == BATCH_ON_WIRE && req->dest->on_wire > 0)
			req->dest->on_wire--;
	}
	curl_slist_free_all(req->headers);
	req->headers = NULL;
	free(req->response);
	req->response = NULL;
	req->response_len = 0;
}
