/* Unit tests for lib/copy: ferry_copy between raw files, and between
 * in-memory fake images that record what the engine asked of them (which
 * ranges were read, how targets were written, in which order, from how
 * many threads at once).
 *
 * The fake driver ("mem") plugs into the image layer through
 * lib/image/internal.h, as a real driver would.  Its callbacks run on the
 * copy's worker threads, where cmocka cannot assert, so they count
 * violations in atomic counters that the test checks afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define SCRATCH_PREFIX "ferry-test-copy"
#include "scratch-dir.h"

#include <ferry/copy.h>

#include "common/error.h"
#include "common/util.h"
#include "image/internal.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* ----- helpers ----- */

/* The byte the test pattern holds at OFFSET: never zero, so a block of
 * it is never taken for zeroes.  SEED tells two patterns apart. */
static unsigned char
pattern_byte (uint64_t offset, unsigned seed)
{
  return (unsigned char) (((offset >> 12) * 7 + offset * 13 + seed) | 1);
}

/* Fill BUF with the pattern of [OFFSET, OFFSET+LEN). */
static void
fill_pattern (unsigned char *buf, size_t len, uint64_t offset, unsigned seed)
{
  size_t i;

  for (i = 0; i < len; i++)
    buf[i] = pattern_byte (offset + i, seed);
}

/* Write the pattern over [OFFSET, OFFSET+LEN) of IMG. */
static void
write_pattern (struct ferry_image *img, uint64_t offset, size_t len,
               unsigned seed)
{
  unsigned char *buf = malloc (len);

  assert_non_null (buf);
  fill_pattern (buf, len, offset, seed);
  assert_int_equal (ferry_image_pwrite (img, buf, len, offset), 0);
  free (buf);
}

/* Write LEN explicit zero bytes at OFFSET: allocated, but zero. */
static void
write_zeroes_as_data (struct ferry_image *img, uint64_t offset, size_t len)
{
  unsigned char *buf = calloc (1, len);

  assert_non_null (buf);
  assert_int_equal (ferry_image_pwrite (img, buf, len, offset), 0);
  free (buf);
}

/* Read the whole file PATH into a new buffer; *LEN gets its size. */
static unsigned char *
slurp (const char *path, size_t *len)
{
  struct stat st;
  unsigned char *buf;
  int fd = open (path, O_RDONLY);

  assert_true (fd >= 0);
  assert_int_equal (fstat (fd, &st), 0);
  *len = st.st_size;
  buf = malloc (*len + 1);
  assert_non_null (buf);
  assert_int_equal (full_pread (fd, buf, *len, 0), 0);
  close (fd);
  return buf;
}

/* Assert files A and B hold the same bytes; B may be longer if its tail
 * reads as zeroes (qcow2 sizes are rounded up to 512 bytes). */
static void
assert_same_files (const char *a, const char *b)
{
  size_t la, lb;
  unsigned char *ba = slurp (a, &la), *bb = slurp (b, &lb);

  assert_true (lb >= la);
  assert_memory_equal (ba, bb, la);
  assert_true (is_zero (bb + la, lb - la));
  free (ba);
  free (bb);
}

/* True when [OFFSET, OFFSET+LEN) of file PATH is all allocated. */
static bool
is_data (const char *path, uint64_t offset, uint64_t len)
{
  int fd = open (path, O_RDONLY);
  off_t data, hole;

  assert_true (fd >= 0);
  data = lseek (fd, offset, SEEK_DATA);
  hole = lseek (fd, offset, SEEK_HOLE);
  close (fd);
  return data == (off_t) offset && (uint64_t) hole >= offset + len;
}

/* The raw source most tests copy, at PATH:
 *   [0, 1M)            data
 *   [1M, 3M)           hole
 *   [3M, 3M+64K)       data
 *   [3M+64K, 3M+96K)   zeroes written as data
 *   [3M+96K, 4M)       data
 *   [4M, 4M+12K)       data, then holes and 4 KiB of data every 16 KiB
 *                      up to 5M
 *   [5M, 19M)          hole
 *   [19M, SOURCE_SIZE) data, to an end that is not 4 KiB aligned */
#define SOURCE_SIZE (20 * MiB + 1234)

static void
make_source (const char *path)
{
  struct ferry_image *img = ferry_image_create (path, "raw", SOURCE_SIZE,
                                                NULL);
  uint64_t off;

  assert_non_null (img);
  write_pattern (img, 0, 1 * MiB, 1);
  write_pattern (img, 3 * MiB, 64 * KiB, 1);
  write_zeroes_as_data (img, 3 * MiB + 64 * KiB, 32 * KiB);
  write_pattern (img, 3 * MiB + 96 * KiB, 1 * MiB - 96 * KiB, 1);
  write_pattern (img, 4 * MiB, 12 * KiB, 1);
  for (off = 4 * MiB + 16 * KiB; off < 5 * MiB; off += 16 * KiB)
    write_pattern (img, off, 4 * KiB, 1);
  write_pattern (img, 19 * MiB, SOURCE_SIZE - 19 * MiB, 1);
  assert_int_equal (ferry_image_close (img), 0);
}

/* Copy the raw file SRC into a new raw file DST with OPTS. */
static int
copy_raw_files (const char *src_path, const char *dst_path,
                const struct ferry_copy_options *opts)
{
  struct ferry_image *src = ferry_image_open (src_path, "raw", 0);
  struct ferry_image *dst;
  int r;

  assert_non_null (src);
  dst = ferry_image_create (dst_path, "raw", ferry_image_size (src), NULL);
  assert_non_null (dst);
  r = ferry_copy (src, dst, opts);
  assert_int_equal (ferry_image_close (dst), 0);
  assert_int_equal (ferry_image_close (src), 0);
  return r;
}

/* ----- the fake "mem" driver ----- */

#define MEM_BLOCK 4096u
enum { MAP_DATA = 0, MAP_HOLE = 1, MAP_ZERO = 2 };

struct mem_image {
  struct ferry_image base;       /* must be first */
  int fd;                        /* /dev/null, for image_init_base */
  unsigned char *data;
  unsigned char *map;            /* MAP_* of each MEM_BLOCK */
  unsigned char *written;        /* each MEM_BLOCK: touched by a write */
  uint32_t cluster_size;
  uint32_t compress_unit;        /* 0: cannot compress */
  unsigned read_delay_us;        /* sleep in every pread */
  unsigned write_delay_us;       /* sleep in every write */
  uint64_t fail_read_at;         /* pread touching this offset fails */
  uint64_t fail_write_at;        /* writes touching this offset fail */
  int *in_flight;                /* writes in each cluster right now */

  /* Counters, updated atomically from the workers. */
  int hole_reads;                /* preads that touched a hole */
  int overlaps;                  /* two writes in one cluster at once */
  int out_of_order;              /* compressed writes not ascending */
  int zero_compressed;           /* all-zero units given to compress */
  int nr_pwrite, nr_zero, nr_zero_trim, nr_compressed, nr_flush;
  /* How many preads, writes and compress calls ran at once, now and at
   * most. */
  int reads_now, reads_max, writes_now, writes_max, compress_now,
    compress_max;
  uint64_t last_compressed;      /* end of the last compressed write */
};

/* MEM_BLOCKs that [OFFSET, OFFSET+COUNT) touches: [*FIRST, *LAST]. */
static void
mem_blocks (uint64_t offset, uint64_t count, uint64_t *first, uint64_t *last)
{
  *first = offset / MEM_BLOCK;
  *last = (offset + count - 1) / MEM_BLOCK;
}

/* Count one more call running in *NOW, raising *MAX to match. */
static void
enter_call (int *now, int *max)
{
  int n = __atomic_add_fetch (now, 1, __ATOMIC_ACQ_REL);
  int m = __atomic_load_n (max, __ATOMIC_RELAXED);

  while (n > m &&
         !__atomic_compare_exchange_n (max, &m, n, false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED))
    ;
}

