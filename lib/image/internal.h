/* lib/image private interface: what a driver implements and the helpers
 * it may use.  Nothing outside lib/image includes this file.
 *
 * A driver is a `static const struct image_driver` filled with designated
 * initialisers and listed in drivers[] in image.c.  Its private state
 * embeds struct ferry_image as the first member:
 *
 *   struct qcow2_image {
 *     struct ferry_image base;   // must be first
 *     ...
 *   };
 *
 * Optional callbacks may be NULL; image.c then falls back:
 *   - zero NULL: writes of zeroes;
 *   - extents NULL: everything is data;
 *   - compress / write_compressed NULL: the format cannot compress;
 *   - flush NULL: nothing to flush;
 *   - check NULL: "FORMAT images have no metadata to check" (clean);
 *   - contexts / context_extents NULL: base:allocation only;
 *   - capabilities NULL: the callbacks present tell what it can do.
 * image.c validates every request against the virtual size and the
 * read-only flag before it reaches a driver, so drivers need not.
 */
#ifndef FERRY_IMAGE_INTERNAL_H
#define FERRY_IMAGE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <ferry/image.h>

#include "../common/error.h"
#include "../common/vector.h"

/* How much of the start of a file the probe reads, and of its end. */
#define PROBE_HEAD_SIZE 4096
#define PROBE_TAIL_SIZE 512

/* The longest backing chain we follow: images below the one opened.  A
 * loop is caught sooner by the (device, inode) list of struct open_args.
 * qemu-img 7.2 has no limit of its own: it opens what the process's file
 * descriptors allow (about 1020 layers under the usual soft limit of
 * 1024).  Ours bounds the stack: opening, reading, mapping and closing
 * recurse once per layer, about 1 KiB a layer in a plain build and under
 * 8 KiB under AddressSanitizer, so 1000 layers fit in the 8 MiB of a main
 * thread or a worker. */
#define MAX_BACKING_DEPTH 1000

/* Options given with -o, parsed into key=value pairs.  A driver takes the
 * keys it knows with options_get*; image.c fails on any left unused. */
struct option_pair {
  char *key;
  char *value;
  bool used;
};
DEFINE_VECTOR_TYPE (option_list, struct option_pair);

/* Where an open comes from: the chain of images that led to it, so a
 * backing chain that loops is refused instead of followed forever. */
struct chain_link {
  dev_t dev;
  ino_t ino;
};
struct open_args {
  unsigned flags;                       /* FERRY_OPEN_* */
  const struct chain_link *chain;       /* images above this one */
  size_t chain_len;
  /* Shared by the opens of one chain: the layer (1: the top image's
   * backing file) whose open failed, set by the deepest
   * image_open_backing that saw the failure, so that the message names
   * the top image and that layer once instead of every layer between. */
  size_t *failed_layer;
  /* ferry_image_open_window: the image is the bytes [window_start,
   * window_start + window_length) of the file, which lie inside it.  A
   * driver sees a window only if it sets .windows; it then reads nothing
   * outside those bytes and takes window_length as the file's size. */
  bool windowed;
  uint64_t window_start, window_length;
};

/* Every image starts with this. */
struct ferry_image {
  const struct image_driver *driver;
  char *path;                  /* as the user gave it, for messages */
  uint64_t size;               /* virtual size in bytes */
  bool readonly;
  bool zero_initialized;       /* see ferry_image_is_zero_initialized */
  bool reads_as_backing;       /* see ferry_image_reads_as_backing */
  bool sequential;             /* see ferry_image_is_sequential */
  bool compress_required;      /* see ferry_image_compress_required */
  struct image_writeback *writeback; /* see ferry_image_set_early_writeback */
  struct ferry_image *backing; /* owned, closed with this one; or NULL */
  /* FERRY_OPEN_MISSING_BACKING: why the backing file (parent) this image
   * records is missing, a sentence naming it (image_backing_missing), and
   * where it was looked for (or NULL); both owned.  NULL when nothing is
   * missing. */
  char *backing_missing;
  char *missing_backing_path;
  dev_t dev;                   /* of the file, for loop detection */
  ino_t ino;

  /* Filled by describe; freed by image.c at close. */
  struct fact_list {
    struct ferry_fact *ptr;
    size_t len, cap;
  } facts;
  struct fact_strings {
    char **ptr;
    size_t len, cap;
  } fact_strings;
};

struct image_stream;

/* One host file of an image, for image_for_each_file. */
struct image_file {
  dev_t dev;
  ino_t ino;
  const char *path;             /* for messages */
};
typedef int (*image_file_fn) (const struct image_file *file, void *opaque);

