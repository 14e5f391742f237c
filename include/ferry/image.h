/* ferry: the one image interface.
 *
 * Every disk format ferry reads or writes, and later an NBD connection, is
 * a driver behind struct ferry_image.  The copy engine, the CLI and the
 * nbdkit plugin see only the calls below.
 *
 * Thread safety: ferry_image_pread and ferry_image_extents may be called
 * from many threads at once.  Writes (pwrite, zero, write_compressed) may
 * be issued from many threads too, as long as two threads never write into
 * the same cluster at the same time (the copy engine aligns its requests to
 * ferry_image_info.cluster_size for that reason).  flush, describe and
 * close must not race with anything else.
 *
 * Errors: calls return -1 (or NULL) and set the thread-local error of
 * <ferry/error.h>; the message starts with the image's file name.
 */
#ifndef FERRY_IMAGE_H
#define FERRY_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ferry_image;

/* Flags for ferry_image_open. */
#define FERRY_OPEN_WRITE       0x1 /* open read-write (default: read-only) */
#define FERRY_OPEN_NO_BACKING  0x2 /* do not open the backing chain */
#define FERRY_OPEN_STRICT      0x4 /* refuse what would only be a warning */
#define FERRY_OPEN_SHARED      0x8 /* read an image others may be writing */
/* Open even when the backing file (the parent of a VHD, VHDX, VDI or VMDK
 * differencing image) is missing: what the image records of it and why
 * it is missing go to ferry_image_describe, and a read or extents query
 * that reaches it fails with ENOENT naming it.  For showing an image
 * whose chain is broken (ferry info); never for copying it.  Without
 * this flag such an image fails to open, with the same reason.  A file
 * that is there but cannot be opened is an error either way. */
#define FERRY_OPEN_MISSING_BACKING 0x10


/* Files and locks.  An image is kept in regular files or block devices;
 * anything else (a FIFO, a socket, a character device, a directory) is
 * refused at open, without waiting on it, with a message naming the file
 * and what it is.
 *
 * Every file of an image (the image file, a VMDK's extents, a qcow2
 * external data file, every backing file) is locked while the image is
 * open, as QEMU locks it, so ferry, qemu-img, qemu-nbd, qemu-io and
 * running VMs see one another:
 *   - read-only: ferry reads, and lets others read but not write or
 *     resize (qemu-img convert's source);
 *   - FERRY_OPEN_WRITE: ferry reads, writes and resizes, and lets others
 *     read but not write or resize (a running VM, qemu-nbd);
 *   - FERRY_OPEN_SHARED, read-only only (qemu-img -U, --force-share):
 *     ferry reads and lets others do anything, so an image a running VM
 *     writes can be read, e.g. by warm and live migration, which copy a
 *     running VM's disks and then what changed; what is read while the
 *     VM writes is only as consistent as the VM makes it (a snapshot, a
 *     dirty bitmap, a stopped VM).
 * A conflict fails the open with EBUSY and "PATH: the image is in use by
 * another process (failed to get a write lock)".  Backing files are
 * locked as read-only opens (with FERRY_OPEN_SHARED when the image was
 * opened with it).  Two opens of one file in one process are two users
 * too: an image cannot be opened for writing while it is open for
 * reading elsewhere in the program.  File systems without OFD locks are
 * not locked.  */

/* Permissions, as the locks of ferry_image_lock_query name them (QEMU's
 * names, and QEMU's numbers: the bit number is the byte's offset from
 * 100 or 200 in the lock layout). */
#define FERRY_PERM_CONSISTENT_READ 0x1
#define FERRY_PERM_WRITE           0x2
#define FERRY_PERM_WRITE_UNCHANGED 0x4
#define FERRY_PERM_RESIZE          0x8

/* What the image locks on the file PATH say about its users (other
 * processes, and other opens in this one): *HELD gets the FERRY_PERM_*
 * someone holds, *UNSHARED those someone refuses to share.  A running
 * VM's disk shows FERRY_PERM_WRITE in both; no locks at all, both 0.
 * Takes no lock itself.  0, or -1 with the error set. */
int ferry_image_lock_query (const char *path, unsigned *held /* OUT */,
                            unsigned *unshared /* OUT */);

