/* Migration jobs: the spec (what was asked), adding a job, and the
 * controls that work from any process (pause, cancel, reset, cutover,
 * remove).  The runner is in runner.c.
 *
 * NOTES
 *
 * 1. A job no runner holds is changed here directly; a job a live runner
 *    holds is only asked (the store's request column), and its runner
 *    acts at its next safe point: the runner is the only writer of a
 *    running job's document.
 *
 * 2. A cancel removes the working folder: the partial output goes, the
 *    record stays (state cancelled, with its events).  The output folder
 *    itself is never touched: it exists only when the job is done.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ferry/target.h>
#include <ferry/vm.h>
#include <ferry/warm.h>

#include "job-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

double
job_now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_REALTIME, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

const char *
job_str (json_object *o, const char *key)
{
  json_object *v;

  if (o && json_object_object_get_ex (o, key, &v) &&
      json_object_is_type (v, json_type_string))
    return json_object_get_string (v);
  return NULL;
}

double
job_num (json_object *o, const char *key)
{
  json_object *v;

  if (o && json_object_object_get_ex (o, key, &v) &&
      (json_object_is_type (v, json_type_int) ||
       json_object_is_type (v, json_type_double)))
    return json_object_get_double (v);
  return 0;
}

bool
job_bool (json_object *o, const char *key)
{
  json_object *v;

  return o && json_object_object_get_ex (o, key, &v) &&
    json_object_is_type (v, json_type_boolean) && json_object_get_boolean (v);
}

json_object *
job_doc_parse (const struct ferry_store_record *r)
{
  json_object *doc = json_tokener_parse (r->doc ? r->doc : "");

  if (doc == NULL || !json_object_is_type (doc, json_type_object)) {
    json_object_put (doc);
    ferry_error (EINVAL, "job %" PRId64 ": its record is not a JSON object",
                 r->id);
    return NULL;
  }
  return doc;
}

int
job_doc_save (struct ferry_store *st, int64_t id, int64_t *rev,
              const char *state, json_object *doc)
{
  const char *text = json_object_to_json_string_ext (doc,
                                                     JSON_C_TO_STRING_PLAIN);
  int tries;

  json_object_object_add (doc, "state", json_object_new_string (state));
  text = json_object_to_json_string_ext (doc, JSON_C_TO_STRING_PLAIN);
  for (tries = 0; tries < 8; tries++) {
    struct ferry_store_record r = { 0 };
    int s = ferry_store_job_save (st, id, *rev, state, text, rev);

    if (s != 0)
      return s == 1 ? 0 : -1;
    /* Changed under us: only its request or heartbeat can have (note 1). */
    if (ferry_store_job_get (st, id, &r) == -1)
      return -1;
    *rev = r.rev;
    ferry_store_record_free (&r);
  }
  return ferry_error (EBUSY, "job %" PRId64 ": its record keeps changing "
                      "under its runner", id);
}

int
ferry_job_json_parse (const char *text, size_t len, json_object **out)
{
  json_tokener *tok = json_tokener_new ();
  enum json_tokener_error e;
  json_object *obj;
  size_t end;

  *out = NULL;
  if (tok == NULL)
    return ferry_error (ENOMEM, "out of memory");
  obj = json_tokener_parse_ex (tok, text, len);
  e = json_tokener_get_error (tok);
  end = json_tokener_get_parse_end (tok);
  json_tokener_free (tok);
  if (obj == NULL && e == json_tokener_continue)
    return ferry_error (EINVAL, "not JSON: it ends before the JSON does "
                        "(cut short?)");
  if (obj == NULL)
    return ferry_error (EINVAL, "not JSON: %s at byte %zu",
                        json_tokener_error_desc (e), end);
  while (end < len && strchr (" \t\r\n", text[end]) && text[end])
    end++;
  if (end < len) {
    json_object_put (obj);
    return ferry_error (EINVAL, "not JSON: more after the JSON value, at "
                        "byte %zu", end);
  }
  *out = obj;
  return 0;
}

/* --- the spec --------------------------------------------------------------- */

struct ferry_job_spec_hold {
  json_object *obj;              /* the strings point into it */
  const char **netmap;
};

void
ferry_job_spec_free (struct ferry_job_spec_hold *hold)
{
  if (hold == NULL)
    return;
  json_object_put (hold->obj);
  free (hold->netmap);
  free (hold);
}

