/* The QMP client: a connection to a running QEMU's monitor socket, its
 * commands, replies and events (include/ferry/qmp.h).
 *
 * NOTES ON THE DESIGN
 *
 * 1. Messages are JSON objects, one a line; QEMU ends each with "\r\n".
 *    Lines are read into one buffer that grows up to MAX_LINE: a longer
 *    line is refused rather than allocated, and ends the connection.
 *
 * 2. Every command carries an "id" (a counter of the connection); a reply
 *    with another id is a late reply to a command that timed out or was
 *    stopped, and is dropped.  A reply without an id is taken as ours
 *    (QEMU answers a request it could not parse without one).
 *
 * 3. Events are queued while a command waits (a ring of MAX_EVENTS, the
 *    oldest dropped and counted, the first loss logged as a warning), and
 *    handed out by ferry_qmp_wait_event oldest first.
 *
 * 4. A timeout or a stop request leaves the connection usable (note 2);
 *    anything else that goes wrong on the socket (EOF, a line too long, a
 *    line that is not QMP) marks it broken: the stream can no longer be
 *    trusted to be in step, so every later call fails at once.
 *
 * 5. Nothing blocks outside poll(): the socket is non-blocking (connect
 *    included), and each poll() also watches stop_fd() and ends at the
 *    call's deadline.  A connection holds no lock: one thread at a time.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include <ferry/qmp.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/stop.h"
#include "../common/util.h"

/* The longest message accepted (note 1). */
#define MAX_LINE (16u << 20)
/* The first size of the line buffer. */
#define FIRST_BUFFER 65536
/* How many events are kept while nobody waits for them (note 3). */
#define MAX_EVENTS 256
/* JSON nesting accepted (a long backing chain nests in query-block). */
#define MAX_DEPTH 512
/* How much of a bad message an error quotes. */
#define QUOTE_MAX 60

struct ferry_qmp {
  char *path;                   /* owned */
  int fd;                       /* -1 once broken (note 4) */
  double timeout;               /* seconds, > 0 */
  int64_t next_id;
  char *buf;                    /* line buffer (note 1), owned */
  size_t buf_start, buf_len, buf_cap;   /* unread bytes: [start, len) */
  struct json_object *events[MAX_EVENTS];   /* ring (note 3), owned */
  size_t ev_first, ev_count;
  uint64_t ev_dropped;
  char *error_class;            /* of the last failed command, owned */
  char broken[ERROR_MAX];       /* why the connection ended (note 4) */
  int broken_errno;
};

/* Quote up to QUOTE_MAX bytes of TEXT (LEN bytes) into OUT, with
 * unprintable bytes as '?', and "..." when cut. */
static const char *
quote_text (const char *text, size_t len, char *out, size_t out_len)
{
  size_t i, n = len < QUOTE_MAX ? len : QUOTE_MAX;

  if (n > out_len - 4)
    n = out_len - 4;
  for (i = 0; i < n; i++) {
    unsigned char c = text[i];
    out[i] = c >= 0x20 && c < 0x7f ? c : '?';
  }
  if (n < len)
    memcpy (out + n, "...", 4);
  else
    out[n] = '\0';
  return out;
}

int
ferry_qmp_parse_message (const char *text, size_t len,
                         struct ferry_qmp_message *m)
{
  struct json_tokener *tok;
  struct json_object *obj, *v, *err, *cls, *desc;
  enum json_tokener_error e;
  char quoted[QUOTE_MAX + 8];
  size_t end;

