/* nbd: an export of an NBD server, named by URI (nbd://host[:port]/name,
 * nbds://... with TLS, nbd+unix:///name?socket=PATH, and the rest that
 * libnbd parses), read and written through libnbd.
 *
 * The first connection negotiates every metadata context the server
 * offers (base:allocation for the extents, and qemu:dirty-bitmap:NAME,
 * qemu:allocation-depth, ... for ferry_image_context_extents).  When the
 * server advertises multi-conn, up to NBD_MAX_CONNECTIONS - 1 more
 * connections carry reads, writes and base:allocation queries.  The
 * requests themselves and the event loop are in nbd-io.c.
 *
 * NOTES ON THE DESIGN
 *
 * 1. Only a server that advertises multi-conn gets more than one
 *    connection: it promises that a flush on one connection covers the
 *    writes completed on all of them, and that they all see the same
 *    data.  Without it, one connection carries everything (many requests
 *    in flight on it).  An extra connection that fails or is slow is
 *    dropped, never fatal: a server may take fewer clients than it says.
 *
 * 2. The handshake runs on our own poll loop (nbd_run_handshake), every
 *    option of it through nbd_aio_opt_*, with one deadline for the
 *    connection and the whole handshake (connect_timeout), so a server
 *    that accepts the TCP connection but never greets (qemu-nbd busy with
 *    its one client), or stalls in the middle of the options, gives an
 *    error instead of a hang; and a stop request ends it at once.  The
 *    synchronous nbd_opt_* and nbd_shutdown calls are never used: they
 *    wait without a deadline.
 *
 * 3. URIs may name local files (tls-psk-file=, tls-certificates=): the
 *    user typed the URI, as they would have typed a file name.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-internal.h"
#include "../common/cleanup.h"
#include "../common/stop.h"
#include "../common/util.h"

static const char *const nbd_schemes[] = {
  "nbd", "nbds", "nbd+unix", "nbds+unix", "nbd+vsock", "nbds+vsock", NULL,
};

/* The timeouts of ferry_nbd_set_timeouts, in milliseconds (atomic). */
static int64_t connect_timeout_ms = FERRY_NBD_CONNECT_TIMEOUT * 1000;
static int64_t request_timeout_ms = FERRY_NBD_REQUEST_TIMEOUT * 1000;

/* The longest timeout that makes sense: a bit over eleven days. */
#define TIMEOUT_MAX 1e6

int
ferry_nbd_set_timeouts (double connect_seconds, double request_seconds)
{
  if (!(connect_seconds >= 0 && connect_seconds <= TIMEOUT_MAX) ||
      !(request_seconds >= 0 && request_seconds <= TIMEOUT_MAX))
    return ferry_error (EINVAL, "NBD timeouts of %g s (connect) and %g s "
                        "(request): expected 0 (none) to %g seconds",
                        connect_seconds, request_seconds, TIMEOUT_MAX);
  __atomic_store_n (&connect_timeout_ms, (int64_t) (connect_seconds * 1000),
                    __ATOMIC_RELAXED);
  __atomic_store_n (&request_timeout_ms, (int64_t) (request_seconds * 1000),
                    __ATOMIC_RELAXED);
  return 0;
}

/* A new libnbd handle set up as every connection of ours wants it. */
static struct nbd_handle *
new_handle (const char *uri)
{
  struct nbd_handle *h = nbd_create ();

  if (h == NULL) {
    ferry_error (ENOMEM, "%s: %s", uri, nbd_get_error ());
    return NULL;
  }
  if (nbd_set_uri_allow_local_file (h, true) == -1 ||   /* note 3 */
      nbd_set_pread_initialize (h, false) == -1) {
    ferry_error (EINVAL, "%s: %s", uri, nbd_get_error ());
    nbd_close (h);
    return NULL;
  }
  return h;
}

