/* The one file that talks to Python and NumPy: a NEP 49 PyDataMem_Handler per
 * arena, wrapped in a "mem_handler" capsule, and the calls that install it.
 * cffi releases the GIL around every call, so each entry point takes it back. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#include <numpy/arrayobject.h>

#include "nn_arena.h"
#include "nn_handler.h"

#include <stdlib.h>
#include <string.h>

static void *handler_malloc(void *ctx, size_t size) { return nn_arena_malloc(ctx, size); }
static void *handler_calloc(void *ctx, size_t nelem, size_t elsize)
{
    return nn_arena_calloc(ctx, nelem, elsize);
}
static void *handler_realloc(void *ctx, void *ptr, size_t size)
{
    return nn_arena_realloc(ctx, ptr, size);
}
/* NumPy's size argument is sometimes wrong: the block knows its own. */
static void handler_free(void *ctx, void *ptr, size_t size)
{
    (void)size;
    nn_arena_free(ctx, ptr);
}

static void capsule_destroy(PyObject *capsule)
{
    PyDataMem_Handler *h = PyCapsule_GetPointer(capsule, "mem_handler");
    if (!h) {
        PyErr_Clear();
        return;
    }
    nn_arena_destroy(h->allocator.ctx);
    free(h);
}

static int numpy_ready(void)
{
    static int imported;
    if (imported)
        return 0;
    if (PyArray_ImportNumPyAPI() < 0)
        return -1;
    imported = 1;
    return 0;
}

void *nn_handler_new(nn_arena *arena, const char *name)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *capsule = NULL;
    PyDataMem_Handler *h = calloc(1, sizeof *h);
    if (h) {
        strncpy(h->name, name, sizeof h->name - 1);
        h->version = 1;
        h->allocator.ctx = arena;
        h->allocator.malloc = handler_malloc;
        h->allocator.calloc = handler_calloc;
        h->allocator.realloc = handler_realloc;
        h->allocator.free = handler_free;
        capsule = PyCapsule_New(h, "mem_handler", capsule_destroy);
        if (!capsule)
            free(h);
    }
    PyErr_Clear();
    PyGILState_Release(gil);
    return capsule;
}

void nn_handler_release(void *capsule)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    Py_XDECREF((PyObject *)capsule);
    PyGILState_Release(gil);
}

void *nn_handler_install(void *capsule)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *previous = NULL;
    if (numpy_ready() == 0)
        previous = PyDataMem_SetHandler((PyObject *)capsule);
    PyErr_Clear();
    PyGILState_Release(gil);
    return previous;
}

int nn_handler_restore(void *previous)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = -1;
    if (numpy_ready() == 0) {
        PyObject *ours = PyDataMem_SetHandler((PyObject *)previous);
        if (ours) {
            Py_DECREF(ours);
            Py_DECREF((PyObject *)previous);
            rc = 0;
        }
    }
    PyErr_Clear();
    PyGILState_Release(gil);
    return rc;
}

nn_arena *nn_handler_arena(void *capsule)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    PyDataMem_Handler *h = PyCapsule_GetPointer((PyObject *)capsule, "mem_handler");
    PyErr_Clear();
    PyGILState_Release(gil);
    return h ? h->allocator.ctx : NULL;
}
