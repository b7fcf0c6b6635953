/*
 * http_load.c — the load generator of bench/http.sh: POSTs one body many
 * times over a fixed number of concurrent keep-alive connections (libcurl
 * multi), and prints how many requests got 200, how long it took, and the
 * rate.
 *
 *   http_load URL TOKEN BODY_FILE CONTENT_TYPE REQUESTS CONNECTIONS [MAX_SECONDS]
 *
 * BODY_FILE given as @LIST names a file listing body files, one per line:
 * request i sends the (i mod n)-th, so a run can send every batch of a data
 * set once.  REQUESTS 0 with MAX_SECONDS runs for that long instead.
 * Output is one line of key=value pairs for the script to read.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Answers are not kept; only their status counts. */
static size_t
discard(char *data, size_t size, size_t n, void *user)
{
	return size * n;
}

static char *
read_file(const char *path, long *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (*len = ftell(f)) < 0)
	{
		perror(path);
		exit(2);
	}
	rewind(f);
	buf = malloc(*len + 1);
	if (buf == NULL || fread(buf, 1, *len, f) != (size_t) *len)
	{
		perror(path);
		exit(2);
	}
	fclose(f);
	return buf;
}

/* The bodies to send: one file, or each file of an @LIST. */
typedef struct Bodies
{
	long		n;
	char	  **data;
	long	   *len;
} Bodies;

static Bodies
read_bodies(const char *arg)
{
	Bodies		b = {0, NULL, NULL};
	FILE	   *list;
	char		path[4096];

	if (arg[0] != '@')
	{
		b.n = 1;
		b.data = malloc(sizeof(char *));
		b.len = malloc(sizeof(long));
		b.data[0] = read_file(arg, &b.len[0]);
		return b;
	}
	if ((list = fopen(arg + 1, "r")) == NULL)
	{
		perror(arg + 1);
		exit(2);
	}
	while (fgets(path, sizeof(path), list) != NULL)
	{
		path[strcspn(path, "\n")] = '\0';
		if (path[0] == '\0')
			continue;
		b.data = realloc(b.data, (b.n + 1) * sizeof(char *));
		b.len = realloc(b.len, (b.n + 1) * sizeof(long));
		b.data[b.n] = read_file(path, &b.len[b.n]);
		b.n++;
	}
	fclose(list);
	if (b.n == 0)
	{
		fprintf(stderr, "%s lists no files\n", arg + 1);
		exit(2);
	}
	return b;
}

/* Points a handle at the body of request number i. */
static void
set_body(CURL *easy, Bodies *b, long i)
{
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, b->data[i % b->n]);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, b->len[i % b->n]);
}

int
main(int argc, char **argv)
{
	const char *url;
	long		requests, connections, started = 0, finished = 0, ok = 0, failed = 0;
	double		max_seconds, t0, elapsed;
	char		auth[512], type[256];
	Bodies		bodies;
	struct curl_slist *headers = NULL;
	CURLM	   *multi;
	int			running;

	if (argc < 7)
	{
		fprintf(stderr, "usage: %s URL TOKEN BODY_FILE CONTENT_TYPE REQUESTS CONNECTIONS [MAX_SECONDS]\n", argv[0]);
		return 2;
	}
	url = argv[1];
	requests = atol(argv[5]);
	connections = atol(argv[6]);
	max_seconds = argc > 7 ? atof(argv[7]) : 0;
	bodies = read_bodies(argv[3]);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", argv[2]);
	snprintf(type, sizeof(type), "Content-Type: %s", argv[4]);
	headers = curl_slist_append(headers, auth);
	headers = curl_slist_append(headers, type);
	headers = curl_slist_append(headers, "Expect:");

	curl_global_init(CURL_GLOBAL_DEFAULT);
	multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, connections);
	t0 = now_seconds();
	for (long i = 0; i < connections && (requests == 0 || started < requests); i++, started++)
	{
		CURL	   *easy = curl_easy_init();

		curl_easy_setopt(easy, CURLOPT_URL, url);
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
		set_body(easy, &bodies, started);
		curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(easy, CURLOPT_TIMEOUT, 60L);
		curl_multi_add_handle(multi, easy);
	}
	do
	{
		CURLMsg    *msg;
		int			left;

		curl_multi_perform(multi, &running);
		while ((msg = curl_multi_info_read(multi, &left)) != NULL)
		{
			CURL	   *easy = msg->easy_handle;
			long		status = 0;
			int			more;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
			finished++;
			if (msg->data.result == CURLE_OK && status == 200)
				ok++;
			else
				failed++;
			curl_multi_remove_handle(multi, easy);
			more = requests > 0 ? started < requests
				: now_seconds() - t0 < max_seconds;
			if (more)
			{
				set_body(easy, &bodies, started);
				started++;
				curl_multi_add_handle(multi, easy);	/* same connection, kept alive */
				running++;
			}
			else
				curl_easy_cleanup(easy);
		}
		if (running > 0)
			curl_multi_poll(multi, NULL, 0, 100, NULL);
	} while (running > 0);
	elapsed = now_seconds() - t0;
	printf("requests=%ld ok=%ld failed=%ld seconds=%.3f per_second=%.1f\n",
		   finished, ok, failed, elapsed, finished / elapsed);
	curl_multi_cleanup(multi);
	curl_slist_free_all(headers);
	curl_global_cleanup();
	return failed > 0 ? 1 : 0;
}
