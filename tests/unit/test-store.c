/* Unit tests for the job store (lib/job/store.c, store-sqlite.c): the
 * round trips of jobs, events and plans, claims judged against real
 * processes (a live child, a dead one, a reused pid), and the stores it
 * must refuse with a clear message (garbage, a text file, a damaged page,
 * a newer schema, another program's database, a lock held by another
 * process).  The sqlite3 command is the peer: it reads what the store
 * wrote and makes the files the store must refuse.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define SCRATCH_PREFIX "ferry-test-store"
#include "scratch-dir.h"

#include <ferry/error.h>
#include <ferry/store.h>

/* Run the sqlite3 command on PATH with SQL; its output (trimmed) goes
 * into OUT (LEN bytes).  Fails the test when it fails. */
static void
sqlite3_cmd (const char *path, const char *sql, char *out, size_t len)
{
  char cmd[1024];
  FILE *f;
  size_t n;

  snprintf (cmd, sizeof cmd, "sqlite3 '%s' \"%s\" 2>&1", path, sql);
  f = popen (cmd, "r");
  assert_non_null (f);
  n = fread (out, 1, len - 1, f);
  out[n] = '\0';
  while (n > 0 && out[n - 1] == '\n')
    out[--n] = '\0';
  if (pclose (f) != 0)
    fail_msg ("%s: %s", cmd, out);
}

/* The integer the sqlite3 command answers to SQL on PATH. */
static long long
sqlite3_int (const char *path, const char *sql)
{
  char out[256];

  sqlite3_cmd (path, sql, out, sizeof out);
  return atoll (out);
}

/* Assert that the last error has errno ERRNUM and is MESSAGE. */
static void
assert_error (int errnum, const char *message)
{
  if (strcmp (ferry_get_error (), message))
    fail_msg ("message \"%s\", expected \"%s\"", ferry_get_error (), message);
  assert_int_equal (ferry_get_errno (), errnum);
}

/* Assert that the last error has errno ERRNUM and starts with PREFIX. */
static void
assert_error_prefix (int errnum, const char *prefix)
{
  if (strncmp (ferry_get_error (), prefix, strlen (prefix)))
    fail_msg ("message \"%s\", expected \"%s...\"", ferry_get_error (),
              prefix);
  assert_int_equal (ferry_get_errno (), errnum);
}

/* A fresh store NAME in the scratch directory; its path in BUF. */
static struct ferry_store *
fresh_store (char *buf, size_t len, const char *name)
{
  struct ferry_store *st;

  tmp_path (buf, len, name);
  st = ferry_store_open (buf, 0);
  if (st == NULL)
    fail_msg ("%s", ferry_get_error ());
  return st;
}