  if (len > MAX_LINE)
    return ferry_error (EPROTO, "a message of %zu bytes (at most %u)",
                        len, MAX_LINE);
  tok = json_tokener_new_ex (MAX_DEPTH);
  if (tok == NULL)
    return ferry_error (ENOMEM, "out of memory");
  /* json-c reads an int too long for its length argument badly. */
  obj = json_tokener_parse_ex (tok, text, (int) len);
  e = json_tokener_get_error (tok);
  end = json_tokener_get_parse_end (tok);
  json_tokener_free (tok);
  if (obj == NULL || e != json_tokener_success) {
    json_object_put (obj);
    if (e == json_tokener_continue || e == json_tokener_success)
      return ferry_error (EPROTO, "a message cut short: '%s'",
                          quote_text (text, len, quoted, sizeof quoted));
    return ferry_error (EPROTO, "not JSON (%s): '%s'",
                        json_tokener_error_desc (e),
                        quote_text (text, len, quoted, sizeof quoted));
  }
  for (; end < len; end++)
    if (!strchr (" \t\r\n", text[end])) {
      json_object_put (obj);
      return ferry_error (EPROTO, "more after the JSON value at byte %zu: '%s'",
                          end, quote_text (text, len, quoted, sizeof quoted));
    }
  if (!json_object_is_type (obj, json_type_object)) {
    json_object_put (obj);
    return ferry_error (EPROTO, "not a JSON object: '%s'",
                        quote_text (text, len, quoted, sizeof quoted));
  }

  memset (m, 0, sizeof *m);
  m->id = -1;
  if (json_object_object_get_ex (obj, "id", &v) &&
      json_object_is_type (v, json_type_int) && json_object_get_int64 (v) >= 0)
    m->id = json_object_get_int64 (v);

  if (json_object_object_get_ex (obj, "QMP", &v)) {
    if (!json_object_is_type (v, json_type_object))
      goto bad_kind;
    m->kind = FERRY_QMP_GREETING;
  }
  else if (json_object_object_get_ex (obj, "return", &v))
    m->kind = FERRY_QMP_RETURN;
  else if (json_object_object_get_ex (obj, "error", &err)) {
    if (!json_object_is_type (err, json_type_object) ||
        !json_object_object_get_ex (err, "class", &cls) ||
        !json_object_is_type (cls, json_type_string) ||
        !json_object_object_get_ex (err, "desc", &desc) ||
        !json_object_is_type (desc, json_type_string)) {
      json_object_put (obj);
      return ferry_error (EPROTO, "an error reply without a class and "
                          "description: '%s'",
                          quote_text (text, len, quoted, sizeof quoted));
    }
    m->kind = FERRY_QMP_ERROR;
    m->error_class = json_object_get_string (cls);
    m->error_desc = json_object_get_string (desc);
  }
  else if (json_object_object_get_ex (obj, "event", &v)) {
    if (!json_object_is_type (v, json_type_string))
      goto bad_kind;
    m->kind = FERRY_QMP_EVENT;
    m->event = json_object_get_string (v);
  }
  else
    goto bad_kind;
  m->obj = obj;
  return 0;

 bad_kind:
  json_object_put (obj);
  return ferry_error (EPROTO, "neither a greeting, a return, an error nor "
                      "an event: '%s'",
                      quote_text (text, len, quoted, sizeof quoted));
}

/* MSG without its "qmp:PATH: " prefix and then WHAT, when it has them. */
static const char *
after_prefix (const char *msg, const char *path, const char *what)
{
  size_t n = strlen (path);

  if (strncmp (msg, "qmp:", 4) || strncmp (msg + 4, path, n) ||
      strncmp (msg + 4 + n, ": ", 2) ||
      strncmp (msg + 6 + n, what, strlen (what)))
    return msg;
  return msg + 6 + n + strlen (what);
}

/* End the connection (note 4): keep the current error as the answer of
 * every later call, close the socket; returns -1. */
static int
set_broken (struct ferry_qmp *q)
{
  if (q->fd >= 0) {
    snprintf (q->broken, sizeof q->broken, "%s", ferry_get_error ());
    q->broken_errno = ferry_get_errno ();
    close (q->fd);
    q->fd = -1;
  }
  return -1;
}

