/* Unit tests for the QMP client (lib/hv/qmp.c, qmp-block.c) against a
 * fake QMP server: a thread on a Unix socket in the scratch directory
 * that plays a script (send these lines, read a command, stop, close).
 * It checks the handshake, events queued while a command waits, error
 * replies, late replies with another id, EOF in the middle of a line, a
 * server that is not QMP, timeouts, stop requests, a line too long and
 * query-block replies.  The real QEMU is the peer of tests/shell/qmp.sh.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define SCRATCH_PREFIX "ferry-test-qmp"
#include "scratch-dir.h"

#include <json-c/json.h>

#include <ferry/error.h>
#include <ferry/qmp.h>

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, " \
  "\"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": " \
  "[\"oob\"]}}\r\n"
#define CAPS_OK "{\"return\": {}, \"id\": $ID}\r\n"

/* One step of a fake server's script. */
enum step_op {
  SEND,         /* send TEXT, "$ID" replaced by the last command's id and
                   "$PREV" by the one before */
  RECV,         /* read one command line; its "execute" must be TEXT */
  SEND_HUGE,    /* send the start of a reply longer than 16 MiB */
  SEND_EVENTS,  /* send TEXT events E with data {"n": 0}, {"n": 1}, ... */
  STOP,         /* ferry_request_stop () */
  SLEEP,        /* sleep TEXT milliseconds */
  CLOSE,        /* close the connection */
};
struct step {
  enum step_op op;
  const char *text;
};
#define END { CLOSE, NULL }

struct server {
  int listen_fd;
  char path[300];
  const struct step *script;
  pthread_t thread;
  int64_t ids[2];               /* the last command's id, the one before */
  char failure[256];            /* what went wrong in the script, or "" */
};

/* Read one line from FD into BUF (LEN bytes); its length, or -1 at EOF. */
static ssize_t
read_line (int fd, char *buf, size_t len)
{
  size_t n = 0;

  while (n < len - 1) {
    ssize_t r = read (fd, buf + n, 1);
    if (r <= 0)
      return -1;
    if (buf[n] == '\n')
      break;
    n++;
  }
  buf[n] = '\0';
  return n;
}

/* Send TEXT on FD with $ID and $PREV replaced. */
static void
send_text (struct server *s, int fd, const char *text)
{
  char out[4096], num[32];
  size_t n = 0;

  while (*text && n < sizeof out - 32) {
    if (!strncmp (text, "$ID", 3) || !strncmp (text, "$PREV", 5)) {
      bool prev = text[1] == 'P';
      snprintf (num, sizeof num, "%lld", (long long) s->ids[prev]);
      memcpy (out + n, num, strlen (num));
      n += strlen (num);
      text += prev ? 5 : 3;
    }
    else
      out[n++] = *text++;
  }
  if (send (fd, out, n, MSG_NOSIGNAL) != (ssize_t) n)
    snprintf (s->failure, sizeof s->failure, "short send");
}