/* Count one call fewer running in *NOW. */
static void
leave_call (int *now)
{
  __atomic_sub_fetch (now, 1, __ATOMIC_ACQ_REL);
}

/* Read, counting any read that touches a hole or zero extent. */
static int
mem_pread (struct ferry_image *img, void *buf, size_t count, uint64_t offset)
{
  struct mem_image *h = (struct mem_image *) img;
  uint64_t b, first, last;

  enter_call (&h->reads_now, &h->reads_max);
  if (h->read_delay_us)
    usleep (h->read_delay_us);
  leave_call (&h->reads_now);
  if (h->fail_read_at >= offset && h->fail_read_at < offset + count)
    return ferry_error (EIO, "%s: read error at offset %" PRIu64,
                        img->path, offset);
  mem_blocks (offset, count, &first, &last);
  for (b = first; b <= last; b++)
    if (h->map[b] != MAP_DATA) {
      __atomic_fetch_add (&h->hole_reads, 1, __ATOMIC_RELAXED);
      break;
    }
  memcpy (buf, h->data + offset, count);
  return 0;
}

/* Mark [OFFSET, OFFSET+COUNT) as being written: count overlapping writers
 * per cluster.  DELTA is +1 on entry and -1 on exit. */
static void
mem_track (struct mem_image *h, uint64_t offset, uint64_t count, int delta)
{
  uint64_t c, cs = h->cluster_size ? h->cluster_size : MEM_BLOCK;

  for (c = offset / cs; c <= (offset + count - 1) / cs; c++) {
    int before = __atomic_fetch_add (&h->in_flight[c], delta,
                                     __ATOMIC_ACQ_REL);
    if (delta > 0 && before != 0)
      __atomic_fetch_add (&h->overlaps, 1, __ATOMIC_RELAXED);
  }
}

/* Common part of the writes: check, track, update DATA and MAP. */
static int
mem_store (struct mem_image *h, const void *buf, size_t count,
           uint64_t offset, int map)
{
  uint64_t b, first, last;

  if (h->fail_write_at >= offset && h->fail_write_at < offset + count)
    return ferry_error (ENOSPC, "%s: write at offset %" PRIu64
                        ": No space left on device", h->base.path, offset);
  mem_track (h, offset, count, +1);
  enter_call (&h->writes_now, &h->writes_max);
  if (h->write_delay_us)
    usleep (h->write_delay_us);
  leave_call (&h->writes_now);
  if (buf)
    memcpy (h->data + offset, buf, count);
  else
    memset (h->data + offset, 0, count);
  mem_blocks (offset, count, &first, &last);
  for (b = first; b <= last; b++) {
    h->map[b] = map;
    h->written[b] = 1;
  }
  usleep (50);    /* widen the window for racing writers */
  mem_track (h, offset, count, -1);
  return 0;
}

/* Write data. */
static int
mem_pwrite (struct ferry_image *img, const void *buf, size_t count,
            uint64_t offset)
{
  struct mem_image *h = (struct mem_image *) img;

  __atomic_fetch_add (&h->nr_pwrite, 1, __ATOMIC_RELAXED);
  return mem_store (h, buf, count, offset, MAP_DATA);
}

/* Zero: a hole with FERRY_ZERO_MAY_TRIM, allocated zeroes without. */
static int
mem_zero (struct ferry_image *img, size_t count, uint64_t offset,
          unsigned flags)
{
  struct mem_image *h = (struct mem_image *) img;

  if (flags & FERRY_ZERO_MAY_TRIM)
    __atomic_fetch_add (&h->nr_zero_trim, 1, __ATOMIC_RELAXED);
  else
    __atomic_fetch_add (&h->nr_zero, 1, __ATOMIC_RELAXED);
  return mem_store (h, NULL, count, offset,
                    (flags & FERRY_ZERO_MAY_TRIM) ? MAP_HOLE : MAP_ZERO);
}

/* Extents from the block map, a few at a time. */
static int
mem_extents (struct ferry_image *img, uint64_t offset, uint64_t length,
             struct ferry_extent_list *list)
{
  struct mem_image *h = (struct mem_image *) img;
  uint64_t end = offset + length;
  int n = 0;

  /* Stop after a few extents: the engine must ask again. */
  while (offset < end && n < 5) {
    uint64_t b = offset / MEM_BLOCK, next = MIN ((b + 1) * MEM_BLOCK, end);
    uint32_t flags = h->map[b] == MAP_HOLE
      ? FERRY_EXTENT_HOLE | FERRY_EXTENT_ZERO
      : h->map[b] == MAP_ZERO ? FERRY_EXTENT_ZERO : 0;

    while (next < end && h->map[next / MEM_BLOCK] == h->map[b])
      next = MIN (next + MEM_BLOCK, end);
    if (ferry_extent_list_append (list, offset, next - offset, flags) == -1)
      return -1;
    offset = next;
    n++;
  }
  return 0;
}

/* The unit the test set, or 0. */
static uint32_t
mem_compress_unit (struct ferry_image *img)
{
  return ((struct mem_image *) img)->compress_unit;
}

/* A unit and the header byte, with room to spare. */
static size_t
mem_compress_bound (struct ferry_image *img)
{
  return ((struct mem_image *) img)->compress_unit + 64;
}

/* "Compress" by copying with a one-byte header; a unit that starts with
 * 0xEE does not pay.  Sleeps a little so workers finish out of order. */
static ssize_t
mem_compress (struct ferry_image *img, const void *in, size_t count,
              void *out)
{
  struct mem_image *h = (struct mem_image *) img;
  const unsigned char *p = in;

  if (is_zero (in, count))
    __atomic_fetch_add (&h->zero_compressed, 1, __ATOMIC_RELAXED);
  enter_call (&h->compress_now, &h->compress_max);
  /* Long enough that every worker is in here at some point, even on a
   * loaded machine under the sanitizers. */
  usleep (2000 + (p[1] * 37u) % 2000);
  leave_call (&h->compress_now);
  if (p[0] == 0xEE)
    return 0;
  ((unsigned char *) out)[0] = 'Z';
  memcpy ((unsigned char *) out + 1, in, count);
  return count + 1;
}

/* Store a "compressed" unit, checking the order of these calls. */
static int
mem_write_compressed (struct ferry_image *img, uint64_t offset,
                      const void *data, size_t len, size_t count)
{
  struct mem_image *h = (struct mem_image *) img;
  const unsigned char *p = data;

  /* The engine serialises these calls, so plain fields are safe. */
  if (offset < h->last_compressed)
    h->out_of_order++;
  h->last_compressed = offset + count;
  h->nr_compressed++;
  if (len != count + 1 || p[0] != 'Z')
    return ferry_error (EINVAL, "%s: bad compressed block at %" PRIu64,
                        img->path, offset);
  return mem_store (h, p + 1, count, offset, MAP_DATA);
}

/* Count flushes. */
static int
mem_flush (struct ferry_image *img)
{
  __atomic_fetch_add (&((struct mem_image *) img)->nr_flush, 1,
                      __ATOMIC_RELAXED);
  return 0;
}

/* Free the image (image.c frees the base's members). */
static int
mem_close (struct ferry_image *img)
{
  struct mem_image *h = (struct mem_image *) img;

  close (h->fd);
  free (h->data);
  free (h->map);
  free (h->written);
  free (h->in_flight);
  free (h);
  return 0;
}

/* Tell the cluster size the test set. */
static int
mem_describe (struct ferry_image *img, struct ferry_image_info *info)
{
  info->cluster_size = ((struct mem_image *) img)->cluster_size;
  return 0;
}