/* Fail at once when the connection ended earlier or a stop is requested. */
static int
check_usable (struct ferry_qmp *q)
{
  if (q->fd < 0)
    return ferry_error (q->broken_errno ? q->broken_errno : EPIPE,
                        "qmp:%s: the connection ended earlier: %s", q->path,
                        after_prefix (q->broken, q->path, ""));
  if (stop_requested ())
    return ferry_error (EINTR, "qmp:%s: stopped", q->path);
  return 0;
}

/* The message for a connection the other side closed. */
static int
closed_error (struct ferry_qmp *q)
{
  return ferry_error (EPIPE, "qmp:%s: the VM closed the connection "
                      "(did QEMU exit?)", q->path);
}

/* Wait until the socket is ready for EVENTS (POLLIN or POLLOUT) or
 * DEADLINE (now_seconds) passes: 1 ready, 0 timed out, -1 stopped or
 * failed. */
static int
wait_socket (struct ferry_qmp *q, short events, double deadline)
{
  for (;;) {
    struct pollfd fds[2] = {
      { .fd = q->fd, .events = events },
      { .fd = stop_fd (), .events = POLLIN },
    };
    double left = deadline - now_seconds ();
    int ms, r;

    if (stop_requested ())
      return ferry_error (EINTR, "qmp:%s: stopped", q->path);
    /* Past the deadline, one look without waiting. */
    ms = left <= 0 ? 0 : left > 3600 ? 3600000 : (int) (left * 1000) + 1;
    if (fds[1].fd < 0 && ms > STOP_POLL_MS)
      ms = STOP_POLL_MS;
    r = poll (fds, fds[1].fd >= 0 ? 2 : 1, ms);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return ferry_error_errno (errno, "qmp:%s: poll", q->path);
    }
    if (fds[0].revents)
      return 1;
    if (left <= 0)
      return 0;
  }
}

/* Send LEN bytes of TEXT whole by DEADLINE.  0, or -1. */
static int
send_all (struct ferry_qmp *q, const char *text, size_t len, double deadline)
{
  while (len > 0) {
    ssize_t r = send (q->fd, text, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        int w = wait_socket (q, POLLOUT, deadline);
        if (w == -1)
          return -1;
        if (w == 0)
          return ferry_error (ETIMEDOUT, "qmp:%s: the VM took no command "
                              "for %g s", q->path, q->timeout);
        continue;
      }
      if (errno == EPIPE || errno == ECONNRESET) {
        closed_error (q);
        return set_broken (q);
      }
      ferry_error_errno (errno, "qmp:%s: send", q->path);
      return set_broken (q);
    }
    text += r;
    len -= r;
  }
  return 0;
}

/* Take the first complete line out of the buffer and parse it into *M:
 * 1 parsed, 0 no complete line yet (or only blank lines), -1 a bad line
 * (the connection is then broken).  Lines are taken from buf_start on;
 * the buffer is compacted only before a read (read_message), so a
 * buffer full of small messages costs no move per message. */
static int
take_line (struct ferry_qmp *q, struct ferry_qmp_message *m)
{
  for (;;) {
    char *line = q->buf + q->buf_start;
    char *nl = memchr (line, '\n', q->buf_len - q->buf_start);
    size_t len;

    if (nl == NULL)
      return 0;
    len = nl - line;
    q->buf_start += len + 1;
    if (len > 0 && line[len - 1] == '\r')
      len--;
    if (len == 0)
      continue;
    if (ferry_qmp_parse_message (line, len, m) == -1) {
      ferry_error_prefix ("qmp:%s", q->path);
      return set_broken (q);
    }
    return 1;
  }
}

/* Read the next message into *M, waiting until DEADLINE: 1 read, 0 timed
 * out, -1 failed (EOF, a line too long, not QMP, stopped). */