/* The fake server's thread: accept one client, play the script. */
static void *
server_thread (void *arg)
{
  struct server *s = arg;
  const struct step *st;
  char line[65536];
  int fd = accept (s->listen_fd, NULL, NULL);

  if (fd == -1) {
    snprintf (s->failure, sizeof s->failure, "accept: %m");
    return NULL;
  }
  for (st = s->script; ; st++) {
    switch (st->op) {
    case SEND:
      send_text (s, fd, st->text);
      break;
    case RECV: {
      json_object *o, *v;
      if (read_line (fd, line, sizeof line) == -1) {
        snprintf (s->failure, sizeof s->failure, "EOF instead of %s", st->text);
        goto out;
      }
      o = json_tokener_parse (line);
      if (o == NULL || !json_object_object_get_ex (o, "execute", &v) ||
          strcmp (json_object_get_string (v), st->text)) {
        snprintf (s->failure, sizeof s->failure, "expected %s, got %.200s",
                  st->text, line);
        json_object_put (o);
        goto out;
      }
      s->ids[1] = s->ids[0];
      s->ids[0] = json_object_object_get_ex (o, "id", &v)
        ? json_object_get_int64 (v) : -1;
      json_object_put (o);
      break;
    }
    case SEND_HUGE: {
      static char chunk[1 << 20];
      memset (chunk, 'a', sizeof chunk);
      send_text (s, fd, "{\"return\": \"");
      for (int i = 0; i < 17; i++)
        if (send (fd, chunk, sizeof chunk, MSG_NOSIGNAL) == -1)
          break;                /* the client gave up: what we expect */
      break;
    }
    case SEND_EVENTS:
      for (int i = 0; i < atoi (st->text); i++) {
        char ev[128];
        snprintf (ev, sizeof ev, "{\"event\": \"E\", \"data\": {\"n\": %d}}\r\n",
                  i);
        send_text (s, fd, ev);
      }
      break;
    case STOP:
      ferry_request_stop ();
      break;
    case SLEEP:
      usleep (atoi (st->text) * 1000);
      break;
    case CLOSE:
      goto out;
    }
  }
 out:
  close (fd);
  return NULL;
}

/* Start a fake server playing SCRIPT on a fresh socket of the scratch
 * directory. */
static void
start_server (struct server *s, const struct step *script)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  static int count;

  memset (s, 0, sizeof *s);
  s->script = script;
  snprintf (s->path, sizeof s->path, "%s/qmp-%d.sock", scratch_dir, count++);
  unlink (s->path);
  s->listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true (s->listen_fd >= 0);
  assert_true (strlen (s->path) < sizeof addr.sun_path);
  strcpy (addr.sun_path, s->path);
  assert_int_equal (bind (s->listen_fd, (struct sockaddr *) &addr,
                          sizeof addr), 0);
  assert_int_equal (listen (s->listen_fd, 1), 0);
  assert_int_equal (pthread_create (&s->thread, NULL, server_thread, s), 0);
}

/* Start a fake server playing SCRIPT and connect to it with TIMEOUT. */
static struct ferry_qmp *
start_and_connect (struct server *s, const struct step *script,
                   double timeout)
{
  struct ferry_qmp *q;

  start_server (s, script);
  q = ferry_qmp_connect (s->path, timeout);
  if (q == NULL)
    fail_msg ("%s", ferry_get_error ());
  return q;
}

/* Wait for the server's script to end; it must have gone as written. */
static void
finish_server (struct server *s)
{
  pthread_join (s->thread, NULL);
  close (s->listen_fd);
  unlink (s->path);
  if (s->failure[0])
    fail_msg ("fake server: %s", s->failure);
}

/* Assert that the last error has errno ERRNUM and holds TEXT. */
static void
assert_error (int errnum, const char *text)
{
  const char *msg = ferry_get_error ();

  if (ferry_get_errno () != errnum || strstr (msg, text) == NULL)
    fail_msg ("expected errno %d and '%s', got errno %d: %s",
              errnum, text, ferry_get_errno (), msg);
}

/* Now, in seconds of the monotonic clock. */
static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The handshake, then a command whose reply comes after three events:
 * the reply is the command's, the events are queued and handed out by
 * name, oldest first, and a missing event times out. */
