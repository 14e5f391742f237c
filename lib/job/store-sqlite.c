/* The job store in SQLite: one database file, opened by every process
 * that runs or shows jobs, all at once.
 *
 * NOTES ON THE DESIGN
 *
 * 1. WAL journal: readers never block the writer nor the writer them,
 *    so `ferry job show --watch` runs beside a job saving its progress.
 *    With WAL, synchronous=NORMAL syncs the log only at checkpoints: a
 *    power cut may lose the last commits but never corrupts the file,
 *    and a crash of the process alone loses nothing (the log is in the
 *    page cache).  A lost save is a checkpoint a resume re-copies past,
 *    which the job layer already allows for; a sync per save is not
 *    worth its cost to a copy that saves every few seconds.
 *
 * 2. Every write of more than one statement runs in BEGIN IMMEDIATE: the
 *    write lock is taken first, so two writers never each hold a read
 *    snapshot and then both wait to upgrade it (SQLite would fail one
 *    with SQLITE_BUSY at once, without the busy timeout).  A lone write
 *    statement takes the write lock at its start anyway.
 *
 * 3. The busy timeout (10 s, FERRY_STORE_BUSY_TIMEOUT milliseconds) is
 *    SQLite's busy handler; when it runs out, any statement fails with
 *    SQLITE_BUSY, which becomes "PATH: the job store is locked by
 *    another process (waited 10 s)", errno ETIMEDOUT (EBUSY is claim's
 *    answer for a job held by a live runner).
 *
 * 4. The file is a ferry store when PRAGMA application_id is
 *    STORE_APPLICATION_ID; its schema's version is PRAGMA user_version.
 *    An empty file (no tables, both 0) is made a store; a file with
 *    tables and another application id is refused.  The schema is made
 *    and upgraded by the steps of schema_steps, one transaction (with a
 *    second look at the version inside it, since another process may
 *    have done it meanwhile) from the file's version to ours.
 *
 * 5. At open, PRAGMA quick_check reads every page once (not the index
 *    cross-checks of integrity_check), so a corrupt store is refused
 *    before anything is written into it.  Its cost grows with the file:
 *    about 50 ms for 27 MB (5,000 jobs of 4 KB and 100,000 events) on
 *    the development machine, against 6 ms for an empty store; a
 *    long-lived program (ferryd) pays it once.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <ferry/store.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/vector.h"
#include "internal.h"

DEFINE_VECTOR_TYPE (record_vector, struct ferry_store_record);
DEFINE_VECTOR_TYPE (event_vector, struct ferry_store_event);
DEFINE_VECTOR_TYPE (id_vector, int64_t);

/* "FRRY": PRAGMA application_id of a ferry job store. */
#define STORE_APPLICATION_ID 0x46525259

#define DEFAULT_BUSY_TIMEOUT_MS 10000

struct sqlite_store {
  struct ferry_store base;              /* must be first */
  sqlite3 *db;
  int busy_ms;                          /* the busy timeout */
};

/* The schema, step by step: step I takes version I to I + 1 (each in
 * parentheses: clang's -Wstring-concatenation would take the pieces of
 * one step for a missing comma). */
static const char *const schema_steps[] = {
  /* 0 -> 1 */
  ("CREATE TABLE plans ("
  "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  doc TEXT NOT NULL,"
  "  created REAL NOT NULL);"
  "CREATE TABLE jobs ("
  "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  plan INTEGER REFERENCES plans (id),"
  "  state TEXT NOT NULL,"
  "  rev INTEGER NOT NULL,"
  "  doc TEXT NOT NULL,"
  "  runner TEXT,"
  "  heartbeat REAL,"
  "  request TEXT,"
  "  created REAL NOT NULL,"
  "  updated REAL NOT NULL);"
  "CREATE INDEX jobs_plan ON jobs (plan);"
  "CREATE TABLE events ("
  "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  job INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,"
  "  time REAL NOT NULL,"
  "  level TEXT NOT NULL,"
  "  message TEXT NOT NULL);"
  "CREATE INDEX events_job ON events (job, seq);"),
};
#define SCHEMA_VERSION ((int) (sizeof schema_steps / sizeof schema_steps[0]))