static int
read_message (struct ferry_qmp *q, struct ferry_qmp_message *m,
              double deadline)
{
  for (;;) {
    ssize_t r;
    int t = take_line (q, m);

    if (t != 0)
      return t;
    /* Only the start of a line is left: move it to the front. */
    memmove (q->buf, q->buf + q->buf_start, q->buf_len - q->buf_start);
    q->buf_len -= q->buf_start;
    q->buf_start = 0;
    if (q->buf_len > MAX_LINE) {
      ferry_error (EMSGSIZE, "qmp:%s: a message longer than %u MiB",
                   q->path, MAX_LINE >> 20);
      return set_broken (q);
    }
    if (q->buf_len == q->buf_cap) {
      size_t cap = q->buf_cap * 2;
      char *p;
      if (cap > MAX_LINE + 2)
        cap = MAX_LINE + 2;     /* room for the "\r\n" of a longest line */
      p = realloc (q->buf, cap);
      if (p == NULL) {
        ferry_error (ENOMEM, "qmp:%s: out of memory", q->path);
        return set_broken (q);
      }
      q->buf = p;
      q->buf_cap = cap;
    }
    t = wait_socket (q, POLLIN, deadline);
    if (t <= 0)
      return t;
    r = recv (q->fd, q->buf + q->buf_len, q->buf_cap - q->buf_len,
              MSG_DONTWAIT);
    if (r == -1) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
        continue;
      if (errno == ECONNRESET)
        closed_error (q);
      else
        ferry_error_errno (errno, "qmp:%s: recv", q->path);
      return set_broken (q);
    }
    if (r == 0) {
      if (q->buf_len > 0)
        ferry_error (EPIPE, "qmp:%s: the VM closed the connection in the "
                     "middle of a message (did QEMU exit?)", q->path);
      else
        closed_error (q);
      return set_broken (q);
    }
    q->buf_len += r;
  }
}

/* Queue the event message OBJ (taking it), dropping the oldest when the
 * ring is full (note 3). */
static void
queue_event (struct ferry_qmp *q, struct json_object *obj)
{
  if (q->ev_count == MAX_EVENTS) {
    json_object_put (q->events[q->ev_first]);
    q->ev_first = (q->ev_first + 1) % MAX_EVENTS;
    q->ev_count--;
    if (q->ev_dropped++ == 0)
      ferry_warn ("qmp:%s: more than %d events came that nobody waited "
                  "for; the oldest are dropped", q->path, MAX_EVENTS);
  }
  q->events[(q->ev_first + q->ev_count) % MAX_EVENTS] = obj;
  q->ev_count++;
}

/* Forget the last command's error class. */
static void
clear_error_class (struct ferry_qmp *q)
{
  free (q->error_class);
  q->error_class = NULL;
}

/* Send COMMAND with ARGS (borrowed, may be NULL) and wait for its reply;
 * the body of ferry_qmp_execute, the greeting's qmp_capabilities too. */
static int
run_command (struct ferry_qmp *q, const char *command,
             struct json_object *args, struct json_object **ret)
{
  struct json_object *req;
  const char *text;
  CLEANUP_FREE char *line = NULL;
  int64_t id;
  double deadline;

  if (ret)
    *ret = NULL;
  clear_error_class (q);
  if (check_usable (q) == -1)
    return -1;
  if (command == NULL || *command == '\0')
    return ferry_error (EINVAL, "qmp:%s: no command", q->path);
  if (args && !json_object_is_type (args, json_type_object))
    return ferry_error (EINVAL, "qmp:%s: %s: the arguments are not a JSON "
                        "object", q->path, command);

  id = q->next_id++;
  req = json_object_new_object ();
  if (req == NULL)
    return ferry_error (ENOMEM, "qmp:%s: out of memory", q->path);
  json_object_object_add (req, "execute", json_object_new_string (command));
  if (args)
    json_object_object_add (req, "arguments", json_object_get (args));
  json_object_object_add (req, "id", json_object_new_int64 (id));
  text = json_object_to_json_string_ext (req, JSON_C_TO_STRING_PLAIN |
                                         JSON_C_TO_STRING_NOSLASHESCAPE);
  if (text == NULL || asprintf (&line, "%s\n", text) == -1) {
    line = NULL;
    json_object_put (req);
    return ferry_error (ENOMEM, "qmp:%s: out of memory", q->path);
  }
  json_object_put (req);