static void
test_events (void **state)
{
  static const struct step script[] = {
    { SEND, GREETING }, { RECV, "qmp_capabilities" }, { SEND, CAPS_OK },
    { RECV, "query-status" },
    { SEND, "{\"event\": \"STOP\", \"data\": {\"n\": 1}, \"timestamp\": "
      "{\"seconds\": 1, \"microseconds\": 2}}\r\n" },
    { SEND, "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 1, "
      "\"microseconds\": 3}}\r\n" },
    { SEND, "{\"event\": \"STOP\", \"data\": {\"n\": 2}}\r\n" },
    { SEND, "{\"return\": {\"status\": \"running\", \"running\": true}, "
      "\"id\": $ID}\r\n" },
    { SLEEP, "100" },
    { SEND, "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true}}\n" },
    { SLEEP, "1000" },
    END,
  };
  struct server s;
  struct ferry_qmp *q;
  json_object *data, *v;
  char status[32];

  q = start_and_connect (&s, script, 5);
  assert_string_equal (ferry_qmp_path (q), s.path);
  assert_int_equal (ferry_qmp_status (q, status, sizeof status), 0);
  assert_string_equal (status, "running");

  assert_int_equal (ferry_qmp_wait_event (q, "STOP", 1, &data), 1);
  assert_true (json_object_object_get_ex (data, "n", &v));
  assert_int_equal (json_object_get_int (v), 1);
  json_object_put (data);
  assert_int_equal (ferry_qmp_wait_event (q, "RESUME", 1, &data), 1);
  assert_null (data);             /* it has no "data" */
  assert_int_equal (ferry_qmp_wait_event (q, "STOP", 1, &data), 1);
  assert_true (json_object_object_get_ex (data, "n", &v));
  assert_int_equal (json_object_get_int (v), 2);
  json_object_put (data);
  /* Not queued: read from the socket as it comes. */
  assert_int_equal (ferry_qmp_wait_event (q, "SHUTDOWN", 2, &data), 1);
  assert_true (json_object_object_get_ex (data, "guest", &v));
  json_object_put (data);
  /* Nothing more comes. */
  double t0 = now ();
  assert_int_equal (ferry_qmp_wait_event (q, "STOP", 0.2, NULL), 0);
  assert_true (now () - t0 >= 0.19 && now () - t0 < 0.9);

  ferry_qmp_close (q);
  finish_server (&s);
}

/* The warnings the library logged, for test_event_overflow. */
static char warnings[1024];

/* Keep warnings in WARNINGS. */
static void
keep_warnings (enum ferry_log_level level, const char *msg, void *opaque)
{
  if (level == FERRY_LOG_WARNING)
    snprintf (warnings + strlen (warnings), sizeof warnings - strlen (warnings),
              "%s\n", msg);
}

/* 300 events while a command waits: the newest 256 are kept, in order,
 * and the loss is warned about once. */
static void
test_event_overflow (void **state)
{
  static const struct step script[] = {
    { SEND, GREETING }, { RECV, "qmp_capabilities" }, { SEND, CAPS_OK },
    { RECV, "stop" },
    { SEND_EVENTS, "300" },
    { SEND, "{\"return\": {}, \"id\": $ID}\r\n" },
    { SLEEP, "500" },
    END,
  };
  struct server s;
  struct ferry_qmp *q;
  json_object *data, *v;
  int i;

  warnings[0] = '\0';
  ferry_set_log_callback (keep_warnings, NULL);
  q = start_and_connect (&s, script, 5);
  assert_int_equal (ferry_qmp_execute (q, "stop", NULL, NULL), 0);
  ferry_set_log_callback (NULL, NULL);
  for (i = 300 - 256; i < 300; i++) {
    assert_int_equal (ferry_qmp_wait_event (q, "E", 0, &data), 1);
    assert_true (json_object_object_get_ex (data, "n", &v));
    assert_int_equal (json_object_get_int (v), i);
    json_object_put (data);
  }
  assert_int_equal (ferry_qmp_wait_event (q, "E", 0, &data), 0);
  assert_non_null (strstr (warnings, "more than 256 events came that nobody "
                           "waited for; the oldest are dropped\n"));
  assert_null (strchr (strchr (warnings, '\n') + 1, '\n'));   /* once */
  ferry_qmp_close (q);
  finish_server (&s);
}

/* An error reply: -1, EPROTO, "qmp:PATH: COMMAND: DESC" and its class;
 * the next command's success clears the class; a reply with another id
 * (a late one) is skipped. */
