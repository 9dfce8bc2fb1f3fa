#include "nn_placement.h"
#include "nn_syscalls.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#define BATCH 4096 /* pages per move_pages call: bounds the temporary arrays */

static int pages_call(char *start, size_t npages, size_t page, const int *nodes,
                      size_t nnodes, int flags, int *status)
{
    void **pages = malloc(BATCH * sizeof *pages);
    int *targets = nodes ? malloc(BATCH * sizeof *targets) : NULL;
    int rc = 0;
    if (!pages || (nodes && !targets)) {
        free(pages);
        free(targets);
        return -ENOMEM;
    }
    for (size_t done = 0; done < npages && rc >= 0; done += BATCH) {
        size_t n = npages - done < BATCH ? npages - done : BATCH;
        for (size_t i = 0; i < n; i++) {
            pages[i] = start + (done + i) * page;
            if (targets)
                targets[i] = nodes[nnodes == 1 ? 0 : done + i];
        }
        long r = nn_move_pages(n, pages, targets, status + done, flags);
        /* A positive result counts pages that could not be moved: their
         * status says why, so it is not a failure of the call. */
        rc = r < 0 ? (int)r : 0;
    }
    free(pages);
    free(targets);
    return rc;
}

int nn_query_pages(void *start, size_t npages, size_t page_size, int *status)
{
    return pages_call(start, npages, page_size, NULL, 0, 0, status);
}

int nn_move_range(void *start, size_t npages, size_t page_size, const int *nodes,
                  size_t nnodes, int move_all, int *status)
{
    if (nnodes == 0 || (nnodes != 1 && nnodes != npages))
        return -EINVAL;
    int flags = move_all ? NN_MPOL_MF_MOVE_ALL : NN_MPOL_MF_MOVE;
    int rc = pages_call(start, npages, page_size, nodes, nnodes, flags, status);
    /* -EBUSY: the kernel could not take the page just now (freshly faulted
     * pages wait in per-CPU batches before they can be isolated): try again. */
    for (int round = 0; rc == 0 && round < 3; round++) {
        int busy = 0;
        for (size_t i = 0; i < npages; i++) {
            if (status[i] != -EBUSY)
                continue;
            if (!busy++)
                sched_yield();
            rc = pages_call((char *)start + i * page_size, 1, page_size,
                            nodes + (nnodes == 1 ? 0 : i), 1, flags, status + i);
            if (rc)
                break;
        }
        if (!busy)
            break;
    }
    return rc;
}