/* Jobs: add, get, save, list, delete; the file as sqlite3 sees it. */
static void
test_jobs (void **state)
{
  char dir[512], path[1024], out[2048];
  struct ferry_store *st;
  struct ferry_store_record r, *list;
  struct stat sb;
  int64_t a, b, c, plan, rev;
  size_t n;

  /* A store in folders that do not exist yet: 0700 and 0600. */
  tmp_path (dir, sizeof dir, "state");
  snprintf (path, sizeof path, "%s/ferry/ferry.db", dir);
  st = ferry_store_open (path, 0);
  if (st == NULL)
    fail_msg ("%s", ferry_get_error ());
  assert_string_equal (ferry_store_path (st), path);
  assert_int_equal (stat (dir, &sb), 0);
  assert_int_equal (sb.st_mode & 0777, 0700);
  assert_int_equal (stat (path, &sb), 0);
  assert_int_equal (sb.st_mode & 0777, 0600);

  plan = ferry_store_plan_add (st, "{\"vms\": []}");
  assert_true (plan > 0);
  a = ferry_store_job_add (st, 0, "planned", "{\"a\": 1}");
  b = ferry_store_job_add (st, plan, "planned", "{\"b\": 1}");
  assert_true (a > 0 && b > a);
  assert_int_equal (ferry_store_job_add (st, plan + 10, "planned", "{}"), -1);
  assert_int_equal (ferry_get_errno (), ENOENT);

  assert_int_equal (ferry_store_job_get (st, b, &r), 0);
  assert_int_equal (r.id, b);
  assert_int_equal (r.plan, plan);
  assert_string_equal (r.state, "planned");
  assert_string_equal (r.doc, "{\"b\": 1}");
  assert_int_equal (r.rev, 1);
  assert_null (r.runner);
  assert_null (r.request);
  assert_true (r.heartbeat == 0);
  assert_true (r.created > 1.7e9 && r.updated == r.created);
  rev = r.rev;
  ferry_store_record_free (&r);

  /* A save names the revision it read; a stale one saves nothing. */
  assert_int_equal (ferry_store_job_save (st, b, rev, "running",
                                          "{\"b\": 2}", &rev), 1);
  assert_int_equal (rev, 2);
  assert_int_equal (ferry_store_job_save (st, b, 1, "failed", "{\"b\": 3}",
                                          NULL), 0);
  assert_int_equal (ferry_store_job_get (st, b, &r), 0);
  assert_string_equal (r.state, "running");
  assert_string_equal (r.doc, "{\"b\": 2}");
  assert_int_equal (r.rev, 2);
  assert_true (r.updated >= r.created);
  ferry_store_record_free (&r);

  /* Lists: all, by plan, none (plan 0). */
  assert_int_equal (ferry_store_job_list (st, -1, &list, &n), 0);
  assert_int_equal (n, 2);
  assert_int_equal (list[0].id, a);
  assert_int_equal (list[1].id, b);
  assert_string_equal (list[1].doc, "{\"b\": 2}");
  ferry_store_records_free (list, n);
  assert_int_equal (ferry_store_job_list (st, plan, &list, &n), 0);
  assert_int_equal (n, 1);
  assert_int_equal (list[0].id, b);
  ferry_store_records_free (list, n);
  assert_int_equal (ferry_store_job_list (st, 0, &list, &n), 0);
  assert_int_equal (n, 1);
  assert_int_equal (list[0].id, a);
  ferry_store_records_free (list, n);

  /* Delete takes the events along; ids are never reused. */
  assert_int_equal (ferry_store_event_add (st, b, "info", "started"), 0);
  assert_int_equal (ferry_store_job_delete (st, b), 0);
  assert_int_equal (ferry_store_job_get (st, b, &r), -1);
  snprintf (out, sizeof out, "no job %" PRId64 " in %s", b, path);
  assert_error (ENOENT, out);
  assert_int_equal (ferry_store_job_delete (st, b), -1);
  assert_error (ENOENT, out);
  assert_int_equal (ferry_store_job_save (st, b, 2, "x", "{}", NULL), -1);
  assert_error (ENOENT, out);
  c = ferry_store_job_add (st, 0, "planned", "{}");
  assert_true (c > b);
  ferry_store_close (st);

  /* The peer's view of the file. */
  sqlite3_cmd (path, "PRAGMA journal_mode", out, sizeof out);
  assert_string_equal (out, "wal");
  assert_int_equal (sqlite3_int (path, "PRAGMA user_version"),
                    ferry_store_schema_version ());
  assert_int_equal (sqlite3_int (path, "SELECT count(*) FROM events"), 0);
  assert_int_equal (sqlite3_int (path, "SELECT count(*) FROM jobs"), 2);
  assert_int_equal (sqlite3_int (path, "PRAGMA integrity_check") == 0, 1);
  sqlite3_cmd (path, "PRAGMA integrity_check", out, sizeof out);
  assert_string_equal (out, "ok");

  /* Reopened, all still there. */
  st = ferry_store_open (path, FERRY_STORE_NO_CREATE);
  assert_non_null (st);
  assert_int_equal (ferry_store_job_get (st, a, &r), 0);
  assert_string_equal (r.doc, "{\"a\": 1}");
  ferry_store_record_free (&r);
  ferry_store_close (st);
}