static void
test_error_and_ids (void **state)
{
  static const struct step script[] = {
    { SEND, GREETING }, { RECV, "qmp_capabilities" }, { SEND, CAPS_OK },
    { RECV, "no-such-command" },
    { SEND, "{\"id\": $ID, \"error\": {\"class\": \"CommandNotFound\", "
      "\"desc\": \"The command no-such-command has not been found\"}}\r\n" },
    { RECV, "query-name" },
    { SEND, "{\"return\": {\"name\": \"late\"}, \"id\": 999}\r\n" },
    { SEND, "{\"return\": {\"name\": \"vm1\"}, \"id\": $ID}\r\n" },
    { RECV, "block-dirty-bitmap-add" },
    { SEND, "{\"return\": {}, \"id\": $ID}\r\n" },
    { RECV, "query-name" },
    { SEND, "\r\n\n{\"return\": {\"name\": \"vm2\"}, \"id\": $ID}\n" },
    END,
  };
  struct server s;
  struct ferry_qmp *q;
  json_object *ret, *v;
  char expect[512];

  q = start_and_connect (&s, script, 5);
  assert_null (ferry_qmp_error_class (q));
  ret = (json_object *) 1;
  assert_int_equal (ferry_qmp_execute (q, "no-such-command", NULL, &ret), -1);
  assert_null (ret);
  snprintf (expect, sizeof expect, "qmp:%s: no-such-command: The command "
            "no-such-command has not been found", s.path);
  assert_error (EPROTO, expect);
  assert_string_equal (ferry_get_error (), expect);
  assert_string_equal (ferry_qmp_error_class (q), "CommandNotFound");

  assert_int_equal (ferry_qmp_execute (q, "query-name", NULL, &ret), 0);
  assert_null (ferry_qmp_error_class (q));
  assert_true (json_object_object_get_ex (ret, "name", &v));
  assert_string_equal (json_object_get_string (v), "vm1");
  json_object_put (ret);

  assert_int_equal (ferry_qmp_executef (q, NULL, "block-dirty-bitmap-add",
                                        "{\"node\": \"%s\", \"name\": \"%s\"}",
                                        "disk0", "ferry-1"), 0);
  assert_int_equal (ferry_qmp_executef (q, &ret, "query-name", NULL), 0);
  assert_true (json_object_object_get_ex (ret, "name", &v));
  assert_string_equal (json_object_get_string (v), "vm2");
  json_object_put (ret);
  /* Arguments that are not an object are refused before anything is
   * sent. */
  assert_int_equal (ferry_qmp_executef (q, NULL, "stop", "[1, %d]", 2), -1);
  assert_error (EINVAL, "the arguments are not a JSON object");

  ferry_qmp_close (q);
  finish_server (&s);
}

/* The server closes in the middle of a line: EPIPE and a message that says
 * so; every later call fails at once. */
static void
test_eof_mid_line (void **state)
{
  static const struct step script[] = {
    { SEND, GREETING }, { RECV, "qmp_capabilities" }, { SEND, CAPS_OK },
    { RECV, "query-status" },
    { SEND, "{\"return\": {\"status\": \"runn" },
    END,
  };
  struct server s;
  struct ferry_qmp *q;
  char status[32];

  q = start_and_connect (&s, script, 5);
  assert_int_equal (ferry_qmp_status (q, status, sizeof status), -1);
  assert_error (EPIPE, "the VM closed the connection in the middle of a "
                "message (did QEMU exit?)");
  assert_int_equal (ferry_qmp_execute (q, "cont", NULL, NULL), -1);
  assert_error (EPIPE, "the connection ended earlier: the VM closed the "
                "connection in the middle of a message");
  ferry_qmp_close (q);
  finish_server (&s);
}

