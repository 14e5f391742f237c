/* ferry: a QMP client, to drive a running QEMU over its monitor socket.
 *
 * QMP (the QEMU Machine Protocol) is JSON text over a Unix socket, one
 * message a line: the server greets, the client sends qmp_capabilities,
 * then each {"execute": ...} gets a "return" or an "error" reply, and
 * asynchronous "event" messages may come between them at any time.
 *
 * A connection is used from one thread at a time: it holds no lock.
 * Every wait on its socket ends after the connection's timeout with
 * ETIMEDOUT, and at once on a stop request (ferry_request_stop) with
 * EINTR; the connection stays usable after either (a late reply is
 * recognised by its id and dropped).  A closed socket, a line longer than
 * 16 MiB or a message that is not QMP ends the connection: every later
 * call fails.
 */
#ifndef FERRY_QMP_H
#define FERRY_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ferry_qmp;
struct json_object;

/* Connect to the QMP unix socket PATH, read the greeting, send
 * qmp_capabilities.  Every wait on the socket ends after TIMEOUT seconds
 * (0: 30) with ETIMEDOUT, and at once on a stop request with EINTR.  The
 * caller frees the connection with ferry_qmp_close().  NULL with the error
 * set: "qmp:PATH: ..." no such socket, permission denied, not a QMP server
 * (greeting ...), refused capabilities. */
struct ferry_qmp *ferry_qmp_connect (const char *path, double timeout);

/* Close the connection and free it; NULL is fine. */
void ferry_qmp_close (struct ferry_qmp *q);

/* The socket path given to ferry_qmp_connect (belongs to Q). */
const char *ferry_qmp_path (struct ferry_qmp *q);

/* Run COMMAND with ARGS (an object, borrowed; NULL for none).  0 with
 * *RET (NULL to ignore, else the caller puts it with json_object_put) set
 * to the "return" member; -1 with the error set: for a QMP error reply the
 * message is "qmp:PATH: COMMAND: DESC", ferry_qmp_error_class gives its
 * class ("GenericError", "DeviceNotFound", ...) and errno is EPROTO; a
 * closed connection gives errno EPIPE and "qmp:PATH: the VM closed the
 * connection (did QEMU exit?)".  Events that arrive meanwhile are queued
 * (the newest 256 are kept). */
int ferry_qmp_execute (struct ferry_qmp *q, const char *command,
                       struct json_object *args, struct json_object **ret);

/* Like ferry_qmp_execute, with ARGS_FMT printf-style JSON text of the
 * arguments object, or NULL for none.  Strings put in the text must be
 * JSON-safe (no quote, backslash or control character). */
int ferry_qmp_executef (struct ferry_qmp *q, struct json_object **ret,
                        const char *command, const char *args_fmt, ...)
  __attribute__ ((format (printf, 4, 5)));

/* The class of the QMP error reply of the last failed command, or NULL
 * when the last command did not fail with one (belongs to Q, valid until
 * the next command). */
const char *ferry_qmp_error_class (struct ferry_qmp *q);

/* Wait up to TIMEOUT seconds (0: do not wait, only look at what is queued
 * or already readable) for the event NAME: queued ones first, oldest
 * first, each one consumed.  1 with *DATA (its "data" member, or NULL when
 * it has none; the caller puts it; NULL to ignore), 0 on timeout, -1 with
 * the error set. */
int ferry_qmp_wait_event (struct ferry_qmp *q, const char *name,
                          double timeout, struct json_object **data);

/* The run state (query-status "status": "running", "paused", "shutdown",
 * "prelaunch", ...) into BUF (LEN bytes).  0, or -1 with the error set
 * (ERANGE when it does not fit). */
int ferry_qmp_status (struct ferry_qmp *q, char *buf, size_t len);

/* The VM's disks (query-block, devices with a medium; CD-ROMs flagged). */
struct ferry_qmp_disk {
  char *device;          /* the BlockBackend name ("" for -blockdev +
                            -device), never NULL */
  char *qdev;            /* the guest device's id or QOM path, or NULL */
  char *node;            /* the inserted top node's node-name (what
                            block-export-add and block-dirty-bitmap-add
                            name), never NULL */
  char *file;            /* the image file name QEMU reports, or NULL */
  char *format;          /* the top node's driver: "qcow2", "raw", ...,
                            never NULL */
  uint64_t virtual_size;
  bool read_only;
  bool removable;        /* a CD-ROM / floppy: not migrated as a disk */
  char **bitmaps;        /* names of the node's dirty bitmaps,
                            NULL-terminated (never NULL) */
  bool *bitmap_recording;/* per bitmap: still recording (enabled) */
};

/* Fill *DISKS (OUT: the caller frees it with ferry_qmp_disks_free) and *N
 * (OUT) with the VM's disks, in query-block's order.  0, or -1 with the
 * error set (a reply without what QMP promises names what is missing). */
int ferry_qmp_query_disks (struct ferry_qmp *q,
                           struct ferry_qmp_disk **disks /* OUT */,
                           size_t *n /* OUT */);

/* Free what ferry_qmp_query_disks gave; NULL is fine. */
void ferry_qmp_disks_free (struct ferry_qmp_disk *disks, size_t n);

/* The reply parser the client uses on each line, exposed for
 * fuzz/fuzz-qmp.c: parse one QMP message (TEXT, LEN bytes, not
 * NUL-terminated; surrounding white space is allowed), classify it.
 * 0 with *M filled (the caller puts M->obj), or -1 with the error set
 * (EPROTO: not JSON, not an object, an error without class or
 * description, none of the four kinds) and *M untouched. */
enum ferry_qmp_kind {
  FERRY_QMP_GREETING,
  FERRY_QMP_RETURN,
  FERRY_QMP_ERROR,
  FERRY_QMP_EVENT,
};
struct ferry_qmp_message {
  enum ferry_qmp_kind kind;
  struct json_object *obj;    /* the whole message, owned (json_object_put) */
  int64_t id;                 /* the "id" member if an integer >= 0, else -1 */
  const char *event;          /* for events: the name (points into obj) */
  const char *error_class, *error_desc;   /* for errors (point into obj) */
};
int ferry_qmp_parse_message (const char *text, size_t len,
                             struct ferry_qmp_message *m /* OUT */);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_QMP_H */