/* Open an existing image.  FORMAT is a driver name ("raw", "qcow2", ...)
 * or NULL to probe it from the content (never from the file name).  The
 * backing chain is opened too, each layer read-only, unless
 * FERRY_OPEN_NO_BACKING.  A chain is followed to at most 1000 images
 * below PATH (MAX_BACKING_DEPTH of lib/image); each layer holds a file
 * descriptor (a VMDK one per extent), and running out of them (the
 * RLIMIT_NOFILE of the process) is an error that says so.  The caller
 * frees it with ferry_image_close(). */
struct ferry_image *ferry_image_open (const char *path, const char *format,
                                      unsigned flags);

/* Open, read-only, the image held in the bytes [OFFSET, OFFSET+LENGTH) of
 * the file PATH: a member of an uncompressed tar, such as a disk inside an
 * OVA, read in place with no copy.  FORMAT and FLAGS as for
 * ferry_image_open (FERRY_OPEN_WRITE is refused); the image may have no
 * backing file.  Formats whose driver cannot read from a window (all but
 * raw and those that say so) are refused with ENOTSUP.  Messages name
 * PATH.  The caller frees it with ferry_image_close(). */
struct ferry_image *ferry_image_open_window (const char *path,
                                             const char *format,
                                             uint64_t offset, uint64_t length,
                                             unsigned flags);

/* Open, read-only, the image held gzip-compressed in the bytes [OFFSET,
 * OFFSET+LENGTH) of PATH (a disk an OVA holds with ovf:compression=
 * "gzip"), inflated as it is read and never written out.  It can only be
 * read from start to end (ferry_image_is_sequential): a read behind an
 * earlier one fails with ESPIPE; ferry_copy reads it with one worker.
 * SIZE_HINT is the virtual size the description declares, for formats
 * that record none (raw; 0: none, the image is then empty: measure the
 * stream with ferry_image_measure_stream first).  Formats: raw, and
 * those whose driver reads streams; others are refused with ENOTSUP.
 * ferry_image_read_to_end checks the stream's end after the last read.
 * The caller frees it with ferry_image_close(). */
struct ferry_image *ferry_image_open_stream (const char *path,
                                             const char *format,
                                             uint64_t offset, uint64_t length,
                                             uint64_t size_hint,
                                             unsigned flags);

/* Tell IMG, open for writing, that its writer will flush it at the end
 * (ferry_copy does unless told not to): data writes then ask the kernel
 * to start writing back at once (sync_file_range), and once more than
 * 32 MiB is on its way a writer waits for the oldest range, so the disk
 * works while the copy goes on and the flush finds little left.  Off by
 * default: an unflushed copy (-t unsafe) leaves write-back to the kernel. */
void ferry_image_set_early_writeback (struct ferry_image *img, bool on);

/* True when IMG can only be read in order (ferry_image_open_stream). */
bool ferry_image_is_sequential (struct ferry_image *img);

/* For an image read in order (ferry_image_is_sequential), once the reads
 * are done: read what is left of its stream to the end and check it there
 * (each gzip member's trailer, its CRC-32 and length; for raw, that the
 * stream holds nothing past the image's size).  Until then a stream is
 * not known to be whole.  0, or -1 with the error set; other images: 0. */
int ferry_image_read_to_end (struct ferry_image *img);

/* Read the gzip stream in the bytes [OFFSET, OFFSET+LENGTH) of PATH to
 * its end as ferry_image_open_stream would, checking each member's
 * trailer, and keep nothing: *SIZE gets the bytes it inflates to (the
 * virtual size of a raw disk in it, which nothing else records), *DATA
 * those of them in 4 KiB blocks that are not all zeroes.  A stream that
 * inflates to more than MAX bytes is refused with EFBIG as it passes MAX,
 * so that a small file of compressed zeroes (a decompression bomb) cannot
 * keep ferry inflating for as long as it likes; a stop request
 * (SIGINT) ends it with EINTR within one buffer.  PROGRESS, when not NULL,
 * is called now and then with the compressed bytes read so far.  0, or -1
 * with the error set. */
int ferry_image_measure_stream (const char *path, uint64_t offset,
                                uint64_t length, uint64_t max,
                                uint64_t *size /* OUT */,
                                uint64_t *data /* OUT */,
                                void (*progress) (uint64_t done,
                                                  void *opaque),
                                void *opaque);