static const struct image_driver mem_driver = {
  .name = "mem",
  .pread = mem_pread,
  .pwrite = mem_pwrite,
  .zero = mem_zero,
  .extents = mem_extents,
  .compress_unit = mem_compress_unit,
  .compress_bound = mem_compress_bound,
  .compress = mem_compress,
  .write_compressed = mem_write_compressed,
  .flush = mem_flush,
  .close = mem_close,
  .describe = mem_describe,
};

/* A new mem image NAME of SIZE bytes, all hole, reading as zeroes. */
static struct mem_image *
mem_new (const char *name, uint64_t size, uint32_t cluster_size)
{
  struct mem_image *h = calloc (1, sizeof *h);
  uint64_t blocks = DIV_ROUND_UP (size, MEM_BLOCK);
  uint64_t cs = cluster_size ? cluster_size : MEM_BLOCK;

  assert_non_null (h);
  h->fd = open ("/dev/null", O_RDONLY);
  assert_true (h->fd >= 0);
  assert_int_equal (image_init_base (&h->base, &mem_driver, name, h->fd,
                                     false), 0);
  h->base.size = size;
  h->base.zero_initialized = true;
  h->data = calloc (1, size);
  h->map = malloc (blocks);
  h->written = calloc (1, blocks);
  h->in_flight = calloc (DIV_ROUND_UP (size, cs), sizeof (int));
  assert_non_null (h->data);
  assert_non_null (h->map);
  assert_non_null (h->written);
  assert_non_null (h->in_flight);
  memset (h->map, MAP_HOLE, blocks);
  h->cluster_size = cluster_size;
  h->fail_read_at = h->fail_write_at = UINT64_MAX;
  return h;
}

/* Put the pattern SEED over [OFFSET, OFFSET+LEN) of H, as data. */
static void
mem_fill (struct mem_image *h, uint64_t offset, uint64_t len, unsigned seed)
{
  uint64_t b, first, last;

  fill_pattern (h->data + offset, len, offset, seed);
  mem_blocks (offset, len, &first, &last);
  for (b = first; b <= last; b++)
    h->map[b] = MAP_DATA;
}

/* Forget what the copy did to H's counters and write map. */
static void
mem_reset_stats (struct mem_image *h)
{
  memset (h->written, 0, DIV_ROUND_UP (h->base.size, MEM_BLOCK));
  h->hole_reads = h->overlaps = h->out_of_order = h->zero_compressed = 0;
  h->nr_pwrite = h->nr_zero = h->nr_zero_trim = 0;
  h->nr_compressed = h->nr_flush = 0;
  h->reads_max = h->writes_max = h->compress_max = 0;
  h->last_compressed = 0;
}

/* True when no write touched [OFFSET, OFFSET+LEN) of H. */
static bool
mem_untouched (struct mem_image *h, uint64_t offset, uint64_t len)
{
  uint64_t b;

  for (b = offset / MEM_BLOCK; b < DIV_ROUND_UP (offset + len, MEM_BLOCK); b++)
    if (h->written[b])
      return false;
  return true;
}

/* A mem source with data, holes and zero extents, SIZE 24 MiB: the data
 * extents hold MEM_SOURCE_DATA bytes. */
#define MEM_SOURCE_SIZE (24 * MiB)
#define MEM_SOURCE_DATA (8 * MiB + 256 * KiB + 64 * KiB)

static struct mem_image *
mem_source (void)
{
  struct mem_image *h = mem_new ("src", MEM_SOURCE_SIZE, 0);
  uint64_t off;

  mem_fill (h, 0, 4 * MiB, 1);
  /* Allocated zeroes: a ZERO extent that is not a hole. */
  memset (h->map + (4 * MiB) / MEM_BLOCK, MAP_ZERO, (1 * MiB) / MEM_BLOCK);
  mem_fill (h, 8 * MiB, 4 * MiB, 1);
  memset (h->data + 9 * MiB, 0, 64 * KiB);     /* zero run inside data */
  for (off = 16 * MiB; off < 16 * MiB + 512 * KiB; off += 8 * KiB)
    mem_fill (h, off, 4 * KiB, 1);            /* fragments */
  mem_fill (h, MEM_SOURCE_SIZE - 64 * KiB, 64 * KiB, 1);
  return h;
}

/* ----- tests ----- */

/* raw -> raw with 1, 2 and 4 workers and several request sizes: same
 * bytes, holes stay holes, zero runs inside data become holes. */
static void
test_raw_to_raw (void **state)
{
  static const unsigned threads[] = { 1, 2, 4 };
  static const size_t requests[] = { 0, 64 * KiB, 1 * MiB, 3 * MiB + 5 };
  char src[300], dst[300];
  size_t t, r;

  make_source (tmp_path (src, sizeof src, "src.raw"));
  for (t = 0; t < sizeof threads / sizeof threads[0]; t++) {
    for (r = 0; r < sizeof requests / sizeof requests[0]; r++) {
      struct ferry_copy_options opts = {
        .threads = threads[t], .request_size = requests[r],
      };

      tmp_path (dst, sizeof dst, "dst.raw");
      assert_int_equal (copy_raw_files (src, dst, &opts), 0);
      assert_same_files (src, dst);
      assert_true (is_data (dst, 0, 1 * MiB));
      assert_true (is_hole (dst, 1 * MiB, 2 * MiB));
      assert_true (is_data (dst, 3 * MiB, 64 * KiB));
      assert_true (is_hole (dst, 3 * MiB + 64 * KiB, 32 * KiB));
      assert_true (is_data (dst, 3 * MiB + 96 * KiB, 1 * MiB - 96 * KiB));
      assert_true (is_hole (dst, 4 * MiB + 12 * KiB, 4 * KiB));
      assert_true (is_data (dst, 4 * MiB + 16 * KiB, 4 * KiB));
      assert_true (is_hole (dst, 5 * MiB, 14 * MiB));
      assert_true (is_data (dst, 19 * MiB, 1 * MiB));
    }
  }
}

/* A target that does not read as zeroes (an existing file full of 0xff)
 * gets the source's holes as zeroes, punched as holes. */
static void
test_raw_to_dirty_target (void **state)
{
  char src[300], dst[300];
  struct ferry_copy_options opts = { .threads = 2 };
  struct ferry_image *s, *d;
  unsigned char *junk = malloc (SOURCE_SIZE);
  int fd;

  assert_non_null (junk);
  make_source (tmp_path (src, sizeof src, "src.raw"));
  tmp_path (dst, sizeof dst, "dirty.raw");
  memset (junk, 0xff, SOURCE_SIZE);
  fd = open (dst, O_WRONLY | O_CREAT | O_EXCL, 0644);
  assert_true (fd >= 0);
  assert_int_equal (full_pwrite (fd, junk, SOURCE_SIZE, 0), 0);
  close (fd);
  free (junk);

  s = ferry_image_open (src, "raw", 0);
  d = ferry_image_open (dst, "raw", FERRY_OPEN_WRITE);
  assert_non_null (s);
  assert_non_null (d);
  assert_false (ferry_image_is_zero_initialized (d));
  assert_int_equal (ferry_copy (s, d, &opts), 0);
  assert_int_equal (ferry_image_close (d), 0);
  assert_int_equal (ferry_image_close (s), 0);
  assert_same_files (src, dst);
  assert_true (is_hole (dst, 1 * MiB, 2 * MiB));
  assert_true (is_hole (dst, 5 * MiB, 14 * MiB));
}

/* The engine never reads a hole or zero extent of the source, and a
 * zero-initialised target gets no zero requests at all. */
