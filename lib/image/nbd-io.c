/* nbd driver: the requests and the event loop that carries them.
 *
 * Every caller (the copy engine's workers, the nbdkit plugin's threads)
 * issues its requests with libnbd's nbd_aio_* calls, many at once and
 * spread over the connections, and waits for them.  libnbd handles are
 * thread-safe, so any thread may issue on any connection; the replies are
 * read by whichever waiting thread holds the poller role at the time.
 *
 * NOTES ON THE DESIGN
 *
 * 1. One thread at a time polls (n->polling, under n->lock).  It polls
 *    every connection's socket and the wake eventfd without holding
 *    libnbd's handle lock (nbd_poll would hold it in poll() and keep every
 *    other thread from issuing), then calls nbd_aio_notify_read/write.
 *    Completion callbacks therefore run on the poller's thread: they
 *    count the owner's batch down under n->lock and wake it.  Other
 *    waiters sleep on n->cond; the poller gives the role up after every
 *    round (broadcast), so when its own batch is done another waiter
 *    takes over.
 *
 * 2. Lock order: libnbd's handle lock, then n->lock (callbacks run under
 *    the first and take the second), so n->lock is never held across a
 *    libnbd call.
 *
 * 3. A thread that issues a request and leaves the handle wanting to
 *    write (the send would have blocked) wakes the poller through the
 *    eventfd, so it polls for POLLOUT too.  Otherwise the request went out
 *    whole and its reply wakes the poller by itself.
 *
 *    A reply may also be read by a thread that is issuing (libnbd runs
 *    its state machine there too, e.g. on data TLS had buffered): a
 *    completion that runs outside the poller's round wakes the poller
 *    through the eventfd as well, and poll() has a timeout besides, so no
 *    wake-up is ever lost for long.
 *
 * 4. A batch always waits for all of its requests, even after a failure:
 *    libnbd holds pointers into the caller's buffer until the reply or
 *    the death of the connection, and it completes every request of a
 *    dead connection with ENOTCONN, so the wait ends.
 *
 * 5. Requests obey the server's block sizes: reads and writes are split
 *    at request_size (never above the server's maximum), and everything
 *    is aligned to its minimum.  A range that is not aligned goes through
 *    a bounce buffer of whole blocks; a write does read-modify-write of
 *    them under rmw_lock.  The driver reports min_block as its cluster
 *    size, so the copy engine keeps two threads out of one block anyway.
 *
 * 6. No wait is endless.  A batch fails when none of its requests got a
 *    reply for request_timeout seconds (the clock restarts at each
 *    reply, so a slow but working server is never cut off), and every
 *    wait ends on a stop request (ferry_request_stop: the poller has the
 *    stop eventfd in its set, the others wake at least every second).
 *    libnbd 1.14 has no way to cancel a request, and note 4 forbids
 *    leaving one behind, so giving up means ending the connections:
 *    nbd_io_abort shuts down our duplicate of each socket (n->socks; a
 *    dup, so that the number can never name another file by then), the
 *    poller sees the hang-up, libnbd declares the connection dead and
 *    completes what was in flight with ENOTCONN, and the batch's wait
 *    ends as note 4 wants.  The reason is kept in n->lost, so every
 *    later request fails at once and says why.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nbd-internal.h"
#include "../common/cleanup.h"
#include "../common/stop.h"
#include "../common/util.h"

/* One caller's requests in flight: WHAT of COUNT bytes at OFFSET. */
struct batch {
  struct nbd_image *n;
  const char *what;
  uint64_t count, offset;
  double timeout;              /* seconds without a reply; 0: none */
  unsigned pending;            /* under n->lock */
  unsigned wake_at;            /* wake the owner when pending drops to it */
  int err;                     /* first error a reply carried */
  double last_reply;           /* under n->lock: start, or the last reply */
  bool timed_out;              /* under n->lock: this batch gave up */
};

/* One block status request: where its extents go. */
struct status_request {
  struct batch *b;
  const char *context;
  uint64_t start, end;         /* the range asked for */
  uint64_t reached;            /* extents appended up to here */
  struct ferry_extent_list *list;
  int err;                     /* ENOMEM while appending */
};