/* Set the error for SQLite's answer RC to WHAT ("reading job 4"). */
static int
db_error (struct sqlite_store *s, int rc, const char *what)
{
  const char *path = s->base.path;
  const char *msg = s->db ? sqlite3_errmsg (s->db) : sqlite3_errstr (rc);

  switch (rc & 0xff) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    if (s->busy_ms % 1000 == 0)
      return ferry_error (ETIMEDOUT, "%s: the job store is locked by another "
                          "process (waited %d s)", path, s->busy_ms / 1000);
    return ferry_error (ETIMEDOUT, "%s: the job store is locked by another "
                        "process (waited %.1f s)", path, s->busy_ms / 1000.0);
  case SQLITE_NOTADB:
    return ferry_error (EINVAL, "%s: not a ferry job store (file is not a "
                        "database)", path);
  case SQLITE_CORRUPT:
    return ferry_error (EIO, "%s: the job store is corrupt (%s)", path, msg);
  case SQLITE_FULL:
    return ferry_error (ENOSPC, "%s: %s: %s", path, what, msg);
  case SQLITE_NOMEM:
    return ferry_error (ENOMEM, "%s: %s: %s", path, what, msg);
  case SQLITE_READONLY:
  case SQLITE_PERM:
  case SQLITE_AUTH:
    return ferry_error (EACCES, "%s: %s: %s", path, what, msg);
  case SQLITE_CANTOPEN:
    return ferry_error_errno (s->db && sqlite3_system_errno (s->db)
                              ? sqlite3_system_errno (s->db) : EIO,
                              "%s: %s", path, what);
  default:
    return ferry_error (EIO, "%s: %s: %s", path, what, msg);
  }
}

/* Prepare SQL into *STMT.  -1 with the error set. */
static int
prepare (struct sqlite_store *s, const char *sql, sqlite3_stmt **stmt,
         const char *what)
{
  int rc = sqlite3_prepare_v2 (s->db, sql, -1, stmt, NULL);

  if (rc != SQLITE_OK) {
    *stmt = NULL;
    return db_error (s, rc, what);
  }
  return 0;
}

/* Finalize a statement when the scope ends. */
static void
cleanup_stmt (sqlite3_stmt **stmt)
{
  sqlite3_finalize (*stmt);
}
#define CLEANUP_STMT __attribute__ ((cleanup (cleanup_stmt)))

/* Prepare SQL into *STMT and bind its parameters, one a letter of
 * TYPES: 'i' an int64_t, 't' a string (NULL binds NULL), 'r' a double,
 * 'n' (no argument) the time now.  -1 with the error set. */
static int
prepare_bind (struct sqlite_store *s, sqlite3_stmt **stmt, const char *what,
              const char *sql, const char *types, ...)
{
  va_list ap;
  int rc = SQLITE_OK;

  if (prepare (s, sql, stmt, what) == -1)
    return -1;
  va_start (ap, types);
  for (int i = 1; types[i - 1] && rc == SQLITE_OK; i++) {
    const char *t;
    switch (types[i - 1]) {
    case 'i':
      rc = sqlite3_bind_int64 (*stmt, i, va_arg (ap, int64_t));
      break;
    case 't':
      t = va_arg (ap, const char *);
      rc = t ? sqlite3_bind_text (*stmt, i, t, -1, SQLITE_STATIC)
             : sqlite3_bind_null (*stmt, i);
      break;
    case 'r':
      rc = sqlite3_bind_double (*stmt, i, va_arg (ap, double));
      break;
    case 'n':
      rc = sqlite3_bind_double (*stmt, i, store_now ());
      break;
    default:
      abort ();
    }
  }
  va_end (ap);
  return rc == SQLITE_OK ? 0 : db_error (s, rc, what);
}