/* A clean close between messages: the message the brief promises. */
static void
test_closed (void **state)
{
  static const struct step script[] = {
    { SEND, GREETING }, { RECV, "qmp_capabilities" }, { SEND, CAPS_OK },
    { RECV, "stop" },
    END,
  };
  struct server s;
  struct ferry_qmp *q;
  char expect[512];

  q = start_and_connect (&s, script, 5);
  assert_int_equal (ferry_qmp_execute (q, "stop", NULL, NULL), -1);
  snprintf (expect, sizeof expect, "qmp:%s: the VM closed the connection "
            "(did QEMU exit?)", s.path);
  assert_error (EPIPE, expect);
  ferry_qmp_close (q);
  finish_server (&s);
}

/* Servers that are not QMP, or refuse the capabilities. */
static void
test_not_qmp (void **state)
{
  static const struct step ssh[] = {
    { SEND, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" }, END,
  };
  static const struct step json[] = {
    { SEND, "{\"hello\": \"world\"}\n" }, END,
  };
  static const struct step silent[] = {
    { SLEEP, "800" }, END,
  };
  static const struct step closes[] = { END };
  static const struct step refuses[] = {
    { SEND, GREETING }, { RECV, "qmp_capabilities" },
    { SEND, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no "
      "way\"}, \"id\": $ID}\n" },
    END,
  };
  struct server s;
  double t0;

  start_server (&s, ssh);
  assert_null (ferry_qmp_connect (s.path, 5));
  assert_error (EPROTO, "not a QMP server (greeting: not JSON");
  assert_error (EPROTO, "SSH-2.0-OpenSSH");
  finish_server (&s);

  start_server (&s, json);
  assert_null (ferry_qmp_connect (s.path, 5));
  assert_error (EPROTO, "not a QMP server (greeting: neither a greeting");
  finish_server (&s);

  start_server (&s, closes);
  assert_null (ferry_qmp_connect (s.path, 5));
  assert_error (EPROTO, "not a QMP server (it closed the connection");
  finish_server (&s);

  start_server (&s, silent);
  t0 = now ();
  assert_null (ferry_qmp_connect (s.path, 0.3));
  assert_error (ETIMEDOUT, "no greeting within 0.3 s");
  assert_true (now () - t0 < 0.7);
  finish_server (&s);

  start_server (&s, refuses);
  assert_null (ferry_qmp_connect (s.path, 5));
  assert_error (EPROTO, "refused capabilities: no way");
  finish_server (&s);
}

/* Sockets that are not there or not sockets. */
static void
test_no_socket (void **state)
{
  char path[512], expect[600];
  FILE *fp;

  snprintf (path, sizeof path, "%s/missing.sock", scratch_dir);
  assert_null (ferry_qmp_connect (path, 1));
  snprintf (expect, sizeof expect, "qmp:%s: no such socket", path);
  assert_error (ENOENT, expect);

  snprintf (path, sizeof path, "%s/plain-file", scratch_dir);
  fp = fopen (path, "w");
  assert_non_null (fp);
  fclose (fp);
  assert_null (ferry_qmp_connect (path, 1));
  assert_error (ENOTSOCK, "not a socket");
  unlink (path);
}

/* A server whose queue of connections is full (it never accepts): the
 * connect itself gives up at the timeout, with a message that says so. */
static void
test_queue_full (void **state)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int lfd, fds[16], nr = 0;
  double t0;
  char path[300];

  snprintf (path, sizeof path, "%s/full.sock", scratch_dir);
  assert_true (strlen (path) < sizeof addr.sun_path);
  strcpy (addr.sun_path, path);
  lfd = socket (AF_UNIX, SOCK_STREAM, 0);
  assert_true (lfd >= 0);
  assert_int_equal (bind (lfd, (struct sockaddr *) &addr, sizeof addr), 0);
  assert_int_equal (listen (lfd, 0), 0);
  while (nr < 16) {
    fds[nr] = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (connect (fds[nr], (struct sockaddr *) &addr, sizeof addr) == -1) {
      assert_int_equal (errno, EAGAIN);
      close (fds[nr]);
      break;
    }
    nr++;
  }
  assert_true (nr < 16);

  t0 = now ();
  assert_null (ferry_qmp_connect (addr.sun_path, 0.3));
  assert_error (ETIMEDOUT, "the socket took no connection within 0.3 s "
                "(its queue is full)");
  assert_true (now () - t0 >= 0.29 && now () - t0 < 1.5);
  while (nr > 0)
    close (fds[--nr]);
  close (lfd);
  unlink (addr.sun_path);
}

