/* nbd driver, private interface between nbd.c (connecting, describing)
 * and nbd-io.c (the event loop and the requests).  Nothing outside
 * lib/image includes this file.
 */
#ifndef FERRY_NBD_INTERNAL_H
#define FERRY_NBD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <libnbd.h>

#include "internal.h"

/* Connections to one export when the server advertises multi-conn (as
 * nbdcopy opens); one otherwise. */
#define NBD_MAX_CONNECTIONS 4

/* Bytes per read or write request: many of these go in flight at once
 * from each caller, spread over the connections.  Never more than the
 * server's maximum block size. */
#define NBD_REQUEST_SIZE (256u << 10)

/* Requests one caller keeps in flight at most; more wait for the first
 * ones to finish, so a huge read does not queue thousands. */
#define NBD_MAX_IN_FLIGHT 64

/* The largest payload a client may send a server that states no maximum
 * (the NBD protocol's default). */
#define NBD_DEFAULT_MAX_PAYLOAD (32u << 20)

/* WRITE_ZEROES and block status carry no payload; their length field is
 * 32 bits.  Zeroes go in pieces of at most this much. */
#define NBD_MAX_ZERO (1u << 30)
#define NBD_MAX_BLOCK_STATUS (1u << 31)

/* How long the extra multi-conn connections may take to be ready, at
 * most (never more than the connect timeout): they are optional, so a
 * slow one is dropped rather than waited for. */
#define NBD_EXTRA_CONN_TIMEOUT 10.0

/* How long closing waits for the disconnect request to go out. */
#define NBD_DISCONNECT_WAIT 2.0

struct nbd_image {
  struct ferry_image base;          /* must be first */
  struct nbd_handle *conns[NBD_MAX_CONNECTIONS];
  unsigned nr_conns;
  unsigned next_conn;               /* atomic: round robin over conns */

  /* What the server told at the handshake (conns[0]). */
  uint64_t min_block;               /* requests aligned to this (>= 1) */
  uint64_t pref_block;              /* 0 when not advertised */
  uint64_t max_block;               /* 0 when not advertised */
  uint32_t request_size;            /* bytes per read/write request */
  bool read_only, can_flush, can_fua, can_trim, can_zero, can_fast_zero;
  bool can_multi_conn, can_cache, can_df, is_rotational;
  bool tls, structured, has_base_allocation;
  bool fast_zero;                   /* atomic: cleared when refused */
  char *export_name;                /* canonical, as the server says */
  char *description;                /* or NULL */
  const char *protocol;             /* static string of libnbd */
  char **contexts;                  /* offered, NULL-terminated */

  /* Deadlines, in seconds (0: none), fixed at open from the process's
   * settings (ferry_nbd_set_timeouts). */
  double connect_timeout, request_timeout;

  /* Our own duplicate of each connection's socket, or -1: shutting it
   * down ends the connection whatever libnbd is doing (nbd-io.c, note
   * 6).  Closed after the handle. */
  int socks[NBD_MAX_CONNECTIONS];

  /* The event loop (nbd-io.c, note 1), under LOCK. */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool polling;                     /* a thread is in poll() */
  int wake_fd;                      /* eventfd that interrupts it */
  char *lost;                       /* why a connection died, or NULL */
  int aborted;                      /* atomic: errno of nbd_io_abort, or 0 */

  /* Read-modify-write of blocks smaller than min_block (note 4). */
  pthread_mutex_t rmw_lock;
};

/* nbd-io.c */
int nbd_io_init (struct nbd_image *n);
void nbd_io_fini (struct nbd_image *n);

/* Close every connection of N at once, whatever is in flight (note 6 of
 * nbd-io.c): their requests fail, later ones too.  ERR (ETIMEDOUT or
 * EINTR) and WHY (copied) say why.  Only the first call counts. */
void nbd_io_abort (struct nbd_image *n, int err, const char *why);

/* One stage of opening: its deadline and what to call it in messages. */
struct nbd_stage {
  const char *uri;
  const char *what;                 /* "opening the export (NBD_OPT_GO)" */
  double deadline;                  /* now_seconds () time; 0: none */
  double timeout;                   /* the seconds it stands for */
};

/* Run the state machines of HANDLES (NR of them, none shared with
 * another thread yet) until DONE (H, ARG) holds for each, or one dies,
 * or the stage's deadline passes, or a stop is requested.  Returns 0
 * when all are done; otherwise -1 with *FAILED set to the index of the
 * first that is not, and the error set (ETIMEDOUT, EINTR, or libnbd's
 * error) with a message that starts with the URI and names the stage. */
int nbd_run_handshake (const struct nbd_stage *stage,
                       struct nbd_handle **handles, unsigned nr,
                       bool (*done) (struct nbd_handle *h, void *arg),
                       void *arg, unsigned *failed);

/* The same loop for closing: run HANDLES until DONE holds for each, at
 * most SECONDS and not past a stop request; never sets the error.  True
 * when all are done. */
bool nbd_run_quietly (struct nbd_handle **handles, unsigned nr,
                      bool (*done) (struct nbd_handle *h, void *arg),
                      double seconds);

int nbd_io_pread (struct nbd_image *n, void *buf, size_t count,
                  uint64_t offset);
int nbd_io_pwrite (struct nbd_image *n, const void *buf, size_t count,
                   uint64_t offset);
int nbd_io_zero (struct nbd_image *n, size_t count, uint64_t offset,
                 unsigned flags);
int nbd_io_flush (struct nbd_image *n);

/* Append to LIST the extents of CONTEXT over [OFFSET, OFFSET+LENGTH):
 * one block status request, on any connection for base:allocation, on
 * the first (the one that negotiated every context) otherwise. */
int nbd_io_block_status (struct nbd_image *n, const char *context,
                         uint64_t offset, uint64_t length,
                         struct ferry_extent_list *list);

#endif /* FERRY_NBD_INTERNAL_H */
