/*
 * worker_xact.h — running a piece of work in its own short transaction from
 * a background worker's main loop, without letting an ERROR end the worker.
 */
#ifndef RUNRA_OBS_WORKER_XACT_H
#define RUNRA_OBS_WORKER_XACT_H

typedef void (*RunraTransactionWork) (void *arg);

extern bool runra_worker_run_transaction(const char *activity,
										 RunraTransactionWork work, void *arg,
										 char **error, int *sqlerrcode);

extern bool runra_worker_run_subtransaction(RunraTransactionWork work, void *arg,
											 char **error);
extern void runra_worker_call_with_timeout(int timeout_ms, RunraTransactionWork work,
										   void *arg);

#endif