/* A command without a reply times out with ETIMEDOUT after the timeout;
 * the connection stays usable and the late reply (the old id) is
 * skipped.  A stop request ends a wait at once with EINTR. */
static void
test_timeout_and_stop (void **state)
{
  static const struct step script[] = {
    { SEND, GREETING }, { RECV, "qmp_capabilities" }, { SEND, CAPS_OK },
    { RECV, "query-status" },
    { RECV, "query-name" },
    { SEND, "{\"return\": {\"status\": \"late\"}, \"id\": $PREV}\r\n" },
    { SEND, "{\"return\": {\"name\": \"vm1\"}, \"id\": $ID}\r\n" },
    { RECV, "query-status" },
    { SLEEP, "200" },
    { STOP, NULL },
    { RECV, "query-name" },
    { SEND, "{\"return\": {\"name\": \"vm2\"}, \"id\": $ID}\r\n" },
    END,
  };
  struct server s;
  struct ferry_qmp *q;
  json_object *ret, *v;
  char status[32];
  double t0;

  q = start_and_connect (&s, script, 0.4);
  t0 = now ();
  assert_int_equal (ferry_qmp_status (q, status, sizeof status), -1);
  assert_error (ETIMEDOUT, "query-status: no reply within 0.4 s");
  assert_true (now () - t0 >= 0.39 && now () - t0 < 1.5);

  assert_int_equal (ferry_qmp_execute (q, "query-name", NULL, &ret), 0);
  assert_true (json_object_object_get_ex (ret, "name", &v));
  assert_string_equal (json_object_get_string (v), "vm1");
  json_object_put (ret);

  /* The server requests the stop 0.2 s into the wait. */
  t0 = now ();
  assert_int_equal (ferry_qmp_status (q, status, sizeof status), -1);
  assert_error (EINTR, "stopped");
  assert_true (now () - t0 < 0.39);
  /* While it stands, calls fail at once. */
  assert_int_equal (ferry_qmp_wait_event (q, "STOP", 5, NULL), -1);
  assert_error (EINTR, "stopped");
  ferry_clear_stop ();

  assert_int_equal (ferry_qmp_execute (q, "query-name", NULL, &ret), 0);
  assert_true (json_object_object_get_ex (ret, "name", &v));
  assert_string_equal (json_object_get_string (v), "vm2");
  json_object_put (ret);

  ferry_qmp_close (q);
  finish_server (&s);
}

/* A reply longer than 16 MiB is refused (EMSGSIZE), not allocated. */
static void
test_oversized (void **state)
{
  static const struct step script[] = {
    { SEND, GREETING }, { RECV, "qmp_capabilities" }, { SEND, CAPS_OK },
    { RECV, "query-block" },
    { SEND_HUGE, NULL },
    END,
  };
  struct server s;
  struct ferry_qmp *q;

  q = start_and_connect (&s, script, 10);
  assert_int_equal (ferry_qmp_execute (q, "query-block", NULL, NULL), -1);
  assert_error (EMSGSIZE, "a message longer than 16 MiB");
  assert_int_equal (ferry_qmp_execute (q, "query-block", NULL, NULL), -1);
  assert_error (EMSGSIZE, "the connection ended earlier: a message longer "
                "than 16 MiB");
  ferry_qmp_close (q);
  finish_server (&s);
}