/* Read a flag of the export: 1, 0, or -1 treated as "no". */
static bool
flag (int r)
{
  return r == 1;
}

/* Handshake predicates for nbd_run_handshake. */
static bool
reached_options (struct nbd_handle *h, void *arg)
{
  return !nbd_aio_is_created (h) && !nbd_aio_is_connecting (h);
}

static bool
reached_ready (struct nbd_handle *h, void *arg)
{
  return nbd_aio_is_ready (h);
}

/* An option in flight (nbd_aio_opt_*): its completion callback says
 * when it is answered, and with which error. */
struct option_wait {
  bool done;
  int err;
};

/* Completion callback of an option: note the answer. */
static int
option_done (void *user_data, int *error)
{
  struct option_wait *w = user_data;

  w->done = true;
  w->err = *error;
  return 1;
}

/* Handshake predicate: the option of ARG (struct option_wait) is
 * answered. */
static bool
option_answered (struct nbd_handle *h, void *arg)
{
  return ((struct option_wait *) arg)->done;
}

/* Closing predicate: the disconnect request went out (or the connection
 * is gone anyway). */
static bool
disconnect_sent (struct nbd_handle *h, void *arg)
{
  return nbd_aio_is_dead (h) || nbd_aio_is_closed (h) ||
    !(nbd_aio_get_direction (h) & LIBNBD_AIO_DIRECTION_WRITE);
}

/* A stage of opening URI named WHAT, under the deadline of N's
 * connection and handshake, which started at START. */
static struct nbd_stage
stage (struct nbd_image *n, const char *uri, const char *what, double start)
{
  return (struct nbd_stage) {
    .uri = uri, .what = what, .timeout = n->connect_timeout,
    .deadline = n->connect_timeout > 0 ? start + n->connect_timeout : 0,
  };
}

/* Keep our own duplicate of connection I's socket (nbd-io.c, note 6):
 * without it the connection could not be given up on, so it is an
 * error.  0, or -1 with the error set. */
static int
keep_socket (struct nbd_image *n, const char *uri, unsigned i)
{
  int fd = nbd_aio_get_fd (n->conns[i]);

  if (fd == -1)
    return ferry_error (EPROTO, "%s: %s", uri, nbd_get_error ());
  n->socks[i] = fcntl (fd, F_DUPFD_CLOEXEC, 0);
  if (n->socks[i] == -1)
    return ferry_error_errno (errno, "%s: duplicating the socket", uri);
  return 0;
}

/* Context callback of NBD_OPT_LIST_META_CONTEXT: keep each name. */
static int
add_context_name (void *user_data, const char *name)
{
  struct nbd_image *n = user_data;
  size_t len = 0;
  char **p;

  while (n->contexts && n->contexts[len])
    len++;
  if (len >= 64)                /* a server listing thousands: enough */
    return 0;
  p = realloc (n->contexts, (len + 2) * sizeof *p);
  if (p == NULL)
    return 0;
  n->contexts = p;
  p[len] = strdup (name);
  p[len + 1] = NULL;
  return 0;
}

/* True when the context list holds NAME. */
static bool
has_context (struct nbd_image *n, const char *name)
{
  size_t i;

  for (i = 0; n->contexts && n->contexts[i]; i++)
    if (strcmp (n->contexts[i], name) == 0)
      return true;
  return false;
}

/* Drop the contexts the first connection did not get after all. */
static void
keep_negotiated_contexts (struct nbd_image *n)
{
  size_t i, j;

  for (i = j = 0; n->contexts && n->contexts[i]; i++) {
    if (nbd_can_meta_context (n->conns[0], n->contexts[i]) == 1)
      n->contexts[j++] = n->contexts[i];
    else
      free (n->contexts[i]);
  }
  if (n->contexts)
    n->contexts[j] = NULL;
}

/* Explain a failed handshake: libnbd's words, with what usually causes
 * them.  The error is set already; this adds a hint. */