/* Events: after and limit, per job and for all. */
static void
test_events (void **state)
{
  char path[512];
  struct ferry_store *st = fresh_store (path, sizeof path, "events.db");
  struct ferry_store_event *e;
  int64_t a, b;
  size_t n;
  char msg[64];

  a = ferry_store_job_add (st, 0, "planned", "{}");
  b = ferry_store_job_add (st, 0, "planned", "{}");
  for (int i = 0; i < 5; i++) {
    snprintf (msg, sizeof msg, "a%d", i);
    assert_int_equal (ferry_store_event_add (st, a, "info", msg), 0);
    if (i < 2)
      assert_int_equal (ferry_store_event_add (st, b, "warning", "b"), 0);
  }
  assert_int_equal (ferry_store_event_list (st, a, 0, 0, &e, &n), 0);
  assert_int_equal (n, 5);
  for (size_t i = 0; i < n; i++) {
    snprintf (msg, sizeof msg, "a%zu", i);
    assert_string_equal (e[i].message, msg);
    assert_string_equal (e[i].level, "info");
    assert_int_equal (e[i].job, a);
    assert_true (e[i].time > 1.7e9);
    if (i)
      assert_true (e[i].seq > e[i - 1].seq);
  }
  int64_t after = e[1].seq;
  ferry_store_events_free (e, n);

  assert_int_equal (ferry_store_event_list (st, a, after, 2, &e, &n), 0);
  assert_int_equal (n, 2);
  assert_string_equal (e[0].message, "a2");
  assert_string_equal (e[1].message, "a3");
  ferry_store_events_free (e, n);

  assert_int_equal (ferry_store_event_list (st, -1, 0, 0, &e, &n), 0);
  assert_int_equal (n, 7);
  ferry_store_events_free (e, n);
  assert_int_equal (ferry_store_event_list (st, b, 0, 0, &e, &n), 0);
  assert_int_equal (n, 2);
  assert_string_equal (e[0].level, "warning");
  ferry_store_events_free (e, n);

  assert_int_equal (ferry_store_event_add (st, a, "loud", "x"), -1);
  assert_int_equal (ferry_get_errno (), EINVAL);
  assert_non_null (strstr (ferry_get_error (), "\"loud\""));
  assert_int_equal (ferry_store_event_add (st, b + 1, "info", "x"), -1);
  assert_int_equal (ferry_get_errno (), ENOENT);
  ferry_store_close (st);
}

/* Plans: add, get, list. */
static void
test_plans (void **state)
{
  char path[512], want[2048];
  struct ferry_store *st = fresh_store (path, sizeof path, "plans.db");
  int64_t p1, p2, *ids;
  char *doc;
  size_t n;

  assert_int_equal (ferry_store_plan_list (st, &ids, &n), 0);
  assert_int_equal (n, 0);
  free (ids);
  p1 = ferry_store_plan_add (st, "{\"vms\": [1]}");
  p2 = ferry_store_plan_add (st, "{\"vms\": [2]}");
  assert_true (p1 > 0 && p2 > p1);
  assert_int_equal (ferry_store_plan_get (st, p2, &doc), 0);
  assert_string_equal (doc, "{\"vms\": [2]}");
  free (doc);
  assert_int_equal (ferry_store_plan_list (st, &ids, &n), 0);
  assert_int_equal (n, 2);
  assert_int_equal (ids[0], p1);
  assert_int_equal (ids[1], p2);
  free (ids);
  assert_int_equal (ferry_store_plan_get (st, p2 + 1, &doc), -1);
  snprintf (want, sizeof want, "no plan %" PRId64 " in %s", p2 + 1, path);
  assert_error (ENOENT, want);
  ferry_store_close (st);
}

/* A child that claims job ID in the store at PATH, says so on a pipe,
 * then waits until its parent closes the other pipe (or exits at once
 * when HOLD is false).  Returns its pid. */
static pid_t
child_claims (const char *path, int64_t id, bool hold)
{
  int ready[2], go[2];
  char c;
  pid_t pid;

  assert_int_equal (pipe (ready), 0);
  assert_int_equal (pipe (go), 0);
  pid = fork ();
  assert_true (pid >= 0);
  if (pid == 0) {
    struct ferry_store *st = ferry_store_open (path, 0);
    char *me = ferry_store_runner_id ();
    int ok = st && me && ferry_store_job_claim (st, id, me, 60) == 0;
    if (!ok)
      fprintf (stderr, "child: %s\n", ferry_get_error ());
    ferry_store_close (st);
    free (me);
    c = ok ? 'y' : 'n';
    if (write (ready[1], &c, 1) != 1)
      _exit (2);
    if (hold)
      while (read (go[0], &c, 1) > 0)
        ;
    _exit (ok ? 0 : 1);
  }
  close (ready[1]);
  close (go[0]);
  assert_int_equal (read (ready[0], &c, 1), 1);
  assert_int_equal (c, 'y');
  close (ready[0]);
  /* The child holds until this end closes: with HOLD, the caller closes
   * it by killing the child; leaking it here keeps the child alive. */
  if (!hold)
    close (go[1]);
  return pid;
}