/* The parser alone: each kind, ids, and what it must refuse. */
static void
test_parse (void **state)
{
  static const struct {
    const char *text;
    int kind;                   /* -1: refused */
    int64_t id;
    const char *error;
  } cases[] = {
    { GREETING, FERRY_QMP_GREETING, -1, NULL },
    { "{\"return\": 5, \"id\": 7}", FERRY_QMP_RETURN, 7, NULL },
    { "{\"return\": {}, \"id\": \"text\"}", FERRY_QMP_RETURN, -1, NULL },
    { "{\"return\": {}, \"id\": -3}", FERRY_QMP_RETURN, -1, NULL },
    { "{\"error\": {\"class\": \"A\", \"desc\": \"B\"}, \"id\": 2}",
      FERRY_QMP_ERROR, 2, NULL },
    { "{\"event\": \"STOP\"}", FERRY_QMP_EVENT, -1, NULL },
    { "{\"error\": {\"desc\": \"B\"}}", -1, 0, "an error reply without a class" },
    { "{\"error\": \"B\"}", -1, 0, "an error reply without a class" },
    { "{\"event\": 5}", -1, 0, "neither a greeting" },
    { "{}", -1, 0, "neither a greeting" },
    { "[1, 2]", -1, 0, "not a JSON object" },
    { "\"text\"", -1, 0, "not a JSON object" },
    { "{\"return\": {}", -1, 0, "a message cut short" },
    { "{\"return\": {}} {}", -1, 0, "more after the JSON value" },
    { "{\"return\": 1}\0garbage", -1, 0, "more after the JSON value" },
    { "garbage", -1, 0, "not JSON" },
    { "", -1, 0, "a message cut short" },
  };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct ferry_qmp_message m;
    size_t len = strlen (cases[i].text);
    if (i == 14)
      len += 8;                 /* the NUL and what follows it */
    int r = ferry_qmp_parse_message (cases[i].text, len, &m);
    if (cases[i].kind == -1) {
      if (r != -1)
        fail_msg ("case %zu (%s) parsed", i, cases[i].text);
      assert_error (EPROTO, cases[i].error);
      continue;
    }
    if (r == -1)
      fail_msg ("case %zu (%s): %s", i, cases[i].text, ferry_get_error ());
    assert_int_equal (m.kind, cases[i].kind);
    assert_int_equal (m.id, cases[i].id);
    if (m.kind == FERRY_QMP_ERROR) {
      assert_string_equal (m.error_class, "A");
      assert_string_equal (m.error_desc, "B");
    }
    if (m.kind == FERRY_QMP_EVENT)
      assert_string_equal (m.event, "STOP");
    json_object_put (m.obj);
  }
}

/* query-block as QEMU 7.2 answers it: a -blockdev disk with two bitmaps,
 * an empty CD-ROM drive (skipped), a CD-ROM with a medium (flagged), a
 * -drive disk; then a reply without a node name is refused. */