/* Member KEY of the spec object V as what *SPEC needs. */
static int
spec_member (struct ferry_job_spec *spec, struct ferry_job_spec_hold *hold,
             const char *key, json_object *v)
{
  static const struct { const char *key; size_t off; } strings[] = {
    { "source", offsetof (struct ferry_job_spec, source) },
    { "to", offsetof (struct ferry_job_spec, to) },
    { "out", offsetof (struct ferry_job_spec, out) },
    { "format", offsetof (struct ferry_job_spec, format) },
    { "name", offsetof (struct ferry_job_spec, name) },
    { "flavor", offsetof (struct ferry_job_spec, flavor) },
    { "mode", offsetof (struct ferry_job_spec, mode) },
    { "domain", offsetof (struct ferry_job_spec, domain) },
    { "cutover", offsetof (struct ferry_job_spec, cutover) },
    { "source-stop", offsetof (struct ferry_job_spec, source_stop) },
  };
  static const struct { const char *key; size_t off; } bools[] = {
    { "keep-devices", offsetof (struct ferry_job_spec, keep_devices) },
    { "no-convert", offsetof (struct ferry_job_spec, no_convert) },
    { "no-guest-agent", offsetof (struct ferry_job_spec, no_guest_agent) },
    { "test", offsetof (struct ferry_job_spec, test) },
    { "verify", offsetof (struct ferry_job_spec, verify) },
  };
  size_t i;

  for (i = 0; i < sizeof strings / sizeof strings[0]; i++)
    if (strcmp (key, strings[i].key) == 0) {
      if (!json_object_is_type (v, json_type_string))
        return ferry_error (EINVAL, "\"%s\": expected a string", key);
      *(const char **) ((char *) spec + strings[i].off) =
        json_object_get_string (v);
      return 0;
    }
  for (i = 0; i < sizeof bools / sizeof bools[0]; i++)
    if (strcmp (key, bools[i].key) == 0) {
      if (!json_object_is_type (v, json_type_boolean))
        return ferry_error (EINVAL, "\"%s\": expected true or false", key);
      *(bool *) ((char *) spec + bools[i].off) = json_object_get_boolean (v);
      return 0;
    }
  if (strcmp (key, "max-downtime") == 0 ||
      strcmp (key, "round-interval") == 0) {
    double d;
    if ((!json_object_is_type (v, json_type_int) &&
         !json_object_is_type (v, json_type_double)) ||
        !((d = json_object_get_double (v)) >= 0) || d > 86400)
      return ferry_error (EINVAL, "\"%s\": expected seconds (0 to 86400)",
                          key);
    if (key[0] == 'm')
      spec->max_downtime = d;
    else
      spec->round_interval = d;
    return 0;
  }
  if (strcmp (key, "shutdown-timeout") == 0) {
    int64_t n;
    if (!json_object_is_type (v, json_type_int) ||
        (n = json_object_get_int64 (v)) < 0 || n > 86400)
      return ferry_error (EINVAL, "\"%s\": expected a whole number (0 to "
                          "86400)", key);
    spec->shutdown_timeout = n;
    return 0;
  }
  if (strcmp (key, "threads") == 0 || strcmp (key, "verify-timeout") == 0) {
    int64_t n;
    int64_t max = key[0] == 't' ? 256 : 86400;
    if (!json_object_is_type (v, json_type_int) ||
        (n = json_object_get_int64 (v)) < 0 || n > max)
      return ferry_error (EINVAL, "\"%s\": expected a whole number (0 to "
                          "%" PRId64 ")", key, max);
    if (key[0] == 't')
      spec->threads = n;
    else
      spec->verify_timeout = n;
    return 0;
  }
  if (strcmp (key, "cache") == 0) {
    const char *c = json_object_is_type (v, json_type_string)
      ? json_object_get_string (v) : "";
    if (strcmp (c, "unsafe") && strcmp (c, "writeback"))
      return ferry_error (EINVAL, "\"cache\": expected \"unsafe\" or "
                          "\"writeback\"");
    spec->no_flush = strcmp (c, "unsafe") == 0;
    return 0;
  }
  if (strcmp (key, "network-map") == 0) {
    size_t n = json_object_is_type (v, json_type_array)
      ? json_object_array_length (v) : 1;
    if (!json_object_is_type (v, json_type_array) &&
        !json_object_is_type (v, json_type_string))
      return ferry_error (EINVAL, "\"network-map\": expected a string or an "
                          "array of strings");
    if (n > 1024)
      return ferry_error (EINVAL, "\"network-map\": more than 1024 rules");
    free (hold->netmap);
    hold->netmap = calloc (n + 1, sizeof *hold->netmap);
    if (hold->netmap == NULL)
      return ferry_error (ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
      json_object *e = json_object_is_type (v, json_type_array)
        ? json_object_array_get_idx (v, i) : v;
      if (!json_object_is_type (e, json_type_string))
        return ferry_error (EINVAL, "\"network-map\": expected strings");
      hold->netmap[i] = json_object_get_string (e);
    }
    spec->network_map = hold->netmap;
    return 0;
  }
  return ferry_error (EINVAL, "\"%s\": not an option of a migration (known: "
                      "source, to, out, format, name, network-map, "
                      "keep-devices, flavor, threads, cache, no-convert, "
                      "no-guest-agent, verify, verify-timeout, test, mode, "
                      "domain, cutover, max-downtime, round-interval, "
                      "source-stop, shutdown-timeout)", key);
}

/* Read the spec object OBJ (taken over) into *SPEC. */
static int
spec_from_object (json_object *obj, struct ferry_job_spec *spec,
                  struct ferry_job_spec_hold **holdp)
{
  struct ferry_job_spec_hold *hold = calloc (1, sizeof *hold);

  memset (spec, 0, sizeof *spec);
  *holdp = NULL;
  if (hold == NULL) {
    json_object_put (obj);
    return ferry_error (ENOMEM, "out of memory");
  }
  hold->obj = obj;
  if (!json_object_is_type (obj, json_type_object)) {
    ferry_job_spec_free (hold);
    return ferry_error (EINVAL, "a migration is a JSON object");
  }
  json_object_object_foreach (obj, key, v) {
    if (spec_member (spec, hold, key, v) == -1) {
      ferry_job_spec_free (hold);
      return -1;
    }
  }
  *holdp = hold;
  return 0;
}