/* Claims: a live holder refuses, a dead one does not, nor a reused pid;
 * heartbeats, requests, release. */
static void
test_claims (void **state)
{
  char path[512], want[2048], host[256];
  struct ferry_store *st = fresh_store (path, sizeof path, "claims.db");
  struct ferry_store_record r;
  char *me = ferry_store_runner_id (), *req, fake[512];
  int64_t id = ferry_store_job_add (st, 0, "planned", "{}");
  unsigned long long start;
  pid_t pid;
  int status;

  assert_non_null (me);
  gethostname (host, sizeof host);
  host[sizeof host - 1] = '\0';
  snprintf (want, sizeof want, "%s:%d:", host, (int) getpid ());
  assert_memory_equal (me, want, strlen (want));
  start = strtoull (me + strlen (want), NULL, 10);
  assert_true (start > 0);

  /* A live child holds it: refused, naming the child. */
  pid = child_claims (path, id, true);
  assert_int_equal (ferry_store_job_claim (st, id, me, 60), -1);
  snprintf (want, sizeof want, "%s: job %" PRId64 " is already being run "
            "by process %d on %s (started ", path, id, (int) pid, host);
  assert_error_prefix (EBUSY, want);
  assert_int_equal (ferry_store_job_get (st, id, &r), 0);
  assert_int_equal (ferry_store_job_runner_alive (st, &r, 60), 1);
  ferry_store_record_free (&r);
  /* Killed and reaped: the job is free. */
  kill (pid, SIGKILL);
  assert_int_equal (waitpid (pid, &status, 0), pid);
  assert_int_equal (ferry_store_job_get (st, id, &r), 0);
  assert_int_equal (ferry_store_job_runner_alive (st, &r, 60), 0);
  ferry_store_record_free (&r);
  assert_int_equal (ferry_store_job_claim (st, id, me, 60), 0);

  /* A child that claimed and exited, not yet waited for (a zombie). */
  assert_int_equal (ferry_store_job_release (st, id, me), 0);
  pid = child_claims (path, id, false);
  usleep (100000);
  assert_int_equal (ferry_store_job_claim (st, id, me, 60), 0);
  assert_int_equal (waitpid (pid, &status, 0), pid);
  assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);

  /* A holder whose pid is this process but whose start time is not:
   * the pid was reused. */
  snprintf (fake, sizeof fake, "%s:%d:%llu", host, (int) getpid (),
            start + 1);
  assert_int_equal (ferry_store_job_release (st, id, me), 0);
  assert_int_equal (ferry_store_job_claim (st, id, fake, 60), 0);
  assert_int_equal (ferry_store_job_request (st, id, "pause"), 0);
  assert_int_equal (ferry_store_job_claim (st, id, me, 60), 0);
  /* The old holder's heartbeat: taken over. */
  assert_int_equal (ferry_store_job_heartbeat (st, id, fake, &req), -1);
  assert_int_equal (ferry_get_errno (), ESTALE);
  assert_non_null (strstr (ferry_get_error (), fake));
  /* The claim cleared "pause"; "cancel" stays across a claim. */
  assert_int_equal (ferry_store_job_heartbeat (st, id, me, &req), 0);
  assert_null (req);
  assert_int_equal (ferry_store_job_request (st, id, "cancel"), 0);
  assert_int_equal (ferry_store_job_claim (st, id, me, 60), 0);
  assert_int_equal (ferry_store_job_heartbeat (st, id, me, &req), 0);
  assert_string_equal (req, "cancel");
  free (req);
  assert_int_equal (ferry_store_job_request (st, id, NULL), 0);
  assert_int_equal (ferry_store_job_heartbeat (st, id, me, &req), 0);
  assert_null (req);
  assert_int_equal (ferry_store_job_request (st, id, "stop"), -1);
  assert_int_equal (ferry_get_errno (), EINVAL);
  assert_int_equal (ferry_store_job_request (st, id + 1, "pause"), -1);
  assert_int_equal (ferry_get_errno (), ENOENT);

  /* Release by another runner does nothing; by the holder, frees it. */
  assert_int_equal (ferry_store_job_release (st, id, fake), 0);
  assert_int_equal (ferry_store_job_get (st, id, &r), 0);
  assert_string_equal (r.runner, me);
  assert_true (r.heartbeat > 1.7e9);
  ferry_store_record_free (&r);
  assert_int_equal (ferry_store_job_release (st, id, me), 0);
  assert_int_equal (ferry_store_job_get (st, id, &r), 0);
  assert_null (r.runner);
  ferry_store_record_free (&r);
  assert_int_equal (ferry_store_job_heartbeat (st, id, me, &req), -1);
  assert_int_equal (ferry_get_errno (), ESTALE);

  /* Another host: the heartbeat decides. */
  assert_int_equal (ferry_store_job_claim (st, id, "elsewhere.invalid:1:1",
                                           60), 0);
  assert_int_equal (ferry_store_job_claim (st, id, me, 60), -1);
  snprintf (want, sizeof want, "%s: job %" PRId64 " is already being run "
            "by process 1 on elsewhere.invalid (last heartbeat 0 s ago)",
            path, id);
  assert_error (EBUSY, want);
  usleep (20000);
  assert_int_equal (ferry_store_job_claim (st, id, me, 0.01), 0);

  free (me);
  ferry_store_close (st);
}

