/*
 * http_tls.c — the certificate and private key of the HTTP ingest.
 *
 * runra_obs.http_tls_cert_file and runra_obs.http_tls_key_file name PEM
 * files (relative paths are read from the data directory, as PostgreSQL's
 * own ssl_cert_file is); both empty means plain HTTP.  The worker reads
 * them when it starts and at every SIGHUP, and http_server.c restarts its
 * daemons when either setting or either file's content changed (so a
 * renewed certificate written over the old file is picked up by a
 * reload).  A key readable by group or others is refused, as PostgreSQL
 * refuses its own.  Everything here runs in the worker's main loop, never
 * inside libmicrohttpd: errors are ERRORs.
 */
#include "postgres.h"

#include <sys/stat.h>

#include "storage/fd.h"
#include "utils/memutils.h"

#include "guc.h"
#include "ingest/http.h"

/* larger than any certificate chain or key we mean to read */
#define TLS_FILE_MAX (1024 * 1024)

/* The whole of a PEM file, NUL-terminated, in TopMemoryContext. */
static char *
read_pem(const char *path, const char *setting)
{
	FILE	   *f = AllocateFile(path, "r");
	StringInfoData text;
	char		buf[8192];
	size_t		n;
	bool		failed;

	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open %s \"%s\": %m", setting, path)));
	initStringInfo(&text);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && text.len <= TLS_FILE_MAX)
		appendBinaryStringInfo(&text, buf, (int) n);
	failed = ferror(f) != 0;
	FreeFile(f);				/* before any ERROR: no transaction will close it */
	if (failed)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read %s \"%s\"", setting, path)));
	if (text.len > TLS_FILE_MAX || text.len == 0 || memchr(text.data, '\0', text.len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" is not a PEM file", setting, path),
				 errdetail("It is empty, larger than 1 MB, or holds a NUL byte.")));
	{
		char	   *kept = MemoryContextStrdup(TopMemoryContext, text.data);

		explicit_bzero(text.data, text.len);	/* it may be the private key */
		pfree(text.data);
		return kept;
	}
}

/* The private key must not be readable by group or others. */
static void
check_key_permissions(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not access runra_obs.http_tls_key_file \"%s\": %m", path)));
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("runra_obs.http_tls_key_file \"%s\" has group or world access", path),
				 errdetail("Permissions should be u=rw (0600) or less.")));
}

/* Both settings or neither: one alone is a mistake, not plain HTTP. */
static void
check_settings_paired(void)
{
	bool		cert = runra_http_tls_cert_file[0] != '\0';
	bool		key = runra_http_tls_key_file[0] != '\0';

	if (cert != key)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("runra_obs.%s is set but runra_obs.%s is empty",
						cert ? "http_tls_cert_file" : "http_tls_key_file",
						cert ? "http_tls_key_file" : "http_tls_cert_file"),
				 errhint("Set both to serve HTTPS, or neither to serve plain HTTP.")));
	if (cert && !MHD_is_feature_supported(MHD_FEATURE_TLS))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("runra_obs.http_tls_cert_file is set but libmicrohttpd was built without TLS"),
				 errhint("Install a libmicrohttpd built with GnuTLS, or terminate TLS in a reverse proxy.")));
}

/*
 * What the settings name now: NULL for plain HTTP, else the files' paths
 * and contents (in TopMemoryContext; http_tls_free gives them back).
 */
HttpTls *
http_tls_read(void)
{
	HttpTls    *tls;

	check_settings_paired();
	if (runra_http_tls_cert_file[0] == '\0')
		return NULL;
	check_key_permissions(runra_http_tls_key_file);
	tls = MemoryContextAllocZero(TopMemoryContext, sizeof(HttpTls));
	tls->cert_file = MemoryContextStrdup(TopMemoryContext, runra_http_tls_cert_file);
	tls->key_file = MemoryContextStrdup(TopMemoryContext, runra_http_tls_key_file);
	tls->cert = read_pem(tls->cert_file, "runra_obs.http_tls_cert_file");
	tls->key = read_pem(tls->key_file, "runra_obs.http_tls_key_file");
	return tls;
}

/* Would a and b serve the same (both plain, or the same files and bytes)? */
bool
http_tls_same(const HttpTls *a, const HttpTls *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a->cert_file, b->cert_file) == 0 && strcmp(a->key_file, b->key_file) == 0 &&
		strcmp(a->cert, b->cert) == 0 && strcmp(a->key, b->key) == 0;
}

/* Gives back what http_tls_read allocated (the key is wiped first). */
void
http_tls_free(HttpTls *tls)
{
	if (tls == NULL)
		return;
	explicit_bzero(tls->key, strlen(tls->key));
	pfree(tls->cert_file);
	pfree(tls->key_file);
	pfree(tls->cert);
	pfree(tls->key);
	pfree(tls);
}