int
ferry_job_spec_parse (const char *text, struct ferry_job_spec *spec,
                      struct ferry_job_spec_hold **hold)
{
  json_object *obj;

  if (ferry_job_json_parse (text, strlen (text), &obj) == -1)
    return -1;
  return spec_from_object (obj, spec, hold);
}

int
job_doc_spec (json_object *doc, struct ferry_job_spec *spec,
              struct ferry_job_spec_hold **hold)
{
  json_object *o;

  if (!json_object_object_get_ex (doc, "options", &o))
    return ferry_error (EINVAL, "the job has no options");
  return spec_from_object (json_object_get (o), spec, hold);
}

/* SPEC as the JSON object of a job's "options", with the paths made
 * absolute (a job runs from any folder). */
static json_object *
spec_to_json (const struct ferry_job_spec *spec, const char *source,
              const char *out)
{
  json_object *o = json_object_new_object ();
  size_t i;

#define STR(k, v) if (v) json_object_object_add (o, k, json_object_new_string (v))
#define BOOL(k, v) if (v) json_object_object_add (o, k, json_object_new_boolean (true))
  STR ("source", source);
  STR ("to", spec->to);
  STR ("out", out);
  STR ("format", spec->format);
  STR ("name", spec->name);
  STR ("flavor", spec->flavor);
  BOOL ("keep-devices", spec->keep_devices);
  BOOL ("no-convert", spec->no_convert);
  BOOL ("no-guest-agent", spec->no_guest_agent);
  BOOL ("test", spec->test);
  BOOL ("verify", spec->verify);
  STR ("mode", spec->mode);
  STR ("domain", spec->domain);
  STR ("cutover", spec->cutover);
  STR ("source-stop", spec->source_stop);
#undef STR
#undef BOOL
  if (spec->threads)
    json_object_object_add (o, "threads", json_object_new_int (spec->threads));
  if (spec->verify_timeout)
    json_object_object_add (o, "verify-timeout",
                            json_object_new_int (spec->verify_timeout));
  if (spec->no_flush)
    json_object_object_add (o, "cache", json_object_new_string ("unsafe"));
  if (spec->max_downtime > 0)
    json_object_object_add (o, "max-downtime",
                            json_object_new_double (spec->max_downtime));
  if (spec->round_interval > 0)
    json_object_object_add (o, "round-interval",
                            json_object_new_double (spec->round_interval));
  if (spec->shutdown_timeout)
    json_object_object_add (o, "shutdown-timeout",
                            json_object_new_int (spec->shutdown_timeout));
  if (spec->network_map && spec->network_map[0]) {
    json_object *a = json_object_new_array ();
    for (i = 0; spec->network_map[i]; i++)
      json_object_array_add (a, json_object_new_string (spec->network_map[i]));
    json_object_object_add (o, "network-map", a);
  }
  return o;
}

int
job_v2v_options (const struct ferry_job_spec *spec,
                 struct ferry_v2v_options *opts)
{
  static const char *const targets[] = {
    [FERRY_V2V_LIBVIRT] = "libvirt", [FERRY_V2V_QEMU] = "qemu",
    [FERRY_V2V_OVA] = "ova", [FERRY_V2V_LOCAL] = "local",
  };
  size_t i;

  memset (opts, 0, sizeof *opts);
  if (spec->to == NULL)
    return ferry_error (EINVAL, "no target (libvirt, qemu, ova or local)");
  for (i = 0; i < sizeof targets / sizeof targets[0]; i++)
    if (strcmp (spec->to, targets[i]) == 0)
      break;
  if (i == sizeof targets / sizeof targets[0])
    return ferry_error (EINVAL, "target %s: expected libvirt, qemu, ova or "
                        "local", spec->to);
  opts->target = i;
  opts->out_dir = spec->out;
  opts->disk_format = spec->format;
  opts->name = spec->name;
  opts->network_map = spec->network_map;
  opts->keep_devices = spec->keep_devices;
  opts->flavor = spec->flavor;
  opts->threads = spec->threads;
  opts->no_flush = spec->no_flush;
  opts->no_convert = spec->no_convert;
  opts->no_guest_agent = spec->no_guest_agent;
  return 0;
}

bool
job_is_warm (const struct ferry_job_spec *spec)
{
  return spec->mode && strcmp (spec->mode, "warm") == 0;
}