static void
test_never_reads_holes (void **state)
{
  struct mem_image *src = mem_source ();
  struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE, 0);
  struct ferry_copy_options opts = { .threads = 3, .request_size = 256 * KiB };

  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), 0);
  assert_int_equal (src->hole_reads, 0);
  assert_int_equal (dst->nr_zero + dst->nr_zero_trim, 0);
  assert_int_equal (dst->overlaps, 0);
  assert_int_equal (dst->nr_flush, 1);
  assert_memory_equal (src->data, dst->data, MEM_SOURCE_SIZE);
  /* Holes, zero extents and the zero run inside data were not written. */
  assert_true (mem_untouched (dst, 4 * MiB, 4 * MiB));
  assert_true (mem_untouched (dst, 9 * MiB, 64 * KiB));
  assert_true (mem_untouched (dst, 12 * MiB, 4 * MiB));
  assert_false (mem_untouched (dst, 9 * MiB + 64 * KiB, 4 * KiB));
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* A target that is not zero-initialised gets zero requests that may trim
 * for every zero range, and the same bytes. */
static void
test_zeroes_on_dirty_target (void **state)
{
  struct mem_image *src = mem_source ();
  struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE, 64 * KiB);
  struct ferry_copy_options opts = { .threads = 4, .request_size = 1 * MiB };

  dst->base.zero_initialized = false;
  memset (dst->data, 0xaa, MEM_SOURCE_SIZE);
  memset (dst->map, MAP_DATA, MEM_SOURCE_SIZE / MEM_BLOCK);
  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), 0);
  assert_memory_equal (src->data, dst->data, MEM_SOURCE_SIZE);
  assert_int_equal (src->hole_reads, 0);
  assert_true (dst->nr_zero_trim > 0);
  assert_int_equal (dst->nr_zero, 0);
  assert_int_equal (dst->overlaps, 0);
  /* The big zero ranges and the zero run became trims. */
  assert_int_equal (dst->map[(5 * MiB) / MEM_BLOCK], MAP_HOLE);
  assert_int_equal (dst->map[(9 * MiB) / MEM_BLOCK], MAP_HOLE);
  assert_int_equal (dst->map[(20 * MiB) / MEM_BLOCK], MAP_HOLE);
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* Requests are aligned to the target's clusters: with 64 KiB clusters
 * and a fragmented source, no two writes ever run in one cluster. */
static void
test_cluster_alignment (void **state)
{
  unsigned round;

  for (round = 0; round < 3; round++) {
    struct mem_image *src = mem_new ("src", 8 * MiB, 0);
    struct mem_image *dst = mem_new ("dst", 8 * MiB, 64 * KiB);
    struct ferry_copy_options opts = {
      .threads = 4, .request_size = 100 * KiB,
    };
    uint64_t off;

    /* 4 KiB of data every 12 KiB: every cluster is shared by fragments. */
    for (off = 0; off < 8 * MiB; off += 12 * KiB)
      mem_fill (src, off, 4 * KiB, round);
    dst->base.zero_initialized = round == 0;
    assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), 0);
    assert_memory_equal (src->data, dst->data, 8 * MiB);
    assert_int_equal (dst->overlaps, 0);
    ferry_image_close (&src->base);
    ferry_image_close (&dst->base);
  }
}

struct progress_log {
  unsigned calls;
  unsigned finished_calls;
  uint64_t last_done, last_total;
  bool monotonic, total_changed, bad_numbers;
  struct ferry_progress last;
  volatile sig_atomic_t *cancel;    /* set it at the first call */
  bool request_stop;                /* ferry_request_stop at the first call */
};

/* Record a progress call and check it against the previous one. */
static void
log_progress (const struct ferry_progress *p, void *opaque)
{
  struct progress_log *log = opaque;

  if (log->calls > 0) {
    if (p->done < log->last_done)
      log->monotonic = false;
    if (p->total != log->last_total)
      log->total_changed = true;
  }
  if (p->done > p->total || p->elapsed < 0 || p->bytes_per_sec < 0 ||
      p->virtual_size != MEM_SOURCE_SIZE)
    log->bad_numbers = true;
  log->calls++;
  if (p->finished)
    log->finished_calls++;
  log->last_done = p->done;
  log->last_total = p->total;
  log->last = *p;
  if (log->cancel)
    *log->cancel = 1;
  if (log->request_stop)
    ferry_request_stop ();
}

/* Progress: a few calls a second, done never goes back, the total is the
 * source's data bytes, and the last call is finished with done == total. */
static void
test_progress (void **state)
{
  struct mem_image *src = mem_source ();
  struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE, 0);
  struct progress_log log = { .monotonic = true };
  struct ferry_copy_options opts = {
    .threads = 2, .request_size = 256 * KiB,
    .progress = log_progress, .progress_opaque = &log,
  };
  double start = now_seconds (), elapsed;

  src->read_delay_us = 20000;   /* about a second in all */
  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), 0);
  elapsed = now_seconds () - start;
  assert_true (log.calls >= 3);
  assert_true (log.calls <= elapsed * 5 + 2);
  assert_true (log.monotonic);
  assert_false (log.total_changed);
  assert_false (log.bad_numbers);
  assert_int_equal (log.finished_calls, 1);
  assert_true (log.last.finished);
  assert_int_equal (log.last.total, MEM_SOURCE_DATA);
  assert_int_equal (log.last.done, MEM_SOURCE_DATA);
  assert_true (log.last.eta == 0);
  assert_memory_equal (src->data, dst->data, MEM_SOURCE_SIZE);
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* A cancel during the copy stops it promptly with EINTR; a cancel set
 * before it starts stops it at once. */
static void
test_cancel (void **state)
{
  struct mem_image *src = mem_source ();
  struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE, 0);
  volatile sig_atomic_t cancel = 0;
  struct progress_log log = { .monotonic = true, .cancel = &cancel };
  struct ferry_copy_options opts = {
    .threads = 2, .request_size = 64 * KiB, .cancel = &cancel,
    .progress = log_progress, .progress_opaque = &log,
  };
  double start;

  src->read_delay_us = 40000;   /* about four seconds in all */
  start = now_seconds ();
  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), -1);
  assert_int_equal (errno, EINTR);
  assert_int_equal (ferry_get_errno (), EINTR);
  assert_string_equal (ferry_get_error (), "interrupted");
  /* Cancelled at the first progress call, after 0.2 s: it stops long
   * before the end. */
  assert_true (now_seconds () - start < 2.0);
  assert_true (mem_untouched (dst, MEM_SOURCE_SIZE - 64 * KiB, 64 * KiB));
  assert_int_equal (log.finished_calls, 0);
  assert_int_equal (dst->nr_flush, 0);

  /* Already cancelled: nothing is done. */
  mem_reset_stats (dst);
  log.calls = 0;
  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), -1);
  assert_int_equal (errno, EINTR);
  assert_int_equal (dst->nr_pwrite, 0);
  assert_int_equal (log.calls, 0);
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* ferry_request_stop (what a program's SIGINT handler calls) stops a
 * copy that has no cancel flag of its own, as promptly; while the stop
 * stands a new copy does nothing, and once withdrawn copies run again. */
static void
test_request_stop (void **state)
{
  struct mem_image *src = mem_source ();
  struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE, 0);
  struct progress_log log = { .monotonic = true, .request_stop = true };
  struct ferry_copy_options opts = {
    .threads = 2, .request_size = 64 * KiB,
    .progress = log_progress, .progress_opaque = &log,
  };
  double start;

  src->read_delay_us = 40000;   /* about four seconds in all */
  start = now_seconds ();
  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), -1);
  assert_int_equal (ferry_get_errno (), EINTR);
  assert_true (ferry_stop_requested ());
  assert_true (now_seconds () - start < 2.0);
  assert_int_equal (log.finished_calls, 0);
  assert_int_equal (dst->nr_flush, 0);

  mem_reset_stats (dst);
  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), -1);
  assert_int_equal (ferry_get_errno (), EINTR);
  assert_int_equal (dst->nr_pwrite, 0);

  ferry_clear_stop ();
  assert_false (ferry_stop_requested ());
  src->read_delay_us = 0;
  log.request_stop = false;
  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), 0);
  assert_memory_equal (src->data, dst->data, MEM_SOURCE_SIZE);
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* A read error on a worker thread comes back to the caller with its
 * message and errno, and stops the other workers. */