/* Step STMT: 1 for a row, 0 when done, -1 with the error set. */
static int
step (struct sqlite_store *s, sqlite3_stmt *stmt, const char *what)
{
  int rc = sqlite3_step (stmt);

  if (rc == SQLITE_ROW)
    return 1;
  if (rc == SQLITE_DONE)
    return 0;
  return db_error (s, rc, what);
}

/* Run SQL, which returns no rows that matter. */
static int
exec (struct sqlite_store *s, const char *sql, const char *what)
{
  int rc = sqlite3_exec (s->db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : db_error (s, rc, what);
}

/* Begin a write transaction (note 2). */
static int
begin (struct sqlite_store *s, const char *what)
{
  return exec (s, "BEGIN IMMEDIATE", what);
}

/* Commit, or roll back when that fails. */
static int
commit (struct sqlite_store *s, const char *what)
{
  if (exec (s, "COMMIT", what) == -1) {
    struct error_saved saved;
    error_save (&saved);
    sqlite3_exec (s->db, "ROLLBACK", NULL, NULL, NULL);
    error_restore (&saved);
    return -1;
  }
  return 0;
}

/* Roll back after a failure, keeping its error; returns -1. */
static int
rollback (struct sqlite_store *s)
{
  struct error_saved saved;

  error_save (&saved);
  if (sqlite3_get_autocommit (s->db) == 0)
    sqlite3_exec (s->db, "ROLLBACK", NULL, NULL, NULL);
  error_restore (&saved);
  return -1;
}

/* A copy of column I's text, or NULL when it is NULL.  -1 when out of
 * memory. */
static int
column_text (sqlite3_stmt *stmt, int i, char **out)
{
  const unsigned char *t = sqlite3_column_text (stmt, i);

  *out = NULL;
  if (t == NULL) {
    if (sqlite3_column_type (stmt, i) != SQLITE_NULL)
      return ferry_error (ENOMEM, "job store: out of memory");
    return 0;
  }
  *out = strdup ((const char *) t);
  if (*out == NULL)
    return ferry_error_errno (errno, "job store");
  return 0;
}

/* Read the file's application id and schema version (*VERSION) and
 * refuse another program's database or a newer schema (note 4).  1 when
 * the schema must be made or upgraded, 0 when it is current, -1. */
static int
store_identify (struct sqlite_store *s, int64_t *version)
{
  const char *path = s->base.path;
  const char *what = "reading the schema version";
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  int64_t app, tables;
  int r;

  /* One statement, so one snapshot: three reads could straddle the
   * commit of another process making the schema. */
  if (prepare (s, "SELECT (SELECT application_id FROM pragma_application_id),"
               " (SELECT user_version FROM pragma_user_version),"
               " (SELECT count(*) FROM sqlite_schema)", &stmt, what) == -1 ||
      (r = step (s, stmt, what)) == -1)
    return -1;
  if (r == 0)
    return ferry_error (EIO, "%s: %s: no answer", path, what);
  app = sqlite3_column_int64 (stmt, 0);
  *version = sqlite3_column_int64 (stmt, 1);
  tables = sqlite3_column_int64 (stmt, 2);
  if (app != STORE_APPLICATION_ID && (tables > 0 || *version != 0 || app))
    return ferry_error (EINVAL, "%s: not a ferry job store (a SQLite "
                        "database of another program: application id 0x%"
                        PRIx64 ", %" PRId64 " tables)",
                        path, (uint64_t) app & 0xffffffff, tables);
  if (*version > SCHEMA_VERSION)
    return ferry_error (EPROTONOSUPPORT, "%s: the job store has schema "
                        "version %" PRId64 ", newer than this ferry knows "
                        "(%d): use a newer ferry", path, *version,
                        SCHEMA_VERSION);
  return *version < SCHEMA_VERSION;
}

/* Make the schema, or upgrade it, to SCHEMA_VERSION (note 4). */
static int
store_upgrade (struct sqlite_store *s)
{
  int64_t version;
  char sql[64];
  int r;

  if (begin (s, "making the schema") == -1)
    return -1;
  /* Again inside the transaction: another process may have got here
   * first. */
  r = store_identify (s, &version);
  if (r == -1)
    return rollback (s);
  if (r == 0)
    return commit (s, "making the schema");
  for (; version < SCHEMA_VERSION; version++) {
    snprintf (sql, sizeof sql, "upgrading the schema to version %" PRId64,
              version + 1);
    if (exec (s, schema_steps[version], sql) == -1)
      return rollback (s);
  }
  snprintf (sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
  if (exec (s, sql, "writing the schema version") == -1)
    return rollback (s);
  snprintf (sql, sizeof sql, "PRAGMA application_id = %d",
            STORE_APPLICATION_ID);
  if (exec (s, sql, "writing the application id") == -1)
    return rollback (s);
  return commit (s, "making the schema");
}

/* Refuse a corrupt file (note 5). */
static int
store_check (struct sqlite_store *s)
{
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "checking the store";
  const unsigned char *t;
  int r;

  if (prepare_bind (s, &stmt, what, "PRAGMA quick_check(1)", "") == -1)
    return -1;
  r = step (s, stmt, what);
  if (r == -1)
    return -1;
  t = r ? sqlite3_column_text (stmt, 0) : NULL;
  if (t == NULL || strcmp ((const char *) t, "ok"))
    return ferry_error (EIO, "%s: the job store is corrupt (%s)",
                        s->base.path, t ? (const char *) t : "no answer");
  return 0;
}

/* The busy timeout in milliseconds (note 3). */
static int
busy_timeout (void)
{
  const char *env = getenv ("FERRY_STORE_BUSY_TIMEOUT");
  char *end;
  long v;

  if (env == NULL || *env == '\0')
    return DEFAULT_BUSY_TIMEOUT_MS;
  errno = 0;
  v = strtol (env, &end, 10);
  if (errno || *end || v < 0 || v > 3600 * 1000)
    return DEFAULT_BUSY_TIMEOUT_MS;
  return v;
}

/* Make the file PATH (0600) and its folder, unless they exist. */
static int
store_create (const char *path)
{
  CLEANUP_FREE char *dir = strdup (path);
  char *slash;
  int fd;

  if (dir == NULL)
    return ferry_error_errno (errno, "%s", path);
  slash = strrchr (dir, '/');
  if (slash && slash != dir) {
    *slash = '\0';
    if (store_make_folder (path, dir) == -1)
      return -1;
  }
  fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd == -1)
    return ferry_error_errno (errno, "%s: cannot create the job store",
                              path);
  close (fd);
  return 0;
}

/* Put the file in WAL mode (note 1).  Changing the journal mode needs
 * the file to itself and SQLite answers SQLITE_BUSY at once, without its
 * busy handler, while another process has it open (two programs opening
 * a new store together): retry for as long as the busy timeout. */
static int
set_wal (struct sqlite_store *s)
{
  const char *what = "setting the WAL journal";
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  double deadline = store_now () + s->busy_ms / 1000.0;
  const unsigned char *mode;
  int rc;

  if (prepare (s, "PRAGMA journal_mode = WAL", &stmt, what) == -1)
    return -1;
  while ((rc = sqlite3_step (stmt)) != SQLITE_ROW) {
    if ((rc & 0xff) != SQLITE_BUSY || store_now () > deadline)
      return db_error (s, rc, what);
    sqlite3_reset (stmt);
    usleep (10000);
  }
  mode = sqlite3_column_text (stmt, 0);
  if (mode == NULL || strcmp ((const char *) mode, "wal"))
    return ferry_error (EIO, "%s: %s: SQLite answered \"%s\"", s->base.path,
                        what, mode ? (const char *) mode : "");
  return 0;
}

static const struct store_ops sqlite_ops;

/* Open the SQLite store at PATH. */
struct ferry_store *
store_sqlite_open (const char *path, unsigned flags)
{
  struct sqlite_store *s;
  struct stat sb;
  int64_t version;
  int rc, upgrade;

  if (stat (path, &sb) == -1) {
    if (errno != ENOENT || (flags & FERRY_STORE_NO_CREATE)) {
      ferry_error_errno (errno, "%s: cannot open the job store", path);
      return NULL;
    }
    if (store_create (path) == -1)
      return NULL;
  }
  else if (!S_ISREG (sb.st_mode)) {
    ferry_error (EINVAL, "%s: not a ferry job store (not a regular file)",
                 path);
    return NULL;
  }

  s = calloc (1, sizeof *s);
  if (s == NULL || (s->base.path = strdup (path)) == NULL) {
    ferry_error_errno (errno, "%s", path);
    free (s);
    return NULL;
  }
  s->base.ops = &sqlite_ops;
  s->busy_ms = busy_timeout ();

  rc = sqlite3_open_v2 (path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
  if (rc != SQLITE_OK) {
    db_error (s, rc, "cannot open the job store");
    goto err;
  }
  sqlite3_extended_result_codes (s->db, 1);
  rc = sqlite3_busy_timeout (s->db, s->busy_ms);
  if (rc != SQLITE_OK) {
    db_error (s, rc, "setting the busy timeout");
    goto err;
  }
  /* The first read: a file that is not SQLite fails here.  Nothing is
   * written (the journal mode is a write) before the file is known to
   * be ours or empty. */
  if (store_check (s) == -1 ||
      (upgrade = store_identify (s, &version)) == -1 ||
      set_wal (s) == -1 ||
      exec (s, "PRAGMA synchronous = NORMAL", "setting synchronous") == -1 ||
      exec (s, "PRAGMA foreign_keys = ON", "turning on foreign keys") == -1 ||
      (upgrade && store_upgrade (s) == -1))
    goto err;
  return &s->base;

 err:
  s->base.ops->close (&s->base);
  return NULL;
}

/* Close the database and free the handle. */
static void
sqlite_close (struct ferry_store *st)
{
  struct sqlite_store *s = (struct sqlite_store *) st;

  sqlite3_close_v2 (s->db);
  free (s->base.path);
  free (s);
}

/* "no KIND ID in PATH", errno ENOENT. */
static int
no_such (struct sqlite_store *s, const char *kind, int64_t id)
{
  return ferry_error (ENOENT, "no %s %" PRId64 " in %s", kind, id,
                      s->base.path);
}

/* Whether job ID exists: 1, 0, or -1. */
static int
job_exists (struct sqlite_store *s, int64_t id)
{
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "reading a job";

  if (prepare_bind (s, &stmt, what,
                    "SELECT 1 FROM jobs WHERE id = ?",
                    "i", id) == -1)
    return -1;
  return step (s, stmt, what);
}

/* Step the INSERT STMT: the new row's id, or -1.  A row whose PARENT
 * (a foreign key: "job", "plan") is missing fails with ENOENT, naming
 * it and PARENT_ID. */
static int64_t
insert (struct sqlite_store *s, sqlite3_stmt *stmt, const char *what,
        const char *parent, int64_t parent_id)
{
  int rc = sqlite3_step (stmt);

  if (rc == SQLITE_CONSTRAINT_FOREIGNKEY && parent)
    return no_such (s, parent, parent_id);
  if (rc != SQLITE_DONE)
    return db_error (s, rc, what);
  return sqlite3_last_insert_rowid (s->db);
}

/* Add a job. */
static int64_t
sqlite_job_add (struct ferry_store *st, int64_t plan, const char *state,
                const char *doc)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "adding a job";

  /* Plan 0 is none: NULL, which the foreign key lets through. */
  if (prepare_bind (s, &stmt, what,
                    "INSERT INTO jobs (plan, state, rev, doc, created, "
                    "updated) VALUES (nullif (?1, 0), ?2, 1, ?3, ?4, ?4)",
                    "ittn", plan, state, doc) == -1)
    return -1;
  return insert (s, stmt, what, "plan", plan);
}

#define RECORD_COLUMNS \
  "id, plan, state, rev, doc, runner, heartbeat, request, created, updated"

/* Fill *R from a row of RECORD_COLUMNS. */
static int
read_record (sqlite3_stmt *stmt, struct ferry_store_record *r)
{
  memset (r, 0, sizeof *r);
  r->id = sqlite3_column_int64 (stmt, 0);
  r->plan = sqlite3_column_int64 (stmt, 1);
  r->rev = sqlite3_column_int64 (stmt, 3);
  r->heartbeat = sqlite3_column_double (stmt, 6);
  r->created = sqlite3_column_double (stmt, 8);
  r->updated = sqlite3_column_double (stmt, 9);
  if (column_text (stmt, 2, &r->state) == -1 ||
      column_text (stmt, 4, &r->doc) == -1 ||
      column_text (stmt, 5, &r->runner) == -1 ||
      column_text (stmt, 7, &r->request) == -1) {
    ferry_store_record_free (r);
    return -1;
  }
  return 0;
}

/* Read one job. */
static int
sqlite_job_get (struct ferry_store *st, int64_t id,
                struct ferry_store_record *r)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "reading a job";
  int found;

  if (prepare_bind (s, &stmt, what,
                    "SELECT " RECORD_COLUMNS " FROM jobs WHERE id = ?",
                    "i", id) == -1)
    return -1;
  found = step (s, stmt, what);
  if (found == -1)
    return -1;
  if (found == 0)
    return no_such (s, "job", id);
  return read_record (stmt, r);
}

