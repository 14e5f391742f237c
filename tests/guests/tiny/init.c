/* init.c: /init of the tiny test guest (tests/guests/make-tiny.sh), a
 * static program that is the whole user space of a kernel+initramfs guest
 * booting in seconds under TCG.  It loads the virtio modules the
 * initramfs holds, waits for /dev/vda and, by the kernel command line:
 *
 *   ferry.mode=write  appends numbered 4 KiB records to the records region
 *                     of /dev/vda, each made durable (fdatasync) before it
 *                     is announced as "FERRY-REC n" on the console, and
 *                     between records rewrites a random 64 KiB block of the
 *                     rewrite region with random bytes;
 *   ferry.mode=check  finds the last record n such that records 0..n are
 *                     all whole, prints "FERRY-LAST n" (-1: none) and
 *                     powers off;
 *   ferry.mode=idle   prints "FERRY-READY" and sleeps (the default; it
 *                     does not wait for a disk).
 *
 * In write and idle modes the ACPI power button (QMP system_powerdown)
 * shuts the guest down as a real one would: the writer finishes what it is
 * writing, prints "FERRY-SHUTDOWN n" (n: its last announced record, -1 for
 * none) and powers off.
 *
 * Options: ferry.region=MiB (the length of each region, 64 by default: the
 * records are [0, R), the rewrites [R, 2R)), ferry.records=MiB (the records
 * region alone: the rewrites then start where it ends), ferry.rate=KiB (KiB per second of all writes, records and
 * rewrites together, 1024 by default; 0 writes as fast as it can).  Each
 * record is followed by one rewrite: 4 KiB of every 68 KiB written are
 * records, so at the default pace it appends 15 records a second and the
 * 64 MiB records region lasts 18 minutes (then "FERRY-FULL", and the
 * rewrites go on).  It writes nothing outside the two regions.
 *
 * The console lines are the interface to the tests (tests/shell/warm-lib.sh):
 *   FERRY-ID hex      the boot's random id, stamped in its records
 *   FERRY-READY       the workload starts (write) or the guest is up (idle)
 *   FERRY-REC n       record n is durable on the disk
 *   FERRY-FULL n      the records region is full after record n; the
 *                     rewrites go on
 *   FERRY-LAST n      (check) records 0..n are whole, n+1 is not
 *   FERRY-SHUTDOWN n  the power button was pressed; n was the last record
 *   FERRY-ERROR text  what went wrong; the guest then powers off
 *
 * NOTES ON THE ORDERING
 * 1. A record is written with O_DIRECT, then fdatasync'd (which the block
 *    layer turns into a flush of the virtual disk's cache), and only once
 *    fdatasync returned is its line printed: an announced record is one the
 *    virtual disk promised to keep.  Record n+1 is not written before
 *    record n was announced, so when the VM is stopped the disk holds the
 *    announced records and at most one more.
 * 2. The rewrites go through O_DIRECT too, so each reaches the virtual disk
 *    when written (not 30 s later by the page cache's writeback, and not
 *    merged there): what the host sees dirtied is what the workload wrote.
 * 3. The records of one boot carry its id: a check stops at a record of
 *    another boot, so a disk written twice is judged by its last writer.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/input.h>
#include <poll.h>
#include <signal.h>

#define RECORD_SIZE 4096
#define REWRITE_SIZE (64 * 1024)
#define MODULES_DIR "/modules"
#define DISK "/dev/vda"
#define DISK_WAIT_S 30
#define MAX_INPUTS 8
/* "FERRYREC" read as a little-endian 64-bit number. */
#define RECORD_MAGIC UINT64_C(0x4345525952524546)

/* The head of a record; the rest of its 4 KiB is a pattern of its number. */
struct record {
  uint64_t magic;               /* RECORD_MAGIC */
  uint64_t seq;                 /* its number, from 0 */
  uint64_t boot_id;             /* the writing boot's random id */
  uint64_t checksum;            /* record_checksum of the 4 KiB */
};