static void
explain_connect_error (const char *uri)
{
  CLEANUP_FREE char *msg = strdup (ferry_get_error ());
  const char *why;
  size_t len = strlen (uri);

  if (msg == NULL)
    return;
  /* libnbd's words come after "URI: " (and the URI may say tls too). */
  why = strncmp (msg, uri, len) == 0 && strncmp (msg + len, ": ", 2) == 0
    ? msg + len + 2 : msg;
  if (!strstr (why, "gnutls") && !strstr (why, "TLS") && !strstr (why, "tls"))
    return;
  ferry_error (EACCES, "%s: the TLS handshake failed (a wrong key or "
               "certificate, or a server without TLS): %s", uri, why);
}

/* List the server's metadata contexts into N (NBD_OPT_LIST_META_CONTEXT
 * with no query: all of them).  A refusal only costs the contexts; no
 * answer in time is an error. */
static int
list_contexts (struct nbd_image *n, struct nbd_handle *h, const char *uri,
               double start)
{
  struct nbd_stage st = stage (n, uri, "listing the metadata contexts "
                               "(NBD_OPT_LIST_META_CONTEXT)", start);
  struct option_wait w = { 0 };
  nbd_context_callback cb = { .callback = add_context_name, .user_data = n };
  nbd_completion_callback done = { .callback = option_done, .user_data = &w };
  unsigned failed;

  if (nbd_aio_opt_list_meta_context (h, cb, done) == -1) {
    ferry_debug ("%s: listing metadata contexts: %s", uri, nbd_get_error ());
    return 0;
  }
  if (nbd_run_handshake (&st, &h, 1, option_answered, &w, &failed) == -1)
    return -1;
  if (w.err)
    ferry_debug ("%s: listing metadata contexts: %s", uri, strerror (w.err));
  return 0;
}

/* Open the export (NBD_OPT_GO).  0, or -1 with the error set. */
static int
open_export (struct nbd_image *n, struct nbd_handle *h, const char *uri,
             double start)
{
  struct nbd_stage st = stage (n, uri, "opening the export (NBD_OPT_GO)",
                               start);
  struct option_wait w = { 0 };
  nbd_completion_callback done = { .callback = option_done, .user_data = &w };
  unsigned failed;
  bool hint;

  if (nbd_aio_opt_go (h, done) == -1)
    return ferry_error (nbd_get_errno () ? nbd_get_errno () : EINVAL,
                        "%s: %s", uri, nbd_get_error ());
  if (nbd_run_handshake (&st, &h, 1, option_answered, &w, &failed) == -1)
    return -1;
  if (w.err == 0)
    return 0;
  /* A server that wants TLS answers a plain client this way. */
  hint = !flag (nbd_get_tls_negotiated (h)) &&
    (w.err == ENOTSUP || w.err == EPERM);
  return ferry_error (w.err, "%s: the server refused to open the export: "
                      "%s%s", uri, strerror (w.err),
                      hint ? " (does the server require TLS? then use an "
                      "nbds:// URI)" : "");
}

/* Connect the first handle in option mode, learn the contexts, ask for
 * them all, and go.  0, or -1 with the error set. */