/* Create a new image of FORMAT at PATH and return it open for writing.
 * SIZE is the virtual size in bytes (0: take it from the backing file).
 * OPTIONS is a qemu-img style "key=val,key=val" string or NULL; a key the
 * driver does not know is an error.  The file must not exist already.
 * The caller frees it with ferry_image_close(). */
struct ferry_image *ferry_image_create (const char *path, const char *format,
                                        uint64_t size, const char *options);

/* Move the closed image FROM, made by ferry_image_create with FORMAT
 * (NULL: raw), to TO without ever replacing an existing file.  Formats
 * made of several files (a VMDK descriptor and its extents) give the
 * others their new names first (as second links where the file system
 * has them, the old names dropped at the end) and rewrite the descriptor
 * to name them; FROM's own file moves last, so TO appears only once
 * everything else is in place.  With SYNC, every file is fsync'd before
 * it moves; the caller syncs the folder.  0, or -1 with the error set and
 * FROM as it was.  New targets use <ferry/target.h>, which calls this. */
int ferry_image_rename (const char *from, const char *to, const char *format,
                        bool sync);

/* Remove the image PATH made by ferry_image_create with FORMAT (NULL:
 * raw): its file and every file the format keeps beside it.  For cleaning
 * up after a failed write (ferry_target_free does).  0, or -1 with the
 * error set. */
int ferry_image_remove (const char *path, const char *format);

/* Whether writing OTHER would change what IMG reads: some file OTHER is
 * kept in (a VMDK's extents and a qcow2 external data file count, not
 * OTHER's backing chain) is a file of IMG or of an image of IMG's backing
 * chain.  Files are compared by device and inode, so hard and symbolic
 * links are seen through.  1 (the error set to a message naming both
 * files, "B and A are the same file"), 0, or -1 with the error set. */
int ferry_image_same_file (struct ferry_image *img, struct ferry_image *other);

/* Whether the file PATH (links followed) is one of the files of IMG or of
 * its backing chain: 1 (the error set to a message naming both), 0 (also
 * when PATH does not exist), or -1 with the error set. */
int ferry_image_has_file (struct ferry_image *img, const char *path);

/* Probe PATH and return the driver name of its format (a static string),
 * or NULL with the error set. */
const char *ferry_image_probe (const char *path);

/* True when PATH names an image by URI (nbd://, nbds://, nbd+unix://, ...)
 * rather than a file.  Such an image exists already: it is opened, never
 * created, and has no file to rename or remove. */
bool ferry_image_is_uri (const char *path);

/* How long an NBD export opened from now on waits for its server:
 * CONNECT_SECONDS for the connection and the whole handshake (default
 * FERRY_NBD_CONNECT_TIMEOUT), REQUEST_SECONDS for the reply to each read,
 * write, zero or block status request (default FERRY_NBD_REQUEST_TIMEOUT;
 * a flush may take FERRY_NBD_FLUSH_FACTOR times as long, since a server
 * may write back gigabytes of cache before it answers).  0 waits without
 * a deadline.  A request that gets no reply in time fails with ETIMEDOUT
 * and a message naming the export and the request, and every connection
 * to that export is closed: the rest of its requests fail at once.  For
 * the whole process; 0, or -1 (EINVAL) for a negative or absurd value. */
#define FERRY_NBD_CONNECT_TIMEOUT 30
#define FERRY_NBD_REQUEST_TIMEOUT 60
#define FERRY_NBD_FLUSH_FACTOR 10
int ferry_nbd_set_timeouts (double connect_seconds, double request_seconds);

/* Guest-visible reads and writes.  Reads past the virtual size fail. */
int ferry_image_pread (struct ferry_image *img, void *buf, size_t count,
                       uint64_t offset);
int ferry_image_pwrite (struct ferry_image *img, const void *buf,
                        size_t count, uint64_t offset);

/* Make a range read as zeroes.  With FERRY_ZERO_MAY_TRIM the driver may
 * deallocate it (punch a hole, drop the clusters); without it the range
 * stays allocated where it was. */
#define FERRY_ZERO_MAY_TRIM 0x1
int ferry_image_zero (struct ferry_image *img, size_t count, uint64_t offset,
                      unsigned flags);

/* Extents, with the meaning of NBD's base:allocation context. */
#define FERRY_EXTENT_HOLE 0x1 /* not allocated in this image or its chain */
#define FERRY_EXTENT_ZERO 0x2 /* reads as zeroes */

struct ferry_extent {
  uint64_t offset;
  uint64_t length;
  uint32_t flags;
};