  deadline = now_seconds () + q->timeout;
  if (send_all (q, line, strlen (line), deadline) == -1)
    return -1;

  for (;;) {
    struct ferry_qmp_message m;
    struct json_object *v;
    int r = read_message (q, &m, deadline);

    if (r == 0)
      return ferry_error (ETIMEDOUT, "qmp:%s: %s: no reply within %g s",
                          q->path, command, q->timeout);
    if (r == -1)
      return -1;
    switch (m.kind) {
    case FERRY_QMP_EVENT:
      queue_event (q, m.obj);
      continue;
    case FERRY_QMP_GREETING:
      json_object_put (m.obj);
      ferry_error (EPROTO, "qmp:%s: %s: a second greeting instead of a "
                   "reply", q->path, command);
      return set_broken (q);
    case FERRY_QMP_RETURN:
    case FERRY_QMP_ERROR:
      break;
    }
    if (m.id != -1 && m.id != id) {
      ferry_debug ("qmp:%s: dropping a late reply (id %" PRId64 ")",
                   q->path, m.id);
      json_object_put (m.obj);
      continue;
    }
    if (m.kind == FERRY_QMP_ERROR) {
      q->error_class = strdup (m.error_class);
      ferry_error (EPROTO, "qmp:%s: %s: %s", q->path, command, m.error_desc);
      json_object_put (m.obj);
      return -1;
    }
    if (ret && json_object_object_get_ex (m.obj, "return", &v))
      *ret = json_object_get (v);
    json_object_put (m.obj);
    return 0;
  }
}

