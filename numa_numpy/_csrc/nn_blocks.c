/* Whose block a pointer is, read without trusting the pointer: its arena,
 * size and status, its mapping and its parts. */
#define _GNU_SOURCE
#include "nn_arena_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- whose block is this ---- */

/* Copy n bytes from addr without faulting when addr is not readable: a foreign
 * pointer's neighbourhood may be unmapped or PROT_NONE. */
static int read_safely(const void *addr, void *out, size_t n)
{
    struct iovec local = {out, n}, remote = {(void *)addr, n};
    ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (got == (ssize_t)n)
        return 0;
    if (got < 0 && (errno == ENOSYS || errno == EPERM)) {
        /* no process_vm_readv (seccomp): a pipe's write copies or says EFAULT */
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
            return -errno;
        ssize_t w = write(fds[1], addr, n);
        int rc = w == (ssize_t)n && read(fds[0], out, n) == (ssize_t)n ? 0 : -EFAULT;
        close(fds[0]);
        close(fds[1]);
        return rc;
    }
    return -EFAULT;
}

static int arena_is_live(const nn_arena *a)
{
    int live = 0;
    pthread_mutex_lock(&nn_arenas_lock);
    for (nn_arena *x = nn_arenas; x && !live; x = x->next)
        live = x == a;
    pthread_mutex_unlock(&nn_arenas_lock);
    return live;
}

nn_arena *nn_block_owner(void *ptr, size_t *size, int *status)
{
    block b;
    if (!ptr || read_safely(header_of(ptr), &b, sizeof b) || b.magic != MAGIC)
        return NULL;
    nn_arena *owner;
    int st;
    if (b.kind == KIND_LARGE || b.kind == KIND_HUGETLB) {
        size_t lead = b.kind == KIND_HUGETLB ? LARGE_HUGETLB_OFFSET : nn_base_page_size();
        large_head h;
        if (read_safely((char *)ptr - lead, &h, sizeof h) ||
            (char *)h.map.base != (char *)ptr - lead)
            return NULL;
        owner = h.owner;
        st = h.map.status;
    } else if (b.kind < NCLASSES) {
        chunk_head c;
        if (read_safely(chunk_of(ptr), &c, sizeof c))
            return NULL;
        owner = c.owner;
        st = c.status;
    } else {
        return NULL;
    }
    if (!arena_is_live(owner))
        return NULL;
    if (size)
        *size = b.size;
    if (status)
        *status = st;
    return owner;
}

int nn_block_mapping(void *ptr, void **base, size_t *length)
{
    if (!is_large(header_of(ptr)))
        return -EINVAL;
    *base = large_of(ptr)->map.base;
    *length = large_of(ptr)->map.length;
    return 0;
}

int nn_block_parts(void *ptr, size_t *bounds, int max)
{
    block *b = header_of(ptr);
    nn_arena *a = is_large(b) ? large_of(ptr)->owner : chunk_of(ptr)->owner;
    int k = !a->nparts ? 0 : is_large(b) ? a->nparts : 1;
    if (k == 0 || max < k + 1)
        return k;
    bounds[0] = 0;
    for (int i = 1; i < k; i++) {
        size_t c = cuts_of(&large_of(ptr)->map)->cut[i - 1];
        bounds[i] = c < b->size ? c : b->size; /* a block shrunk in place */
    }
    bounds[k] = b->size;
    return k;
}

int nn_block_mark_migrated(void *ptr)
{
    if (!is_large(header_of(ptr)))
        return -EINVAL;
    large_of(ptr)->map.status |= NN_MAP_MIGRATED;
    return 0;
}

/* ---- live partitioned blocks, by address ---- */

/* A small table of the live large blocks of partitioned arenas, for code that
 * holds a pointer into one (a view, a piece of a ufunc's operand) and wants
 * its part bounds without a header to read: nn_large.c adds a block when it is
 * published and drops it before it is freed or moved. */
#define REG_SLOTS 32
typedef struct reg_entry {
    char *start;
    size_t size;
    int nparts;
    size_t bound[NN_REG_PARTS + 1];
    int node[NN_REG_PARTS];
} reg_entry;
static reg_entry reg[REG_SLOTS];
static int reg_lock_word;

static void reg_lock(void)
{
    while (__atomic_exchange_n(&reg_lock_word, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&reg_lock_word, __ATOMIC_RELAXED))
            CPU_RELAX();
}
static void reg_unlock(void) { __atomic_store_n(&reg_lock_word, 0, __ATOMIC_RELEASE); }

/* The node a part's binding names, -1 for several or none. */
static int binding_node(const nn_binding *b)
{
    int node = -1;
    for (size_t w = 0; b->mask && w < b->nwords; w++)
        for (unsigned long bits = b->mask[w]; bits; bits &= bits - 1) {
            if (node >= 0)
                return -1;
            node = (int)(w * 8 * sizeof(unsigned long)) + __builtin_ctzl(bits);
        }
    return node;
}

void nn_parts_add(nn_arena *a, void *ptr, size_t size, const size_t *cut)
{
    int k = a->nparts;
    if (k < 2 || k > NN_REG_PARTS)
        return;
    reg_lock();
    for (int s = 0; s < REG_SLOTS; s++) {
        reg_entry *e = &reg[s];
        if (e->start)
            continue;
        e->size = size;
        e->nparts = k;
        e->bound[0] = 0;
        for (int i = 1; i < k; i++)
            e->bound[i] = cut[i - 1] < size ? cut[i - 1] : size;
        e->bound[k] = size;
        for (int i = 0; i < k; i++)
            e->node[i] = binding_node(&a->parts[i]);
        e->start = ptr;
        break;
    }
    reg_unlock();
}

void nn_parts_drop(void *ptr)
{
    reg_lock();
    for (int s = 0; s < REG_SLOTS; s++)
        if (reg[s].start == ptr)
            reg[s].start = NULL;
    reg_unlock();
}

int nn_parts_find(const void *addr, char **start, size_t *bounds, int *nodes, int max)
{
    int k = 0;
    const char *p = addr;
    reg_lock();
    for (int s = 0; s < REG_SLOTS && !k; s++) {
        reg_entry *e = &reg[s];
        if (!e->start || p < e->start || p >= e->start + e->size || e->nparts > max)
            continue;
        k = e->nparts;
        *start = e->start;
        memcpy(bounds, e->bound, (size_t)(k + 1) * sizeof *bounds);
        memcpy(nodes, e->node, (size_t)k * sizeof *nodes);
    }
    reg_unlock();
    return k;
}
