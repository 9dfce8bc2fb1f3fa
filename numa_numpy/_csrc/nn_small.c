/* Small blocks: size classes, and the policy-bound 1 MiB chunks they are
 * carved from; an emptied chunk goes to the cache or the kernel. */
#define _GNU_SOURCE
#include "nn_arena_internal.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

/* ---- size classes, counted on the request so power-of-two arrays fit exactly ---- */

/* Requests 1..128 by 16, then four classes per power of two up to SMALL_MAX. */
int nn_size_class(size_t size)
{
    if (size <= 128)
        return size <= 16 ? 0 : (int)((size + 15) / 16) - 1;
    int p = 63 - __builtin_clzll((unsigned long long)(size - 1));
    size_t step = (size_t)1 << (p - 2);
    return 8 + (p - 7) * 4 + (int)((size - ((size_t)1 << p) + step - 1) / step) - 1;
}

/* Bytes a class takes in a chunk: its largest request plus the header. */
static size_t class_bytes(int idx)
{
    size_t request;
    if (idx < 8) {
        request = 16 * (size_t)(idx + 1);
    } else {
        int q = (idx - 8) / 4, r = (idx - 8) % 4, p = 7 + q;
        request = ((size_t)1 << p) + (size_t)(r + 1) * ((size_t)1 << (p - 2));
    }
    return request + HEADER;
}

size_t nn_arena_check_size_classes(void)
{
    for (size_t size = 1; size <= SMALL_MAX; size++) {
        int idx = nn_size_class(size);
        /* the class holds the request, and the class below would not */
        if (idx < 0 || idx >= NCLASSES || class_bytes(idx) - HEADER < size ||
            (idx > 0 && class_bytes(idx - 1) - HEADER >= size))
            return size;
    }
    for (int idx = 0; idx < NCLASSES; idx++) /* each class's largest request maps back */
        if (nn_size_class(class_bytes(idx) - HEADER) != idx)
            return class_bytes(idx) - HEADER;
    return 0;
}

/* ---- small blocks ---- */

static int chunk_huge(const nn_arena *a) { return a->huge == NN_HUGE_NONE ? NN_HUGE_NONE : NN_HUGE_SYSTEM; }

/* A new CHUNK_SIZE-aligned, policy-bound chunk, mapped without the arena's
 * lock (mmap + mbind take microseconds; other threads' small blocks go on). */
static int map_chunk(nn_arena *a, chunk_head **out, nn_mapping *m)
{
    nn_prefault_plan none = {NN_PREFAULT_NONE, 0, NULL, 0};
    int huge = chunk_huge(a);
    /* Over-map so a CHUNK_SIZE-aligned window exists, then trim. */
    int rc = nn_map(&a->binding, 2 * CHUNK_SIZE, 0, huge, &none, map_options(a), m);
    if (rc)
        return rc;
    char *start = m->base;
    char *aligned = (char *)(((uintptr_t)start + CHUNK_SIZE - 1) & ~(uintptr_t)(CHUNK_SIZE - 1));
    if (aligned > start)
        munmap(start, (size_t)(aligned - start));
    if (start + m->length > aligned + CHUNK_SIZE)
        munmap(aligned + CHUNK_SIZE, (size_t)(start + m->length - aligned - CHUNK_SIZE));
    chunk_head *c = (chunk_head *)aligned;
    c->owner = a;
    c->status = m->status;
    c->live = 0;
    c->end = (char *)c + CHUNK_HEAD;
    *out = c;
    return 0;
}

/* Carve from c next (lock held); `dirty`: its free space may hold old bytes. */
static void use_chunk(nn_arena *a, chunk_head *c, int dirty)
{
    if (a->cur)
        a->cur->end = a->bump;
    a->cur = c;
    c->end = (char *)c + CHUNK_HEAD;
    a->bump = (char *)c + CHUNK_HEAD;
    a->bump_end = (char *)c + CHUNK_SIZE;
    a->bump_dirty = dirty;
}

static void link_chunk(nn_arena *a, chunk_head *c)
{
    c->prev = NULL;
    c->next = a->chunks;
    if (a->chunks)
        a->chunks->prev = c;
    a->chunks = c;
    a->stats.chunk_bytes += CHUNK_SIZE;
}

static void unlink_chunk(nn_arena *a, chunk_head *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        a->chunks = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->stats.chunk_bytes -= CHUNK_SIZE;
}

/* Take every block carved from chunk c (up to `end`; all free) off the free
 * lists (lock held). Each block's class says where the next one starts. */