static int
connect_first (struct nbd_image *n, const char *uri)
{
  struct nbd_handle *h = new_handle (uri);
  double start = now_seconds ();
  struct nbd_stage st = stage (n, uri, "the connection and the server's "
                               "greeting", start);
  unsigned failed;
  size_t i;

  if (h == NULL)
    return -1;
  n->conns[0] = h;
  n->nr_conns = 1;
  if (nbd_set_opt_mode (h, true) == -1 || nbd_set_full_info (h, true) == -1)
    return ferry_error (EINVAL, "%s: %s", uri, nbd_get_error ());
  if (nbd_aio_connect_uri (h, uri) == -1) {
    /* Over TCP the TLS handshake may happen in here already. */
    ferry_error (nbd_get_errno () ? nbd_get_errno () : EINVAL, "%s: %s", uri,
                 nbd_get_error ());
    explain_connect_error (uri);
    return -1;
  }
  if (nbd_run_handshake (&st, &h, 1, reached_options, NULL, &failed) == -1) {
    if (ferry_get_errno () == ETIMEDOUT)
      ferry_error (ETIMEDOUT, "%s: no answer from the server within %g s (a "
                   "qemu-nbd serves one client at a time unless started "
                   "with --shared)", uri, n->connect_timeout);
    else
      explain_connect_error (uri);
    return -1;
  }

  if (nbd_aio_is_negotiating (h)) {
    /* With no query, the server lists every context it has.  An old
     * server without structured replies has none beyond the data. */
    if (nbd_get_structured_replies_negotiated (h) == 1 &&
        list_contexts (n, h, uri, start) == -1)
      return -1;
    if (!has_context (n, LIBNBD_CONTEXT_BASE_ALLOCATION) &&
        nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1)
      return ferry_error (EINVAL, "%s: %s", uri, nbd_get_error ());
    for (i = 0; n->contexts && n->contexts[i]; i++)
      if (nbd_add_meta_context (h, n->contexts[i]) == -1)
        return ferry_error (EINVAL, "%s: %s", uri, nbd_get_error ());
    if (open_export (n, h, uri, start) == -1)
      return -1;
  }
  if (!nbd_aio_is_ready (h))
    return ferry_error (EPROTO, "%s: the server did not open the export",
                        uri);
  n->has_base_allocation =
    nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  if (n->has_base_allocation &&
      !has_context (n, LIBNBD_CONTEXT_BASE_ALLOCATION))
    add_context_name (n, LIBNBD_CONTEXT_BASE_ALLOCATION);
  keep_negotiated_contexts (n);
  return keep_socket (n, uri, 0);
}

/* Learn what the server said about the export (connection 0). */
static int
read_export_facts (struct nbd_image *n, const char *uri)
{
  struct nbd_handle *h = n->conns[0];
  int64_t size = nbd_get_size (h), v;
  char *s;

  if (size < 0)
    return ferry_error (EPROTO, "%s: %s", uri, nbd_get_error ());
  n->base.size = size;
  n->read_only = flag (nbd_is_read_only (h));
  n->can_flush = flag (nbd_can_flush (h));
  n->can_fua = flag (nbd_can_fua (h));
  n->can_trim = flag (nbd_can_trim (h));
  n->can_zero = flag (nbd_can_zero (h));
  n->can_fast_zero = flag (nbd_can_fast_zero (h));
  n->can_multi_conn = flag (nbd_can_multi_conn (h));
  n->can_cache = flag (nbd_can_cache (h));
  n->can_df = flag (nbd_can_df (h));
  n->is_rotational = flag (nbd_is_rotational (h));
  n->tls = flag (nbd_get_tls_negotiated (h));
  n->structured = flag (nbd_get_structured_replies_negotiated (h));
  n->fast_zero = n->can_fast_zero;
  n->protocol = nbd_get_protocol (h);

  v = nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM);
  n->min_block = v > 0 ? v : 1;
  v = nbd_get_block_size (h, LIBNBD_SIZE_PREFERRED);
  n->pref_block = v > 0 ? v : 0;
  v = nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM);
  n->max_block = v > 0 ? v : 0;
  /* The protocol wants powers of two, a minimum of at most 64 KiB and a
   * maximum that is a multiple of it; anything else is not believed. */
  if (!is_power_of_2 (n->min_block) || n->min_block > (64u << 10))
    return ferry_error (EPROTO, "%s: the server's minimum block size %" PRIu64
                        " is not a power of two up to 64 KiB", uri,
                        n->min_block);
  n->request_size = NBD_REQUEST_SIZE;
  if (n->max_block && n->max_block < n->request_size)
    n->request_size = n->max_block;
  if (!n->max_block && NBD_DEFAULT_MAX_PAYLOAD < n->request_size)
    n->request_size = NBD_DEFAULT_MAX_PAYLOAD;
  n->request_size = ROUND_DOWN (n->request_size, (uint32_t) n->min_block);
  if (n->request_size == 0)
    n->request_size = n->min_block;

  s = nbd_get_canonical_export_name (h);
  if (s == NULL)
    s = nbd_get_export_name (h);
  n->export_name = s ? s : strdup ("");
  s = nbd_get_export_description (h);
  n->description = s;           /* NULL when the server has none */
  if (n->export_name == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", uri);
  return 0;
}