int
job_warm_options (const struct ferry_job_spec *spec,
                  struct ferry_warm_options *wo)
{
  memset (wo, 0, sizeof *wo);
  if (spec->mode && strcmp (spec->mode, "cold") && strcmp (spec->mode, "warm")) {
    ferry_error (EINVAL, "mode %s: expected cold or warm", spec->mode);
    return ferry_error_input ("mode");
  }
  if (!job_is_warm (spec)) {
    /* The spec's own names for them (a plan's members). */
    const char *opt = spec->domain ? "domain" : spec->cutover ? "cutover"
      : spec->max_downtime > 0 ? "max-downtime"
      : spec->round_interval > 0 ? "round-interval"
      : spec->source_stop ? "source-stop"
      : spec->shutdown_timeout ? "shutdown-timeout" : NULL;
    if (opt) {
      ferry_error (EINVAL, "%s is an option of a warm migration", opt);
      return ferry_error_input ("mode");
    }
    return 0;
  }
  if (spec->test) {
    ferry_error (EINVAL, "a test boot before the cutover is for cold "
                 "migrations: a warm one keeps the source running until its "
                 "cutover");
    return ferry_error_input ("test");
  }
  if (spec->cutover &&
      ferry_warm_parse_cutover (spec->cutover, &wo->cutover,
                                &wo->cutover_at) == -1)
    return -1;
  if (spec->source_stop && strcmp (spec->source_stop, "shutdown") &&
      strcmp (spec->source_stop, "pause")) {
    ferry_error (EINVAL, "source stop %s: expected shutdown or pause",
                 spec->source_stop);
    return ferry_error_input ("source_stop");
  }
  wo->domain = spec->domain;
  wo->max_downtime = spec->max_downtime;
  wo->round_interval = spec->round_interval;
  wo->source_pause = spec->source_stop &&
    strcmp (spec->source_stop, "pause") == 0;
  wo->shutdown_timeout = spec->shutdown_timeout;
  wo->converts = !spec->no_convert && strncmp (spec->source, "qmp:", 4) != 0;
  return 0;
}

void
job_warm_tag (int64_t id, char *buf, size_t len)
{
  snprintf (buf, len, "ferry-j%" PRId64, id);
}

char *
job_warm_workdir (struct ferry_store *st, int64_t id)
{
  const char *store = ferry_store_path (st), *slash = strrchr (store, '/');
  char *dir;

  /* Beside the store, as its logs are; a socket's path must be short. */
  if (slash && slash - store + 40 < 100) {
    if (asprintf (&dir, "%.*s/warm-job-%" PRId64, (int) (slash - store),
                  store, id) == -1)
      dir = NULL;
  }
  else if (asprintf (&dir, "/tmp/ferry-warm-%ju-%" PRId64,
                     (uintmax_t) getuid (), id) == -1)
    dir = NULL;
  if (dir == NULL)
    ferry_error (ENOMEM, "out of memory");
  return dir;
}

/* The VM of the warm migration SPEC (its absolute SOURCE), read for
 * planning only; NULL with the error set. */
static struct ferry_vm *
warm_vm (const struct ferry_job_spec *spec, const char *source,
         struct ferry_warm **wp)
{
  struct ferry_warm_options wo;
  char dir[] = "/tmp/ferry-add-XXXXXX";
  char tag[64];

  *wp = NULL;
  if (job_warm_options (spec, &wo) == -1)
    return NULL;
  if (mkdtemp (dir) == NULL) {
    ferry_error_errno (errno, "%s", dir);
    return NULL;
  }
  snprintf (tag, sizeof tag, "ferry-add%ld", (long) getpid ());
  wo.source = source;
  wo.workdir = dir;
  wo.tag = tag;
  *wp = ferry_warm_open (&wo, false, NULL);
  if (*wp == NULL) {
    rmdir (dir);
    return NULL;
  }
  return ferry_warm_take_vm (*wp);
}

/* SOURCE made absolute: a file's real path, "qmp:" and its socket's. */
static char *
absolute_source (const char *source)
{
  char *s, *real;

  if (ferry_image_is_uri (source))
    return strdup (source);
  if (strncmp (source, "qmp:", 4) != 0)
    return realpath (source, NULL);
  real = realpath (source + 4, NULL);
  if (real == NULL)
    return NULL;
  if (asprintf (&s, "qmp:%s", real) == -1)
    s = NULL;
  free (real);
  return s;
}

/* --- adding ----------------------------------------------------------------- */

/* The key that --per-source counts: the folder of a file source (a
 * datastore, an OVA folder), or the host of a URI. */
static char *
source_key (const char *source)
{
  const char *p = strstr (source, "://");

  if (p) {
    const char *h = p + 3, *e = h + strcspn (h, "/:?");
    return strndup (source, e - source);
  }
  p = strrchr (source, '/');
  return p == NULL ? strdup (".") : p == source ? strdup ("/")
    : strndup (source, p - source);
}

/* The checks of PLAN as a JSON array. */
json_object *
job_checks_json (const struct ferry_v2v_plan *plan)
{
  json_object *a = json_object_new_array ();
  size_t i;

  for (i = 0; plan && i < plan->nr_checks; i++) {
    json_object *c = json_object_new_object ();
    json_object_object_add (c, "severity", json_object_new_string (
      plan->checks[i].severity == FERRY_V2V_ERROR ? "error" : "warning"));
    json_object_object_add (c, "message",
                            json_object_new_string (plan->checks[i].message));
    if (plan->checks[i].remedy)
      json_object_object_add (c, "remedy",
                              json_object_new_string (plan->checks[i].remedy));
    json_object_array_add (a, c);
  }
  return a;
}

