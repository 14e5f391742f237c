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

/* The hashes of what a target holds, chunk by chunk, kept in a file between rounds (and runs). */
struct ferry_hash_table;
/* Open the table file PATH for images of SIZE bytes cut in chunks of CHUNK bytes (0: 1 MiB; it
 * must be a power of two >= 64 KiB), creating it when missing with every chunk "blank" (FRESH:
 * the target was just created and reads as zeroes everywhere) or "unknown" (!FRESH).  An existing
 * file made for another size or chunk, or damaged, is refused with ESTALE and a message naming it
 * (the caller then removes it and starts with an unknown table).  NULL with the error set. */
struct ferry_hash_table *ferry_hash_table_open (const char *path, uint64_t size, uint32_t chunk,
                                                bool fresh);
void ferry_hash_table_close (struct ferry_hash_table *t);
/* Forget every hash (the target's contents are no longer known): every chunk becomes unknown. */
int ferry_hash_table_forget (struct ferry_hash_table *t);
uint32_t ferry_hash_table_chunk (const struct ferry_hash_table *t);

struct ferry_delta_stats {
  uint64_t chunks;            /* chunks looked at */
  uint64_t chunks_written;    /* chunks written (data or zeroes) to the target */
  uint64_t bytes_read;        /* bytes read from the source (holes are not read) */
  uint64_t bytes_target_read; /* bytes read from the target (unknown chunks only) */
  uint64_t bytes_written;     /* bytes written to the target, zero writes included */
  double seconds;
};

/* One hash round: make DST (open for writing, as large as SRC) hold SRC's contents, writing only
 * what the table says differs.  For each chunk: SRC's extents first (a chunk that is all holes or
 * zero extents hashes as zeroes without a read), else read and hash it.  A chunk whose table entry
 * is a hash equal to it is skipped; "blank" and SRC zero: skipped; "unknown": DST's chunk is read
 * and hashed, and written only if different; otherwise it is written (zero runs as
 * ferry_image_zero, data with pwrite).  The new hashes are recorded once DST is flushed.  OPTS:
 * threads (workers), cancel, progress (done/total in source bytes) as in ferry_copy;
 * checkpoint fields are ignored.  0 with *STATS filled, or -1 with the error set (EINTR when
 * cancelled or on a stop request). */
int ferry_hash_round (struct ferry_image *src, struct ferry_image *dst,
                      struct ferry_hash_table *t, const struct ferry_copy_options *opts,
                      struct ferry_delta_stats *stats /* OUT */);