/* Call FN for every host file of IMG, its own first (none for a URI),
 * not its backing chain; FN's first non-zero answer stops the walk and is
 * returned. */
int image_for_each_file (struct ferry_image *img, image_file_fn fn,
                         void *opaque);

/* image_for_each_file's FN for the open descriptor FD of PATH. */
int image_file_of_fd (int fd, const char *path, image_file_fn fn,
                      void *opaque);

/* Early write-back (ferry_image_set_early_writeback, hostfile.c): the
 * ranges whose write-back was started and not yet waited for, oldest
 * first.  Once they hold more than a window, the writer that adds one
 * waits for the oldest, so the data not yet on disk stays bounded and the
 * final flush finds little left. */
#define WRITEBACK_RING 64
struct image_writeback {
  pthread_mutex_t lock;
  struct writeback_range { int fd; uint64_t offset, count; } ring[WRITEBACK_RING];
  unsigned head, len;
  uint64_t bytes;
};

struct image_driver {
  const char *name;              /* "raw", "qcow2", ... */
  const char *const *aliases;    /* other names it answers to, or NULL */

  /* What the format's documentation calls the image it reads through,
   * for messages: "parent" (VHD, VHDX, VDI, VMDK), "backing file"
   * (qcow2); NULL: the format has none (ferry check then does not look
   * for one). */
  const char *backing_word;

  /* How sure the driver is that the file is in its format: 0 (no) to
   * 100 (magic and header sane).  HEAD holds the first HEAD_LEN bytes
   * (at most PROBE_HEAD_SIZE), TAIL the last TAIL_LEN (at most
   * PROBE_TAIL_SIZE).  raw answers 1 to anything. */
  int (*probe) (const uint8_t *head, size_t head_len,
                const uint8_t *tail, size_t tail_len, uint64_t file_size);

  /* True when open honours open_args' window (see there). */
  bool windows;

  /* Open PATH.  FD is already open (O_RDONLY, or O_RDWR with
   * FERRY_OPEN_WRITE); the driver owns it from here, even on failure.
   * It fills base (size, ...), opens its backing file with
   * image_open_backing, and returns the base pointer. */
  struct ferry_image *(*open) (const char *path, int fd,
                               const struct open_args *args);

  /* Open an image from the gzip stream S (ferry_image_open_stream), which
   * the driver owns from here, even on failure, and reads in order with
   * image_stream_read.  SIZE_HINT is the size the description declares
   * (0: none; a raw image is then empty, until the caller has measured
   * the stream and opens it again with its size).  The image must be
   * sequential.  NULL: the format cannot be
   * read that way. */
  struct ferry_image *(*open_stream) (const char *path,
                                      struct image_stream *s,
                                      uint64_t size_hint,
                                      const struct open_args *args);

  /* Create a new image at PATH (FD is open O_RDWR on a new empty file,
   * or on a block device) with virtual SIZE and OPTS; the driver owns FD
   * from here.  NULL if the format cannot be written. */
  struct ferry_image *(*create) (const char *path, int fd, uint64_t size,
                                 struct option_list *opts);

  /* Images named by URI instead of by file (NBD exports).  A path that
   * starts with one of URI_SCHEMES (NULL-terminated) and "://" is never
   * opened, probed or created as a file: image.c hands it to open_uri
   * whole, and the loop check of the backing chain skips it. */
  const char *const *uri_schemes;
  struct ferry_image *(*open_uri) (const char *uri,
                                   const struct open_args *args);

  int (*pread) (struct ferry_image *img, void *buf, size_t count,
                uint64_t offset);
  /* A sequential image's ferry_image_read_to_end: read what is left of
   * its stream and check it to the end.  NULL: nothing to check. */
  int (*read_to_end) (struct ferry_image *img);
  int (*pwrite) (struct ferry_image *img, const void *buf, size_t count,
                 uint64_t offset);
  int (*zero) (struct ferry_image *img, size_t count, uint64_t offset,
               unsigned flags);
  int (*extents) (struct ferry_image *img, uint64_t offset, uint64_t length,
                  struct ferry_extent_list *list);

  /* Metadata contexts besides base:allocation (ferry_image_contexts):
   * the names, NULL-terminated, owned by the image (base:allocation among
   * them), and the extents of one of them other than base:allocation.
   * NULL: base:allocation only. */
  const char *const *(*contexts) (struct ferry_image *img);
  int (*context_extents) (struct ferry_image *img, const char *name,
                          uint64_t offset, uint64_t length,
                          struct ferry_extent_list *list);

  /* FERRY_CAN_* bits this image lacks although its callbacks exist (an
   * NBD server without WRITE_ZEROES): image.c ANDs this with what the
   * callbacks tell.  NULL: the callbacks tell all. */
  unsigned (*capabilities) (struct ferry_image *img);