enum op { OP_READ, OP_WRITE, OP_ZERO };

/* Longest poll() of one round (note 3): a safety net only. */
#define POLL_TIMEOUT_MS 1000

/* The batch of WHAT of COUNT bytes at OFFSET, with its deadline. */
#define BATCH(n_, what_, count_, offset_, timeout_)                     \
  { .n = (n_), .what = (what_), .count = (count_), .offset = (offset_), \
    .timeout = (timeout_), .last_reply = now_seconds () }

/* True on the thread that is in the poller's round (note 3). */
static __thread bool in_poll_round;

int
nbd_io_init (struct nbd_image *n)
{
  n->wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (n->wake_fd == -1)
    return ferry_error_errno (errno, "%s: eventfd", n->base.path);
  pthread_mutex_init (&n->lock, NULL);
  {
    pthread_condattr_t attr;   /* batch_wait's deadlines are monotonic */
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&n->cond, &attr);
    pthread_condattr_destroy (&attr);
  }
  pthread_mutex_init (&n->rmw_lock, NULL);
  return 0;
}

void
nbd_io_fini (struct nbd_image *n)
{
  unsigned i;

  for (i = 0; i < NBD_MAX_CONNECTIONS; i++)
    if (n->socks[i] >= 0)
      close (n->socks[i]);
  if (n->wake_fd >= 0) {
    close (n->wake_fd);
    pthread_mutex_destroy (&n->lock);
    pthread_cond_destroy (&n->cond);
    pthread_mutex_destroy (&n->rmw_lock);
  }
  free (n->lost);
}

/* Remember why a connection died (the first reason only). */
static void
note_lost (struct nbd_image *n, const char *why)
{
  pthread_mutex_lock (&n->lock);
  if (n->lost == NULL)
    n->lost = strdup (why && *why ? why : "connection closed");
  pthread_mutex_unlock (&n->lock);
}

/* True when the handle can carry no more requests. */
static bool
is_gone (struct nbd_handle *h)
{
  return nbd_aio_is_dead (h) || nbd_aio_is_closed (h);
}

/* The pollfd for handle H: its socket and the direction it waits for. */
static void
handle_pollfd (struct nbd_handle *h, struct pollfd *p)
{
  unsigned dir = nbd_aio_get_direction (h);

  p->fd = is_gone (h) ? -1 : nbd_aio_get_fd (h);
  p->events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
    ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0);
  p->revents = 0;
}

/* Tell H what poll found; -1 when the connection died.  A hang-up or an
 * error goes to the side H waits on: a handle blocked in sending only
 * (a server that stopped reading, a socket nbd_io_abort shut down) learns
 * of it from its next send. */
static int
notify_handle (struct nbd_handle *h, short revents)
{
  unsigned dir = nbd_aio_get_direction (h);
  bool hup = revents & (POLLHUP | POLLERR);

  if ((revents & POLLIN) || (hup && (dir & LIBNBD_AIO_DIRECTION_READ)))
    return nbd_aio_notify_read (h);
  if ((revents & POLLOUT) || (hup && (dir & LIBNBD_AIO_DIRECTION_WRITE)))
    return nbd_aio_notify_write (h);
  if (hup)
    return nbd_aio_notify_read (h);
  return 0;
}

/* One round of the event loop over every connection (note 1), at most
 * WAIT_MS.  The stop eventfd is in the set until the connections are
 * aborted (after that it would never let poll() sleep). */
