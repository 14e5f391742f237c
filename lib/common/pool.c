/* The object pool of pool.h. */
#include "pool.h"

void *
pool_get (struct pool *pool)
{
  void *item = NULL;

  pthread_mutex_lock (&pool->lock);
  if (pool->len > 0)
    item = pool->items[--pool->len];
  pthread_mutex_unlock (&pool->lock);
  return item;
}

void
pool_put (struct pool *pool, void *item, void (*free_fn) (void *))
{
  if (item == NULL)
    return;
  pthread_mutex_lock (&pool->lock);
  if (pool->len < POOL_SIZE) {
    pool->items[pool->len++] = item;
    item = NULL;
  }
  pthread_mutex_unlock (&pool->lock);
  if (item)
    free_fn (item);
}

void
pool_drain (struct pool *pool, void (*free_fn) (void *))
{
  while (pool->len > 0)
    free_fn (pool->items[--pool->len]);
}