/* What the kernel command line asks. */
struct options {
  char mode[16];
  uint64_t records_len;         /* bytes of the records region */
  uint64_t rewrite_len;         /* bytes of the rewrite region */
  uint64_t rate;                /* bytes per second; 0: unpaced */
};

/* Set by SIGTERM, which the power button's watcher sends (see
 * watch_power_button). */
static volatile sig_atomic_t shutdown_asked;

/* Print one line on the console (fd 1) in a single write. */
static void
say (const char *fmt, ...)
{
  char line[256];
  va_list ap;
  int n;

  va_start (ap, fmt);
  n = vsnprintf (line, sizeof line - 1, fmt, ap);
  va_end (ap);
  if (n < 0)
    return;
  if (n > (int) sizeof line - 2)
    n = sizeof line - 2;
  line[n++] = '\n';
  if (write (1, line, n) == -1) {
    /* Nowhere else to say it. */
  }
}

/* Power the VM off; if that fails, sleep for ever (init must not exit). */
static void __attribute__ ((noreturn))
power_off (void)
{
  sync ();
  reboot (RB_POWER_OFF);
  for (;;)
    pause ();
}

/* Say what went wrong, with errno's text, and power off. */
static void __attribute__ ((noreturn))
fail (const char *what)
{
  say ("FERRY-ERROR %s: %s", what, strerror (errno));
  power_off ();
}

/* Mount the kernel's file systems and make fd 0-2 the console, with no
 * output processing (lines end in \n, not \r\n). */
static void
setup_console (void)
{
  struct termios t;
  int fd;

  mkdir ("/dev", 0755);
  mkdir ("/proc", 0755);
  mkdir ("/sys", 0755);
  mount ("devtmpfs", "/dev", "devtmpfs", 0, NULL);
  mount ("proc", "/proc", "proc", 0, NULL);
  mount ("sysfs", "/sys", "sysfs", 0, NULL);
  fd = open ("/dev/console", O_RDWR | O_NOCTTY);
  if (fd >= 0) {
    dup2 (fd, 0);
    dup2 (fd, 1);
    dup2 (fd, 2);
    if (fd > 2)
      close (fd);
  }
  if (tcgetattr (1, &t) == 0) {
    t.c_oflag &= ~OPOST;
    tcsetattr (1, TCSANOW, &t);
  }
}

/* The value of KEY=VALUE on the kernel command line into VALUE (of SIZE
 * bytes); false when it is not there. */
static bool
cmdline_get (const char *cmdline, const char *key, char *value, size_t size)
{
  size_t klen = strlen (key);
  const char *p = cmdline;

  while ((p = strstr (p, key)) != NULL) {
    if ((p == cmdline || p[-1] == ' ') && p[klen] == '=') {
      size_t n = strcspn (p + klen + 1, " \n");
      if (n >= size)
        n = size - 1;
      memcpy (value, p + klen + 1, n);
      value[n] = '\0';
      return true;
    }
    p += klen;
  }
  return false;
}

/* A number option KEY of the command line, DEFAULT_VALUE when absent;
 * powers off on a value that is not a number. */
static uint64_t
cmdline_number (const char *cmdline, const char *key, uint64_t default_value)
{
  char value[32], *end;
  unsigned long long n;

  if (!cmdline_get (cmdline, key, value, sizeof value))
    return default_value;
  errno = 0;
  n = strtoull (value, &end, 10);
  if (errno != 0 || end == value || *end != '\0') {
    say ("FERRY-ERROR %s=%s is not a whole number", key, value);
    power_off ();
  }
  return n;
}