struct ferry_extent_list {
  struct ferry_extent *ptr;
  size_t len;
  size_t cap;
};

/* Append to LIST the extents that describe [OFFSET, OFFSET+LENGTH) as the
 * guest sees it through the whole backing chain.  At least one extent
 * starting at OFFSET is appended; the driver may stop short of LENGTH, and
 * the caller asks again from where the list ends.  Adjacent extents with
 * the same flags are merged. */
int ferry_image_extents (struct ferry_image *img, uint64_t offset,
                         uint64_t length, struct ferry_extent_list *list);
void ferry_extent_list_free (struct ferry_extent_list *list);

/* Append one extent to LIST, merging it with the last one when they touch
 * and have the same flags.  0, or -1 (ENOMEM) with LIST unchanged. */
int ferry_extent_list_append (struct ferry_extent_list *list,
                              uint64_t offset, uint64_t length,
                              uint32_t flags);

/* Metadata contexts: named maps of the disk, as NBD's block status
 * carries them.  Every image offers "base:allocation", whose extents are
 * those of ferry_image_extents.  An NBD export may offer more, e.g.
 *   "qemu:dirty-bitmap:NAME"  flags 1: written since the bitmap started
 *                             (warm migration reads these ranges), 0: not;
 *   "qemu:allocation-depth"   flags 0: absent, 1: allocated in the top
 *                             layer, N: in the N-th layer of its chain.
 *
 * ferry_image_contexts returns the names IMG offers, NULL-terminated;
 * the array belongs to the image and lives until it is closed.
 *
 * ferry_image_context_extents is ferry_image_extents for the context
 * NAME: each extent's flags are the context's own value, with the same
 * contract (at least one extent from OFFSET, adjacent equal ones merged,
 * may stop short of LENGTH; safe from many threads).  It fails with
 * ENOENT when IMG does not offer NAME. */
#define FERRY_CONTEXT_BASE_ALLOCATION "base:allocation"
const char *const *ferry_image_contexts (struct ferry_image *img);
int ferry_image_context_extents (struct ferry_image *img, const char *name,
                                 uint64_t offset, uint64_t length,
                                 struct ferry_extent_list *list);

/* Compressed writes, for formats that store compressed blocks (qcow2 -c,
 * streamOptimized VMDK).  ferry_image_compress_unit returns the block
 * size such writes use, or 0 when the format cannot compress.
 *
 * ferry_image_compress is pure and thread-safe: it encodes one block of
 * guest data (COUNT == unit, or less for the last block of the disk) into
 * OUT and returns the encoded length, or 0 when compressing does not pay
 * (then write the block with ferry_image_pwrite), or -1 on error.  OUT must
 * hold ferry_image_compress_bound(img) bytes.
 *
 * ferry_image_write_compressed stores one encoded block at guest OFFSET
 * (a multiple of the unit).  Formats that append (streamOptimized) need
 * these calls in ascending OFFSET order; the copy engine keeps that order
 * while it compresses on every core. */
uint32_t ferry_image_compress_unit (struct ferry_image *img);
/* True when the image takes data only as compressed blocks written in
 * ascending order (a streamOptimized VMDK): ferry_copy then compresses
 * whether or not it was asked to. */
bool ferry_image_compress_required (struct ferry_image *img);
size_t ferry_image_compress_bound (struct ferry_image *img);
ssize_t ferry_image_compress (struct ferry_image *img, const void *in,
                              size_t count, void *out);
int ferry_image_write_compressed (struct ferry_image *img, uint64_t offset,
                                  const void *data, size_t len,
                                  size_t count);

int ferry_image_flush (struct ferry_image *img);

/* Close the image and its backing chain and free them.  Writes that were
 * held back (tables, refcounts, footers) happen here, so a writable image
 * can fail to close: -1 then means the file is not complete.  IMG may be
 * NULL. */
int ferry_image_close (struct ferry_image *img);

#define FERRY_SIZE_UNKNOWN UINT64_MAX

/* What describe tells.  Strings and arrays belong to the image and stay
 * valid until the next describe or close. */
enum ferry_fact_kind {
  FERRY_FACT_STRING,
  FERRY_FACT_NUMBER,
  FERRY_FACT_BOOL,
};

