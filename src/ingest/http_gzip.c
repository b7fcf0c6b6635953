/*
 * http_gzip.c — decodes "Content-Encoding: gzip" request bodies with zlib.
 *
 * Runs in the worker's main loop (not in libmicrohttpd's callbacks).  The
 * decoded size is capped by runra_obs.http_max_body_size while decoding, so
 * a small bomb cannot make a huge buffer.  Several gzip members one after
 * the other (what `cat a.gz b.gz` makes) decode as one body.
 */
#include "postgres.h"

#include <zlib.h>

#include "ingest/http.h"

/* Inflates every member of in; false with *error set when it is not gzip. */
static GunzipResult
inflate_all(z_stream *zs, StringInfo out, size_t limit, const char **error)
{
	for (;;)
	{
		int			rc;

		enlargeStringInfo(out, 64 * 1024);
		zs->next_out = (Bytef *) out->data + out->len;
		zs->avail_out = out->maxlen - out->len - 1;
		rc = inflate(zs, Z_NO_FLUSH);
		out->len = (char *) zs->next_out - out->data;
		if ((size_t) out->len > limit)
			return GUNZIP_TOO_LARGE;
		if (rc == Z_STREAM_END)
		{
			if (zs->avail_in == 0)
				return GUNZIP_OK;
			if (inflateReset(zs) != Z_OK)	/* another member follows */
				break;
			continue;
		}
		if (rc == Z_OK)
			continue;
		if (rc == Z_BUF_ERROR && zs->avail_in == 0)
		{
			*error = "the gzip body ends before its end marker";
			return GUNZIP_CORRUPT;
		}
		break;
	}
	*error = zs->msg ? zs->msg : "the body is not valid gzip";
	return GUNZIP_CORRUPT;
}

/*
 * Decodes a gzip body into a palloc'd, NUL-terminated buffer of at most
 * limit bytes.
 */
GunzipResult
http_gunzip(const char *in, size_t in_len, size_t limit, char **out, size_t *out_len,
			const char **error)
{
	z_stream	zs;
	StringInfoData buf;
	GunzipResult result;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)	/* 16: gzip wrapper only */
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not start zlib: %s", zs.msg ? zs.msg : "out of memory")));
	initStringInfo(&buf);
	zs.next_in = (Bytef *) in;
	zs.avail_in = (uInt) in_len;
	result = inflate_all(&zs, &buf, limit, error);
	inflateEnd(&zs);
	buf.data[buf.len] = '\0';
	*out = buf.data;
	*out_len = buf.len;
	return result;
}