/* Write LEN bytes of BYTE at OFFSET of PATH. */
static void
overwrite (const char *path, off_t offset, int byte, size_t len)
{
  char buf[4096];
  int fd = open (path, O_WRONLY);

  assert_true (fd >= 0 && len <= sizeof buf);
  memset (buf, byte, len);
  assert_int_equal (pwrite (fd, buf, len, offset), (ssize_t) len);
  close (fd);
}

/* Files that are not (good) stores are refused, and left as they were. */
static void
test_bad_files (void **state)
{
  char path[512], want[2048], doc[3000];
  struct ferry_store *st;
  struct stat before, after;
  FILE *f;

  /* Garbage bytes. */
  tmp_path (path, sizeof path, "garbage.db");
  f = fopen (path, "w");
  for (int i = 0; i < 8192; i++)
    fputc ((i * 7919 + 13) & 0xff, f);
  fclose (f);
  assert_int_equal (stat (path, &before), 0);
  assert_null (ferry_store_open (path, 0));
  snprintf (want, sizeof want, "%s: not a ferry job store (file is not a "
            "database)", path);
  assert_error (EINVAL, want);
  assert_int_equal (stat (path, &after), 0);
  assert_int_equal (after.st_size, before.st_size);
  assert_true (after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
               after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);

  /* A text file. */
  tmp_path (path, sizeof path, "text.db");
  f = fopen (path, "w");
  for (int i = 0; i < 100; i++)
    fprintf (f, "line %d of a text file that is not a database\n", i);
  fclose (f);
  assert_null (ferry_store_open (path, 0));
  snprintf (want, sizeof want, "%s: not a ferry job store (file is not a "
            "database)", path);
  assert_error (EINVAL, want);

  /* A real store with a page overwritten. */
  st = fresh_store (path, sizeof path, "damaged.db");
  memset (doc, 'x', sizeof doc - 1);
  doc[sizeof doc - 1] = '\0';
  for (int i = 0; i < 40; i++)
    assert_true (ferry_store_job_add (st, 0, "planned", doc) > 0);
  ferry_store_close (st);
  assert_true (sqlite3_int (path, "PRAGMA page_count") > 8);
  overwrite (path, 5 * 4096, 0xa5, 4096);
  assert_null (ferry_store_open (path, 0));
  snprintf (want, sizeof want, "%s: the job store is corrupt (", path);
  assert_error_prefix (EIO, want);

  /* A newer schema. */
  st = fresh_store (path, sizeof path, "newer.db");
  ferry_store_close (st);
  sqlite3_cmd (path, "PRAGMA user_version = 7", want, sizeof want);
  assert_null (ferry_store_open (path, 0));
  snprintf (want, sizeof want, "%s: the job store has schema version 7, "
            "newer than this ferry knows (%d): use a newer ferry", path,
            ferry_store_schema_version ());
  assert_error (EPROTONOSUPPORT, want);
  assert_int_equal (sqlite3_int (path, "PRAGMA user_version"), 7);

  /* Another program's database. */
  tmp_path (path, sizeof path, "other.db");
  sqlite3_cmd (path, "CREATE TABLE songs (title TEXT)", want, sizeof want);
  assert_null (ferry_store_open (path, 0));
  snprintf (want, sizeof want, "%s: not a ferry job store (a SQLite "
            "database of another program: application id 0x0, 1 tables)",
            path);
  assert_error (EINVAL, want);
  assert_int_equal (sqlite3_int (path, "SELECT count(*) FROM sqlite_schema"),
                    1);
  sqlite3_cmd (path, "PRAGMA journal_mode", want, sizeof want);
  assert_string_equal (want, "delete");

  /* An empty file becomes a store. */
  tmp_path (path, sizeof path, "empty.db");
  fclose (fopen (path, "w"));
  st = ferry_store_open (path, FERRY_STORE_NO_CREATE);
  assert_non_null (st);
  ferry_store_close (st);
  assert_int_equal (sqlite3_int (path, "PRAGMA user_version"), 1);
}