static void
test_read_error (void **state)
{
  struct mem_image *src = mem_source ();
  struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE, 0);
  struct ferry_copy_options opts = { .threads = 4, .request_size = 64 * KiB };

  src->fail_read_at = 2 * MiB + 5;
  ferry_error (0, "no error yet");
  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), -1);
  assert_int_equal (errno, EIO);
  assert_int_equal (ferry_get_errno (), EIO);
  assert_string_equal (ferry_get_error (),
                       "src: read error at offset 2097152");
  assert_int_equal (dst->nr_flush, 0);
  /* The others stopped: the end of the disk was never reached. */
  assert_true (mem_untouched (dst, MEM_SOURCE_SIZE - 64 * KiB, 64 * KiB));
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* A write error (a full disk) does the same, from whichever worker. */
static void
test_write_error (void **state)
{
  struct mem_image *src = mem_source ();
  struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE, 0);
  struct ferry_copy_options opts = { .threads = 2, .request_size = 64 * KiB };

  dst->fail_write_at = 8 * MiB + 100;
  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), -1);
  assert_int_equal (errno, ENOSPC);
  assert_string_equal (ferry_get_error (), "dst: write at offset 8388608: "
                       "No space left on device");
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* Reads and writes run in parallel: with N workers, up to N at once and
 * no more; by default one worker per core; one worker alone with -m 1. */
static void
test_parallel (void **state)
{
  static const unsigned threads[] = { 1, 4, 0 };
  unsigned cpus = (unsigned) sysconf (_SC_NPROCESSORS_ONLN);
  size_t t;

  for (t = 0; t < sizeof threads / sizeof threads[0]; t++) {
    struct mem_image *src = mem_source ();
    struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE, 0);
    struct ferry_copy_options opts = {
      .threads = threads[t], .request_size = 128 * KiB,
    };
    int want = threads[t] ? (int) threads[t] : (int) MIN (cpus, 64u);

    /* Long enough that the workers' calls overlap even when the
     * machine is busy. */
    src->read_delay_us = 3000;
    dst->write_delay_us = 3000;
    assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), 0);
    assert_memory_equal (src->data, dst->data, MEM_SOURCE_SIZE);
    assert_true (src->reads_max <= want);
    assert_true (dst->writes_max <= want);
    if (want == 1) {
      assert_int_equal (src->reads_max, 1);
      assert_int_equal (dst->writes_max, 1);
    }
    else {
      /* All of them at once at some point, for reads; at least two
       * writes at once. */
      if (src->reads_max != want)
        fail_msg ("%d workers: at most %d reads at once", want,
                  src->reads_max);
      assert_true (dst->writes_max >= 2);
    }
    ferry_image_close (&src->base);
    ferry_image_close (&dst->base);
  }
}

/* Compressed output: units compressed on every worker, written in
 * ascending order, zero units never compressed, units that do not pay
 * written plainly. */
static void
test_compressed_order (void **state)
{
  static const unsigned threads[] = { 1, 2, 4 };
  size_t t;

  for (t = 0; t < sizeof threads / sizeof threads[0]; t++) {
    struct mem_image *src = mem_source ();
    struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE, 64 * KiB);
    struct ferry_copy_options opts = {
      .threads = threads[t], .compress = true,
    };
    uint64_t off;

    /* Every fifth unit does not compress. */
    for (off = 0; off < 4 * MiB; off += 5 * 64 * KiB)
      src->data[off] = 0xEE;
    dst->compress_unit = 64 * KiB;
    assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), 0);
    assert_memory_equal (src->data, dst->data, MEM_SOURCE_SIZE);
    assert_int_equal (dst->out_of_order, 0);
    assert_int_equal (dst->zero_compressed, 0);
    /* Every worker compresses at some point, at the same time. */
    if (dst->compress_max != (int) threads[t])
      fail_msg ("%u workers: at most %d compressing at once", threads[t],
                dst->compress_max);
    assert_int_equal (dst->overlaps, 0);
    assert_true (dst->nr_compressed > 0);
    assert_int_equal (dst->nr_pwrite, 13);  /* the 0xEE units */
    assert_int_equal (src->hole_reads, 0);
    ferry_image_close (&src->base);
    ferry_image_close (&dst->base);
  }
}

/* Compressed output into a target that cannot hold it is refused. */
static void
test_compress_refused (void **state)
{
  struct mem_image *src = mem_source ();
  char dst_path[300];
  struct ferry_image *dst;
  struct ferry_copy_options opts = { .compress = true };
  char expected[400];

  dst = ferry_image_create (tmp_path (dst_path, sizeof dst_path, "c.raw"),
                            "raw", MEM_SOURCE_SIZE, NULL);
  assert_non_null (dst);
  assert_int_equal (ferry_copy (&src->base, dst, &opts), -1);
  snprintf (expected, sizeof expected,
            "%s: raw images cannot hold compressed data", dst_path);
  assert_string_equal (ferry_get_error (), expected);
  assert_int_equal (ferry_get_errno (), ENOTSUP);
  ferry_image_close (dst);
  ferry_image_close (&src->base);
}

/* A target smaller than the source is refused. */
static void
test_target_too_small (void **state)
{
  struct mem_image *src = mem_source ();
  struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE - 4096, 0);

  assert_int_equal (ferry_copy (&src->base, &dst->base, NULL), -1);
  assert_int_equal (errno, EINVAL);
  assert_non_null (strstr (ferry_get_error (), "dst: the target holds"));
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* Over a backing file only what differs is written: equal clusters are
 * skipped, zeroes over backing data are zeroed without trimming, zeroes
 * over backing zeroes are skipped. */
