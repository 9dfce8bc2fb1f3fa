#include "nn_files.h"
#include "nn_workers.h"

#include <errno.h>
#include <sys/types.h>
#include <sys/uio.h>

#define CHUNK ((size_t)1 << 30) /* bytes per preadv call: well under its limit */

typedef struct read_job {
    int fd;
    char *const *dests;
    const long long *offsets;
    const size_t *lengths;
    int *errs;
} read_job;

/* One piece, to its end: short reads continue, EINTR retries, the end of
 * the file first is -ENODATA. */
static int read_piece(const read_job *job, int i)
{
    char *dest = job->dests[i];
    off_t at = (off_t)job->offsets[i];
    size_t left = job->lengths[i];
    while (left > 0) {
        struct iovec iov = {dest, left < CHUNK ? left : CHUNK};
        ssize_t got = preadv(job->fd, &iov, 1, at);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (got == 0)
            return -ENODATA;
        dest += got;
        at += got;
        left -= (size_t)got;
    }
    return 0;
}

static void run_piece(void *ctx, int piece)
{
    read_job *job = ctx;
    job->errs[piece] = read_piece(job, piece);
}

int nn_files_read(int fd, char *const *dests, const long long *offsets, const size_t *lengths,
                  const int *nodes, int npieces, int *errs)
{
    int local[NN_MAX_PIECES];
    if (fd < 0 || npieces < 0 || npieces > NN_MAX_PIECES || (npieces && (!dests || !offsets || !lengths)))
        return -EINVAL;
    for (int i = 0; i < npieces; i++)
        if (offsets[i] < 0)
            return -EINVAL;
    read_job job = {fd, dests, offsets, lengths, errs ? errs : local};
    int rc = npieces > 1 ? nn_workers_run(run_piece, &job, npieces, nodes) : -ESRCH;
    if (rc == -ESRCH || rc == -EBUSY || rc == -EDEADLK) {
        /* no pool, another job running, or called from a worker: read here */
        for (int i = 0; i < npieces; i++)
            run_piece(&job, i);
    } else if (rc < 0) {
        return rc;
    }
    for (int i = 0; i < npieces; i++)
        if (job.errs[i] < 0)
            return job.errs[i];
    return 0;
}