/* Read the options from /proc/cmdline. */
static void
read_options (struct options *o)
{
  char cmdline[4096] = "";
  uint64_t region;
  ssize_t n;
  int fd;

  fd = open ("/proc/cmdline", O_RDONLY);
  if (fd == -1)
    fail ("/proc/cmdline");
  n = read (fd, cmdline, sizeof cmdline - 1);
  close (fd);
  if (n > 0)
    cmdline[n] = '\0';
  if (!cmdline_get (cmdline, "ferry.mode", o->mode, sizeof o->mode))
    strcpy (o->mode, "idle");
  region = cmdline_number (cmdline, "ferry.region", 64);
  o->records_len = cmdline_number (cmdline, "ferry.records", region) << 20;
  o->rewrite_len = region << 20;
  o->rate = cmdline_number (cmdline, "ferry.rate", 1024) << 10;
  if (o->records_len < RECORD_SIZE || o->rewrite_len < REWRITE_SIZE) {
    say ("FERRY-ERROR ferry.region and ferry.records must be at least 1 MiB");
    power_off ();
  }
}

/* Load each module of MODULES_DIR, in the order of their names (make-tiny.sh
 * numbers them so that each comes after what it depends on). */
static void
load_modules (void)
{
  struct dirent **names;
  char path[512];
  int i, n, fd;

  n = scandir (MODULES_DIR, &names, NULL, alphasort);
  if (n == -1)
    fail (MODULES_DIR);
  for (i = 0; i < n; i++) {
    if (names[i]->d_name[0] != '.') {
      snprintf (path, sizeof path, "%s/%s", MODULES_DIR, names[i]->d_name);
      fd = open (path, O_RDONLY | O_CLOEXEC);
      if (fd == -1)
        fail (path);
      if (syscall (SYS_finit_module, fd, "", 0) == -1 && errno != EEXIST) {
        say ("FERRY-ERROR loading %s: %s", path, strerror (errno));
        power_off ();
      }
      close (fd);
    }
    free (names[i]);
  }
  free (names);
}

/* The SIGTERM handler: ask the workload to shut down. */
static void
on_sigterm (int sig)
{
  (void) sig;
  shutdown_asked = 1;
}

/* Fork a watcher of the input devices (the ACPI power button among them,
 * from the button and evdev modules) that sends SIGTERM to init when the
 * power key is pressed.  Without the devices there is no graceful
 * shutdown, only QMP's stop or quit. */
static void
watch_power_button (void)
{
  struct sigaction sa = { .sa_handler = on_sigterm, .sa_flags = SA_RESTART };
  struct pollfd fds[MAX_INPUTS];
  struct input_event ev;
  struct timespec tick = { 0, 100 * 1000 * 1000 };
  char path[64];
  int i, n = 0, tries;

  sigaction (SIGTERM, &sa, NULL);
  if (fork () != 0)
    return;
  /* The event devices show up once devtmpfs made their nodes. */
  for (tries = 0; n == 0 && tries < 50; tries++) {
    for (i = 0; i < MAX_INPUTS && n < MAX_INPUTS; i++) {
      snprintf (path, sizeof path, "/dev/input/event%d", i);
      fds[n].fd = open (path, O_RDONLY | O_CLOEXEC);
      if (fds[n].fd >= 0)
        fds[n++].events = POLLIN;
    }
    if (n == 0)
      nanosleep (&tick, NULL);
  }
  if (n == 0)
    _exit (0);
  for (;;) {
    if (poll (fds, n, -1) == -1)
      _exit (0);
    for (i = 0; i < n; i++) {
      if ((fds[i].revents & POLLIN) &&
          read (fds[i].fd, &ev, sizeof ev) == sizeof ev &&
          ev.type == EV_KEY && ev.code == KEY_POWER && ev.value == 1) {
        kill (1, SIGTERM);
        _exit (0);
      }
    }
  }
}

/* Open DISK once devtmpfs shows it (the virtio probe runs after the module
 * loaded); powers off when it does not come. */