/* Save a job if its revision is still REV. */
static int
sqlite_job_save (struct ferry_store *st, int64_t id, int64_t rev,
                 const char *state, const char *doc, int64_t *new_rev)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "saving a job";
  int exists;

  if (begin (s, what) == -1)
    return -1;
  if (prepare_bind (s, &stmt, what,
                    "UPDATE jobs SET state = ?, doc = ?, rev = rev + 1, "
                    "updated = ? WHERE id = ? AND rev = ?",
                    "ttnii", state, doc, id, rev) == -1 ||
      step (s, stmt, what) == -1)
    return rollback (s);
  if (sqlite3_changes (s->db) == 1) {
    if (commit (s, what) == -1)
      return -1;
    if (new_rev)
      *new_rev = rev + 1;
    return 1;
  }
  exists = job_exists (s, id);
  rollback (s);
  if (exists == -1)
    return -1;
  if (exists == 0)
    return no_such (s, "job", id);
  return 0;
}

/* Every job of PLAN (-1: all), by id. */
static int
sqlite_job_list (struct ferry_store *st, int64_t plan,
                 struct ferry_store_record **out, size_t *n)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "listing jobs";
  record_vector v = empty_vector;
  int r;

  if (prepare_bind (s, &stmt, what,
                    "SELECT " RECORD_COLUMNS " FROM jobs "
                    "WHERE ?1 < 0 OR coalesce (plan, 0) = ?1 ORDER BY id",
                    "i", plan) == -1)
    return -1;
  while ((r = step (s, stmt, what)) == 1) {
    if (record_vector_reserve (&v, 1) == -1 ||
        read_record (stmt, &v.ptr[v.len]) == -1) {
      r = -1;
      break;
    }
    v.len++;
  }
  if (r == -1) {
    ferry_store_records_free (v.ptr, v.len);
    return -1;
  }
  *out = v.ptr;
  *n = v.len;
  return 0;
}

