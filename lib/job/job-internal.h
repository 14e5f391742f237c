/* lib/job: what the job document (doc.c), the runner
 * (runner.c) and the job controls (job.c) share.  Nothing outside lib/job
 * includes it.
 *
 * A job's document (the store's "doc", JSON):
 *   { "mode": "cold", "source": ABS, "vm": NAME, "options": {spec},
 *     "test": bool, "cutover": bool (asked), "staging": ABS, "out": ABS,
 *     "source-key": KEY, "error": TEXT, "created"/"started"/"finished": T,
 *     "checks": [{ "severity", "message", "remedy" }],
 *     "steps": [{ "name", "disk" (absent: none), "state": running|done|
 *                 failed, "started", "finished", "outcome" }],
 *     "disks": [{ "source", "target", "format", "total", "done", "speed",
 *                 "eta", "virtual-size", "checkpoint": { "durable",
 *                 "file-size", "dev", "ino", "source" } }] }
 */
#ifndef FERRY_JOB_JOB_INTERNAL_H
#define FERRY_JOB_JOB_INTERNAL_H

#include <json-c/json.h>

#include <ferry/job.h>

#include "../common/error.h"

/* The document of record R, parsed (the caller puts it), or NULL with the
 * error set. */
json_object *job_doc_parse (const struct ferry_store_record *r);

/* Save DOC as job ID's with STATE, over revision *REV (updated).  The
 * caller holds the job (its runner, or nobody runs it): a conflict (the
 * record changed under it, only its request or heartbeat) is retried on
 * the new revision.  0 or -1. */
int job_doc_save (struct ferry_store *st, int64_t id, int64_t *rev,
                  const char *state, json_object *doc);

/* Getters that tolerate a missing or mistyped member. */
const char *job_str (json_object *o, const char *key);
double job_num (json_object *o, const char *key);
bool job_bool (json_object *o, const char *key);

/* The spec of the job's "options" (as ferry_job_spec_parse); the strings
 * are in *HOLD. */
int job_doc_spec (json_object *doc, struct ferry_job_spec *spec,
                  struct ferry_job_spec_hold **hold);

/* The v2v options of SPEC. */
int job_v2v_options (const struct ferry_job_spec *spec,
                     struct ferry_v2v_options *opts);

/* The working folder of job ID whose output folder is the absolute
 * OUT_DIR: ".NAME.ferry-job-ID" beside it (its name carries the job's id,
 * target.h).  The caller frees it; NULL with the error set. */
char *job_staging_path (const char *out_dir, int64_t id);

/* True for a warm migration's spec. */
bool job_is_warm (const struct ferry_job_spec *spec);
/* Check SPEC's mode and its warm options, and fill *WO from them (its
 * source, workdir and tag are the caller's to set).  0, or -1 with the
 * error set. */
struct ferry_warm_options;
int job_warm_options (const struct ferry_job_spec *spec,
                      struct ferry_warm_options *wo);
/* The folder of ferry's own files for warm job ID of the store ST. */
char *job_warm_workdir (struct ferry_store *st, int64_t id);
/* The prefix of what warm job ID names in its source VM ("ferry-jID":
 * bitmaps, exports), into BUF. */
void job_warm_tag (int64_t id, char *buf, size_t len);
/* A job DOC (job ID) cancelled while no runner holds it: when it is a
 * warm one, take what it left in its source out of it
 * (ferry_warm_forget); a source that cannot be reached (a VM that is
 * gone) is said in an event. */
void job_warm_forget (struct ferry_store *st, int64_t id, json_object *doc);

/* The disks of PLAN as the document's "disks" (the caller puts it). */
json_object *job_disks_json (const struct ferry_v2v_plan *plan);

/* Whether the job of DOC is done though not recorded so: a run stopped
 * after its commit's rename (its description written, its working
 * folder gone and its output folder in place). */
bool job_found_done (json_object *doc);

/* Remove a job's working folder STAGING (what ferry_target_discard does
 * for a kept target).  0 or -1. */
int job_remove_staging (const char *staging);

/* The checks of PLAN (may be NULL) as the document's "checks". */
json_object *job_checks_json (const struct ferry_v2v_plan *plan);

/* Unix time now. */
double job_now (void);

#endif /* FERRY_JOB_JOB_INTERNAL_H */