struct ferry_qmp *
ferry_qmp_connect (const char *path, double timeout)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct ferry_qmp *q;
  struct ferry_qmp_message m;
  char quoted[QUOTE_MAX + 8], detail[ERROR_MAX];
  struct stat st;
  double deadline;
  int r;

  if (path == NULL || *path == '\0') {
    ferry_error (EINVAL, "qmp: no socket path");
    return NULL;
  }
  if (strlen (path) >= sizeof addr.sun_path) {
    ferry_error (ENAMETOOLONG, "qmp:%s: the socket path is longer than %zu "
                 "bytes", path, sizeof addr.sun_path - 1);
    return NULL;
  }
  if (!(timeout >= 0) || timeout > 86400 * 365) {
    ferry_error (EINVAL, "qmp:%s: timeout %g s is not a number of seconds "
                 "from 0 to a year", path, timeout);
    return NULL;
  }
  if (stop_requested ()) {
    ferry_error (EINTR, "qmp:%s: stopped", path);
    return NULL;
  }
  q = calloc (1, sizeof *q);
  if (q == NULL || (q->path = strdup (path)) == NULL ||
      (q->buf = malloc (FIRST_BUFFER)) == NULL) {
    ferry_error (ENOMEM, "qmp:%s: out of memory", path);
    goto err;
  }
  q->buf_cap = FIRST_BUFFER;
  q->timeout = timeout > 0 ? timeout : 30;
  q->next_id = 1;
  /* Non-blocking, so that not even connect waits without a limit: on a
   * Unix socket it fails with EAGAIN while the server's queue of
   * connections is full, and is tried again. */
  q->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (q->fd == -1) {
    ferry_error_errno (errno, "qmp:%s: socket", path);
    goto err;
  }
  strcpy (addr.sun_path, path);
  deadline = now_seconds () + q->timeout;
  while ((r = connect (q->fd, (struct sockaddr *) &addr, sizeof addr)) == -1
         && (errno == EINTR || errno == EAGAIN)) {
    struct pollfd stop = { .fd = stop_fd (), .events = POLLIN };
    if (errno == EINTR)
      continue;
    if (stop_requested ()) {
      ferry_error (EINTR, "qmp:%s: stopped", path);
      goto err;
    }
    if (now_seconds () >= deadline) {
      ferry_error (ETIMEDOUT, "qmp:%s: the socket took no connection "
                   "within %g s (its queue is full)", path, q->timeout);
      goto err;
    }
    poll (&stop, stop.fd >= 0 ? 1 : 0, 50);
  }
  if (r == -1) {
    int e = errno;
    if (e == ENOENT)
      ferry_error (e, "qmp:%s: no such socket", path);
    else if (e == EACCES || e == EPERM)
      ferry_error (e, "qmp:%s: permission denied", path);
    else if (e == ECONNREFUSED && lstat (path, &st) == 0 &&
             !S_ISSOCK (st.st_mode))
      /* Linux refuses a connection to a file that is no socket. */
      ferry_error (ENOTSOCK, "qmp:%s: not a socket", path);
    else if (e == ECONNREFUSED)
      ferry_error (e, "qmp:%s: nothing listens on the socket (connection "
                   "refused)", path);
    else if (e == ENOTSOCK)
      ferry_error (e, "qmp:%s: not a socket", path);
    else
      ferry_error_errno (e, "qmp:%s: connect", path);
    goto err;
  }

  r = read_message (q, &m, deadline);
  /* What follows "qmp:PATH: " in the message just set (a copy: the
   * message is rewritten from it). */
  if (r == -1)
    snprintf (detail, sizeof detail, "%s",
              after_prefix (ferry_get_error (), path, ""));
  if (r == 0) {
    ferry_error (ETIMEDOUT, "qmp:%s: no greeting within %g s (not a QMP "
                 "server, or another client holds the monitor)",
                 path, q->timeout);
    goto err;
  }
  if (r == -1) {
    int e = ferry_get_errno ();
    if (e == EPROTO || e == EMSGSIZE)
      ferry_error (EPROTO, "qmp:%s: not a QMP server (greeting: %s)", path,
                   detail);
    else if (e == EPIPE)
      ferry_error (EPROTO, "qmp:%s: not a QMP server (it closed the "
                   "connection without a greeting)", path);
    goto err;
  }
  if (m.kind != FERRY_QMP_GREETING) {
    const char *text = json_object_to_json_string_ext (m.obj,
                                                       JSON_C_TO_STRING_PLAIN);
    ferry_error (EPROTO, "qmp:%s: not a QMP server (greeting '%s')", path,
                 quote_text (text, strlen (text), quoted, sizeof quoted));
    json_object_put (m.obj);
    goto err;
  }
  json_object_put (m.obj);

  if (run_command (q, "qmp_capabilities", NULL, NULL) == -1) {
    if (q->error_class) {
      snprintf (detail, sizeof detail, "%s",
                after_prefix (ferry_get_error (), path, "qmp_capabilities: "));
      ferry_error (EPROTO, "qmp:%s: refused capabilities: %s", path, detail);
    }
    goto err;
  }
  return q;

 err:
  {
    struct error_saved saved;
    error_save (&saved);
    ferry_qmp_close (q);
    error_restore (&saved);
  }
  return NULL;
}

void
ferry_qmp_close (struct ferry_qmp *q)
{
  if (q == NULL)
    return;
  if (q->fd >= 0)
    close (q->fd);
  while (q->ev_count > 0) {
    json_object_put (q->events[q->ev_first]);
    q->ev_first = (q->ev_first + 1) % MAX_EVENTS;
    q->ev_count--;
  }
  free (q->error_class);
  free (q->buf);
  free (q->path);
  free (q);
}

const char *
ferry_qmp_path (struct ferry_qmp *q)
{
  return q->path;
}

int
ferry_qmp_execute (struct ferry_qmp *q, const char *command,
                   struct json_object *args, struct json_object **ret)
{
  return run_command (q, command, args, ret);
}