  /* See ferry_image_compress in <ferry/image.h>. */
  uint32_t (*compress_unit) (struct ferry_image *img);
  size_t (*compress_bound) (struct ferry_image *img);
  ssize_t (*compress) (struct ferry_image *img, const void *in, size_t count,
                       void *out);
  int (*write_compressed) (struct ferry_image *img, uint64_t offset,
                           const void *data, size_t len, size_t count);

  int (*flush) (struct ferry_image *img);

  /* Finish writing (tables, refcounts), close files, free everything
   * except base's members, which image.c frees.  Returns -1 if the image
   * could not be completed; it is freed all the same. */
  int (*close) (struct ferry_image *img);

  /* Fill what the base does not know: allocated, cluster_size,
   * backing_file, ...; add format facts with image_fact_*. */
  int (*describe) (struct ferry_image *img, struct ferry_image_info *info);

  /* Rename and remove an image this driver created, when it is more
   * than one file (see ferry_image_rename and ferry_image_remove); NULL:
   * one file, renamed or unlinked as it is. */
  int (*rename) (const char *from, const char *to, bool sync);
  int (*remove) (const char *path);

  /* Call FN (with OPAQUE) for each host file of IMG besides the one
   * image.c opened (a VMDK's extent files, a qcow2 external data file),
   * not its backing chain; stop at and return FN's first non-zero
   * answer.  NULL: the image is that one file. */
  int (*files) (struct ferry_image *img, image_file_fn fn, void *opaque);

  /* Check the file at PATH (open read-only as FD, still owned by the
   * caller) without trusting its metadata.  0 when the check ran. */
  int (*check) (const char *path, int fd, struct ferry_check_result *result);
};

extern const struct image_driver raw_driver;
extern const struct image_driver qcow2_driver;
extern const struct image_driver vmdk_driver;
extern const struct image_driver nbd_driver;
extern const struct image_driver vhdx_driver;
extern const struct image_driver vhd_driver;
extern const struct image_driver vdi_driver;

/* stream.c: the gzip stream of ferry_image_open_stream.  open takes FD
 * (owned from here, even on failure) and the compressed bytes [START,
 * START+LENGTH) of it, and reads the first PROBE_HEAD_SIZE bytes, which
 * image_stream_head shows and the first reads give again. */
struct image_stream *image_stream_open (const char *path, int fd,
                                        uint64_t start, uint64_t length);
const unsigned char *image_stream_head (const struct image_stream *s,
                                        size_t *len /* OUT */);
/* Read the next COUNT bytes into BUF (NULL: skip them); the stream ending
 * first is an error naming the offset. */
int image_stream_read (struct image_stream *s, void *buf, size_t count);
/* Read at most COUNT bytes; *GOT is 0 only at the end of the stream. */
int image_stream_read_some (struct image_stream *s, void *buf, size_t count,
                            size_t *got /* OUT */);
/* Uncompressed bytes read so far. */
uint64_t image_stream_position (const struct image_stream *s);
const char *image_stream_path (const struct image_stream *s);
void image_stream_free (struct image_stream *s);
/* raw's open_stream: the disk is the stream's bytes. */
struct ferry_image *raw_open_stream (const char *path,
                                     struct image_stream *s,
                                     uint64_t size_hint,
                                     const struct open_args *args);

/* Set up BASE for DRIVER and PATH (duplicated); fills dev and ino from FD,
 * or leaves them 0 when FD is -1 (an image named by URI).  Returns 0 or
 * -1. */
int image_init_base (struct ferry_image *base,
                     const struct image_driver *driver, const char *path,
                     int fd, bool readonly);

/* Undo what image_init_base and image_open_backing did to BASE, for a
 * driver's open that fails: close the backing chain, free the path and
 * the note of a missing backing file.  The driver frees the rest. */
void image_base_discard (struct ferry_image *base);

/* Open the backing file NAME of IMG as recorded in the image: a relative
 * NAME is relative to IMG's directory.  FORMAT may be NULL (probe).  It is
 * opened read-only, with IMG added to the loop check of ARGS.  Sets
 * IMG->backing on success; returns 0 or -1 with a message naming IMG and
 * the layer that failed.  No file at that path is a missing backing file
 * (image_backing_missing): 0 with IMG->backing NULL under
 * FERRY_OPEN_MISSING_BACKING. */
int image_open_backing (struct ferry_image *img, const char *name,
                        const char *format, const struct open_args *args);