/* Missing and unwritable folders. */
static void
test_folders (void **state)
{
  char dir[512], path[1024], want[2048];
  struct stat sb;
  pid_t pid;
  int status;

  tmp_path (dir, sizeof dir, "missing");
  snprintf (path, sizeof path, "%s/ferry.db", dir);
  assert_null (ferry_store_open (path, FERRY_STORE_NO_CREATE));
  snprintf (want, sizeof want, "%s: cannot open the job store: No such "
            "file or directory", path);
  assert_error (ENOENT, want);
  assert_int_equal (stat (dir, &sb), -1);

  /* A folder where a file is. */
  tmp_path (dir, sizeof dir, "plain");
  fclose (fopen (dir, "w"));
  snprintf (path, sizeof path, "%s/sub/ferry.db", dir);
  assert_null (ferry_store_open (path, 0));
  assert_int_equal (ferry_get_errno (), ENOTDIR);
  assert_non_null (strstr (ferry_get_error (), path));

  /* A folder nobody may write: as an ordinary user (root drops to
   * nobody in a child, root writing everywhere). */
  tmp_path (dir, sizeof dir, "readonly");
  assert_int_equal (mkdir (dir, 0555), 0);
  assert_int_equal (chmod (scratch_dir, 0755), 0);
  pid = fork ();
  assert_true (pid >= 0);
  if (pid == 0) {
    char p[1024], w[2048];
    int bad = 0;

    if (geteuid () == 0 && (setgid (65534) == -1 || setuid (65534) == -1))
      _exit (3);
    snprintf (p, sizeof p, "%s/ferry.db", dir);
    snprintf (w, sizeof w, "%s: cannot create the job store: Permission "
              "denied", p);
    if (ferry_store_open (p, 0) || strcmp (ferry_get_error (), w)) {
      fprintf (stderr, "got \"%s\"\nwant \"%s\"\n", ferry_get_error (), w);
      bad = 1;
    }
    snprintf (p, sizeof p, "%s/sub/ferry.db", dir);
    snprintf (w, sizeof w, "%s: cannot create the job store's folder "
              "%s/sub: Permission denied", p, dir);
    if (ferry_store_open (p, 0) || strcmp (ferry_get_error (), w)) {
      fprintf (stderr, "got \"%s\"\nwant \"%s\"\n", ferry_get_error (), w);
      bad = 1;
    }
    _exit (bad);
  }
  assert_int_equal (waitpid (pid, &status, 0), pid);
  chmod (scratch_dir, 0700);
  assert_true (WIFEXITED (status));
  assert_int_equal (WEXITSTATUS (status), 0);
}