/* With multi-conn (note 1): open the extra connections all at once and
 * keep those that are ready in time and see the same export. */
static void
connect_extra (struct nbd_image *n, const char *uri)
{
  struct nbd_handle *hs[NBD_MAX_CONNECTIONS];
  unsigned nr = 0, i, failed;
  double timeout = n->connect_timeout > 0 &&
    n->connect_timeout < NBD_EXTRA_CONN_TIMEOUT ? n->connect_timeout
    : NBD_EXTRA_CONN_TIMEOUT;
  struct nbd_stage st = {
    .uri = uri, .what = "an extra connection", .timeout = timeout,
    .deadline = now_seconds () + timeout,
  };

  if (!n->can_multi_conn)
    return;
  for (i = 1; i < NBD_MAX_CONNECTIONS; i++) {
    struct nbd_handle *h = new_handle (uri);
    if (h == NULL)
      break;
    if (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
        nbd_aio_connect_uri (h, uri) == -1) {
      nbd_close (h);
      break;
    }
    hs[nr++] = h;
  }
  while (nr > 0 && !stop_requested () &&
         nbd_run_handshake (&st, hs, nr, reached_ready, NULL,
                            &failed) == -1) {
    ferry_debug ("%s: one connection fewer: %s", uri, ferry_get_error ());
    nbd_close (hs[failed]);
    hs[failed] = hs[--nr];
  }
  for (i = 0; i < nr; i++) {
    struct nbd_handle *h = hs[i];
    if (nbd_get_size (h) != (int64_t) n->base.size ||
        flag (nbd_is_read_only (h)) != n->read_only ||
        flag (nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION)) !=
        n->has_base_allocation) {
      ferry_debug ("%s: an extra connection sees another export; dropped",
                   uri);
      nbd_close (h);
      continue;
    }
    n->conns[n->nr_conns] = h;
    if (keep_socket (n, uri, n->nr_conns) == -1) {
      ferry_debug ("%s: an extra connection dropped: %s", uri,
                   ferry_get_error ());
      nbd_close (h);
      continue;
    }
    n->nr_conns++;
  }
}

/* Close every connection: a clean NBD_CMD_DISC where it is still up,
 * waiting at most NBD_DISCONNECT_WAIT for it to go out (never for the
 * server: every request was answered before, so nothing is lost).
 * Returns -1 when a writable export may miss writes. */
static int
disconnect_all (struct nbd_image *n)
{
  int r = 0;
  unsigned i;

  for (i = 0; i < n->nr_conns; i++) {
    struct nbd_handle *h = n->conns[i];
    if (nbd_aio_is_ready (h)) {
      if (nbd_aio_disconnect (h, 0) == -1 && !n->base.readonly && r == 0)
        r = ferry_error (EIO, "%s: disconnecting: %s", n->base.path,
                         nbd_get_error ());
    }
    else if (!n->base.readonly && r == 0 && nbd_aio_is_dead (h))
      r = ferry_error (ENOTCONN, "%s: the connection to the server was lost "
                       "(%s); the export may miss writes", n->base.path,
                       n->lost ? n->lost : "closed");
  }
  if (n->nr_conns &&
      !nbd_run_quietly (n->conns, n->nr_conns, disconnect_sent,
                        NBD_DISCONNECT_WAIT))
    ferry_debug ("%s: the disconnect request did not go out", n->base.path);
  for (i = 0; i < n->nr_conns; i++)
    nbd_close (n->conns[i]);
  n->nr_conns = 0;
  return r;
}

