#define _GNU_SOURCE
#include "nn_syscalls.h"

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Fall back to the x86_64 / aarch64 numbers only where libc's headers lack a name. */
#ifndef SYS_set_mempolicy_home_node
#define SYS_set_mempolicy_home_node 450
#endif

static __thread int last_step;

int nn_last_step(void) { return last_step; }
void nn_clear_step(void) { last_step = NN_STEP_NONE; }

const char *nn_step_name(int step)
{
    static const char *const names[] = {
        [NN_STEP_MMAP] = "mmap",
        [NN_STEP_MMAP_HUGETLB] = "mmap(MAP_HUGETLB)",
        [NN_STEP_MBIND] = "mbind",
        [NN_STEP_HOME_NODE] = "set_mempolicy_home_node",
        [NN_STEP_ROOM] = "the free-memory check of the bound nodes (MemFree in sysfs)",
        [NN_STEP_POPULATE] = "madvise(MADV_POPULATE_WRITE)",
        [NN_STEP_HUGETLB_NODES] = "the huge-page pool of the bound nodes",
        [NN_STEP_SET_MEMPOLICY] = "set_mempolicy",
        [NN_STEP_GET_MEMPOLICY] = "get_mempolicy",
        [NN_STEP_MOVE_PAGES] = "move_pages",
        [NN_STEP_MIGRATE_PAGES] = "migrate_pages",
        [NN_STEP_GETCPU] = "getcpu",
        [NN_STEP_MUNMAP] = "munmap",
    };
    if (step <= NN_STEP_NONE || step >= (int)(sizeof names / sizeof *names))
        return NULL;
    return names[step];
}

long nn_fail(int step, long rc)
{
    last_step = step;
    return rc;
}

/* libc's syscall() gives -1 and errno: turn it into -errno and note the step. */
static long result(int step, long rc) { return rc < 0 ? nn_fail(step, -errno) : rc; }

static int fault_errno[NN_FAULT_OPS];
static int fault_count[NN_FAULT_OPS];

int nn_inject_fault(int op, int err, int count)
{
    if (op < 0 || op >= NN_FAULT_OPS || err < 0 || count < 0)
        return -EINVAL;
    __atomic_store_n(&fault_errno[op], err, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fault_count[op], count, __ATOMIC_SEQ_CST);
    return 0;
}

int nn_take_fault(int op)
{
    int left = __atomic_load_n(&fault_count[op], __ATOMIC_RELAXED);
    while (left > 0) {
        if (__atomic_compare_exchange_n(&fault_count[op], &left, left - 1, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
            return -__atomic_load_n(&fault_errno[op], __ATOMIC_SEQ_CST);
    }
    return 0;
}

long nn_mbind(void *addr, size_t len, int mode, const unsigned long *mask,
              unsigned long maxnode, unsigned flags)
{
    int fault = nn_take_fault(NN_FAULT_MBIND);
    if (fault)
        return nn_fail(NN_STEP_MBIND, fault);
    return result(NN_STEP_MBIND, syscall(SYS_mbind, addr, len, mode, mask, maxnode, flags));
}

long nn_get_mempolicy(int *mode, unsigned long *mask, unsigned long maxnode,
                      void *addr, unsigned long flags)
{
    return result(NN_STEP_GET_MEMPOLICY, syscall(SYS_get_mempolicy, mode, mask, maxnode, addr, flags));
}

long nn_set_mempolicy(int mode, const unsigned long *mask, unsigned long maxnode)
{
    int fault = nn_take_fault(NN_FAULT_SET_MEMPOLICY);
    if (fault)
        return nn_fail(NN_STEP_SET_MEMPOLICY, fault);
    return result(NN_STEP_SET_MEMPOLICY, syscall(SYS_set_mempolicy, mode, mask, maxnode));
}

long nn_move_pages(unsigned long count, void **pages, const int *nodes, int *status,
                   int flags)
{
    int fault = nodes ? nn_take_fault(NN_FAULT_MOVE_PAGES) : 0;
    if (fault) { /* as the kernel says of pages it could not take just now (-EBUSY) */
        for (unsigned long i = 0; i < count; i++)
            status[i] = fault;
        return (long)count;
    }
    return result(NN_STEP_MOVE_PAGES, syscall(SYS_move_pages, 0, count, pages, nodes, status, flags));
}

long nn_migrate_pages(int pid, unsigned long maxnode, const unsigned long *old_nodes,
                      const unsigned long *new_nodes)
{
    return result(NN_STEP_MIGRATE_PAGES, syscall(SYS_migrate_pages, pid, maxnode, old_nodes, new_nodes));
}

long nn_getcpu(unsigned *cpu, unsigned *node)
{
    return result(NN_STEP_GETCPU, syscall(SYS_getcpu, cpu, node, NULL));
}

long nn_set_mempolicy_home_node(void *addr, size_t len, unsigned long home_node)
{
    return result(NN_STEP_HOME_NODE, syscall(SYS_set_mempolicy_home_node, addr, len, home_node, 0));
}