/* Seconds on the monotonic clock. */
static double
seconds (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A store another process holds locked: the locked message after about
 * the busy timeout; and once it lets go, work goes on. */
static void
test_locked (void **state)
{
  char path[512], mark[512], want[2048];
  struct ferry_store *st = fresh_store (path, sizeof path, "locked.db");
  char script[4096];
  struct stat sb;
  double t0, t;
  pid_t pid;
  int status;

  ferry_store_close (st);
  tmp_path (mark, sizeof mark, "locked.mark");
  snprintf (script, sizeof script,
            "printf 'BEGIN EXCLUSIVE;\\nINSERT INTO plans (doc, created) "
            "VALUES (1, 1);\\n.system touch %s\\n.system sleep 2\\n"
            "ROLLBACK;\\n' | exec sqlite3 %s", mark, path);
  pid = fork ();
  assert_true (pid >= 0);
  if (pid == 0) {
    execl ("/bin/sh", "sh", "-c", script, (char *) NULL);
    _exit (127);
  }
  for (int i = 0; i < 200 && stat (mark, &sb) == -1; i++)
    usleep (10000);
  assert_int_equal (stat (mark, &sb), 0);

  setenv ("FERRY_STORE_BUSY_TIMEOUT", "300", 1);
  /* Readers are not blocked (WAL): the open goes through. */
  st = ferry_store_open (path, 0);
  if (st == NULL)
    fail_msg ("%s", ferry_get_error ());
  t0 = seconds ();
  assert_int_equal (ferry_store_job_add (st, 0, "planned", "{}"), -1);
  t = seconds () - t0;
  snprintf (want, sizeof want, "%s: the job store is locked by another "
            "process (waited 0.3 s)", path);
  assert_error (ETIMEDOUT, want);
  if (t < 0.25 || t > 1.5)
    fail_msg ("the locked add took %.2f s", t);
  unsetenv ("FERRY_STORE_BUSY_TIMEOUT");

  assert_int_equal (waitpid (pid, &status, 0), pid);
  assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  assert_true (ferry_store_job_add (st, 0, "planned", "{}") > 0);
  ferry_store_close (st);
}

/* Add one to the counter that is job ID's document, reading again
 * whenever another writer saved first.  -1 on an error. */
static int
increment (struct ferry_store *st, int64_t id)
{
  struct ferry_store_record r;
  char doc[32];
  int saved;

  do {
    if (ferry_store_job_get (st, id, &r) == -1)
      return -1;
    snprintf (doc, sizeof doc, "%d", atoi (r.doc) + 1);
    saved = ferry_store_job_save (st, id, r.rev, "running", doc, NULL);
    ferry_store_record_free (&r);
  } while (saved == 0);
  return saved == 1 ? 0 : -1;
}

/* Two processes adding 200 jobs each at once: every add succeeds; each
 * also counts to 100 in one job's document, and no count is lost. */
static void
test_concurrent (void **state)
{
  char path[512], out[64];
  struct ferry_store *st = fresh_store (path, sizeof path, "busy.db");
  int64_t counter = ferry_store_job_add (st, 0, "planned", "0");
  pid_t pids[2];
  int status;

  ferry_store_close (st);
  for (int c = 0; c < 2; c++) {
    pids[c] = fork ();
    assert_true (pids[c] >= 0);
    if (pids[c] == 0) {
      struct ferry_store *s = ferry_store_open (path, 0);
      if (s == NULL) {
        fprintf (stderr, "child %d: %s\n", c, ferry_get_error ());
        _exit (1);
      }
      for (int i = 0; i < 200; i++) {
        int64_t id = ferry_store_job_add (s, 0, "planned", "{}");
        if (id <= 0 || ferry_store_event_add (s, id, "info", "added") ||
            (i % 2 == 0 && increment (s, counter) == -1)) {
          fprintf (stderr, "child %d, job %d: %s\n", c, i,
                   ferry_get_error ());
          _exit (1);
        }
      }
      ferry_store_close (s);
      _exit (0);
    }
  }
  for (int c = 0; c < 2; c++) {
    assert_int_equal (waitpid (pids[c], &status, 0), pids[c]);
    assert_true (WIFEXITED (status));
    assert_int_equal (WEXITSTATUS (status), 0);
  }
  assert_int_equal (sqlite3_int (path, "SELECT count(*) FROM jobs"), 401);
  assert_int_equal (sqlite3_int (path, "SELECT count(DISTINCT id) "
                                 "FROM jobs"), 401);
  assert_int_equal (sqlite3_int (path, "SELECT count(*) FROM events"), 400);
  sqlite3_cmd (path, "SELECT doc || ' ' || rev FROM jobs WHERE id = 1", out,
               sizeof out);
  assert_string_equal (out, "200 201");
}

struct counting {
  struct ferry_store *st;
  int64_t id;
  int failed;
};

/* A thread that counts to 100 in a job's document and logs each step. */
static void *
count_thread (void *arg)
{
  struct counting *c = arg;

  for (int i = 0; i < 100 && !c->failed; i++)
    if (increment (c->st, c->id) == -1 ||
        ferry_store_event_add (c->st, c->id, "info", "counted") == -1) {
      fprintf (stderr, "thread: %s\n", ferry_get_error ());
      c->failed = 1;
    }
  return NULL;
}

/* Two threads sharing one handle: their transactions never interleave. */
static void
test_threads (void **state)
{
  char path[512], out[64];
  struct ferry_store *st = fresh_store (path, sizeof path, "threads.db");
  struct counting c[2];
  pthread_t t[2];

  c[0].st = c[1].st = st;
  c[0].id = c[1].id = ferry_store_job_add (st, 0, "planned", "0");
  c[0].failed = c[1].failed = 0;
  for (int i = 0; i < 2; i++)
    assert_int_equal (pthread_create (&t[i], NULL, count_thread, &c[i]), 0);
  for (int i = 0; i < 2; i++)
    assert_int_equal (pthread_join (t[i], NULL), 0);
  assert_int_equal (c[0].failed + c[1].failed, 0);
  ferry_store_close (st);
  sqlite3_cmd (path, "SELECT doc || ' ' || rev FROM jobs", out, sizeof out);
  assert_string_equal (out, "200 201");
  assert_int_equal (sqlite3_int (path, "SELECT count(*) FROM events"), 200);
}

/* Four processes opening one new store at once, again and again: each
 * open succeeds and the store is made once (the journal mode changes only
 * with the file to itself; the schema is read in one snapshot). */
static void
test_concurrent_create (void **state)
{
  char path[512], name[32];
  pid_t pids[4];
  int status, go[2];

  for (int round = 0; round < 30; round++) {
    snprintf (name, sizeof name, "fresh-%d.db", round);
    tmp_path (path, sizeof path, name);
    assert_int_equal (pipe (go), 0);
    for (int c = 0; c < 4; c++) {
      pids[c] = fork ();
      assert_true (pids[c] >= 0);
      if (pids[c] == 0) {
        struct ferry_store *s;
        char b;
        close (go[1]);
        if (read (go[0], &b, 1) != 0)
          _exit (2);
        s = ferry_store_open (path, 0);
        if (s == NULL) {
          fprintf (stderr, "round %d, child %d: %s\n", round, c,
                   ferry_get_error ());
          _exit (1);
        }
        ferry_store_close (s);
        _exit (0);
      }
    }
    close (go[0]);
    close (go[1]);              /* all four go */
    for (int c = 0; c < 4; c++) {
      assert_int_equal (waitpid (pids[c], &status, 0), pids[c]);
      assert_true (WIFEXITED (status));
      assert_int_equal (WEXITSTATUS (status), 0);
    }
    assert_int_equal (sqlite3_int (path, "PRAGMA user_version"), 1);
  }
}

/* The default path's rules. */
static void
test_default_path (void **state)
{
  char *p;

  setenv ("FERRY_STORE", "/somewhere/jobs.db", 1);
  p = ferry_store_default_path ();
  assert_string_equal (p, "/somewhere/jobs.db");
  free (p);
  unsetenv ("FERRY_STORE");
  setenv ("XDG_STATE_HOME", "/xdg/state", 1);
  p = ferry_store_default_path ();
  assert_string_equal (p, geteuid () == 0 ? "/var/lib/ferry/ferry.db"
                       : "/xdg/state/ferry/ferry.db");
  free (p);
  unsetenv ("XDG_STATE_HOME");
  if (geteuid () != 0) {
    char want[2048];
    snprintf (want, sizeof want, "%s/.local/state/ferry/ferry.db",
              getenv ("HOME"));
    p = ferry_store_default_path ();
    assert_string_equal (p, want);
    free (p);
  }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_default_path),
    cmocka_unit_test (test_jobs),
    cmocka_unit_test (test_events),
    cmocka_unit_test (test_plans),
    cmocka_unit_test (test_claims),
    cmocka_unit_test (test_bad_files),
    cmocka_unit_test (test_folders),
    cmocka_unit_test (test_locked),
    cmocka_unit_test (test_concurrent),
    cmocka_unit_test (test_concurrent_create),
    cmocka_unit_test (test_threads),
  };

  unsetenv ("FERRY_STORE_BUSY_TIMEOUT");
  return cmocka_run_group_tests (tests, make_scratch_dir, remove_scratch_dir);
}
