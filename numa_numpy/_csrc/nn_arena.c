/* The per-policy block allocator: the registry of live arenas, an arena's
 * life, and the malloc / calloc / realloc / free entries (small blocks in
 * nn_small.c, large ones in nn_large.c, the cache in nn_cache.c). */
#define _GNU_SOURCE
#include "nn_arena_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- the registry of live arenas ---- */

/* Declared, with the lock order, in nn_arena_internal.h. */
pthread_mutex_t nn_arenas_lock = PTHREAD_MUTEX_INITIALIZER;
nn_arena *nn_arenas;
size_t nn_narenas;
static unsigned long long next_arena_id = 1;

size_t nn_arena_ids(unsigned long long *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&nn_arenas_lock);
    for (nn_arena *a = nn_arenas; a; a = a->next, n++)
        if (n < max)
            out[n] = a->id;
    pthread_mutex_unlock(&nn_arenas_lock);
    return n;
}

static nn_arena *find_arena(unsigned long long id)
{
    for (nn_arena *a = nn_arenas; a; a = a->next)
        if (a->id == id)
            return a;
    return NULL;
}

int nn_arena_stats_by_id(unsigned long long id, nn_arena_stats *out)
{
    pthread_mutex_lock(&nn_arenas_lock);
    nn_arena *a = find_arena(id);
    if (a)
        nn_arena_stats_get(a, out);
    pthread_mutex_unlock(&nn_arenas_lock);
    return a ? 0 : -ENOENT;
}

long long nn_arena_trim_by_id(unsigned long long id)
{
    pthread_mutex_lock(&nn_arenas_lock);
    nn_arena *a = find_arena(id);
    long long released = a ? (long long)nn_arena_trim(a) : -ENOENT;
    pthread_mutex_unlock(&nn_arenas_lock);
    return released;
}

/* ---- arenas ---- */

nn_arena *nn_arena_new(const nn_binding *binding, int huge, const nn_prefault_plan *prefault,
                       int strict)
{
    static const nn_prefault_plan none = {NN_PREFAULT_NONE, 0, NULL, 0};
    if (!prefault)
        prefault = &none;
    size_t nwords = binding->mask ? binding->nwords : 0;
    int ncpus = prefault->cpus ? prefault->ncpus : 0;
    nn_arena *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->binding = *binding;
    a->binding.nwords = nwords;
    a->binding.mask = NULL;
    if (nwords) {
        a->binding.mask = malloc(nwords * sizeof *binding->mask);
        if (!a->binding.mask) {
            free(a);
            return NULL;
        }
        memcpy(a->binding.mask, binding->mask, nwords * sizeof *binding->mask);
    }
    if (ncpus > 0) {
        a->cpus = malloc((size_t)ncpus * sizeof *prefault->cpus);
        if (!a->cpus) {
            free(a->binding.mask);
            free(a);
            return NULL;
        }
        memcpy(a->cpus, prefault->cpus, (size_t)ncpus * sizeof *prefault->cpus);
    }
    a->huge = huge;
    a->strict = strict;
    a->enforced = 1;
    a->prefault = (nn_prefault_plan){prefault->mode, prefault->nthreads, a->cpus,
                                     ncpus > 0 ? ncpus : 0};
    a->stats.cache_limit = SIZE_MAX; /* none of its own until set: the budget alone */
    a->stats.small_limit = SMALL_MAX;
    a->stats.enforced = 1;

    nn_cache_init();
    pthread_mutex_lock(&nn_arenas_lock);
    a->id = next_arena_id++;
    a->stats.id = a->id;
    a->next = nn_arenas;
    if (nn_arenas)
        nn_arenas->prev = a;
    nn_arenas = a;
    nn_narenas++;
    pthread_mutex_unlock(&nn_arenas_lock);
    return a;
}

void nn_arena_destroy(nn_arena *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&nn_arenas_lock);
    if (a->prev)
        a->prev->next = a->next;
    else
        nn_arenas = a->next;
    if (a->next)
        a->next->prev = a->prev;
    nn_narenas--;
    pthread_mutex_unlock(&nn_arenas_lock);
    nn_arena_trim(a);
    for (chunk_head *c = a->chunks, *next; c; c = next) {
        next = c->next;
        munmap(c, CHUNK_SIZE);
    }
    free(a->binding.mask);
    for (int i = 0; i < a->nparts; i++)
        free(a->parts[i].mask);
    free(a->parts);
    free(a->cpus);
    free(a);
}