/* Remove a job; its events go with it (ON DELETE CASCADE). */
static int
sqlite_job_delete (struct ferry_store *st, int64_t id)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "removing a job";

  if (prepare_bind (s, &stmt, what,
                    "DELETE FROM jobs WHERE id = ?",
                    "i", id) == -1 ||
      step (s, stmt, what) == -1)
    return -1;
  if (sqlite3_changes (s->db) == 0)
    return no_such (s, "job", id);
  return 0;
}

/* Take a job unless a live runner holds it, in one transaction. */
static int
sqlite_job_claim (struct ferry_store *st, int64_t id, const char *runner,
                  double stale)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *get = NULL;
  CLEANUP_STMT sqlite3_stmt *set = NULL;
  const char *what = "claiming a job";
  int found;

  if (begin (s, what) == -1)
    return -1;
  if (prepare_bind (s, &get, what,
                    "SELECT runner, heartbeat FROM jobs WHERE id = ?",
                    "i", id) == -1 ||
      (found = step (s, get, what)) == -1)
    return rollback (s);
  if (found == 0) {
    no_such (s, "job", id);
    return rollback (s);
  }
  {
    const char *holder = (const char *) sqlite3_column_text (get, 0);
    double heartbeat = sqlite3_column_double (get, 1);
    char words[512];

    if (holder && strcmp (holder, runner) &&
        store_runner_alive (holder, heartbeat, stale)) {
      ferry_error (EBUSY, "%s: job %" PRId64 " is already being run by %s",
                   s->base.path, id,
                   store_runner_describe (holder, heartbeat, words,
                                          sizeof words));
      return rollback (s);
    }
  }
  if (prepare_bind (s, &set, what,
                    "UPDATE jobs SET runner = ?, heartbeat = ?, request = "
                    "CASE WHEN request IN ('cancel', 'cutover') THEN request "
                    "END WHERE id = ?",
                    "tni", runner, id) == -1 ||
      step (s, set, what) == -1)
    return rollback (s);
  return commit (s, what);
}