static void
poll_once (struct nbd_image *n, int wait_ms)
{
  struct pollfd fds[NBD_MAX_CONNECTIONS + 2];
  unsigned i, nr = n->nr_conns;

  for (i = 0; i < nr; i++)
    handle_pollfd (n->conns[i], &fds[i]);
  fds[nr].fd = n->wake_fd;
  fds[nr].events = POLLIN;
  fds[nr].revents = 0;
  fds[nr + 1].fd = __atomic_load_n (&n->aborted, __ATOMIC_ACQUIRE) ? -1
    : stop_fd ();
  fds[nr + 1].events = POLLIN;
  fds[nr + 1].revents = 0;
  if (poll (fds, nr + 2, wait_ms) == -1)
    return;                     /* EINTR: the caller goes round again */
  in_poll_round = true;
  for (i = 0; i < nr; i++)
    if (fds[i].fd >= 0 && fds[i].revents &&
        notify_handle (n->conns[i], fds[i].revents) == -1)
      note_lost (n, nbd_get_error ());
  in_poll_round = false;
  if (fds[nr].revents & POLLIN) {
    uint64_t v;
    if (read (n->wake_fd, &v, sizeof v) == -1) {
      /* EAGAIN: another round emptied it first. */
    }
  }
}

/* True when every connection is gone, so nothing in flight can finish
 * except by the abort libnbd already did. */
static bool
all_gone (struct nbd_image *n)
{
  unsigned i;

  for (i = 0; i < n->nr_conns; i++)
    if (!is_gone (n->conns[i]))
      return false;
  return true;
}

/* Interrupt the poller's poll(). */
static void
wake_poller (struct nbd_image *n)
{
  uint64_t one = 1;

  if (write (n->wake_fd, &one, sizeof one) == -1) {
    /* EAGAIN: the counter is full, so the poller is awake already. */
  }
}

/* nbd_io_abort, with n->lock held. */
static void
abort_locked (struct nbd_image *n, int err, const char *why)
{
  unsigned i;

  if (__atomic_load_n (&n->aborted, __ATOMIC_ACQUIRE))
    return;
  free (n->lost);
  n->lost = strdup (why);
  __atomic_store_n (&n->aborted, err, __ATOMIC_RELEASE);
  for (i = 0; i < NBD_MAX_CONNECTIONS; i++)
    if (n->socks[i] >= 0)
      shutdown (n->socks[i], SHUT_RDWR);
  wake_poller (n);
}

void
nbd_io_abort (struct nbd_image *n, int err, const char *why)
{
  pthread_mutex_lock (&n->lock);
  abort_locked (n, err, why);
  pthread_mutex_unlock (&n->lock);
}

/* Give up on the connections when a stop was requested or B has waited
 * too long for a reply (note 6).  Called under n->lock.  Returns the
 * seconds left to B's deadline (a large number when none). */
static double
check_deadline (struct batch *b)
{
  struct nbd_image *n = b->n;
  double left;

  if (__atomic_load_n (&n->aborted, __ATOMIC_ACQUIRE))
    return 1e9;
  if (stop_requested ()) {
    abort_locked (n, EINTR, "interrupted");
    return 1e9;
  }
  if (b->timeout <= 0)
    return 1e9;
  left = b->last_reply + b->timeout - now_seconds ();
  if (left <= 0) {
    char why[256];

    snprintf (why, sizeof why, "%s of %" PRIu64 " bytes at offset 0x%" PRIx64
              " got no reply in %g s", b->what, b->count, b->offset,
              b->timeout);
    b->timed_out = true;
    abort_locked (n, ETIMEDOUT, why);
    return 1e9;
  }
  return left;
}

/* Milliseconds to wait for at most: LEFT seconds, and never more than
 * POLL_TIMEOUT_MS. */
static int
wait_ms (double left)
{
  return left * 1000 >= POLL_TIMEOUT_MS ? POLL_TIMEOUT_MS
    : (int) (left * 1000) + 1;
}

/* Wait until at most LIMIT of B's requests are in flight, polling when
 * no one else is (note 1), and giving up as note 6 says.  Returns B's
 * first error (ETIMEDOUT when it timed out itself), or 0. */
