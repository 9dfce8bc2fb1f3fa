/* Whose block a pointer is, read without trusting the pointer: its arena,
 * size and status, its mapping and its parts. */
#define _GNU_SOURCE
#include "nn_arena_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
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
