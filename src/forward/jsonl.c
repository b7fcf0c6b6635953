/*
 * jsonl.c — the JSONL file destination, in the seed's line format:
 *
 *   {"timestamp":"2026-06-15T10:30:00.000Z","sandboxId":"sb_abc123",
 *    "type":"exec.completed","data":{...}}
 *
 * (plus "traceId" when the event has one), one event per line.  Files
 * rotate by size: when the next line would take filePath past
 * maxFileSizeMb, filePath becomes filePath.1, filePath.1 becomes
 * filePath.2 and so on, keeping maxFiles files in all.  The cursor passes a
 * batch only after its lines were written and fsync'd, and the renames of
 * a rotation are fsync'd through the directory.
 *
 * Nothing here throws on I/O trouble: a failure is reported back as a
 * failed send and retried like one.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "forward/forward.h"

/* Appends one event as a JSONL line (with its newline). */
static void
jsonl_encode_event(StringInfo out, ForwardEvent *ev)
{
	json_append_event(out, ev, "timestamp");
	appendStringInfoChar(out, '\n');
}

/* fsyncs the directory holding path, so renames and new files last. */
static bool
fsync_parent(const char *path, char **error)
{
	char	   *dir = pstrdup(path);
	char	   *slash = strrchr(dir, '/');
	int			fd;

	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	fd = open(dir, O_RDONLY);
	if (fd < 0 || fsync(fd) != 0)
	{
		*error = psprintf("could not fsync directory \"%s\": %m", dir);
		if (fd >= 0)
			close(fd);
		return false;
	}
	close(fd);
	return true;
}

/* Shifts path.(k) to path.(k+1), dropping the oldest, and path to path.1. */
static bool
rotate(Destination *dest, char **error)
{
	const char *path = dest->file_path;

	if (dest->max_files <= 1)
	{
		if (unlink(path) != 0 && errno != ENOENT)
		{
			*error = psprintf("could not remove \"%s\" to rotate it: %m", path);
			return false;
		}
		return fsync_parent(path, error);
	}
	(void) unlink(psprintf("%s.%d", path, dest->max_files - 1));
	for (int k = dest->max_files - 2; k >= 1; k--)
	{
		char	   *from = psprintf("%s.%d", path, k);

		if (rename(from, psprintf("%s.%d", path, k + 1)) != 0 && errno != ENOENT)
		{
			*error = psprintf("could not rename \"%s\" to rotate it: %m", from);
			return false;
		}
	}
	if (rename(path, psprintf("%s.1", path)) != 0 && errno != ENOENT)
	{
		*error = psprintf("could not rename \"%s\" to rotate it: %m", path);
		return false;
	}
	return fsync_parent(path, error);
}

/*
 * Writes all of buf to fd, which ends at offset start, and fsyncs it.  A
 * write that fails part-way (disk full) is cut off again: the retry appends
 * the batch anew, and a fragment before it would spoil its first line.
 */
static bool
write_all(int fd, const char *path, off_t start, const char *buf, size_t len, char **error)
{
	while (len > 0)
	{
		ssize_t		w = write(fd, buf, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
		{
			*error = psprintf("could not write to \"%s\": %m", path);
			if (ftruncate(fd, start) != 0)
				*error = psprintf("%s; could not cut off the part written: %m", *error);
			return false;
		}
		buf += w;
		len -= w;
	}
	if (fsync(fd) != 0)
	{
		*error = psprintf("could not fsync \"%s\": %m", path);
		return false;
	}
	return true;
}

/* Opens filePath for appending and tells its size. */
static int
open_current(Destination *dest, off_t *size, char **error)
{
	struct stat st;
	/* never through a symbolic link: it could point anywhere the server may write */
	int			fd = open(dest->file_path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0640);

	if (fd < 0 || fstat(fd, &st) != 0)
	{
		*error = psprintf("could not open \"%s\": %m", dest->file_path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*size = st.st_size;
	return fd;
}

/*
 * Writes the batch as lines, rotating whenever the next line would not fit;
 * true when every line is on disk.  A line longer than the limit goes alone
 * into a fresh file.
 */
bool
jsonl_write(Destination *dest, ForwardEvent *events, int n, char **error)
{
	StringInfoData pending;
	StringInfoData line;
	off_t		size;
	int			fd = open_current(dest, &size, error);
	bool		ok = fd >= 0;

	initStringInfo(&pending);
	initStringInfo(&line);
	for (int i = 0; ok && i < n; i++)
	{
		resetStringInfo(&line);
		jsonl_encode_event(&line, &events[i]);
		if (size + pending.len > 0 && size + pending.len + line.len > dest->max_file_bytes)
		{
			ok = write_all(fd, dest->file_path, size, pending.data, pending.len, error);
			close(fd);
			fd = -1;
			ok = ok && rotate(dest, error);
			if (ok)
				ok = (fd = open_current(dest, &size, error)) >= 0;
			resetStringInfo(&pending);
		}
		appendBinaryStringInfo(&pending, line.data, line.len);
	}
	if (ok)
		ok = write_all(fd, dest->file_path, size, pending.data, pending.len, error);
	if (fd >= 0)
		close(fd);
	if (ok && size == 0)
		ok = fsync_parent(dest->file_path, error);	/* a new file's name */
	return ok;
}