static int
batch_wait (struct batch *b, unsigned limit)
{
  struct nbd_image *n = b->n;
  int err;

  pthread_mutex_lock (&n->lock);
  b->wake_at = limit;
  while (b->pending > limit) {
    double left = check_deadline (b);

    if (n->polling) {
      struct timespec ts;
      int ms = wait_ms (left);

      clock_gettime (CLOCK_MONOTONIC, &ts);
      ts.tv_sec += ms / 1000;
      ts.tv_nsec += (long) (ms % 1000) * 1000000;
      if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
      }
      pthread_cond_timedwait (&n->cond, &n->lock, &ts);
      continue;
    }
    n->polling = true;
    pthread_mutex_unlock (&n->lock);
    poll_once (n, wait_ms (left));
    pthread_mutex_lock (&n->lock);
    n->polling = false;
    pthread_cond_broadcast (&n->cond);
    if (b->pending > limit && all_gone (n)) {
      /* Cannot happen (note 4), but never wait for a dead socket. */
      b->pending = 0;
      if (b->err == 0)
        b->err = ENOTCONN;
    }
  }
  err = b->timed_out ? ETIMEDOUT : b->err;
  pthread_mutex_unlock (&n->lock);
  return err;
}

/* Completion callback of every request: count the batch down, and wake
 * its owner (note 3 when it may be the poller itself). */
static int
request_done (void *user_data, int *error)
{
  struct batch *b = user_data;
  struct nbd_image *n = b->n;
  bool wake;

  pthread_mutex_lock (&n->lock);
  if (*error && b->err == 0)
    b->err = *error;
  b->pending--;
  b->last_reply = now_seconds ();
  wake = b->pending <= b->wake_at;
  if (wake)
    pthread_cond_broadcast (&n->cond);
  pthread_mutex_unlock (&n->lock);
  if (wake && !in_poll_round)
    wake_poller (n);
  return 1;                     /* retire the command */
}

/* Count one more request of B in flight (before issuing it: its
 * callback may run before the issuing call returns). */
static void
batch_add (struct batch *b, int delta)
{
  pthread_mutex_lock (&b->n->lock);
  b->pending += delta;
  pthread_mutex_unlock (&b->n->lock);
}

/* After issuing on H: wake the poller if H now wants to write (note 3). */
static void
after_issue (struct nbd_image *n, struct nbd_handle *h)
{
  if (nbd_aio_get_direction (h) & LIBNBD_AIO_DIRECTION_WRITE)
    wake_poller (n);
}

/* The next connection, round robin. */
static struct nbd_handle *
pick_conn (struct nbd_image *n)
{
  unsigned i = __atomic_fetch_add (&n->next_conn, 1, __ATOMIC_RELAXED);

  return n->conns[i % n->nr_conns];
}

/* Set the error of a failed request: WHAT of COUNT bytes at OFFSET.
 * ERR is what the reply carried (ETIMEDOUT when its batch timed out; 0
 * when issuing failed, then MSG is libnbd's message). */
static int
request_error (struct nbd_image *n, const char *what, uint64_t count,
               uint64_t offset, int err, const char *msg)
{
  CLEANUP_FREE char *lost = NULL;
  int aborted;

  pthread_mutex_lock (&n->lock);
  if (n->lost)
    lost = strdup (n->lost);
  aborted = __atomic_load_n (&n->aborted, __ATOMIC_ACQUIRE);
  pthread_mutex_unlock (&n->lock);

  /* After a timeout, every request says what timed out (note 6). */
  if (err == ETIMEDOUT || aborted == ETIMEDOUT)
    return ferry_error (ETIMEDOUT, "%s: %s", n->base.path,
                        lost ? lost : "no reply");
  if (aborted == EINTR)
    return ferry_error (EINTR, "%s: %s of %" PRIu64 " bytes at offset 0x%"
                        PRIx64 ": interrupted", n->base.path, what, count,
                        offset);
  if (lost || err == ENOTCONN)
    return ferry_error (ENOTCONN, "%s: %s of %" PRIu64 " bytes at offset 0x%"
                        PRIx64 ": the connection to the server was lost (%s)",
                        n->base.path, what, count, offset,
                        lost ? lost : "the server closed it");
  if (err)
    return ferry_error_errno (err, "%s: %s of %" PRIu64 " bytes at offset 0x%"
                              PRIx64 ": the server answered", n->base.path,
                              what, count, offset);
  return ferry_error (EIO, "%s: %s of %" PRIu64 " bytes at offset 0x%" PRIx64
                      ": %s", n->base.path, what, count, offset, msg);
}

