/*
 * faketime_waits.c — preloaded before libfaketime by scripts/test-dates:
 * two calls that libfaketime wraps and PostgreSQL 15 needs unwrapped go
 * straight to the kernel.  Faking only moves the clock by an offset, so
 * neither needs its times converted.
 *
 * select(): a signal handler that runs while a process waits in
 * libfaketime's wrapper sees the real clock, and a child forked in such a
 * handler keeps the real clock for good.  The postmaster waits in select()
 * and starts background workers from its signal handlers, so every
 * runra_obs worker escaped the faked date.
 *
 * epoll_wait(), poll(), nanosleep(), setitimer(): for the same reason,
 * PostgreSQL's SIGALRM handler (timeout.c), which runs while a backend
 * waits in epoll_wait() and asks the clock whether a timeout is due, saw the
 * real clock: with a date moved ahead no timeout was ever due, so
 * lock_timeout, statement_timeout and deadlock_timeout never ended a wait
 * (a lock wait of 300 ms lasted until the lock was released).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int
select(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
	   struct timeval *timeout)
{
	return syscall(SYS_select, nfds, readfds, writefds, exceptfds, timeout);
}

int
setitimer(__itimer_which_t which, const struct itimerval *new_value, struct itimerval *old_value)
{
	return syscall(SYS_setitimer, which, new_value, old_value);
}

int
getitimer(__itimer_which_t which, struct itimerval *curr_value)
{
	return syscall(SYS_getitimer, which, curr_value);
}

int
epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
	return syscall(SYS_epoll_pwait, epfd, events, maxevents, timeout, NULL, _NSIG / 8);
}

int
epoll_pwait(int epfd, struct epoll_event *events, int maxevents, int timeout,
			const sigset_t *sigmask)
{
	return syscall(SYS_epoll_pwait, epfd, events, maxevents, timeout, sigmask, _NSIG / 8);
}

int
poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	struct timespec ts = {timeout / 1000, (timeout % 1000) * 1000000L};

	return syscall(SYS_ppoll, fds, nfds, timeout < 0 ? NULL : &ts, NULL, _NSIG / 8);
}

int
nanosleep(const struct timespec *req, struct timespec *rem)
{
	return syscall(SYS_nanosleep, req, rem);
}
