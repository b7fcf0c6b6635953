/*
 * guc.h — every runra_obs.* setting, defined in one place (guc.c).
 *
 * Each subsystem reads the variables declared here; nobody else calls
 * DefineCustom*Variable.  The README has one table describing them all.
 */
#ifndef RUNRA_OBS_GUC_H
#define RUNRA_OBS_GUC_H

/* the store (issue: event store) */
extern int	runra_retention_s;
extern int	runra_premake_s;
extern double runra_error_rate_threshold;
extern int	runra_max_json_depth;

/* workers */
extern char *runra_database;

/* HTTP ingest */
extern int	runra_http_workers;
extern char *runra_http_listen_addresses;
extern int	runra_http_port;
extern int	runra_http_max_body_size;
extern int	runra_http_max_connections;
extern int	runra_http_connection_timeout_s;
extern int	runra_http_lock_timeout_ms;
extern int	runra_http_statement_timeout_ms;
extern int	runra_idempotency_window_s;
extern bool runra_http_allow_unauthenticated;
extern int	runra_http_max_batch_requests;
extern int	runra_http_header_timeout_s;
extern int	runra_http_max_connections_per_address;
extern char *runra_http_tls_cert_file;
extern char *runra_http_tls_key_file;
extern char *runra_http_metrics_token;
extern int	runra_http_token_events_per_second;
extern int	runra_http_token_bytes_per_second;
extern int	runra_http_token_rate_burst_s;

/* NOTIFY ingest and maintenance */
extern char *runra_notify_conninfo;
extern char *runra_notify_channel;
extern int	runra_notify_batch_size;
extern int	runra_notify_flush_ms;
extern int	runra_maintenance_interval_s;
extern int	runra_rejected_retention_s;

/* forwarding */
extern bool runra_forward_enabled;
extern int	runra_forward_poll_interval_ms;
extern int	runra_forward_requests;
extern int	runra_forward_max_request_size;

/* rollups */
extern int	runra_rollup_retention_s;
extern bool runra_rollup_enabled;
extern bool runra_alert_enabled;
extern int	runra_alert_poll_interval_ms;
extern int	runra_alert_evaluation_timeout_ms;
extern int	runra_alert_retention_s;
extern int	runra_rollup_interval_ms;
extern int	runra_rollup_batch_size;
extern int	runra_rollup_nice;
extern int	runra_rollup_shard_connections;

extern void runra_define_gucs(void);

#endif
