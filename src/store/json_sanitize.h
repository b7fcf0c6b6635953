/*
 * json_sanitize.h — make raw JSON bytes storable as JSONB without losing the
 * event: text that JSONB cannot hold becomes U+FFFD.
 */
#ifndef RUNRA_OBS_JSON_SANITIZE_H
#define RUNRA_OBS_JSON_SANITIZE_H

extern char *json_sanitize(char *text, int *len, int *replacements);

#endif
