/* A pool of worker threads, one group per NUMA node, each worker pinned to its
 * node's CPUs. A caller publishes a job of k pieces, runs pieces itself and
 * waits for the rest; every piece may name the node it must run on. Pure C:
 * workers never touch Python. Functions return 0 or -errno. */
#ifndef NN_WORKERS_H
#define NN_WORKERS_H

/* Most pieces one job is split into. */
#define NN_MAX_PIECES 256
/* Most worker threads in the pool. */
#define NN_MAX_WORKERS 1024

/* Runs piece `piece` of a job (in a worker or the caller). */
typedef void (*nn_piece_fn)(void *ctx, int piece);

/* Start the pool: for node group g (of ngroups), node id nodes[g] with
 * ncpus[g] CPUs, listed one group after the other in cpus[]. Each group gets
 * `per_node` workers (0: one per CPU of the node the process may run on),
 * pinned to the node's CPUs intersected with the process's allowed CPUs (a
 * group left with none is skipped). 0, -EINVAL, -EALREADY (running), -ENOMEM
 * or pthread_create's -errno. */
int nn_workers_start(const int *nodes, const int *ncpus, int ngroups, const int *cpus,
                     int per_node);
/* Stop and join every worker (after fork in the child: forget them). 0. */
int nn_workers_stop(void);
/* Workers now (0: stopped, or a forked child whose pool was not restarted). */
int nn_workers_count(void);
/* nn_workers_count, after restarting the pool in a forked child. */
int nn_workers_ready(void);
/* Workers of node `node` (0 when none). */
int nn_workers_on_node(int node);
/* Node ids with workers, up to max into out; returns how many. */
int nn_workers_nodes(int *out, int max);
/* 1 in a worker thread (a job's piece must not split again), else 0. */
int nn_workers_in_worker(void);

/* Run a job: fn(ctx, i) for i in [0, npieces), piece i on a worker of node
 * piece_node[i] (-1 or piece_node NULL: any thread); the caller runs pieces
 * too and returns when all are done. Float exception flags raised by the
 * pieces are raised again in the caller's thread. 0, or without running
 * anything: -EBUSY (another caller's job is running), -EDEADLK (called from a
 * worker), -ESRCH (no workers), -EINVAL. After fork() the child's first call
 * restarts the pool with the parent's settings. */
int nn_workers_run(nn_piece_fn fn, void *ctx, int npieces, const int *piece_node);

/* Test hook: with on != 0 every piece records the CPU and node it ran on. */
void nn_workers_set_record(int on);
/* The last job's record: its pieces' CPUs and nodes (-1: not recorded), up to
 * max; returns the job's number of pieces. */
int nn_workers_record(int *cpus, int *nodes, int max);

typedef struct nn_workers_stats {
    unsigned long long jobs;          /* jobs run by workers and caller */
    unsigned long long pieces_caller; /* pieces the caller ran itself */
    unsigned long long pieces_worker; /* pieces workers ran */
    unsigned long long busy;          /* -EBUSY: another job was running */
    unsigned long long restarts;      /* pools restarted after fork */
    int workers;
    int forked;                       /* the pool was lost to a fork */
} nn_workers_stats;
void nn_workers_stats_get(nn_workers_stats *out);

/* Test hook: a job of npieces that each spin spin_ns nanoseconds (piece
 * raise_piece also raises FE_DIVBYZERO); *flags_after: 1 when the caller's
 * thread has FE_DIVBYZERO raised afterwards; ran[i]: 1 run by the caller,
 * 2 by a worker (raise_piece -2: every piece a worker runs raises); nested[i]:
 * what a job started inside piece i got (-EDEADLK in a worker, -EBUSY in
 * the caller). Returns nn_workers_run's code. */
int nn_workers_selftest(int npieces, const int *piece_node, long spin_ns, int raise_piece,
                        int *flags_after, int *ran, int *nested);

#endif
