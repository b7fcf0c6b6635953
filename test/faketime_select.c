/*
 * faketime_select.c — preloaded before libfaketime by scripts/test-dates.
 *
 * libfaketime wraps select(); a signal handler that runs while a process
 * waits in that wrapper sees the real clock, and a child forked in such a
 * handler keeps the real clock for good.  PostgreSQL 15's postmaster waits
 * in select() and starts background workers from its signal handlers, so
 * every runra_obs worker escaped the faked date.  This select() goes to the
 * kernel directly (faking only moves the clock by an offset, so timeouts
 * need no scaling), and the workers share the date of everything else.
 */
#define _GNU_SOURCE
#include <sys/select.h>
#include <sys/syscall.h>
#include <unistd.h>

int
select(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
	   struct timeval *timeout)
{
	return syscall(SYS_select, nfds, readfds, writefds, exceptfds, timeout);
}