static void unlist_blocks(nn_arena *a, chunk_head *c, char *end)
{
    for (char *p = (char *)c + CHUNK_HEAD; p < end;) {
        free_block *f = (free_block *)p;
        int idx = (int)f->kind;
        if (idx < 0 || idx >= NCLASSES || f->magic != MAGIC)
            break; /* cannot happen: blocks are carved back to back */
        if (a->free_lists[idx] == f)
            a->free_lists[idx] = f->next;
        else
            f->prev->next = f->next;
        if (f->next)
            f->next->prev = f->prev;
        p += class_bytes(idx);
    }
}

/* The newest idle emptied chunk in a's cache (lock held), or -1. */
static int cached_chunk(const nn_arena *a)
{
    for (int i = a->ncached - 1; i >= 0; i--)
        if (a->cache[i].chunk && !a->cache[i].busy)
            return i;
    return -1;
}

/* An emptied chunk leaves the small blocks (a's lock not held): into the
 * cache under the budget's rules, as a freed large block would, or unmapped. */
static void chunk_release(nn_arena *a, chunk_head *c)
{
    nn_mapping m = {c, CHUNK_SIZE, nn_base_page_size(), chunk_huge(a), c->status, 0};
    int cached = 0;
    if (nn_cacheable(a, CHUNK_SIZE)) {
        if (a->ncached == CACHE_SLOTS || a->stats.cached_bytes + CHUNK_SIZE > a->stats.cache_limit)
            nn_cache_make_room(a, CHUNK_SIZE);
        uint64_t now = nn_now_ms();
        lock(a);
        cached = nn_cache_insert(a, &m, 1, now);
        unlock(a);
    }
    if (!cached) {
        nn_unmap(&m);
        return;
    }
    nn_cache_settle(a);
}

/* Room for `bytes` at the bump pointer; called and returns with the lock held. */
static int grow_chunks(nn_arena *a, size_t bytes)
{
    while ((size_t)(a->bump_end - a->bump) < bytes) {
        if (a->cur && a->cur->live == 0) {
            /* every block carved from the current chunk is free: carve it anew */
            unlist_blocks(a, a->cur, a->bump);
            a->bump = (char *)a->cur + CHUNK_HEAD;
            a->bump_dirty = 1;
            continue;
        }
        if (a->spare) {
            use_chunk(a, a->spare, 0);
            a->spare = NULL;
            continue;
        }
        int i = cached_chunk(a);
        if (i >= 0) { /* an emptied chunk from the cache: no system call */
            cache_entry e = nn_cache_remove(a, i);
            chunk_head *c = e.map.base;
            c->owner = a;
            c->status = e.map.status;
            c->live = 0;
            link_chunk(a, c);
            use_chunk(a, c, 1);
            continue;
        }
        chunk_head *c = NULL; /* set by map_chunk when it returns 0 */
        nn_mapping m;
        unlock(a);
        int rc = map_chunk(a, &c, &m);
        lock(a);
        if (rc) {
            a->stats.last_error = -rc;
            return rc;
        }
        note_mapping(a, &m);
        link_chunk(a, c);
        if ((size_t)(a->bump_end - a->bump) >= bytes && !a->spare)
            a->spare = c; /* another thread grew meanwhile: keep ours for later */
        else
            use_chunk(a, c, 0);
    }
    return 0;
}

void *nn_small_alloc(nn_arena *a, size_t size, int zero)
{
    int idx = nn_size_class(size);
    size_t bytes = class_bytes(idx);
    block *b;
    int fresh = 0;
    lock(a);
    free_block *f = a->free_lists[idx];
    if (f) {
        a->free_lists[idx] = f->next; /* the new head's prev goes stale: never read */
        b = (block *)f;
    } else {
        if (grow_chunks(a, bytes)) {
            unlock(a);
            return NULL;
        }
        b = (block *)a->bump;
        a->bump += bytes;
        fresh = !a->bump_dirty; /* never handed out: still zero */
    }
    chunk_of(b)->live++;
    a->stats.used_bytes += size;
    note_peak(a);
    a->stats.live_blocks++;
    unlock(a);
    b->size = size;
    b->kind = (uint32_t)idx;
    b->magic = MAGIC;
    if (zero && !fresh)
        memset(b + 1, 0, size);
    return b + 1;
}

void nn_small_free(nn_arena *a, block *b)
{
    chunk_head *c = chunk_of(b);
    free_block *f = (free_block *)b;
    uint32_t idx = b->kind;
    lock(a);
    a->stats.used_bytes -= b->size;
    a->stats.live_blocks--;
    free_block *head = a->free_lists[idx];
    f->next = head;
    if (head)
        head->prev = f;
    a->free_lists[idx] = f;
    int empty = --c->live == 0 && c != a->cur;
    if (empty) { /* rare: a chunk's last block */
        unlist_blocks(a, c, c->end);
        unlink_chunk(a, c);
        a->stats.released_chunk_bytes += CHUNK_SIZE;
    }
    unlock(a);
    if (empty)
        chunk_release(a, c);
}

