/*
 * secret_mask.h — the one way an error text that may quote a URL, a
 * header or a remote answer is made safe to store or show: credentials in
 * it become ***.  worker_status.last_error, the forward worker's errors
 * (forward_counters, redeliveries, dead letters) and the alert worker's
 * (alert_notifications, alert_rule_runs) all go through secret_mask().
 */
#ifndef RUNRA_OBS_SECRET_MASK_H
#define RUNRA_OBS_SECRET_MASK_H

#include "nodes/pg_list.h"

/* what a credential is replaced with */
#define SECRET_MASK "***"

/* Secrets shorter than this are not looked for: they would mask words. */
#define SECRET_MASK_MIN_LEN 4

extern List *secret_mask_add(List *secrets, const char *value);
extern List *secret_mask_add_url(List *secrets, const char *url);
extern List *secret_mask_add_header_values(List *secrets, const char *header_lines);
extern char *secret_mask(const char *text, List *secrets);

#endif
