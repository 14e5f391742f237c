/* Scope cleanups with GCC's cleanup attribute.
 *
 *   CLEANUP_FREE char *path = NULL;     freed when the scope ends
 *   CLEANUP_CLOSE int fd = -1;          closed when >= 0
 *   ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m); unlocked when the scope ends
 */
#ifndef FERRY_CLEANUP_H
#define FERRY_CLEANUP_H

#include <pthread.h>
#include <stdlib.h>

void cleanup_free (void *ptr);
void cleanup_close (int *fd);
void cleanup_unlock (pthread_mutex_t **ptr);

#define CLEANUP_FREE __attribute__ ((cleanup (cleanup_free)))
#define CLEANUP_CLOSE __attribute__ ((cleanup (cleanup_close)))

#define CLEANUP_CONCAT_(a, b) a##b
#define CLEANUP_CONCAT(a, b) CLEANUP_CONCAT_ (a, b)

/* Hold MUTEX until the end of the enclosing scope. */
#define ACQUIRE_LOCK_FOR_CURRENT_SCOPE(mutex)                           \
  __attribute__ ((cleanup (cleanup_unlock), unused))                    \
  pthread_mutex_t *CLEANUP_CONCAT (scoped_lock_, __LINE__) = (mutex);  \
  pthread_mutex_lock (CLEANUP_CONCAT (scoped_lock_, __LINE__))

#endif /* FERRY_CLEANUP_H */