static int
open_disk (int flags)
{
  struct timespec tick = { 0, 50 * 1000 * 1000 };
  int i, fd;

  for (i = 0; i < DISK_WAIT_S * 20; i++) {
    fd = open (DISK, flags);
    if (fd >= 0)
      return fd;
    nanosleep (&tick, NULL);
  }
  say ("FERRY-ERROR no %s after %d s", DISK, DISK_WAIT_S);
  power_off ();
}

/* A 64-bit FNV-1a hash of the record at BUF with its checksum taken as 0. */
static uint64_t
record_checksum (const unsigned char *buf)
{
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  size_t i;

  for (i = 0; i < RECORD_SIZE; i++) {
    unsigned char c = buf[i];
    if (i >= offsetof (struct record, checksum) &&
        i < offsetof (struct record, checksum) + 8)
      c = 0;
    h = (h ^ c) * UINT64_C(0x100000001b3);
  }
  return h;
}

/* Fill BUF with record SEQ of boot BOOT_ID. */
static void
record_make (unsigned char *buf, uint64_t seq, uint64_t boot_id)
{
  struct record r = { RECORD_MAGIC, seq, boot_id, 0 };
  size_t i;

  for (i = sizeof r; i < RECORD_SIZE; i++)
    buf[i] = (unsigned char) (seq * 131 + i);
  memcpy (buf, &r, sizeof r);
  r.checksum = record_checksum (buf);
  memcpy (buf, &r, sizeof r);
}

/* True when BUF holds a whole record SEQ of boot BOOT_ID. */
static bool
record_valid (const unsigned char *buf, uint64_t seq, uint64_t boot_id)
{
  struct record r;

  memcpy (&r, buf, sizeof r);
  return r.magic == RECORD_MAGIC && r.seq == seq && r.boot_id == boot_id &&
    r.checksum == record_checksum (buf);
}

/* xorshift64*: the random numbers of the rewrites (fast; not for secrets). */
static uint64_t
next_random (uint64_t *state)
{
  *state ^= *state >> 12;
  *state ^= *state << 25;
  *state ^= *state >> 27;
  return *state * UINT64_C(0x2545f4914f6cdd1d);
}