static void
test_backing (void **state)
{
  static const unsigned threads[] = { 1, 3 };
  size_t t;

  for (t = 0; t < sizeof threads / sizeof threads[0]; t++) {
    struct mem_image *src = mem_new ("src", 8 * MiB, 0);
    struct mem_image *back = mem_new ("back", 6 * MiB, 0);
    struct mem_image *dst = mem_new ("dst", 8 * MiB, 64 * KiB);
    struct ferry_copy_options opts = {
      .threads = threads[t], .request_size = 512 * KiB,
    };

    dst->base.backing = &back->base;
    dst->base.zero_initialized = false;
    dst->base.reads_as_backing = true;            /* a new overlay */
    mem_fill (back, 0, 4 * MiB, 7);
    mem_fill (src, 0, 1 * MiB, 7);                /* equal */
    mem_fill (src, 1 * MiB, 1 * MiB, 8);          /* different */
    /* [2M, 3M): hole in the source over backing data: zeroed */
    mem_fill (src, 3 * MiB, 1 * MiB, 7);          /* equal */
    memcpy (src->data + 3 * MiB + 128 * KiB, "x", 1);  /* one cluster */
    mem_fill (src, 5 * MiB, 1 * MiB, 9);          /* over a backing hole */
    /* [6M, 8M): hole in the source past the backing's end: skipped */
    /* A cluster of zeroes written as data, over backing zeroes. */
    memset (src->map + (5 * MiB + 256 * KiB) / MEM_BLOCK, MAP_DATA,
            (64 * KiB) / MEM_BLOCK);
    memset (src->data + 5 * MiB + 256 * KiB, 0, 64 * KiB);

    assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), 0);
    assert_true (mem_untouched (dst, 0, 1 * MiB));
    assert_false (mem_untouched (dst, 1 * MiB, 1 * MiB));
    assert_memory_equal (dst->data + 1 * MiB, src->data + 1 * MiB, 1 * MiB);
    assert_int_equal (dst->map[(2 * MiB) / MEM_BLOCK], MAP_ZERO);
    assert_int_equal (dst->map[(3 * MiB - 1) / MEM_BLOCK], MAP_ZERO);
    assert_true (mem_untouched (dst, 3 * MiB, 128 * KiB));
    assert_false (mem_untouched (dst, 3 * MiB + 128 * KiB, 64 * KiB));
    assert_true (mem_untouched (dst, 3 * MiB + 192 * KiB,
                                1 * MiB - 192 * KiB));
    assert_true (mem_untouched (dst, 4 * MiB, 1 * MiB));
    assert_false (mem_untouched (dst, 5 * MiB, 256 * KiB));
    assert_true (mem_untouched (dst, 5 * MiB + 256 * KiB, 64 * KiB));
    assert_memory_equal (dst->data + 5 * MiB, src->data + 5 * MiB, 1 * MiB);
    assert_true (mem_untouched (dst, 6 * MiB, 2 * MiB));
    assert_int_equal (dst->nr_zero_trim, 0);
    assert_int_equal (dst->overlaps, 0);
    assert_int_equal (back->hole_reads, 0);
    assert_int_equal (src->hole_reads, 0);
    ferry_image_close (&src->base);
    ferry_image_close (&dst->base);     /* closes BACK too */
  }
}

/* An existing overlay (convert -n) holds clusters of its own, so blocks
 * equal to the backing file are written all the same, and zeroes are
 * never trimmed (trimming would show the backing file again). */
static void
test_existing_overlay (void **state)
{
  struct mem_image *src = mem_new ("src", 4 * MiB, 0);
  struct mem_image *back = mem_new ("back", 4 * MiB, 0);
  struct mem_image *dst = mem_new ("dst", 4 * MiB, 64 * KiB);
  struct ferry_copy_options opts = { .threads = 2 };

  dst->base.backing = &back->base;
  dst->base.zero_initialized = false;
  dst->base.reads_as_backing = false;
  mem_fill (back, 0, 2 * MiB, 7);
  mem_fill (src, 0, 1 * MiB, 7);                  /* equal to the backing */
  /* [1M, 4M): a hole in the source, over backing data and beyond it */

  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), 0);
  assert_false (mem_untouched (dst, 0, 1 * MiB));
  assert_memory_equal (dst->data, src->data, 1 * MiB);
  assert_int_equal (dst->map[(1 * MiB) / MEM_BLOCK], MAP_ZERO);
  assert_int_equal (dst->map[(4 * MiB - 1) / MEM_BLOCK], MAP_ZERO);
  assert_int_equal (dst->nr_zero_trim, 0);
  assert_int_equal (back->hole_reads, 0);
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* raw -> qcow2 (plain and compressed) -> raw gives back the same bytes,
 * with the real qcow2 driver behind the engine. */
static void
test_qcow2_round_trip (void **state)
{
  static const char *const options[] = {
    NULL, "cluster_size=4096", "cluster_size=2M",
  };
  char src[300], mid[300], back[300];
  size_t o;
  int compress;

  make_source (tmp_path (src, sizeof src, "src.raw"));
  for (o = 0; o < sizeof options / sizeof options[0]; o++) {
    for (compress = 0; compress <= 1; compress++) {
      struct ferry_copy_options opts = { .threads = 3,
                                         .compress = compress };
      struct ferry_image *s, *d;

      s = ferry_image_open (src, "raw", 0);
      assert_non_null (s);
      d = ferry_image_create (tmp_path (mid, sizeof mid, "mid.qcow2"),
                              "qcow2", SOURCE_SIZE, options[o]);
      if (d == NULL)
        fail_msg ("%s", ferry_get_error ());
      if (ferry_copy (s, d, &opts) == -1)
        fail_msg ("%s", ferry_get_error ());
      assert_int_equal (ferry_image_close (d), 0);
      assert_int_equal (ferry_image_close (s), 0);

      s = ferry_image_open (mid, "qcow2", 0);
      if (s == NULL)
        fail_msg ("%s", ferry_get_error ());
      d = ferry_image_create (tmp_path (back, sizeof back, "back.raw"),
                              "raw", ferry_image_size (s), NULL);
      assert_non_null (d);
      opts.compress = false;
      if (ferry_copy (s, d, &opts) == -1)
        fail_msg ("%s", ferry_get_error ());
      assert_int_equal (ferry_image_close (d), 0);
      assert_int_equal (ferry_image_close (s), 0);
      assert_same_files (src, back);
      assert_true (is_hole (back, 5 * MiB, 14 * MiB));
    }
  }
}

/* Copying an empty image works and reports finished. */
static void
test_empty (void **state)
{
  struct mem_image *src = mem_new ("src", 0, 0);
  struct mem_image *dst = mem_new ("dst", 0, 0);
  struct progress_log log = { .monotonic = true };
  struct ferry_copy_options opts = {
    .progress = log_progress, .progress_opaque = &log,
  };

  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), 0);
  assert_int_equal (log.finished_calls, 1);
  assert_int_equal (log.last.done, 0);
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* What the checkpoint tests see of each call. */
struct ckpt_log {
  struct mem_image *src, *dst;
  unsigned calls;
  uint64_t last;                 /* the last durable */
  int last_flushes;              /* DST's flushes at the last call */
  bool bad;                      /* a call broke a promise (see below) */
  uint64_t first_done;           /* progress: the first call's done */
  bool have_first;
};

/* A checkpoint: DST flushed since the last one, no write running, the
 * offset aligned and ascending, and DST already holding SRC below it. */
static int
log_checkpoint (uint64_t durable, void *opaque)
{
  struct ckpt_log *log = opaque;
  int flushes = __atomic_load_n (&log->dst->nr_flush, __ATOMIC_ACQUIRE);

  if (flushes <= log->last_flushes ||
      __atomic_load_n (&log->dst->writes_now, __ATOMIC_ACQUIRE) != 0 ||
      durable <= log->last || (durable % (64 * KiB) != 0 &&
                               durable != log->src->base.size) ||
      memcmp (log->src->data, log->dst->data, durable) != 0)
    log->bad = true;
  log->last = durable;
  log->last_flushes = flushes;
  log->calls++;
  return 0;
}

/* Copy mem_source with a checkpoint every BYTES or SECONDS, writes
 * taking DELAY_US each: every checkpoint keeps its promises, there are at
 * least MIN_CALLS, and the copy is whole. */
static void
checkpointed_copy (uint64_t bytes, double seconds, unsigned delay_us,
                   unsigned min_calls)
{
  struct mem_image *src = mem_source ();
  struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE, 64 * KiB);
  struct ckpt_log log = { .src = src, .dst = dst };
  struct ferry_copy_options opts = {
    .threads = 4, .request_size = 256 * KiB,
    .checkpoint = log_checkpoint, .checkpoint_opaque = &log,
    .checkpoint_bytes = bytes, .checkpoint_seconds = seconds,
  };

  dst->write_delay_us = delay_us;
  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), 0);
  assert_false (log.bad);
  assert_true (log.calls >= min_calls);
  assert_int_equal (dst->overlaps, 0);
  assert_memory_equal (src->data, dst->data, MEM_SOURCE_SIZE);
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* Checkpoints come every checkpoint_bytes of the source, with every
 * worker idle and the target flushed, and the copy is still whole:
 * 24 MiB in 1 MiB steps, less the holes a step jumps over. */