/* Free everything but the base's members. */
static void
free_image (struct nbd_image *n)
{
  size_t i;

  for (i = 0; n->contexts && n->contexts[i]; i++)
    free (n->contexts[i]);
  free (n->contexts);
  free (n->export_name);
  free (n->description);
  nbd_io_fini (n);
  free (n);
}

static struct ferry_image *
nbd_image_open_uri (const char *uri, const struct open_args *args)
{
  bool write = args->flags & FERRY_OPEN_WRITE;
  struct nbd_image *n = calloc (1, sizeof *n);
  unsigned i;

  if (n == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", uri);
    return NULL;
  }
  n->wake_fd = -1;
  for (i = 0; i < NBD_MAX_CONNECTIONS; i++)
    n->socks[i] = -1;
  n->connect_timeout =
    __atomic_load_n (&connect_timeout_ms, __ATOMIC_RELAXED) / 1000.0;
  n->request_timeout =
    __atomic_load_n (&request_timeout_ms, __ATOMIC_RELAXED) / 1000.0;
  if (image_init_base (&n->base, &nbd_driver, uri, -1, !write) == -1 ||
      nbd_io_init (n) == -1 ||
      connect_first (n, uri) == -1 ||
      read_export_facts (n, uri) == -1)
    goto err;
  if (write && n->read_only) {
    ferry_error (EROFS, "%s: the NBD export is read-only", uri);
    goto err;
  }
  connect_extra (n, uri);
  return &n->base;

 err:
  n->base.readonly = true;      /* nothing was written: keep the error */
  disconnect_all (n);
  free (n->base.path);
  free_image (n);
  return NULL;
}

static int
nbd_image_pread (struct ferry_image *img, void *buf, size_t count, uint64_t offset)
{
  return nbd_io_pread ((struct nbd_image *) img, buf, count, offset);
}

static int
nbd_image_pwrite (struct ferry_image *img, const void *buf, size_t count,
            uint64_t offset)
{
  return nbd_io_pwrite ((struct nbd_image *) img, buf, count, offset);
}

static int
nbd_image_zero (struct ferry_image *img, size_t count, uint64_t offset,
          unsigned flags)
{
  return nbd_io_zero ((struct nbd_image *) img, count, offset, flags);
}

static int
nbd_image_extents (struct ferry_image *img, uint64_t offset, uint64_t length,
             struct ferry_extent_list *list)
{
  struct nbd_image *n = (struct nbd_image *) img;
  size_t before = list->len, i;

  if (!n->has_base_allocation)
    return ferry_extent_list_append (list, offset, length, 0);
  if (nbd_io_block_status (n, LIBNBD_CONTEXT_BASE_ALLOCATION, offset, length,
                           list) == -1)
    return -1;
  /* Only the two bits ferry knows (the protocol reserves the rest). */
  for (i = before; i < list->len; i++)
    list->ptr[i].flags &= FERRY_EXTENT_HOLE | FERRY_EXTENT_ZERO;
  return 0;
}

static const char *const *
nbd_image_contexts (struct ferry_image *img)
{
  struct nbd_image *n = (struct nbd_image *) img;
  static const char *const none[] = { NULL };

  return n->contexts ? (const char *const *) n->contexts : none;
}

static int
nbd_image_context_extents (struct ferry_image *img, const char *name,
                     uint64_t offset, uint64_t length,
                     struct ferry_extent_list *list)
{
  return nbd_io_block_status ((struct nbd_image *) img, name, offset, length,
                              list);
}