struct ferry_fact {
  const char *key;           /* "compat", "refcount-bits", ... */
  enum ferry_fact_kind kind;
  const char *string;        /* for FERRY_FACT_STRING */
  uint64_t number;           /* for FERRY_FACT_NUMBER, and 0/1 for BOOL */
};

struct ferry_snapshot {
  const char *id;
  const char *name;
  uint64_t vm_state_size;
  uint64_t disk_size;        /* virtual size when taken */
  uint64_t date_sec;
  uint32_t date_nsec;
  uint64_t vm_clock_nsec;
};

struct ferry_image_info {
  const char *format;        /* driver name */
  const char *path;          /* as opened */
  uint64_t virtual_size;
  uint64_t allocated;        /* bytes the file(s) of this layer use on disk,
                                FERRY_SIZE_UNKNOWN when there is no telling
                                (an NBD export) */
  uint32_t cluster_size;     /* 0 when the format has none */
  const char *backing_file;  /* as recorded in the image, or NULL (a VDI
                                parent is known by its UUID alone) */
  const char *backing_format;/* as recorded, or NULL */
  const char *full_backing_file; /* where the backing file was opened or
                                looked for: backing_file resolved against
                                the image's folder, as qemu-img's
                                full-backing-filename; or NULL */
  const char *backing_missing; /* NULL, or why the backing file (parent)
                                is missing, a sentence naming it
                                (FERRY_OPEN_MISSING_BACKING) */
  const char *data_file;     /* external data file, or NULL */
  const struct ferry_fact *facts;
  size_t nr_facts;
  const struct ferry_snapshot *snapshots;
  size_t nr_snapshots;
};

/* Fill INFO for this layer only; walk the chain with ferry_image_backing. */
int ferry_image_describe (struct ferry_image *img,
                          struct ferry_image_info *info /* OUT */);

/* The image this one reads through for unallocated ranges, or NULL.  It
 * belongs to IMG. */
struct ferry_image *ferry_image_backing (struct ferry_image *img);

/* What IMG can do, for a server that advertises it (the nbdkit plugin). */
#define FERRY_CAN_WRITE   0x1 /* open for writing, and its format writes */
#define FERRY_CAN_ZERO    0x2 /* ferry_image_zero does not write zeroes */
#define FERRY_CAN_TRIM    0x4 /* FERRY_ZERO_MAY_TRIM can deallocate */
#define FERRY_CAN_EXTENTS 0x8 /* extents tell holes and zeroes from data */
unsigned ferry_image_capabilities (struct ferry_image *img);

uint64_t ferry_image_size (struct ferry_image *img);
const char *ferry_image_format (struct ferry_image *img);
const char *ferry_image_path (struct ferry_image *img);

/* True when a freshly created image reads as zeroes everywhere (no backing
 * file, no preallocation with garbage): the copy engine then skips holes
 * and zero ranges instead of writing them. */
bool ferry_image_is_zero_initialized (struct ferry_image *img);

/* True when an image was just created with a backing file and reads as
 * that backing file everywhere: the copy engine may then leave out what
 * equals the backing file.  An existing overlay (ferry convert -n) holds
 * clusters of its own, and this is false for it. */
bool ferry_image_reads_as_backing (struct ferry_image *img);

/* Check an image's metadata without trusting it (ferry check). */
struct ferry_check_result {
  uint64_t corruptions;      /* errors: overlaps, out of bounds, bad refcounts */
  uint64_t leaks;            /* clusters with a refcount but no user */
  uint64_t allocated_clusters;
  uint64_t total_clusters;
  char **messages;           /* one line per problem, NULL-terminated */
  size_t nr_messages;
};

/* Returns 0 when the check ran (look at RESULT), -1 when it could not
 * (unreadable file, format without checks, in use by a writer).  FLAGS:
 * FERRY_OPEN_SHARED checks an image others may be writing (its locks,
 * as for ferry_image_open); other flags are ignored. */
int ferry_image_check (const char *path, const char *format, unsigned flags,
                       struct ferry_check_result *result /* OUT */);
void ferry_check_result_free (struct ferry_check_result *result);

/* Parse a size with an optional k, M, G, T, P or E suffix (powers of
 * 1024), as qemu-img takes them.  0, or -1 with the error set. */
int ferry_parse_size (const char *s, uint64_t *value /* OUT */);

/* Driver names, NULL-terminated, for --help and error messages. */
const char *const *ferry_image_formats (void);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_IMAGE_H */