/* Seconds since boot, monotonic. */
static double
now_s (void)
{
  struct timespec t;

  clock_gettime (CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

/* Sleep until WRITTEN bytes are no more than RATE allows since *START.  A
 * writer more than a second behind (a VM slowed down by its host) forgets
 * the rest of its debt, moving *START: it never bursts to catch up. */
static void
pace (uint64_t written, uint64_t rate, double *start)
{
  double due, ahead;
  struct timespec t;

  if (rate == 0)
    return;
  due = *start + (double) written / rate;
  ahead = due - now_s ();
  if (ahead < -1.0)
    *start -= ahead + 1.0;
  if (ahead > 0) {
    t.tv_sec = (time_t) ahead;
    t.tv_nsec = (long) ((ahead - t.tv_sec) * 1e9);
    nanosleep (&t, NULL);
  }
}

/* pwrite all of LEN bytes at OFFSET, or power off naming WHAT. */
static void
write_at (int fd, const void *buf, size_t len, uint64_t offset,
          const char *what)
{
  ssize_t n = pwrite (fd, buf, len, offset);

  if (n != (ssize_t) len) {
    if (n >= 0)
      errno = EIO;
    fail (what);
  }
}

/* The write workload (see the top): never returns. */
static void __attribute__ ((noreturn))
run_write (const struct options *o)
{
  uint64_t disk_size = 0, boot_id, state, seq = 0, written = 0, nr_blocks;
  unsigned char *record, *block;
  bool full = false;
  double start;
  size_t i;
  int fd;

  fd = open_disk (O_RDWR | O_DIRECT | O_CLOEXEC);
  if (ioctl (fd, BLKGETSIZE64, &disk_size) == -1)
    fail ("BLKGETSIZE64 " DISK);
  if (disk_size < o->records_len + o->rewrite_len) {
    say ("FERRY-ERROR " DISK " has %" PRIu64 " bytes, the regions need %"
         PRIu64, disk_size, o->records_len + o->rewrite_len);
    power_off ();
  }
  if (posix_memalign ((void **) &record, 4096, RECORD_SIZE) != 0 ||
      posix_memalign ((void **) &block, 4096, REWRITE_SIZE) != 0)
    fail ("posix_memalign");
  if (getrandom (&boot_id, sizeof boot_id, 0) != sizeof boot_id)
    fail ("getrandom");
  state = boot_id | 1;
  nr_blocks = o->rewrite_len / REWRITE_SIZE;
  say ("FERRY-ID %016" PRIx64, boot_id);
  say ("FERRY-READY");
  start = now_s ();
  for (;;) {
    if (shutdown_asked) {
      say ("FERRY-SHUTDOWN %" PRId64, (int64_t) seq - 1);
      close (fd);
      power_off ();
    }
    if (!full) {
      record_make (record, seq, boot_id);
      write_at (fd, record, RECORD_SIZE, seq * RECORD_SIZE, "writing a record");
      if (fdatasync (fd) == -1)
        fail ("fdatasync " DISK);
      say ("FERRY-REC %" PRIu64, seq);
      written += RECORD_SIZE;
      seq++;
      if (seq * RECORD_SIZE + RECORD_SIZE > o->records_len) {
        say ("FERRY-FULL %" PRIu64, seq - 1);
        full = true;
      }
      pace (written, o->rate, &start);
    }
    for (i = 0; i < REWRITE_SIZE / 8; i++) {
      uint64_t r = next_random (&state);
      memcpy (block + i * 8, &r, 8);
    }
    write_at (fd, block, REWRITE_SIZE,
              o->records_len + next_random (&state) % nr_blocks * REWRITE_SIZE,
              "rewriting a block");
    written += REWRITE_SIZE;
    pace (written, o->rate, &start);
  }
}

/* The check (see the top): prints FERRY-LAST and powers off. */
static void __attribute__ ((noreturn))
run_check (const struct options *o)
{
  const size_t chunk = 1 << 20;
  uint64_t boot_id = 0, seq = 0, offset;
  unsigned char *buf;
  ssize_t n;
  size_t i;
  int fd;

  fd = open_disk (O_RDONLY | O_CLOEXEC);
  buf = malloc (chunk);
  if (buf == NULL)
    fail ("malloc");
  for (offset = 0; offset < o->records_len; offset += chunk) {
    n = pread (fd, buf, chunk, offset);
    if (n < 0)
      fail ("reading " DISK);
    for (i = 0; i + RECORD_SIZE <= (size_t) n &&
           offset + i + RECORD_SIZE <= o->records_len; i += RECORD_SIZE) {
      if (seq == 0)
        memcpy (&boot_id, buf + i + offsetof (struct record, boot_id), 8);
      if (!record_valid (buf + i, seq, boot_id))
        goto done;
      seq++;
    }
    if ((size_t) n < chunk)
      break;
  }
 done:
  if (seq > 0)
    say ("FERRY-ID %016" PRIx64, boot_id);
  say ("FERRY-LAST %" PRId64, (int64_t) seq - 1);
  power_off ();
}

/* The initramfs's /init. */
int
main (void)
{
  struct options o;

  setup_console ();
  read_options (&o);
  load_modules ();
  if (strcmp (o.mode, "write") == 0) {
    watch_power_button ();
    run_write (&o);
  }
  if (strcmp (o.mode, "check") == 0)
    run_check (&o);
  if (strcmp (o.mode, "idle") != 0) {
    say ("FERRY-ERROR ferry.mode=%s: not write, check or idle", o.mode);
    power_off ();
  }
  watch_power_button ();
  say ("FERRY-READY");
  while (!shutdown_asked)
    pause ();
  say ("FERRY-SHUTDOWN -1");
  power_off ();
}
