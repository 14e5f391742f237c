/* PROVISIONAL until the helpers' branches merge */
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <ferry/copy.h>

struct ferry_qmp;
struct json_object;
/* Connect to the QMP unix socket PATH, read the greeting, send qmp_capabilities.  Every wait on
 * the socket ends after TIMEOUT seconds (0: 30) with ETIMEDOUT, and at once on a stop request
 * (ferry_request_stop, lib/common/stop.h) with EINTR.  NULL with the error set: "qmp:PATH: ...
 * no such socket / permission denied / not a QMP server (greeting ...) / refused capabilities". */
struct ferry_qmp *ferry_qmp_connect (const char *path, double timeout);
void ferry_qmp_close (struct ferry_qmp *q);     /* NULL is fine */
const char *ferry_qmp_path (struct ferry_qmp *q);
/* Run COMMAND with ARGS (an object, borrowed; NULL for none).  0 with *RET (NULL to ignore, else
 * the caller puts it; json NULL when the return is {} is fine) set to the "return" member;
 * -1 with the error set: for a QMP error reply the message is "qmp:PATH: COMMAND: DESC" and
 * ferry_qmp_error_class(q) gives its class ("GenericError", "DeviceNotFound", ...), errno EPROTO;
 * a closed connection: errno EPIPE, "qmp:PATH: the VM closed the connection (did QEMU exit?)".
 * Events that arrive meanwhile are queued (bounded: keep the newest 256, count the dropped).
 * Use an "id" per command and match replies by it. */
int ferry_qmp_execute (struct ferry_qmp *q, const char *command,
                       struct json_object *args, struct json_object **ret);
/* Convenience: ARGS_FMT is printf-style JSON text for the arguments object, or NULL. */
int ferry_qmp_executef (struct ferry_qmp *q, struct json_object **ret,
                        const char *command, const char *args_fmt, ...)
  __attribute__ ((format (printf, 4, 5)));
const char *ferry_qmp_error_class (struct ferry_qmp *q);  /* of the last failed command, or NULL */
/* Wait up to TIMEOUT seconds for the event NAME (queued ones first, oldest first, each consumed).
 * 1 with *DATA (its "data", the caller puts it; NULL to ignore), 0 on timeout, -1 on error. */
int ferry_qmp_wait_event (struct ferry_qmp *q, const char *name, double timeout,
                          struct json_object **data);
/* The run state (query-status "status": "running", "paused", "shutdown", ...), in BUF. 0 / -1. */
int ferry_qmp_status (struct ferry_qmp *q, char *buf, size_t len);

/* The VM's disks (query-block, devices with a medium; CD-ROMs flagged). */
struct ferry_qmp_disk {
  char *device;          /* the BlockBackend name ("" for -blockdev + -device), never NULL */
  char *qdev;            /* the guest device's id or QOM path, or NULL */
  char *node;            /* the inserted top node's node-name (what block-export-add and
                            block-dirty-bitmap-add name), never NULL */
  char *file;            /* the image file name QEMU reports, or NULL */
  char *format;          /* the top node's driver: "qcow2", "raw", ... */
  uint64_t virtual_size;
  bool read_only;
  bool removable;        /* a CD-ROM / floppy: not migrated as a disk */
  char **bitmaps;        /* names of the node's dirty bitmaps, NULL-terminated (never NULL) */
  bool *bitmap_recording;/* per bitmap: still recording (enabled) */
};
int ferry_qmp_query_disks (struct ferry_qmp *q, struct ferry_qmp_disk **disks /* OUT */,
                           size_t *n /* OUT */);
void ferry_qmp_disks_free (struct ferry_qmp_disk *disks, size_t n);

/* The reply parser the client uses on each line, exposed for fuzz/fuzz-qmp.c: parse one QMP
 * message (TEXT, LEN bytes, not NUL-terminated), classify it. */
enum ferry_qmp_kind { FERRY_QMP_GREETING, FERRY_QMP_RETURN, FERRY_QMP_ERROR, FERRY_QMP_EVENT };
struct ferry_qmp_message {
  enum ferry_qmp_kind kind;
  struct json_object *obj;    /* the whole message, owned (json_object_put) */
  int64_t id;                 /* the "id" member if an integer, else -1 */
  const char *event;          /* for events: the name (points into obj) */
  const char *error_class, *error_desc;   /* for errors (point into obj) */
};
int ferry_qmp_parse_message (const char *text, size_t len, struct ferry_qmp_message *m);