static void
test_checkpoint_cadence (void **state)
{
  checkpointed_copy (1 * MiB, 0, 2000, 8);
}

/* With checkpoint_bytes out of reach, checkpoint_seconds still makes
 * checkpoints, each a whole one. */
static void
test_checkpoint_seconds (void **state)
{
  checkpointed_copy (1ull << 40, 0.05, 20000, 2);
}

/* Progress of a resumed copy: remember the first done. */
static void
first_progress (const struct ferry_progress *p, void *opaque)
{
  struct ckpt_log *log = opaque;

  if (!log->have_first) {
    log->first_done = p->done;
    log->have_first = true;
  }
}

/* resume_from off the item alignment is rounded down to it: nothing
 * below is written, the block it falls in is, and progress starts at
 * the source's data below it. */
static void
test_resume_alignment (void **state)
{
  struct mem_image *src = mem_source ();
  struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE, 64 * KiB);
  struct ckpt_log log = { .src = src, .dst = dst };
  const uint64_t at = 8 * MiB + 64 * KiB;
  struct ferry_copy_options opts = {
    .threads = 2, .request_size = 256 * KiB,
    .resume_from = at + 5000,
    .progress = first_progress, .progress_opaque = &log,
  };

  /* DST holds SRC below AT, as a checkpoint at AT left it. */
  memcpy (dst->data, src->data, at);
  dst->write_delay_us = 300000;
  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), 0);
  assert_true (mem_untouched (dst, 0, at));
  assert_false (mem_untouched (dst, at, 64 * KiB));
  assert_memory_equal (src->data, dst->data, MEM_SOURCE_SIZE);
  assert_true (log.have_first);
  /* The data below AT: [0, 4 MiB) and [8 MiB, AT). */
  assert_true (log.first_done >= 4 * MiB + 64 * KiB);
  assert_true (log.first_done < MEM_SOURCE_DATA);
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* A cancel makes one last checkpoint, below every item it cut short,
 * and the copy fails with EINTR. */
static void
test_checkpoint_at_cancel (void **state)
{
  struct mem_image *src = mem_source ();
  struct mem_image *dst = mem_new ("dst", MEM_SOURCE_SIZE, 64 * KiB);
  struct ckpt_log log = { .src = src, .dst = dst };
  volatile sig_atomic_t cancel = 0;
  struct progress_log plog = { .monotonic = true, .cancel = &cancel };
  struct ferry_copy_options opts = {
    .threads = 4, .request_size = 256 * KiB, .cancel = &cancel,
    .progress = log_progress, .progress_opaque = &plog,
    .checkpoint = log_checkpoint, .checkpoint_opaque = &log,
    .checkpoint_bytes = 64 * MiB,
  };

  dst->write_delay_us = 100000;
  assert_int_equal (ferry_copy (&src->base, &dst->base, &opts), -1);
  assert_int_equal (ferry_get_errno (), EINTR);
  assert_int_equal (log.calls, 1);
  assert_false (log.bad);
  assert_true (log.last < MEM_SOURCE_SIZE);
  ferry_image_close (&src->base);
  ferry_image_close (&dst->base);
}

/* ----- delta copies: opts->extents with FERRY_EXTENT_SKIP ----- */

/* The delta the skip tests copy, over a source of DELTA_SIZE bytes (a
 * multiple of 512, not of 4 KiB); every byte not listed is SKIP.  The
 * edges fall inside target clusters of every size tried. */
#define DELTA_SIZE (6 * MiB + 2560)
static const struct ferry_extent delta_ranges[] = {
  { 5000, 3000, 0 },                             /* inside one cluster */
  { 70000, 30000, 0 },
  { 100000, 40000, FERRY_EXTENT_ZERO },          /* zeroes in a dirty range */
  { 140000, 130000, 0 },
  { 1 * MiB + 512, 2 * MiB - 612, FERRY_EXTENT_ZERO }, /* whole blocks */
  { DELTA_SIZE - 1500, 1500, 0 },                /* the unaligned end */
};
#define NR_DELTA_RANGES (sizeof delta_ranges / sizeof delta_ranges[0])

/* The delta's extents over [OFFSET, OFFSET+LENGTH): the listed ranges by
 * their flags, the gaps between them SKIP. */
static int
delta_skip_extents (void *opaque, uint64_t offset, uint64_t length,
                    struct ferry_extent_list *list)
{
  uint64_t end = offset + length, pos = offset;
  size_t i;

  for (i = 0; i <= NR_DELTA_RANGES && pos < end; i++) {
    uint64_t rs = i < NR_DELTA_RANGES ? delta_ranges[i].offset : DELTA_SIZE;
    uint64_t re = i < NR_DELTA_RANGES ? rs + delta_ranges[i].length : rs;
    if (rs > pos &&
        ferry_extent_list_append (list, pos, MIN (rs, end) - pos,
                                  FERRY_EXTENT_SKIP) == -1)
      return -1;
    pos = MAX (pos, MIN (rs, end));
    if (re > pos && pos < end) {
      if (ferry_extent_list_append (list, pos, MIN (re, end) - pos,
                                    delta_ranges[i].flags) == -1)
        return -1;
      pos = MIN (re, end);
    }
  }
  return 0;
}

/* Run the shell command made from FMT; its exit status (-1: killed). */
static int __attribute__ ((format (printf, 1, 2)))
run_tool (const char *fmt, ...)
{
  char cmd[2048];
  va_list ap;
  int st;

  va_start (ap, fmt);
  vsnprintf (cmd, sizeof cmd, fmt, ap);
  va_end (ap);
  st = system (cmd);
  return WIFEXITED (st) ? WEXITSTATUS (st) : -1;
}

/* Make PATH, a FORMAT image of DELTA_SIZE bytes (qemu-img create with
 * OPTIONS, or NULL), holding the older data: 0x11 written by qemu-io. */
static void
make_older (const char *path, const char *format, const char *options)
{
  assert_int_equal (run_tool ("qemu-img create -q -f %s %s%s '%s' %llu && "
                              "qemu-io -f %s -c 'write -P 0x11 0 %llu' "
                              "'%s' >/dev/null", format,
                              options ? "-o " : "", options ? options : "",
                              path, DELTA_SIZE, format, DELTA_SIZE, path), 0);
}

/* Write, with qemu-io, the delta's new contents over PATH of FORMAT:
 * 0x22 in its data ranges, zeroes in its zero ranges; STALE also writes
 * 0x33 over [4M, 5M), which the delta skips. */
static void
qemu_io_delta (const char *path, const char *format, bool stale)
{
  char cmds[1024] = "";
  size_t i, n = 0;

  for (i = 0; i < NR_DELTA_RANGES; i++)
    n += snprintf (cmds + n, sizeof cmds - n, " -c '%s %" PRIu64 " %"
                   PRIu64 "'", (delta_ranges[i].flags & FERRY_EXTENT_ZERO)
                   ? "write -z" : "write -P 0x22",
                   delta_ranges[i].offset, delta_ranges[i].length);
  if (stale)
    snprintf (cmds + n, sizeof cmds - n, " -c 'write -P 0x33 %llu %llu'",
              4 * MiB, 1 * MiB);
  assert_int_equal (run_tool ("qemu-io -f %s%s '%s' >/dev/null", format,
                              cmds, path), 0);
}

/* A delta copy whose SKIP ranges start and end inside target clusters,
 * into raw and qcow2 targets (64 KiB and 2 MiB clusters) that hold older
 * data (0x11): the target must end up with the new data over every
 * range copied, zeroes over the zero ranges (never skipped, the target
 * is not blank), and its older data wherever a whole aligned block was
 * skipped, however stale the source is there (a SKIP says the target
 * holds it already).  Judged by qemu-img compare against a raw image
 * that qemu-io wrote with those contents: no cluster half-updated. */