/* RUNNER's heartbeat, and the pending request. */
static int
sqlite_job_heartbeat (struct ferry_store *st, int64_t id, const char *runner,
                      char **request)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *set = NULL;
  CLEANUP_STMT sqlite3_stmt *get = NULL;
  const char *what = "recording a heartbeat";
  int found, held;

  if (begin (s, what) == -1)
    return -1;
  if (prepare_bind (s, &set, what,
                    "UPDATE jobs SET heartbeat = ? WHERE id = ? AND "
                    "runner = ?",
                    "nit", id, runner) == -1 ||
      step (s, set, what) == -1)
    return rollback (s);
  held = sqlite3_changes (s->db) == 1;
  if (prepare_bind (s, &get, what,
                    "SELECT runner, request FROM jobs WHERE id = ?",
                    "i", id) == -1 ||
      (found = step (s, get, what)) == -1)
    return rollback (s);
  if (found == 0) {
    no_such (s, "job", id);
    return rollback (s);
  }
  if (!held) {
    const char *holder = (const char *) sqlite3_column_text (get, 0);
    ferry_error (ESTALE, "%s: job %" PRId64 " is no longer held by %s (%s)",
                 s->base.path, id, runner,
                 holder ? holder : "no runner holds it");
    return rollback (s);
  }
  if (request && column_text (get, 1, request) == -1)
    return rollback (s);
  if (commit (s, what) == -1) {
    if (request) {
      free (*request);
      *request = NULL;
    }
    return -1;
  }
  return 0;
}

