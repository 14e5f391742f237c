/* Typed growable arrays.
 *
 *   DEFINE_VECTOR_TYPE (u64_vector, uint64_t);
 *   u64_vector v = empty_vector;
 *   if (u64_vector_append (&v, 42) == -1) ...   (errno ENOMEM, error set)
 *   free (v.ptr);
 *
 * Growth is checked for overflow; a failed append leaves V as it was.
 */
#ifndef FERRY_VECTOR_H
#define FERRY_VECTOR_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define empty_vector { .ptr = NULL, .len = 0, .cap = 0 }

/* Make room for N more items of ITEMSIZE bytes in the vector at V
 * (whose first three members are ptr, len, cap).  0 or -1 (ENOMEM). */
int generic_vector_reserve (void *v, size_t n, size_t itemsize);

#define DEFINE_VECTOR_TYPE(name, type)                                  \
  typedef struct name {                                                 \
    type *ptr;                                                          \
    size_t len;                                                         \
    size_t cap;                                                         \
  } name;                                                               \
                                                                        \
  static inline int __attribute__ ((unused))                            \
  name##_reserve (name *v, size_t n)                                    \
  {                                                                     \
    return generic_vector_reserve (v, n, sizeof (type));               \
  }                                                                     \
                                                                        \
  static inline int __attribute__ ((unused))                            \
  name##_append (name *v, type elem)                                    \
  {                                                                     \
    if (v->len >= v->cap && name##_reserve (v, 1) == -1)               \
      return -1;                                                        \
    v->ptr[v->len++] = elem;                                            \
    return 0;                                                           \
  }                                                                     \
                                                                        \
  static inline void __attribute__ ((unused))                           \
  name##_reset (name *v)                                                \
  {                                                                     \
    free (v->ptr);                                                      \
    v->ptr = NULL;                                                      \
    v->len = v->cap = 0;                                                \
  }

#endif /* FERRY_VECTOR_H */
