/* A stack of reusable objects (compression contexts, buffers), so that
 * concurrent callers each get their own without allocating one per call.
 *
 *   struct pool p = POOL_INIT;
 *   void *c = pool_get (&p);            NULL: make a new one
 *   ...
 *   pool_put (&p, c, free_fn);          kept, or freed when the pool is full
 *   pool_drain (&p, free_fn);           at the end
 */
#ifndef FERRY_POOL_H
#define FERRY_POOL_H

#include <pthread.h>
#include <stddef.h>

#define POOL_SIZE 64

struct pool {
  pthread_mutex_t lock;
  void *items[POOL_SIZE];
  size_t len;
};

#define POOL_INIT { .lock = PTHREAD_MUTEX_INITIALIZER, .len = 0 }

/* Take an object from POOL, or NULL when it is empty. */
void *pool_get (struct pool *pool);

/* Give ITEM (may be NULL) back to POOL, freeing it with FREE_FN when the
 * pool is full. */
void pool_put (struct pool *pool, void *item, void (*free_fn) (void *));

/* Free every object left in POOL. */
void pool_drain (struct pool *pool, void (*free_fn) (void *));

#endif /* FERRY_POOL_H */