static int probe_binding(const nn_binding *b)
{
    nn_mapping m;
    nn_prefault_plan none = {NN_PREFAULT_NONE, 0, NULL, 0};
    int rc = nn_map(b, nn_base_page_size(), 0, NN_HUGE_NONE, &none, NN_MAP_STRICT, &m);
    if (rc == 0)
        nn_unmap(&m);
    return rc;
}

int nn_arena_probe(nn_arena *a)
{
    int rc = probe_binding(&a->binding);
    for (int i = 0; rc == 0 && i < a->nparts; i++)
        rc = probe_binding(&a->parts[i]);
    return rc;
}

int nn_arena_set_parts(nn_arena *a, const nn_binding *parts, int nparts)
{
    if (nparts < 1 || nparts > NN_MAX_PARTS || is_hugetlb(a->huge) || a->nparts)
        return -EINVAL;
    nn_binding *copy = calloc((size_t)nparts, sizeof *copy);
    if (!copy)
        return -ENOMEM;
    for (int i = 0; i < nparts; i++) {
        copy[i] = parts[i];
        copy[i].mask = NULL;
        copy[i].nwords = parts[i].mask ? parts[i].nwords : 0;
        if (copy[i].nwords) {
            copy[i].mask = malloc(copy[i].nwords * sizeof *copy[i].mask);
            if (!copy[i].mask) {
                while (i--)
                    free(copy[i].mask);
                free(copy);
                return -ENOMEM;
            }
            memcpy(copy[i].mask, parts[i].mask, copy[i].nwords * sizeof *copy[i].mask);
        }
    }
    a->parts = copy;
    a->nparts = nparts;
    return 0;
}

void nn_arena_disable_binding(nn_arena *a, int err)
{
    lock(a);
    a->enforced = 0;
    a->stats.enforced = 0;
    a->stats.last_error = err;
    unlock(a);
}
void nn_arena_stats_get(nn_arena *a, nn_arena_stats *out)
{
    lock(a);
    *out = a->stats;
    unlock(a);
}

/* ---- the allocator interface ---- */

static void *too_large(nn_arena *a)
{
    lock(a);
    a->stats.last_error = ENOMEM;
    unlock(a);
    return NULL;
}

void *nn_arena_malloc(nn_arena *a, size_t size)
{
    if (size <= SMALL_MAX)
        return nn_small_alloc(a, size, 0);
    if (size > MAX_REQUEST)
        return too_large(a);
    return nn_large_alloc(a, size, 0);
}

void *nn_arena_calloc(nn_arena *a, size_t nelem, size_t elsize)
{
    size_t size;
    if (__builtin_mul_overflow(nelem, elsize, &size) || size > MAX_REQUEST)
        return too_large(a);
    if (size <= SMALL_MAX)
        return nn_small_alloc(a, size, 1);
    return nn_large_alloc(a, size, 1);
}

void nn_arena_free(nn_arena *a, void *ptr)
{
    if (!ptr)
        return;
    block *b = header_of(ptr);
    if (is_large(b))
        nn_large_free(a, ptr);
    else
        nn_small_free(a, b);
}

void *nn_arena_realloc(nn_arena *a, void *ptr, size_t size)
{
    if (!ptr)
        return nn_arena_malloc(a, size);
    if (size > MAX_REQUEST)
        return too_large(a); /* the old block stays valid */
    block *b = header_of(ptr);
    size_t old = b->size;
    if (!is_large(b)) {
        if (size <= SMALL_MAX && nn_size_class(size) == (int)b->kind) {
            lock(a);
            a->stats.used_bytes += size - old;
            note_peak(a);
            unlock(a);
            b->size = size;
            return ptr;
        }
    } else if (size > SMALL_MAX) {
        void *moved = nn_large_resize(a, ptr, size);
        if (moved)
            return moved;
    }
    void *fresh = nn_arena_malloc(a, size);
    if (!fresh)
        return NULL; /* the old block stays valid, as realloc promises */
    memcpy(fresh, ptr, old < size ? old : size);
    nn_arena_free(a, ptr);
    return fresh;
}

