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

/* How long the first connection may take to reach option negotiation,
 * and the extra multi-conn ones to be ready.  A server that accepts the
 * TCP connection but never greets (qemu-nbd busy with its one client)
 * would otherwise hang us. */
#define NBD_HANDSHAKE_TIMEOUT_MS 30000
#define NBD_EXTRA_CONN_TIMEOUT_MS 10000

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

  /* The event loop (nbd-io.c, note 1), under LOCK. */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool polling;                     /* a thread is in poll() */
  int wake_fd;                      /* eventfd that interrupts it */
  char *lost;                       /* why a connection died, or NULL */

  /* Read-modify-write of blocks smaller than min_block (note 4). */
  pthread_mutex_t rmw_lock;
};

/* nbd-io.c */
int nbd_io_init (struct nbd_image *n);
void nbd_io_fini (struct nbd_image *n);

/* Run the state machines of HANDLES (NR of them, none shared with
 * another thread yet) until DONE (H, ARG) holds for each, or one dies,
 * or TIMEOUT_MS passes.  Returns 0 when all are done; otherwise -1 with
 * *FAILED set to the index of the first that is not, and the error set
 * with libnbd's message (or a timeout message) prefixed by URI. */
int nbd_run_handshake (const char *uri, struct nbd_handle **handles,
                       unsigned nr, bool (*done) (struct nbd_handle *h),
                       int timeout_ms, unsigned *failed);

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