static void
test_delta_skip_unaligned (void **state)
{
  static const struct { const char *format, *options; } targets[] = {
    { "raw", NULL }, { "qcow2", "cluster_size=65536" },
    { "qcow2", "cluster_size=2M" },
  };
  char src[300], expect[300], dst[300];
  size_t t;

  /* The source: the older data, then the delta's, and a stale range. */
  make_older (tmp_path (src, sizeof src, "delta-src.raw"), "raw", NULL);
  qemu_io_delta (src, "raw", true);
  /* What the target must hold: the older data, then the delta's. */
  make_older (tmp_path (expect, sizeof expect, "delta-expect.raw"), "raw",
              NULL);
  qemu_io_delta (expect, "raw", false);

  for (t = 0; t < sizeof targets / sizeof targets[0]; t++) {
    struct ferry_copy_options opts = {
      .threads = 3, .extents = delta_skip_extents, .overwrite = true,
    };
    struct ferry_image *s, *d;

    make_older (tmp_path (dst, sizeof dst, "delta-dst"), targets[t].format,
                targets[t].options);
    s = ferry_image_open (src, "raw", 0);
    assert_non_null (s);
    d = ferry_image_open (dst, targets[t].format, FERRY_OPEN_WRITE);
    if (d == NULL)
      fail_msg ("%s", ferry_get_error ());
    if (ferry_copy (s, d, &opts) == -1)
      fail_msg ("%s: %s", targets[t].format, ferry_get_error ());
    assert_int_equal (ferry_image_close (d), 0);
    assert_int_equal (ferry_image_close (s), 0);
    if (run_tool ("qemu-img compare -q -f raw -F %s '%s' '%s'",
                  targets[t].format, expect, dst) != 0)
      fail_msg ("%s %s: the target is not the older data with the delta "
                "over it", targets[t].format,
                targets[t].options ? targets[t].options : "");
    if (strcmp (targets[t].format, "raw") != 0)
      assert_int_equal (run_tool ("qemu-img check -q -f %s '%s'",
                                  targets[t].format, dst), 0);
  }
}

/* The extents of a snapshot delta alone (opened without its backing
 * file, OPAQUE) as a warm round of a chain copies them: what the delta
 * allocates by its flags, the rest (its parents') SKIP. */
static int
layer_skip_extents (void *opaque, uint64_t offset, uint64_t length,
                    struct ferry_extent_list *list)
{
  struct ferry_extent_list l = { 0 };
  size_t i;
  int r = 0;

  if (ferry_image_extents (opaque, offset, length, &l) == -1)
    return -1;
  for (i = 0; i < l.len && r == 0; i++)
    r = ferry_extent_list_append (list, l.ptr[i].offset, l.ptr[i].length,
                                  (l.ptr[i].flags & FERRY_EXTENT_HOLE)
                                  ? FERRY_EXTENT_SKIP : l.ptr[i].flags);
  ferry_extent_list_free (&l);
  return r;
}

/* Copy the delta LAYER's own clusters, read through its chain, into the
 * qcow2 TARGET. */
static void
copy_layer_into (const char *layer, const char *target)
{
  struct ferry_copy_options opts = { .threads = 3, .overwrite = true,
                                     .extents = layer_skip_extents };
  struct ferry_image *src = ferry_image_open (layer, "qcow2", 0);
  struct ferry_image *alone = ferry_image_open (layer, "qcow2",
                                                FERRY_OPEN_NO_BACKING);
  struct ferry_image *dst = ferry_image_open (target, "qcow2",
                                              FERRY_OPEN_WRITE);

  if (src == NULL || alone == NULL || dst == NULL)
    fail_msg ("%s", ferry_get_error ());
  opts.extents_opaque = alone;
  if (ferry_copy (src, dst, &opts) == -1)
    fail_msg ("%s: %s", layer, ferry_get_error ());
  assert_int_equal (ferry_image_close (dst), 0);
  assert_int_equal (ferry_image_close (alone), 0);
  assert_int_equal (ferry_image_close (src), 0);
}

/* A chain's deltas copied as a warm round copies them (each delta's own
 * 4 KiB clusters, read through its own chain, oldest first) into a target
 * whose 2 MiB clusters each hold several of the deltas' clusters and the
 * base's data around them: after each delta the target equals that
 * delta's chain, as qemu-img compare says.  (A delta's zero clusters,
 * which these extents would skip, are warm.c's to tell apart: the
 * warm-chain test has them.) */
static void
test_delta_layers_big_clusters (void **state)
{
  char base[300], d1[300], d2[300], dst[300];

  tmp_path (base, sizeof base, "layer-base.qcow2");
  tmp_path (d1, sizeof d1, "layer-d1.qcow2");
  tmp_path (d2, sizeof d2, "layer-d2.qcow2");
  tmp_path (dst, sizeof dst, "layer-dst.qcow2");
  assert_int_equal (run_tool (
    "qemu-img create -q -f qcow2 '%s' 8M && "
    "qemu-io -f qcow2 -c 'write -P 0x11 0 8M' '%s' >/dev/null && "
    "qemu-img create -q -f qcow2 -o cluster_size=4096 -b '%s' -F qcow2 '%s' && "
    "qemu-io -f qcow2 -c 'write -P 0x22 70000 5000' "
    "-c 'write -P 0x22 3146240 100' "
    "'%s' >/dev/null && "
    "qemu-img create -q -f qcow2 -o cluster_size=4096 -b '%s' -F qcow2 '%s' && "
    "qemu-io -f qcow2 -c 'write -P 0x33 72000 100' "
    "-c 'write -P 0x33 6291456 4096' "
    "'%s' >/dev/null && "
    "qemu-img convert -f qcow2 -O qcow2 -o cluster_size=2M '%s' '%s'",
    base, base, base, d1, d1, d1, d2, d2, base, dst), 0);

  copy_layer_into (d1, dst);
  if (run_tool ("qemu-img compare -q '%s' '%s'", d1, dst) != 0)
    fail_msg ("after the first delta, the target is not its chain");
  copy_layer_into (d2, dst);
  if (run_tool ("qemu-img compare -q '%s' '%s'", d2, dst) != 0)
    fail_msg ("after the second delta, the target is not its chain");
  assert_int_equal (run_tool ("qemu-img check -q '%s'", dst), 0);
}

/* Run every test, with the temporary directory around them. */
int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_raw_to_raw),
    cmocka_unit_test (test_raw_to_dirty_target),
    cmocka_unit_test (test_never_reads_holes),
    cmocka_unit_test (test_zeroes_on_dirty_target),
    cmocka_unit_test (test_cluster_alignment),
    cmocka_unit_test (test_progress),
    cmocka_unit_test (test_cancel),
    cmocka_unit_test (test_request_stop),
    cmocka_unit_test (test_read_error),
    cmocka_unit_test (test_write_error),
    cmocka_unit_test (test_parallel),
    cmocka_unit_test (test_compressed_order),
    cmocka_unit_test (test_compress_refused),
    cmocka_unit_test (test_target_too_small),
    cmocka_unit_test (test_backing),
    cmocka_unit_test (test_existing_overlay),
    cmocka_unit_test (test_qcow2_round_trip),
    cmocka_unit_test (test_empty),
    cmocka_unit_test (test_checkpoint_cadence),
    cmocka_unit_test (test_checkpoint_seconds),
    cmocka_unit_test (test_resume_alignment),
    cmocka_unit_test (test_checkpoint_at_cancel),
    cmocka_unit_test (test_delta_skip_unaligned),
    cmocka_unit_test (test_delta_layers_big_clusters),
  };
  return cmocka_run_group_tests (tests, make_scratch_dir, remove_scratch_dir);
}