int
ferry_qmp_executef (struct ferry_qmp *q, struct json_object **ret,
                    const char *command, const char *args_fmt, ...)
{
  CLEANUP_FREE char *text = NULL;
  struct json_object *args;
  enum json_tokener_error e;
  va_list ap;
  int r;

  if (ret)
    *ret = NULL;
  if (args_fmt == NULL)
    return run_command (q, command, NULL, ret);
  va_start (ap, args_fmt);
  r = vasprintf (&text, args_fmt, ap);
  va_end (ap);
  if (r == -1) {
    text = NULL;
    return ferry_error (ENOMEM, "qmp:%s: out of memory", q->path);
  }
  args = json_tokener_parse_verbose (text, &e);
  if (args == NULL || !json_object_is_type (args, json_type_object)) {
    json_object_put (args);
    clear_error_class (q);
    return ferry_error (EINVAL, "qmp:%s: %s: the arguments are not a JSON "
                        "object: %s", q->path, command, text);
  }
  r = run_command (q, command, args, ret);
  json_object_put (args);
  return r;
}

const char *
ferry_qmp_error_class (struct ferry_qmp *q)
{
  return q->error_class;
}

/* Hand out event message OBJ (taken) as the data *DATA asks for. */
static int
give_event (struct json_object *obj, struct json_object **data)
{
  struct json_object *v;

  if (data) {
    *data = json_object_object_get_ex (obj, "data", &v)
      ? json_object_get (v) : NULL;
  }
  json_object_put (obj);
  return 1;
}

int
ferry_qmp_wait_event (struct ferry_qmp *q, const char *name, double timeout,
                      struct json_object **data)
{
  double deadline;
  size_t i;

  if (data)
    *data = NULL;
  if (name == NULL || *name == '\0')
    return ferry_error (EINVAL, "qmp:%s: no event name to wait for", q->path);
  for (i = 0; i < q->ev_count; i++) {
    size_t at = (q->ev_first + i) % MAX_EVENTS;
    struct json_object *obj = q->events[at], *v;

    if (json_object_object_get_ex (obj, "event", &v) &&
        !strcmp (json_object_get_string (v), name)) {
      /* Close the gap, keeping the order of the rest. */
      for (; i + 1 < q->ev_count; i++)
        q->events[(q->ev_first + i) % MAX_EVENTS] =
          q->events[(q->ev_first + i + 1) % MAX_EVENTS];
      q->ev_count--;
      return give_event (obj, data);
    }
  }
  if (check_usable (q) == -1)
    return -1;
  if (!(timeout >= 0))
    return ferry_error (EINVAL, "qmp:%s: a timeout of %g s", q->path, timeout);

  deadline = now_seconds () + timeout;
  for (;;) {
    struct ferry_qmp_message m;
    int r = read_message (q, &m, deadline);

    if (r <= 0)
      return r;
    if (m.kind == FERRY_QMP_EVENT) {
      if (!strcmp (m.event, name))
        return give_event (m.obj, data);
      queue_event (q, m.obj);
      continue;
    }
    /* No command waits: a late reply (note 2), or a greeting again. */
    ferry_debug ("qmp:%s: dropping a reply nobody waits for", q->path);
    json_object_put (m.obj);
  }
}

int
ferry_qmp_status (struct ferry_qmp *q, char *buf, size_t len)
{
  struct json_object *ret, *v;
  const char *status;

  if (ferry_qmp_execute (q, "query-status", NULL, &ret) == -1)
    return -1;
  if (ret == NULL || !json_object_object_get_ex (ret, "status", &v) ||
      !json_object_is_type (v, json_type_string)) {
    json_object_put (ret);
    return ferry_error (EPROTO, "qmp:%s: query-status: no \"status\" "
                        "string in the reply", q->path);
  }
  status = json_object_get_string (v);
  if (strlen (status) >= len) {
    json_object_put (ret);
    return ferry_error (ERANGE, "qmp:%s: query-status: status '%.40s' "
                        "longer than the buffer (%zu bytes)",
                        q->path, status, len);
  }
  strcpy (buf, status);
  json_object_put (ret);
  return 0;
}