/* RUNNER lets go of a job it holds. */
static int
sqlite_job_release (struct ferry_store *st, int64_t id, const char *runner)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "releasing a job";

  if (prepare_bind (s, &stmt, what,
                    "UPDATE jobs SET runner = NULL, heartbeat = NULL WHERE "
                    "id = ? AND runner = ?",
                    "it", id, runner) == -1 ||
      step (s, stmt, what) == -1)
    return -1;
  return 0;
}

/* Set or withdraw a job's request. */
static int
sqlite_job_request (struct ferry_store *st, int64_t id, const char *request)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "recording a request";

  if (prepare_bind (s, &stmt, what,
                    "UPDATE jobs SET request = ? WHERE id = ?",
                    "ti", request, id) == -1 ||
      step (s, stmt, what) == -1)
    return -1;
  if (sqlite3_changes (s->db) == 0)
    return no_such (s, "job", id);
  return 0;
}

/* Append an event to a job's log. */
static int
sqlite_event_add (struct ferry_store *st, int64_t job, const char *level,
                  const char *message)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "adding an event";

  if (prepare_bind (s, &stmt, what,
                    "INSERT INTO events (job, time, level, message) VALUES "
                    "(?, ?, ?, ?)",
                    "intt", job, level, message) == -1 ||
      insert (s, stmt, what, "job", job) == -1)
    return -1;
  return 0;
}