/* IMG's backing file (parent) is not where the image says: FULL is where
 * it was looked for (NULL: nowhere in particular, such as a VDI parent
 * looked for by UUID), and FMT... the reason, a sentence that names it
 * without IMG's path ("the backing file 'b.qcow2' is missing: ...").
 * Under FERRY_OPEN_MISSING_BACKING (read-only) it is kept for describe
 * and 0 returned, IMG->backing staying NULL; otherwise -1 with that
 * reason as the error (ENOENT). */
int image_backing_missing (struct ferry_image *img,
                           const struct open_args *args, const char *full,
                           const char *fmt, ...)
  __attribute__ ((format (printf, 4, 5)));

/* Refuse NAME, a file name read from the image IMG_PATH (WHAT: "backing
 * file", "extent file", ...), when it is a URI (image.c note 7): -1 with
 * the error set, else 0. */
int image_refuse_uri (const char *img_path, const char *what,
                      const char *name);

/* "parent" or "backing file", as IMG's format calls it. */
const char *image_backing_word (const struct ferry_image *img);

/* The path of NAME resolved against the directory of IMG_PATH, as
 * image_open_backing resolves it.  The caller frees it. */
char *image_resolve_relative (const char *img_path, const char *name);

/* Append to LIST the extents of SUB (a backing file, or the file under
 * an extent) over [AT, AT+COUNT), moved to start at OFFSET; what lies past
 * SUB's end, or all of it when SUB is NULL, is a hole that reads as
 * zeroes.  *END (in LIST's offsets) is where the answer stops, short of
 * OFFSET+COUNT when SUB stopped short.  IMG names the image asking. */
int image_sub_extents (struct ferry_image *img, struct ferry_image *sub,
                       uint64_t at, uint64_t count, uint64_t offset,
                       struct ferry_extent_list *list, uint64_t *end);

/* The extents of IMG's backing file over [OFFSET, OFFSET+COUNT), at the
 * same offsets: image_sub_extents for the common case. */
static inline int
image_backing_extents (struct ferry_image *img, uint64_t offset,
                       uint64_t count, struct ferry_extent_list *list,
                       uint64_t *end)
{
  return image_sub_extents (img, img->backing, offset, count, offset, list,
                            end);
}
/* Read COUNT bytes at guest OFFSET of IMG's backing file (a parent) into
 * BUF: what a cluster or grain the image does not hold reads as.  Zeroes
 * past the backing file's end, or without one.  0, or -1 with a message
 * naming both files; ENOENT when the backing file is missing
 * (FERRY_OPEN_MISSING_BACKING).  image_sub_extents with SUB NULL fails
 * the same way. */
int image_backing_pread (struct ferry_image *img, void *buf, uint64_t count,
                         uint64_t offset);

/* options.c: split "key=val,key=val" into OPTS (",," is a comma inside a
 * value), -1 with the error set on a malformed list; free what it made. */
int parse_options (const char *s, struct option_list *opts);
void free_options (struct option_list *opts);

/* Options lookup; each marks the key used.  options_get_size accepts
 * sizes with k/M/G/T suffixes (powers of 1024), options_get_pow2 only a
 * power of 2 from MIN to MAX (so 0 and absurd values too are refused).
 * On a bad value they fail with a message naming PATH (the image being
 * created) and the option as it was given.  Return 1 found, 0 absent, -1
 * bad value. */
const char *options_get (struct option_list *opts, const char *key);
int options_get_size (struct option_list *opts, const char *path,
                      const char *key, uint64_t *value);
int options_get_pow2 (struct option_list *opts, const char *path,
                      const char *key, uint64_t min, uint64_t max,
                      uint64_t *value);
int options_get_bool (struct option_list *opts, const char *path,
                      const char *key, bool *value);

/* Facts for describe.  The strings are copied. */
int image_fact_string (struct ferry_image *img, const char *key,
                       const char *value);
int image_fact_number (struct ferry_image *img, const char *key,
                       uint64_t value);
int image_fact_bool (struct ferry_image *img, const char *key, bool value);

/* The zero fallback: write buffers of zeroes with the driver's pwrite
 * (for a driver whose zero cannot do it another way). */
int image_zero_by_writing (struct ferry_image *img, size_t count,
                           uint64_t offset);

/* Bytes the file FD takes on disk (st_blocks * 512). */
uint64_t file_allocated_bytes (int fd);

/* The check result helpers: add a message line and count it. */
int check_report (struct ferry_check_result *r, bool corruption,
                  const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* Add the library's current error (say, why a structure could not be
 * read) as a corruption line, without the "PATH: " it starts with, since
 * ferry check prints the path itself. */
int check_report_error (struct ferry_check_result *r, const char *path);

#endif /* FERRY_IMAGE_INTERNAL_H */
