/* Growth for the typed vectors of vector.h. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "error.h"
#include "vector.h"

struct generic_vector {
  void *ptr;
  size_t len;
  size_t cap;
};

/* Grow to hold N more items, doubling so appends stay amortised O(1). */
int
generic_vector_reserve (void *vp, size_t n, size_t itemsize)
{
  struct generic_vector *v = vp;
  size_t want, newcap, bytes;
  void *p;

  if (__builtin_add_overflow (v->len, n, &want))
    goto nomem;
  if (want <= v->cap)
    return 0;
  newcap = v->cap < 8 ? 8 : v->cap;
  while (newcap < want)
    if (__builtin_mul_overflow (newcap, 2, &newcap))
      goto nomem;
  if (__builtin_mul_overflow (newcap, itemsize, &bytes))
    goto nomem;
  p = realloc (v->ptr, bytes);
  if (p == NULL)
    goto nomem;
  v->ptr = p;
  v->cap = newcap;
  return 0;

 nomem:
  ferry_error (ENOMEM, "out of memory growing a table to %zu entries", n);
  return -1;
}