/* Events of JOB (-1: all) after AFTER, at most LIMIT (0: all). */
static int
sqlite_event_list (struct ferry_store *st, int64_t job, int64_t after,
                   size_t limit, struct ferry_store_event **out, size_t *n)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "listing events";
  event_vector v = empty_vector;
  struct ferry_store_event *e;
  int r;

  if (prepare_bind (s, &stmt, what,
                    "SELECT seq, job, time, level, message FROM events "
                    "WHERE (?1 < 0 OR job = ?1) AND seq > ?2 ORDER BY seq "
                    "LIMIT ?3", "iii", job, after,
                    limit == 0 || limit > INT64_MAX ? (int64_t) -1
                    : (int64_t) limit) == -1)
    return -1;
  while ((r = step (s, stmt, what)) == 1) {
    if (event_vector_reserve (&v, 1) == -1) {
      r = -1;
      break;
    }
    e = &v.ptr[v.len++];
    memset (e, 0, sizeof *e);
    e->seq = sqlite3_column_int64 (stmt, 0);
    e->job = sqlite3_column_int64 (stmt, 1);
    e->time = sqlite3_column_double (stmt, 2);
    if (column_text (stmt, 3, &e->level) == -1 ||
        column_text (stmt, 4, &e->message) == -1) {
      r = -1;
      break;
    }
  }
  if (r == -1) {
    ferry_store_events_free (v.ptr, v.len);
    return -1;
  }
  *out = v.ptr;
  *n = v.len;
  return 0;
}

/* Add a plan. */
static int64_t
sqlite_plan_add (struct ferry_store *st, const char *doc)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "adding a plan";

  if (prepare_bind (s, &stmt, what,
                    "INSERT INTO plans (doc, created) VALUES (?, ?)",
                    "tn", doc) == -1)
    return -1;
  return insert (s, stmt, what, NULL, 0);
}

/* Read a plan's document. */
static int
sqlite_plan_get (struct ferry_store *st, int64_t id, char **doc)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "reading a plan";
  int found;

  if (prepare_bind (s, &stmt, what,
                    "SELECT doc FROM plans WHERE id = ?",
                    "i", id) == -1 ||
      (found = step (s, stmt, what)) == -1)
    return -1;
  if (found == 0)
    return no_such (s, "plan", id);
  return column_text (stmt, 0, doc);
}

/* Every plan's id. */
static int
sqlite_plan_list (struct ferry_store *st, int64_t **ids, size_t *n)
{
  struct sqlite_store *s = (struct sqlite_store *) st;
  CLEANUP_STMT sqlite3_stmt *stmt = NULL;
  const char *what = "listing plans";
  id_vector v = empty_vector;
  int r;

  if (prepare_bind (s, &stmt, what,
                    "SELECT id FROM plans ORDER BY id",
                    "") == -1)
    return -1;
  while ((r = step (s, stmt, what)) == 1)
    if (id_vector_append (&v, sqlite3_column_int64 (stmt, 0)) == -1) {
      r = -1;
      break;
    }
  if (r == -1) {
    free (v.ptr);
    return -1;
  }
  *ids = v.ptr;
  *n = v.len;
  return 0;
}

static const struct store_ops sqlite_ops = {
  .name = "sqlite",
  .close = sqlite_close,
  .job_add = sqlite_job_add,
  .job_get = sqlite_job_get,
  .job_save = sqlite_job_save,
  .job_list = sqlite_job_list,
  .job_delete = sqlite_job_delete,
  .job_claim = sqlite_job_claim,
  .job_heartbeat = sqlite_job_heartbeat,
  .job_release = sqlite_job_release,
  .job_request = sqlite_job_request,
  .event_add = sqlite_event_add,
  .event_list = sqlite_event_list,
  .plan_add = sqlite_plan_add,
  .plan_get = sqlite_plan_get,
  .plan_list = sqlite_plan_list,
};