json_object *
job_disks_json (const struct ferry_v2v_plan *plan)
{
  json_object *a = json_object_new_array ();
  size_t i;

  for (i = 0; plan && i < plan->nr_disks; i++) {
    const struct ferry_v2v_disk *pd = &plan->disks[i];
    json_object *d = json_object_new_object ();
    json_object_object_add (d, "source", json_object_new_string (pd->source));
    json_object_object_add (d, "target",
                            json_object_new_string (pd->target_name));
    json_object_object_add (d, "format",
                            json_object_new_string (pd->target_format));
    json_object_object_add (d, "migrated",
                            json_object_new_boolean (pd->migrated));
    json_object_object_add (d, "virtual-size",
                            json_object_new_uint64 (pd->virtual_size));
    json_object_object_add (d, "total", json_object_new_uint64 (pd->data_bytes));
    json_object_object_add (d, "done", json_object_new_uint64 (0));
    json_object_array_add (a, d);
  }
  return a;
}

char *
job_staging_path (const char *out_dir, int64_t id)
{
  const char *slash = strrchr (out_dir, '/');
  char *staging;

  if (slash == NULL) {
    ferry_error (EINVAL, "%s: not an absolute path", out_dir);
    return NULL;
  }
  if (asprintf (&staging, "%.*s/.%s.ferry-job-%" PRId64,
                (int) (slash - out_dir), out_dir, slash + 1, id) == -1) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  return staging;
}

/* Record a new job of SPEC with the absolute SOURCE, its VM and PLAN
 * (either may be NULL when it could not be planned), in STATE, ERROR its
 * reason when failed.  Its id, or -1. */
static int64_t
record_job (struct ferry_store *st, const struct ferry_job_spec *spec,
            const char *source, const struct ferry_vm *vm,
            const struct ferry_v2v_plan *plan, const char *state,
            const char *error)
{
  CLEANUP_FREE char *key = source_key (source), *staging = NULL;
  json_object *doc;
  int64_t id;

  if (key == NULL)
    return ferry_error (ENOMEM, "out of memory");
  doc = json_object_new_object ();
  json_object_object_add (doc, "mode", json_object_new_string (
                            job_is_warm (spec) ? "warm" : "cold"));
  json_object_object_add (doc, "source", json_object_new_string (source));
  if (vm && vm->name)
    json_object_object_add (doc, "vm", json_object_new_string (vm->name));
  json_object_object_add (doc, "options", spec_to_json (
    spec, source, plan ? plan->out_dir : spec->out));
  json_object_object_add (doc, "test", json_object_new_boolean (spec->test));
  json_object_object_add (doc, "out", json_object_new_string (
    plan ? plan->out_dir : spec->out));
  json_object_object_add (doc, "source-key", json_object_new_string (key));
  json_object_object_add (doc, "created", json_object_new_double (job_now ()));
  json_object_object_add (doc, "checks", job_checks_json (plan));
  json_object_object_add (doc, "disks", job_disks_json (plan));
  json_object_object_add (doc, "steps", json_object_new_array ());
  if (error)
    json_object_object_add (doc, "error", json_object_new_string (error));
  json_object_object_add (doc, "state", json_object_new_string (state));
  id = ferry_store_job_add (st, spec->plan, state,
                            json_object_to_json_string_ext (
                              doc, JSON_C_TO_STRING_PLAIN));
  if (id > 0 && plan) {
    struct ferry_store_record r = { 0 };
    int64_t rev;

    staging = job_staging_path (plan->out_dir, id);
    if (staging == NULL)
      id = -1;
    else if (ferry_store_job_get (st, id, &r) == -1)
      id = -1;
    else {
      rev = r.rev;
      ferry_store_record_free (&r);
      json_object_object_add (doc, "staging", json_object_new_string (staging));
      if (job_doc_save (st, id, &rev, state, doc) == -1)
        id = -1;
    }
  }
  if (id > 0 && error)
    ferry_store_event_add (st, id, "error", error);
  else if (id > 0)
    ferry_store_event_add (st, id, "info", "added");
  json_object_put (doc);
  return id;
}

int64_t
ferry_job_add_plan (struct ferry_store *st, const struct ferry_job_spec *spec,
                    const struct ferry_vm *vm,
                    const struct ferry_v2v_plan *plan)
{
  CLEANUP_FREE char *source = ferry_image_is_uri (spec->source)
    ? strdup (spec->source) : realpath (spec->source, NULL);

  if (source == NULL)
    return ferry_error_errno (errno, "%s", spec->source);
  if (plan->nr_errors)
    return ferry_error (EINVAL, "%zu check%s failed", plan->nr_errors,
                        plan->nr_errors == 1 ? "" : "s");
  return record_job (st, spec, source, vm, plan, "planned", NULL);
}

int64_t
ferry_job_add (struct ferry_store *st, const struct ferry_job_spec *spec,
               bool add_failed, struct ferry_vm **vmp,
               struct ferry_v2v_plan **planp)
{
  struct ferry_v2v_options opts;
  struct ferry_vm *vm = NULL;
  struct ferry_v2v_plan *plan = NULL;
  struct ferry_warm *warm = NULL;
  struct ferry_warm_options wo;
  struct ferry_job_spec s2;
  CLEANUP_FREE char *source = NULL;
  CLEANUP_FREE char *error = NULL;
  CLEANUP_FREE char *cutover = NULL;
  const char *state = "planned";
  int64_t id;