/* Before a request: fail at once when the connections were given up,
 * or when a stop was requested (then give them up).  0, or -1 with the
 * error of WHAT of COUNT bytes at OFFSET set. */
static int
check_usable (struct nbd_image *n, const char *what, uint64_t count,
              uint64_t offset)
{
  if (stop_requested ())
    nbd_io_abort (n, EINTR, "interrupted");
  if (__atomic_load_n (&n->aborted, __ATOMIC_ACQUIRE))
    return request_error (n, what, count, offset, 0, NULL);
  return 0;
}

/* Issue one request of OP on H; the libnbd cookie, or -1. */
static int64_t
issue (struct nbd_handle *h, enum op op, void *buf, uint64_t count,
       uint64_t offset, uint32_t flags, struct batch *b)
{
  nbd_completion_callback cb = { .callback = request_done, .user_data = b };

  switch (op) {
  case OP_READ:
    return nbd_aio_pread (h, buf, count, offset, cb, 0);
  case OP_WRITE:
    return nbd_aio_pwrite (h, buf, count, offset, cb, flags);
  case OP_ZERO:
    return nbd_aio_zero (h, count, offset, cb, flags);
  }
  abort ();
}

static const char *
op_name (enum op op)
{
  return op == OP_READ ? "read" : op == OP_WRITE ? "write" : "zero";
}

/* Run OP over an aligned range: pieces of PIECE bytes, up to
 * NBD_MAX_IN_FLIGHT of them in flight, spread over the connections. */
static int
run_range (struct nbd_image *n, enum op op, void *buf, uint64_t count,
           uint64_t offset, uint32_t flags, uint64_t piece)
{
  struct batch b = BATCH (n, op_name (op), count, offset, n->request_timeout);
  CLEANUP_FREE char *msg = NULL;
  uint64_t done = 0;
  int err = 0;

  if (check_usable (n, op_name (op), count, offset) == -1)
    return -1;

  while (done < count) {
    uint64_t len = MIN (piece, count - done);
    struct nbd_handle *h = pick_conn (n);

    err = batch_wait (&b, NBD_MAX_IN_FLIGHT - 1);
    if (err)
      break;
    batch_add (&b, 1);
    if (issue (h, op, buf ? (char *) buf + done : NULL, len, offset + done,
               flags, &b) == -1) {
      msg = strdup (nbd_get_error () ? nbd_get_error () : "failed");
      if (is_gone (h))
        note_lost (n, msg);
      batch_add (&b, -1);
      break;
    }
    after_issue (n, h);
    done += len;
  }
  err = batch_wait (&b, 0);     /* note 4 */
  if (err || msg)
    return request_error (n, op_name (op), count, offset, err, msg);
  return 0;
}

/* Pieces for OP: reads and writes at request_size, zeroes larger. */
static uint64_t
piece_size (struct nbd_image *n, enum op op)
{
  if (op != OP_ZERO)
    return n->request_size;
  return ROUND_DOWN ((uint64_t) NBD_MAX_ZERO, n->min_block);
}

/* True when [OFFSET, OFFSET+COUNT) needs no bounce (note 5): aligned to
 * the minimum block, or ending at the end of an export whose size is
 * not (a server may have an odd-sized tail). */
static bool
is_aligned_range (struct nbd_image *n, uint64_t count, uint64_t offset)
{
  uint64_t mb = n->min_block;

  return mb <= 1 || (offset % mb == 0 &&
                     (count % mb == 0 || offset + count == n->base.size));
}

/* The whole blocks around [OFFSET, OFFSET+COUNT), clipped to the export. */
static void
widen (struct nbd_image *n, uint64_t count, uint64_t offset,
       uint64_t *wstart, uint64_t *wend)
{
  *wstart = offset - offset % n->min_block;
  *wend = MIN (ROUND_UP (offset + count, n->min_block), n->base.size);
  if ((offset + count) % n->min_block && *wend < offset + count)
    *wend = offset + count;
}

