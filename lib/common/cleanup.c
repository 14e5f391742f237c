/* The functions behind the CLEANUP_* attributes of cleanup.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "cleanup.h"

/* Free *PTR (PTR points at the variable that holds the pointer). */
void
cleanup_free (void *ptr)
{
  free (*(void **) ptr);
}

/* Close *FD when it is open, keeping errno as it was. */
void
cleanup_close (int *fd)
{
  if (*fd >= 0) {
    int saved = errno;
    close (*fd);
    errno = saved;
  }
}

/* Unlock the mutex that ACQUIRE_LOCK_FOR_CURRENT_SCOPE took. */
void
cleanup_unlock (pthread_mutex_t **ptr)
{
  pthread_mutex_unlock (*ptr);
}