  if (vmp)
    *vmp = NULL;
  if (planp)
    *planp = NULL;
  if (spec->source == NULL)
    return ferry_error (EINVAL, "no source");
  if (job_v2v_options (spec, &opts) == -1 ||
      job_warm_options (spec, &wo) == -1)
    return -1;
  if (opts.out_dir == NULL) {
    ferry_error (EINVAL, "no output folder");
    return ferry_error_input ("out_dir");
  }
  if (job_is_warm (spec) && spec->cutover && spec->cutover[0] == '+') {
    /* "+SECONDS" counts from now, not from whenever it runs. */
    time_t t = (time_t) wo.cutover_at;
    struct tm tm;
    char buf[64];

    if (t < wo.cutover_at)
      t++;                              /* never earlier */
    strftime (buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", gmtime_r (&t, &tm));
    cutover = strdup (buf);
    if (cutover == NULL)
      return ferry_error (ENOMEM, "out of memory");
  }
  s2 = *spec;
  if (cutover)
    s2.cutover = cutover;
  spec = &s2;
  if (job_is_warm (spec) && strncmp (spec->source, "qmp:", 4) == 0)
    opts.no_convert = true;             /* a KVM guest already */
  source = absolute_source (spec->source);
  if (source == NULL) {
    if (!add_failed)
      return ferry_error_errno (errno, "%s", spec->source);
    source = strdup (spec->source);
    if (source == NULL)
      return ferry_error (ENOMEM, "out of memory");
  }
  vm = job_is_warm (spec) ? warm_vm (spec, source, &warm)
    : ferry_vm_read (source);
  if (vm)
    plan = ferry_v2v_plan (vm, &opts);
  ferry_warm_close (warm, true);
  if (plan == NULL) {
    if (!add_failed) {
      ferry_vm_free (vm);
      return -1;
    }
    error = strdup (ferry_get_error ());
    state = "failed";
  }
  else if (plan->nr_errors) {
    if (!add_failed) {
      if (planp)
        *planp = plan;
      else
        ferry_v2v_plan_free (plan);
      if (vmp)
        *vmp = vm;
      else
        ferry_vm_free (vm);
      return 0;
    }
    size_t k;
    for (k = 0; k < plan->nr_checks; k++)
      if (plan->checks[k].severity == FERRY_V2V_ERROR)
        break;
    if (asprintf (&error, "%zu check%s failed: %s", plan->nr_errors,
                  plan->nr_errors == 1 ? "" : "s",
                  plan->checks[k].message) == -1)
      error = NULL;
    state = "failed";
  }
  id = record_job (st, spec, source, vm, plan, state, error);
  if (planp)
    *planp = plan;
  else
    ferry_v2v_plan_free (plan);
  if (vmp)
    *vmp = vm;
  else
    ferry_vm_free (vm);
  return id;
}

int64_t
ferry_job_find_resumable (struct ferry_store *st,
                          const struct ferry_job_spec *spec, const char *out)
{
  static const char *const resumable[] = {
    "planned", "paused", "failed", "running", NULL,
  };
  CLEANUP_FREE char *source = ferry_image_is_uri (spec->source)
    ? strdup (spec->source) : realpath (spec->source, NULL);
  struct ferry_store_record *r = NULL;
  json_object *want;
  size_t n = 0, i, k;
  int64_t found = 0;

  if (source == NULL)
    return 0;
  if (ferry_store_job_list (st, -1, &r, &n) == -1)
    return -1;
  want = spec_to_json (spec, source, out);
  /* The newest first: the last one added for this migration. */
  for (i = n; i-- > 0 && found == 0;) {
    json_object *doc, *opts;
    for (k = 0; resumable[k]; k++)
      if (strcmp (r[i].state, resumable[k]) == 0)
        break;
    if (resumable[k] == NULL || r[i].plan)
      continue;
    if (strcmp (r[i].state, "running") == 0 &&
        ferry_store_job_runner_alive (st, &r[i], FERRY_JOB_STALE) != 0)
      continue;
    doc = job_doc_parse (&r[i]);
    if (doc && json_object_object_get_ex (doc, "options", &opts) &&
        json_object_equal (opts, want) &&
        !job_bool (doc, "test") && job_str (doc, "staging"))
      found = r[i].id;
    json_object_put (doc);
  }
  json_object_put (want);
  ferry_store_records_free (r, n);
  return found;
}

/* --- controls (note 1) ------------------------------------------------------ */

bool
job_found_done (json_object *doc)
{
  const char *staging = job_str (doc, "staging"), *out = job_str (doc, "out");
  json_object *steps;
  struct stat sb;
  size_t i;
  bool described = false;

  if (!json_object_object_get_ex (doc, "steps", &steps))
    return false;
  for (i = 0; i < json_object_array_length (steps); i++) {
    json_object *s = json_object_array_get_idx (steps, i);
    const char *name = job_str (s, "name"), *state = job_str (s, "state");
    if (name && state && !strcmp (name, "describe") && !strcmp (state, "done"))
      described = true;
  }
  return described && staging && out && lstat (staging, &sb) == -1 &&
    lstat (out, &sb) == 0;
}

const char *
ferry_job_shown_state (struct ferry_store *st, const struct ferry_store_record *r)
{
  /* A warm job awaiting its cutover is running its rounds. */
  if (r->state && (strcmp (r->state, "running") == 0 ||
                   (strcmp (r->state, "awaiting-cutover") == 0 && r->runner)) &&
      ferry_store_job_runner_alive (st, r, FERRY_JOB_STALE) == 0)
    return "interrupted";
  return r->state ? r->state : "?";
}

/* Let go of job ID if load took it (*HELD). */
static void
unload (struct ferry_store *st, int64_t id, char **held)
{
  struct error_saved saved;

  if (*held == NULL)
    return;
  error_save (&saved);
  ferry_store_job_release (st, id, *held);
  error_restore (&saved);
  free (*held);
  *held = NULL;
}

/* Read job ID, its document and whether a live runner holds it.  When
 * none does, take the job ourselves (*HELD, our runner id) while we act
 * on it, so that no runner starts on it meanwhile (note 1); a claim
 * refused means a runner has just taken it: *LIVE then. */
static int
load (struct ferry_store *st, int64_t id, struct ferry_store_record *r,
      json_object **doc, bool *live, char **held)
{
  *held = NULL;
  if (ferry_store_job_get (st, id, r) == -1)
    return -1;
  *live = r->runner && ferry_store_job_runner_alive (st, r,
                                                     FERRY_JOB_STALE) == 1;
  if (!*live) {
    char *me = ferry_store_runner_id ();
    if (me == NULL)
      return ferry_error (ENOMEM, "out of memory");
    if (ferry_store_job_claim (st, id, me, FERRY_JOB_STALE) == 0)
      *held = me;
    else if (ferry_get_errno () == EBUSY) {
      free (me);
      *live = true;
    }
    else {
      free (me);
      ferry_store_record_free (r);
      return -1;
    }
    /* Read again: what we hold is the record as it is now. */
    ferry_store_record_free (r);
    if (ferry_store_job_get (st, id, r) == -1) {
      unload (st, id, held);
      return -1;
    }
  }
  *doc = job_doc_parse (r);
  if (*doc == NULL) {
    ferry_store_record_free (r);
    unload (st, id, held);
    return -1;
  }
  return 0;
}

/* True when STATE is one of the NULL-terminated list. */
static bool
state_in (const char *state, const char *const *list)
{
  for (; *list; list++)
    if (strcmp (state, *list) == 0)
      return true;
  return false;
}

/* Record that the job ended in STATE here (no runner). */
static int
set_state (struct ferry_store *st, struct ferry_store_record *r,
           json_object *doc, const char *state)
{
  int64_t rev = r->rev;

  json_object_object_add (doc, "finished", json_object_new_double (job_now ()));
  return job_doc_save (st, r->id, &rev, state, doc);
}

int
ferry_job_pause (struct ferry_store *st, int64_t id)
{
  static const char *const pausable[] = { "planned", "running", NULL };
  struct ferry_store_record r;
  json_object *doc;
  bool live;
  char *held = NULL;
  int ret = -1;

  if (load (st, id, &r, &doc, &live, &held) == -1)
    return -1;
  if (live) {
    ret = ferry_store_job_request (st, id, "pause") == -1 ? -1 : 0;
  }
  else if (!state_in (r.state, pausable))
    ferry_error (EINVAL, "job %" PRId64 " is %s: only a planned or running "
                 "job can be paused", id, ferry_job_shown_state (st, &r));
  else if (set_state (st, &r, doc, "paused") == 0) {
    ferry_store_event_add (st, id, "info", "paused");
    ret = 1;
  }
  unload (st, id, &held);
  json_object_put (doc);
  ferry_store_record_free (&r);
  return ret;
}

void
job_warm_forget (struct ferry_store *st, int64_t id, json_object *doc)
{
  struct ferry_job_spec spec;
  struct ferry_job_spec_hold *hold = NULL;
  struct ferry_warm_options wo;
  CLEANUP_FREE char *workdir = NULL;
  char tag[64];

  if (job_doc_spec (doc, &spec, &hold) == -1 || !job_is_warm (&spec) ||
      job_warm_options (&spec, &wo) == -1 ||
      (workdir = job_warm_workdir (st, id)) == NULL) {
    ferry_job_spec_free (hold);
    return;
  }
  job_warm_tag (id, tag, sizeof tag);
  wo.source = spec.source;
  wo.workdir = workdir;
  wo.tag = tag;
  if (ferry_warm_forget (&wo) == -1) {
    CLEANUP_FREE char *msg = NULL;
    if (asprintf (&msg, "what ferry left in the source could not be "
                  "removed: %s", ferry_get_error ()) != -1)
      ferry_store_event_add (st, id, "warning", msg);
  }
  ferry_job_spec_free (hold);
}

int
ferry_job_cancel (struct ferry_store *st, int64_t id)
{
  struct ferry_store_record r;
  json_object *doc;
  const char *staging;
  bool live;
  char *held = NULL;
  int ret = -1;

  if (load (st, id, &r, &doc, &live, &held) == -1)
    return -1;
  staging = job_str (doc, "staging");
  if (live)
    ret = ferry_store_job_request (st, id, "cancel") == -1 ? -1 : 0;
  else if (strcmp (r.state, "done") == 0 || strcmp (r.state, "cancelled") == 0)
    ferry_error (EINVAL, "job %" PRId64 " is %s already", id, r.state);
  else if (job_found_done (doc))
    /* Note 2: the output folder is never touched. */
    ferry_error (EINVAL, "job %" PRId64 " is done: its output %s is in place "
                 "(its runner stopped after putting it there)", id,
                 job_str (doc, "out"));
  else if (staging == NULL || ferry_target_remove_kept (staging) == 0) {
    /* A warm job's bitmaps and files go too. */
    job_warm_forget (st, id, doc);
    if (set_state (st, &r, doc, "cancelled") == 0) {
      ferry_store_event_add (st, id, "info", "cancelled; its partial output "
                             "was removed");
      ret = 1;
    }
  }
  unload (st, id, &held);
  json_object_put (doc);
  ferry_store_record_free (&r);
  return ret;
}

int
ferry_job_reset (struct ferry_store *st, int64_t id, bool restart)
{
  static const char *const resettable[] = {
    "paused", "failed", "cancelled", "awaiting-cutover", "running", NULL,
  };
  struct ferry_store_record r;
  json_object *doc;
  bool live;
  char *held = NULL;
  int ret = -1;

  if (load (st, id, &r, &doc, &live, &held) == -1)
    return -1;
  if (live)
    ferry_error (EBUSY, "job %" PRId64 " is running (process %s)", id,
                 r.runner);
  else if (!state_in (r.state, resettable))
    ferry_error (EINVAL, "job %" PRId64 " is %s: nothing to resume or retry",
                 id, r.state);
  else {
    int64_t rev = r.rev;
    const char *staging = job_str (doc, "staging");
    /* A cancelled job lost its partial output; a restart drops it. */
    if (restart || strcmp (r.state, "cancelled") == 0) {
      json_object *disks;
      size_t i;
      json_object_object_add (doc, "steps", json_object_new_array ());
      if (json_object_object_get_ex (doc, "disks", &disks))
        for (i = 0; i < json_object_array_length (disks); i++) {
          json_object *d = json_object_array_get_idx (disks, i);
          json_object_object_del (d, "checkpoint");
          json_object_object_add (d, "done", json_object_new_uint64 (0));
        }
      if (staging && ferry_target_remove_kept (staging) == -1)
        goto out;
    }
    json_object_object_del (doc, "error");
    json_object_object_del (doc, "finished");
    if (ferry_store_job_request (st, id, NULL) == -1 ||
        job_doc_save (st, id, &rev, "planned", doc) == -1)
      goto out;
    ferry_store_event_add (st, id, "info", restart ? "reset: it starts again "
                           "from the beginning" : "to be resumed");
    ret = 0;
  }
 out:
  unload (st, id, &held);
  json_object_put (doc);
  ferry_store_record_free (&r);
  return ret;
}

int
ferry_job_cutover (struct ferry_store *st, int64_t id)
{
  struct ferry_store_record r;
  json_object *doc;
  bool live;
  char *held = NULL;
  int ret = -1;

  if (load (st, id, &r, &doc, &live, &held) == -1)
    return -1;
  if (job_str (doc, "mode") && strcmp (job_str (doc, "mode"), "warm") == 0) {
    /* A warm job: its runner stops the source and copies the last delta;
     * one that no runner holds does so once its next run caught up. */
    static const char *const cuttable[] = {
      "planned", "running", "paused", "failed", "awaiting-cutover", NULL,
    };
    int64_t rev = r.rev;
    if (!state_in (r.state, cuttable))
      ferry_error (EINVAL, "job %" PRId64 " is %s: there is nothing to cut "
                   "over", id, ferry_job_shown_state (st, &r));
    else if (live)
      ret = ferry_store_job_request (st, id, "cutover");
    else {
      json_object_object_add (doc, "cutover", json_object_new_boolean (true));
      ret = job_doc_save (st, id, &rev, r.state, doc);
    }
    if (ret == 0)
      ferry_store_event_add (st, id, "info", live ? "cutover asked" :
                             "cutover asked: it cuts over once its next run "
                             "has caught up");
  }
  else if (strcmp (r.state, "awaiting-cutover") != 0)
    ferry_error (EINVAL, "job %" PRId64 " is %s: only a job awaiting its "
                 "cutover (one that ran its test first) can be cut over", id,
                 ferry_job_shown_state (st, &r));
  else {
    int64_t rev = r.rev;
    json_object_object_add (doc, "cutover", json_object_new_boolean (true));
    if (job_doc_save (st, id, &rev, "planned", doc) == 0) {
      ferry_store_event_add (st, id, "info", "cutover asked");
      ret = 0;
    }
  }
  unload (st, id, &held);
  json_object_put (doc);
  ferry_store_record_free (&r);
  return ret;
}

int
ferry_job_remove (struct ferry_store *st, int64_t id)
{
  struct ferry_store_record r;
  json_object *doc;
  const char *staging;
  bool live;
  char *held = NULL;
  int ret = -1;

  if (load (st, id, &r, &doc, &live, &held) == -1)
    return -1;
  staging = job_str (doc, "staging");
  if (live)
    ferry_error (EBUSY, "job %" PRId64 " is running (process %s): cancel it "
                 "first", id, r.runner);
  else if (staging == NULL || ferry_target_remove_kept (staging) == 0) {
    /* A job done or cancelled has nothing of the kind left. */
    if (strcmp (r.state, "done") && strcmp (r.state, "cancelled"))
      job_warm_forget (st, id, doc);
    if (ferry_store_job_delete (st, id) == 0)
      ret = 0;
  }
  unload (st, id, &held);
  json_object_put (doc);
  ferry_store_record_free (&r);
  return ret;
}