static unsigned
nbd_image_capabilities (struct ferry_image *img)
{
  struct nbd_image *n = (struct nbd_image *) img;
  unsigned caps = FERRY_CAN_WRITE;

  if (n->can_zero)
    caps |= FERRY_CAN_ZERO | FERRY_CAN_TRIM;
  if (n->has_base_allocation)
    caps |= FERRY_CAN_EXTENTS;
  return caps;
}

static int
nbd_image_flush (struct ferry_image *img)
{
  return nbd_io_flush ((struct nbd_image *) img);
}

static int
nbd_image_close (struct ferry_image *img)
{
  struct nbd_image *n = (struct nbd_image *) img;
  int r = disconnect_all (n);

  free_image (n);
  return r;
}

/* The contexts as one string, "a, b, c". */
static int
fact_contexts (struct nbd_image *n)
{
  CLEANUP_FREE char *s = NULL;
  size_t len = 1, i;

  for (i = 0; n->contexts && n->contexts[i]; i++)
    len += strlen (n->contexts[i]) + 2;
  s = calloc (1, len);
  if (s == NULL)
    return ferry_error (ENOMEM, "out of memory");
  for (i = 0; n->contexts && n->contexts[i]; i++) {
    if (i > 0)
      strcat (s, ", ");
    strcat (s, n->contexts[i]);
  }
  return image_fact_string (&n->base, "contexts", s);
}

/* The facts use nbdinfo's names, which NBD users know. */
static int
nbd_image_describe (struct ferry_image *img, struct ferry_image_info *info)
{
  struct nbd_image *n = (struct nbd_image *) img;

  info->allocated = FERRY_SIZE_UNKNOWN;
  info->cluster_size = n->min_block > 1 ? n->min_block : 0;
  if (image_fact_string (img, "export-name", n->export_name) == -1 ||
      (n->description &&
       image_fact_string (img, "description", n->description) == -1) ||
      image_fact_string (img, "protocol", n->protocol ? n->protocol : "") == -1 ||
      image_fact_bool (img, "TLS", n->tls) == -1 ||
      image_fact_bool (img, "structured", n->structured) == -1 ||
      fact_contexts (n) == -1 ||
      image_fact_bool (img, "is_rotational", n->is_rotational) == -1 ||
      image_fact_bool (img, "is_read_only", n->read_only) == -1 ||
      image_fact_bool (img, "can_cache", n->can_cache) == -1 ||
      image_fact_bool (img, "can_df", n->can_df) == -1 ||
      image_fact_bool (img, "can_fast_zero", n->can_fast_zero) == -1 ||
      image_fact_bool (img, "can_flush", n->can_flush) == -1 ||
      image_fact_bool (img, "can_fua", n->can_fua) == -1 ||
      image_fact_bool (img, "can_multi_conn", n->can_multi_conn) == -1 ||
      image_fact_bool (img, "can_trim", n->can_trim) == -1 ||
      image_fact_bool (img, "can_zero", n->can_zero) == -1 ||
      image_fact_number (img, "block_size_minimum", n->min_block) == -1 ||
      (n->pref_block &&
       image_fact_number (img, "block_size_preferred", n->pref_block) == -1) ||
      (n->max_block &&
       image_fact_number (img, "block_size_maximum", n->max_block) == -1) ||
      image_fact_number (img, "connections", n->nr_conns) == -1)
    return -1;
  return 0;
}

const struct image_driver nbd_driver = {
  .name = "nbd",
  .uri_schemes = nbd_schemes,
  .open_uri = nbd_image_open_uri,
  .pread = nbd_image_pread,
  .pwrite = nbd_image_pwrite,
  .zero = nbd_image_zero,
  .extents = nbd_image_extents,
  .contexts = nbd_image_contexts,
  .context_extents = nbd_image_context_extents,
  .capabilities = nbd_image_capabilities,
  .flush = nbd_image_flush,
  .close = nbd_image_close,
  .describe = nbd_image_describe,
};