int
nbd_io_pread (struct nbd_image *n, void *buf, size_t count, uint64_t offset)
{
  CLEANUP_FREE char *bounce = NULL;
  uint64_t ws, we;

  if (is_aligned_range (n, count, offset))
    return run_range (n, OP_READ, buf, count, offset, 0, piece_size (n, OP_READ));
  widen (n, count, offset, &ws, &we);
  bounce = malloc (we - ws);
  if (bounce == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", n->base.path);
  if (run_range (n, OP_READ, bounce, we - ws, ws, 0,
                 piece_size (n, OP_READ)) == -1)
    return -1;
  memcpy (buf, bounce + (offset - ws), count);
  return 0;
}

/* Write or zero a range that is not aligned (note 5): read the whole
 * blocks around it, change them, write them back, under rmw_lock.  BUF
 * NULL means zeroes. */
static int
read_modify_write (struct nbd_image *n, const void *buf, size_t count,
                   uint64_t offset)
{
  CLEANUP_FREE char *bounce = NULL;
  uint64_t ws, we;
  int r;

  widen (n, count, offset, &ws, &we);
  bounce = malloc (we - ws);
  if (bounce == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", n->base.path);
  pthread_mutex_lock (&n->rmw_lock);
  r = run_range (n, OP_READ, bounce, we - ws, ws, 0, piece_size (n, OP_READ));
  if (r == 0) {
    if (buf)
      memcpy (bounce + (offset - ws), buf, count);
    else
      memset (bounce + (offset - ws), 0, count);
    r = run_range (n, OP_WRITE, bounce, we - ws, ws, 0,
                   piece_size (n, OP_WRITE));
  }
  pthread_mutex_unlock (&n->rmw_lock);
  return r;
}

int
nbd_io_pwrite (struct nbd_image *n, const void *buf, size_t count,
               uint64_t offset)
{
  if (is_aligned_range (n, count, offset))
    return run_range (n, OP_WRITE, (void *) buf, count, offset, 0,
                      piece_size (n, OP_WRITE));
  return read_modify_write (n, buf, count, offset);
}

/* Zero an aligned range with WRITE_ZEROES: fast zero first where the
 * server offers it, plain when it refuses (and from then on). */
static int
zero_aligned (struct nbd_image *n, uint64_t count, uint64_t offset,
              uint32_t flags)
{
  if (n->can_fast_zero && __atomic_load_n (&n->fast_zero, __ATOMIC_RELAXED)) {
    struct nbd_handle *h = n->conns[0];
    uint64_t len = MIN (count, piece_size (n, OP_ZERO));
    struct batch b = BATCH (n, "zero", len, offset, n->request_timeout);
    int err;

    if (check_usable (n, "zero", len, offset) == -1)
      return -1;

    /* One request decides; the rest of the range follows below. */
    batch_add (&b, 1);
    if (issue (h, OP_ZERO, NULL, len, offset,
               flags | LIBNBD_CMD_FLAG_FAST_ZERO, &b) == -1) {
      batch_add (&b, -1);
      return request_error (n, "zero", len, offset, 0, nbd_get_error ());
    }
    after_issue (n, h);
    err = batch_wait (&b, 0);
    if (err == 0) {
      if (len == count)
        return 0;
      count -= len;
      offset += len;
    }
    else if (err == ENOTSUP || err == EOPNOTSUPP)
      __atomic_store_n (&n->fast_zero, false, __ATOMIC_RELAXED);
    else
      return request_error (n, "zero", len, offset, err, NULL);
  }
  return run_range (n, OP_ZERO, NULL, count, offset, flags,
                    piece_size (n, OP_ZERO));
}

int
nbd_io_zero (struct nbd_image *n, size_t count, uint64_t offset,
             unsigned flags)
{
  uint32_t nflags = (flags & FERRY_ZERO_MAY_TRIM) ? 0 : LIBNBD_CMD_FLAG_NO_HOLE;
  uint64_t mb = n->min_block, head, end, tail;

  if (!n->can_zero)             /* a server without WRITE_ZEROES */
    return image_zero_by_writing (&n->base, count, offset);
  if (is_aligned_range (n, count, offset))
    return zero_aligned (n, count, offset, nflags);

  /* Partial blocks at either end by read-modify-write, the whole blocks
   * between them with WRITE_ZEROES. */
  end = offset + count;
  head = MIN (ROUND_UP (offset, mb), end);
  tail = MAX (ROUND_DOWN (end, mb), head);
  if (head > offset && read_modify_write (n, NULL, head - offset, offset) == -1)
    return -1;
  if (tail > head && zero_aligned (n, tail - head, head, nflags) == -1)
    return -1;
  if (end > tail && read_modify_write (n, NULL, end - tail, tail) == -1)
    return -1;
  return 0;
}

int
nbd_io_flush (struct nbd_image *n)
{
  nbd_completion_callback cb;
  struct batch b = BATCH (n, "flush", n->base.size, 0,
                          n->request_timeout * FERRY_NBD_FLUSH_FACTOR);
  CLEANUP_FREE char *msg = NULL;
  int err;

  if (!n->can_flush)
    return 0;
  if (check_usable (n, "flush", n->base.size, 0) == -1)
    return -1;
  /* One flush covers every connection: the server advertised
   * multi-conn, or there is only one. */
  cb = (nbd_completion_callback) { .callback = request_done, .user_data = &b };
  batch_add (&b, 1);
  if (nbd_aio_flush (n->conns[0], cb, 0) == -1) {
    msg = strdup (nbd_get_error () ? nbd_get_error () : "failed");
    batch_add (&b, -1);
  }
  else
    after_issue (n, n->conns[0]);
  err = batch_wait (&b, 0);
  if (err || msg)
    return request_error (n, "flush", n->base.size, 0, err, msg);
  return 0;
}

/* Extent callback of block status: append the entries of the context
 * asked for, clipped to the range asked for. */
static int
status_entries (void *user_data, const char *metacontext, uint64_t offset,
                uint32_t *entries, size_t nr_entries, int *error)
{
  struct status_request *r = user_data;
  uint64_t pos = offset;
  size_t i;

  if (*error || strcmp (metacontext, r->context) != 0)
    return 0;
  for (i = 0; i + 1 < nr_entries && pos < r->end; i += 2) {
    uint64_t len = entries[i], s, e;

    if (len == 0)
      break;
    s = MAX (pos, r->reached);
    e = MIN (pos + len, r->end);
    if (e > s && s == r->reached) {
      if (r->err == 0 &&
          ferry_extent_list_append (r->list, s, e - s, entries[i + 1]) == -1)
        r->err = ENOMEM;
      r->reached = e;
    }
    pos += len;
  }
  return 0;
}

int
nbd_io_block_status (struct nbd_image *n, const char *context,
                     uint64_t offset, uint64_t length,
                     struct ferry_extent_list *list)
{
  bool base = strcmp (context, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0;
  struct nbd_handle *h = base ? pick_conn (n) : n->conns[0];
  struct batch b = BATCH (n, "block status", length, offset,
                          n->request_timeout);
  struct status_request r = {
    .b = &b, .context = context, .start = offset, .reached = offset,
    .end = offset + MIN (length, (uint64_t) NBD_MAX_BLOCK_STATUS),
    .list = list,
  };
  nbd_extent_callback ecb = { .callback = status_entries, .user_data = &r };
  nbd_completion_callback ccb = { .callback = request_done, .user_data = &b };
  uint64_t ws, we;
  CLEANUP_FREE char *msg = NULL;
  int err;

  widen (n, r.end - offset, offset, &ws, &we);
  b.count = we - ws;
  b.offset = ws;
  if (check_usable (n, "block status", we - ws, ws) == -1)
    return -1;
  batch_add (&b, 1);
  if (nbd_aio_block_status (h, we - ws, ws, ecb, ccb, 0) == -1) {
    msg = strdup (nbd_get_error () ? nbd_get_error () : "failed");
    batch_add (&b, -1);
  }
  else
    after_issue (n, h);
  err = batch_wait (&b, 0);
  if (err || msg)
    return request_error (n, "block status", we - ws, ws, err, msg);
  if (r.err)
    return ferry_error (r.err, "%s: out of memory", n->base.path);
  if (r.reached == offset)
    return ferry_error (EPROTO, "%s: block status at offset 0x%" PRIx64
                        ": the server gave no extent of %s", n->base.path,
                        offset, context);
  return 0;
}

/* The part of the handshake loops that polls: one round over HANDLES,
 * at most WAIT_MS, and the stop eventfd.  Returns the index of a handle
 * that died, or -1. */
static int
handshake_round (struct nbd_handle **handles, unsigned nr, int wait_ms)
{
  struct pollfd fds[NBD_MAX_CONNECTIONS + 1];
  unsigned i;

  for (i = 0; i < nr; i++)
    handle_pollfd (handles[i], &fds[i]);
  fds[nr].fd = stop_fd ();
  fds[nr].events = POLLIN;
  fds[nr].revents = 0;
  if (poll (fds, nr + 1, wait_ms) == -1)
    return -1;
  for (i = 0; i < nr; i++)
    if (fds[i].fd >= 0 && fds[i].revents &&
        notify_handle (handles[i], fds[i].revents) == -1)
      return i;
  return -1;
}

/* Why the handshake loop stopped. */
enum handshake_end { HS_DONE, HS_GONE, HS_DIED, HS_TIMEOUT, HS_STOP };

/* Run HANDLES until DONE holds for each, or one dies, or DEADLINE (0:
 * none) passes, or a stop is requested.  *FAILED is the index of the
 * handle that is not done. */
static enum handshake_end
run_handles (struct nbd_handle **handles, unsigned nr,
             bool (*done) (struct nbd_handle *h, void *arg), void *arg,
             double deadline, unsigned *failed)
{
  unsigned i;

  for (;;) {
    double left = deadline > 0 ? deadline - now_seconds () : 1e9;
    int dead;

    for (i = 0; i < nr; i++) {
      if (done (handles[i], arg))
        continue;
      *failed = i;
      if (is_gone (handles[i]))
        return HS_GONE;
      break;
    }
    if (i == nr)
      return HS_DONE;
    if (stop_requested ())
      return HS_STOP;
    if (left <= 0)
      return HS_TIMEOUT;
    dead = handshake_round (handles, nr, wait_ms (left));
    if (dead >= 0) {
      *failed = dead;
      return HS_DIED;
    }
  }
}

int
nbd_run_handshake (const struct nbd_stage *stage,
                   struct nbd_handle **handles, unsigned nr,
                   bool (*done) (struct nbd_handle *h, void *arg),
                   void *arg, unsigned *failed)
{
  switch (run_handles (handles, nr, done, arg, stage->deadline, failed)) {
  case HS_DONE:
    return 0;
  case HS_GONE:
    return ferry_error (ECONNREFUSED, "%s: the connection closed during %s",
                        stage->uri, stage->what);
  case HS_DIED:
    return ferry_error (ECONNREFUSED, "%s: %s: %s", stage->uri, stage->what,
                        nbd_get_error () ? nbd_get_error ()
                                         : "handshake failed");
  case HS_TIMEOUT:
    return ferry_error (ETIMEDOUT, "%s: %s got no reply in %g s",
                        stage->uri, stage->what, stage->timeout);
  case HS_STOP:
    break;
  }
  return ferry_error (EINTR, "%s: %s: interrupted", stage->uri, stage->what);
}

bool
nbd_run_quietly (struct nbd_handle **handles, unsigned nr,
                 bool (*done) (struct nbd_handle *h, void *arg),
                 double seconds)
{
  unsigned failed;

  return run_handles (handles, nr, done, NULL, now_seconds () + seconds,
                      &failed) == HS_DONE;
}