static void
test_query_disks (void **state)
{
  static const struct step script[] = {
    { SEND, GREETING }, { RECV, "qmp_capabilities" }, { SEND, CAPS_OK },
    { RECV, "query-block" },
    { SEND, "{\"return\": ["
      "{\"io-status\": \"ok\", \"device\": \"\", \"locked\": false, "
      "\"removable\": false, \"inserted\": {\"iops_rd\": 0, \"ro\": false, "
      "\"node-name\": \"disk0\", \"drv\": \"qcow2\", \"file\": \"/vm/a.qcow2\", "
      "\"image\": {\"virtual-size\": 1073741824, \"filename\": "
      "\"/vm/a.qcow2\", \"format\": \"qcow2\"}, \"dirty-bitmaps\": ["
      "{\"name\": \"ferry-1\", \"recording\": true, \"persistent\": false, "
      "\"busy\": false, \"granularity\": 65536, \"count\": 0}, "
      "{\"recording\": true, \"granularity\": 65536, \"count\": 0}, "
      "{\"name\": \"old\", \"recording\": false, \"granularity\": 65536, "
      "\"count\": 512}]}, "
      "\"qdev\": \"/machine/peripheral/vd0/virtio-backend\", \"type\": "
      "\"unknown\"}, "
      "{\"device\": \"ide1-cd0\", \"locked\": false, \"removable\": true, "
      "\"qdev\": \"/machine/unattached/device[23]\", \"tray_open\": false, "
      "\"type\": \"unknown\"}, "
      "{\"device\": \"ide1-cd1\", \"removable\": true, \"inserted\": {\"ro\": "
      "true, \"node-name\": \"#block123\", \"drv\": \"raw\", \"file\": "
      "\"/iso/d.iso\", \"image\": {\"virtual-size\": 4096}}}, "
      "{\"device\": \"drive1\", \"removable\": false, \"inserted\": {\"ro\": "
      "false, \"node-name\": \"#block456\", \"drv\": \"raw\", \"file\": "
      "\"/vm/b.img\", \"image\": {\"virtual-size\": 2048}}}"
      "], \"id\": $ID}\r\n" },
    { RECV, "query-block" },
    { SEND, "{\"return\": [{\"device\": \"d\", \"inserted\": {\"drv\": "
      "\"raw\", \"image\": {\"virtual-size\": 1}}}], \"id\": $ID}\r\n" },
    END,
  };
  struct server s;
  struct ferry_qmp *q;
  struct ferry_qmp_disk *d;
  size_t n;

  q = start_and_connect (&s, script, 5);
  if (ferry_qmp_query_disks (q, &d, &n) == -1)
    fail_msg ("%s", ferry_get_error ());
  assert_int_equal (n, 3);
  assert_string_equal (d[0].device, "");
  assert_string_equal (d[0].qdev, "/machine/peripheral/vd0/virtio-backend");
  assert_string_equal (d[0].node, "disk0");
  assert_string_equal (d[0].file, "/vm/a.qcow2");
  assert_string_equal (d[0].format, "qcow2");
  assert_int_equal (d[0].virtual_size, 1073741824);
  assert_false (d[0].read_only);
  assert_false (d[0].removable);
  assert_string_equal (d[0].bitmaps[0], "ferry-1");
  assert_true (d[0].bitmap_recording[0]);
  assert_string_equal (d[0].bitmaps[1], "old");
  assert_false (d[0].bitmap_recording[1]);
  assert_null (d[0].bitmaps[2]);
  assert_string_equal (d[1].device, "ide1-cd1");
  assert_null (d[1].qdev);
  assert_true (d[1].removable);
  assert_true (d[1].read_only);
  assert_null (d[1].bitmaps[0]);
  assert_string_equal (d[2].device, "drive1");
  assert_string_equal (d[2].node, "#block456");
  assert_int_equal (d[2].virtual_size, 2048);
  ferry_qmp_disks_free (d, n);

  assert_int_equal (ferry_qmp_query_disks (q, &d, &n), -1);
  assert_error (EPROTO, "query-block: block device 0 ('d') has no "
                "\"node-name\"");
  assert_null (d);
  assert_int_equal (n, 0);
  ferry_qmp_close (q);
  finish_server (&s);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_events),
    cmocka_unit_test (test_event_overflow),
    cmocka_unit_test (test_error_and_ids),
    cmocka_unit_test (test_eof_mid_line),
    cmocka_unit_test (test_closed),
    cmocka_unit_test (test_not_qmp),
    cmocka_unit_test (test_no_socket),
    cmocka_unit_test (test_queue_full),
    cmocka_unit_test (test_timeout_and_stop),
    cmocka_unit_test (test_oversized),
    cmocka_unit_test (test_parse),
    cmocka_unit_test (test_query_disks),
  };

  return cmocka_run_group_tests (tests, make_scratch_dir, remove_scratch_dir);
}
