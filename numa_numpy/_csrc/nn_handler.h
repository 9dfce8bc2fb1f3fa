/* NEP 49 handlers over nn_arena. Capsules travel to Python as opaque pointers
 * (cffi cannot return PyObject *). */
#ifndef NN_HANDLER_H
#define NN_HANDLER_H

#include "nn_arena.h"

/* A new "mem_handler" capsule owning `arena` (destroyed with the capsule, after
 * the last array it allocated). Returns a new reference or NULL. */
void *nn_handler_new(nn_arena *arena, const char *name);
/* Drop a reference taken by nn_handler_new. */
void nn_handler_release(void *capsule);
/* Make `capsule` NumPy's handler in the current context; returns the previous
 * handler (a new reference, to pass to nn_handler_restore) or NULL on failure. */
void *nn_handler_install(void *capsule);
/* Reinstate `previous` and drop the references install took. 0 or -1. */
int nn_handler_restore(void *previous);
nn_arena *nn_handler_arena(void *capsule);

#endif
