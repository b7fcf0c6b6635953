/*
 * alert.h — the alert worker's parts: evaluating the rules that are due
 * (evaluate.c) and delivering the notifications that are queued
 * (deliver.c), each in transactions of their own, driven by
 * alert_worker.c.  What a rule means, its states and the payloads are SQL
 * (extension/parts/80_alerts.sql, 82_alert_eval.sql, 84_alert_notify.sql).
 */
#ifndef RUNRA_OBS_ALERT_H
#define RUNRA_OBS_ALERT_H

#include "consume/watermark.h"

/* evaluate.c: evaluates every rule due now; returns how many */
extern int	alert_evaluate_due(WatermarkProbe *probe);

/* deliver.c */
extern void alert_deliver_init(void);
extern int	alert_deliver_start(void);
extern void alert_deliver_wait(long timeout_ms);
extern int	alert_deliver_on_wire(void);

#endif
