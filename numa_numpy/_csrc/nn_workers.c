/* Worker threads pinned per NUMA node, and the hand-off of one job at a time.
 *
 * A job is k pieces in a static slot. The caller fills the slot, stamps every
 * piece's claim word with the job's generation g (2g: free), bumps the pool's
 * generation (a futex word) and wakes the sleeping workers. Workers and the
 * caller claim pieces by compare-and-swap 2g -> 2g + 1, so a worker that wakes
 * late can never take a piece of a later job: the stamp says whose it is. A
 * piece that names a node is claimed only by that node's workers (or by the
 * caller when it is pinned there: an unpinned caller may be moved off the node
 * mid-piece, so it takes only pieces that name none). The caller waits for the pieces' done count
 * (spinning briefly, then on the futex). One job at a time: a second caller
 * gets -EBUSY and runs its loop itself. Never touches Python. */
#define _GNU_SOURCE
#include "nn_workers.h"

#include <errno.h>
#include <fenv.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define RELAX() __asm__ __volatile__("yield")
#else
#define RELAX() ((void)0)
#endif

#define MAX_GROUPS 64
#define MAX_CPU CPU_SETSIZE
/* Spins before sleeping on a futex: a few tens of microseconds, so that
 * back-to-back calls find the workers awake, without burning a core idle. */
#define WORKER_SPINS 4000
#define CALLER_SPINS 20000

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

typedef struct job {
    nn_piece_fn fn;
    void *ctx;
    int npieces;
    int node[NN_MAX_PIECES];
    unsigned claim[NN_MAX_PIECES]; /* 2g: free in job g; 2g + 1: taken */
    int fpe;                       /* OR of the pieces' float exception flags */
    int rec_cpu[NN_MAX_PIECES], rec_node[NN_MAX_PIECES];
} job;

static struct {
    pthread_mutex_t run_lock; /* one job (or start/stop) at a time */
    unsigned gen;             /* futex: the current job's generation */
    int sleepers;             /* workers asleep on gen */
    unsigned done;            /* futex: pieces of the current job done */
    int caller_waiting;
    int stop;
    int nworkers;
    pthread_t tid[NN_MAX_WORKERS];
    int wnode[NN_MAX_WORKERS];
    /* the settings, kept to restart the pool in a forked child */
    int ngroups, per_node;
    int gnode[MAX_GROUPS];
    cpu_set_t gset[MAX_GROUPS];
    int forked, record;
    nn_workers_stats stats;
} P = {.run_lock = PTHREAD_MUTEX_INITIALIZER};

static job J;
static short cpu_node[MAX_CPU]; /* node of each CPU of the groups, -1 elsewhere */
static __thread int in_worker;

static long futex(unsigned *addr, int op, unsigned val)
{
    return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

static int node_of(int cpu) { return cpu >= 0 && cpu < MAX_CPU ? cpu_node[cpu] : -1; }

static void run_piece(int i, int caller)
{
    feclearexcept(FE_ALL_EXCEPT);
    J.fn(J.ctx, i);
    int flags = fetestexcept(FE_ALL_EXCEPT);
    if (flags)
        __atomic_fetch_or(&J.fpe, flags, __ATOMIC_RELAXED);
    if (__atomic_load_n(&P.record, __ATOMIC_RELAXED)) {
        int cpu = sched_getcpu();
        J.rec_cpu[i] = cpu;
        J.rec_node[i] = node_of(cpu);
    }
    __atomic_fetch_add(caller ? &P.stats.pieces_caller : &P.stats.pieces_worker, 1,
                       __ATOMIC_RELAXED);
    if (__atomic_add_fetch(&P.done, 1, __ATOMIC_SEQ_CST) == (unsigned)J.npieces &&
        !caller && __atomic_load_n(&P.caller_waiting, __ATOMIC_SEQ_CST))
        futex(&P.done, FUTEX_WAKE_PRIVATE, 1);
}

/* The node whose pieces the caller may run: the one node all CPUs of its
 * affinity are on (a pinned caller), else -1. */
static int caller_node(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return -1;
    int node = -1;
    for (int cpu = 0; cpu < MAX_CPU; cpu++) {
        if (!CPU_ISSET(cpu, &set))
            continue;
        int n = node_of(cpu);
        if (n < 0 || (node >= 0 && n != node))
            return -1;
        node = n;
    }
    return node;
}

/* Claim and run the pieces of job g this thread may take. */
static void take_pieces(unsigned g, int node, int caller)
{
    int k = __atomic_load_n(&J.npieces, __ATOMIC_RELAXED);
    if (k > NN_MAX_PIECES)
        k = NN_MAX_PIECES;
    for (int i = 0; i < k; i++) {
        unsigned c = LOAD(&J.claim[i]);
        if (c != 2u * g)
            continue;
        int want = J.node[i];
        if (want >= 0 && want != node)
            continue;
        if (__atomic_compare_exchange_n(&J.claim[i], &c, c + 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            run_piece(i, caller);
    }
}

typedef struct start_arg {
    int idx;
    unsigned gen;
} start_arg;
static start_arg start_args[NN_MAX_WORKERS];

static void *worker_main(void *arg)
{
    start_arg *s = arg;
    unsigned seen = s->gen;
    int node = P.wnode[s->idx];
    in_worker = 1;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = LOAD(&P.gen)) == seen) {
            if (++spins < WORKER_SPINS) {
                RELAX();
                continue;
            }
            __atomic_add_fetch(&P.sleepers, 1, __ATOMIC_SEQ_CST);
            if (__atomic_load_n(&P.gen, __ATOMIC_SEQ_CST) == seen)
                futex(&P.gen, FUTEX_WAIT_PRIVATE, seen);
            __atomic_sub_fetch(&P.sleepers, 1, __ATOMIC_SEQ_CST);
            spins = 0;
        }
        seen = g;
        if (LOAD(&P.stop))
            return NULL;
        take_pieces(g, node, 0);
    }
}

static void stop_locked(void)
{
    STORE(&P.stop, 1);
    __atomic_add_fetch(&P.gen, 1, __ATOMIC_SEQ_CST);
    futex(&P.gen, FUTEX_WAKE_PRIVATE, INT_MAX);
    for (int i = 0; i < P.nworkers; i++)
        pthread_join(P.tid[i], NULL);
    P.nworkers = 0;
    STORE(&P.stop, 0);
}

/* Start the workers of the saved groups (run_lock held). */
static int spawn_locked(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with Python's threads */
    int rc = 0;
    for (int g = 0; g < P.ngroups && rc == 0; g++) {
        int n = P.per_node > 0 ? P.per_node : CPU_COUNT(&P.gset[g]);
        for (int j = 0; j < n && rc == 0; j++) {
            if (P.nworkers == NN_MAX_WORKERS)
                break;
            int idx = P.nworkers;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setaffinity_np(&attr, sizeof(cpu_set_t), &P.gset[g]);
            P.wnode[idx] = P.gnode[g];
            start_args[idx] = (start_arg){idx, LOAD(&P.gen)};
            rc = -pthread_create(&P.tid[idx], &attr, worker_main, &start_args[idx]);
            pthread_attr_destroy(&attr);
            if (rc == 0)
                P.nworkers++;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        stop_locked();
    P.stats.workers = P.nworkers;
    return rc;
}

static void after_fork_child(void)
{
    pthread_mutex_init(&P.run_lock, NULL);
    if (P.nworkers)
        P.forked = 1;
    P.nworkers = 0;
    P.sleepers = 0;
    P.stop = 0;
    P.caller_waiting = 0;
    P.stats.workers = 0;
    in_worker = 0;
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void register_fork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

static int save_groups(const int *nodes, const int *ncpus, int ngroups, const int *cpus)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        CPU_ZERO(&allowed);
    memset(cpu_node, 0xff, sizeof cpu_node);
    P.ngroups = 0;
    for (int g = 0, at = 0; g < ngroups; at += ncpus[g], g++) {
        cpu_set_t set, both;
        CPU_ZERO(&set);
        for (int j = 0; j < ncpus[g]; j++) {
            int c = cpus[at + j];
            if (c < 0 || c >= MAX_CPU)
                return -EINVAL;
            CPU_SET(c, &set);
            cpu_node[c] = (short)nodes[g];
        }
        CPU_AND(&both, &set, &allowed);
        if (CPU_COUNT(&both) == 0)
            continue; /* none of the node's CPUs is ours */
        P.gnode[P.ngroups] = nodes[g];
        P.gset[P.ngroups++] = both;
    }
    return P.ngroups ? 0 : -EINVAL;
}

int nn_workers_start(const int *nodes, const int *ncpus, int ngroups, const int *cpus,
                     int per_node)
{
    if (!nodes || !ncpus || !cpus || ngroups < 1 || ngroups > MAX_GROUPS || per_node < 0)
        return -EINVAL;
    for (int g = 0; g < ngroups; g++)
        if (ncpus[g] < 0 || nodes[g] < 0)
            return -EINVAL;
    if (in_worker)
        return -EDEADLK;
    pthread_once(&fork_once, register_fork);
    pthread_mutex_lock(&P.run_lock);
    int rc = P.nworkers ? -EALREADY : save_groups(nodes, ncpus, ngroups, cpus);
    if (rc == 0) {
        P.per_node = per_node;
        P.forked = 0;
        rc = spawn_locked();
    }
    pthread_mutex_unlock(&P.run_lock);
    return rc;
}

int nn_workers_stop(void)
{
    if (in_worker)
        return -EDEADLK;
    pthread_mutex_lock(&P.run_lock);
    stop_locked();
    P.ngroups = 0;
    P.forked = 0;
    P.stats.workers = 0;
    pthread_mutex_unlock(&P.run_lock);
    return 0;
}

/* In a forked child, the first use starts the parent's pool again. */
static void restart_locked(void)
{
    if (P.forked && P.ngroups && !P.nworkers) {
        P.forked = 0;
        if (spawn_locked() == 0)
            P.stats.restarts++;
    }
}

int nn_workers_ready(void)
{
    if (__atomic_load_n(&P.forked, __ATOMIC_RELAXED) && !in_worker &&
        pthread_mutex_trylock(&P.run_lock) == 0) {
        restart_locked();
        pthread_mutex_unlock(&P.run_lock);
    }
    return nn_workers_count();
}

int nn_workers_count(void) { return __atomic_load_n(&P.nworkers, __ATOMIC_RELAXED); }

int nn_workers_on_node(int node)
{
    int n = 0;
    for (int i = 0; i < P.nworkers; i++)
        n += P.wnode[i] == node;
    return n;
}

int nn_workers_nodes(int *out, int max)
{
    int n = 0;
    for (int g = 0; g < P.ngroups && P.nworkers; g++) {
        if (n < max)
            out[n] = P.gnode[g];
        n++;
    }
    return n;
}

int nn_workers_in_worker(void) { return in_worker; }

static void wait_done(unsigned k)
{
    unsigned d;
    for (int spins = 0; (d = LOAD(&P.done)) < k;) {
        if (++spins < CALLER_SPINS) {
            RELAX();
            continue;
        }
        __atomic_store_n(&P.caller_waiting, 1, __ATOMIC_SEQ_CST);
        d = __atomic_load_n(&P.done, __ATOMIC_SEQ_CST);
        if (d < k)
            futex(&P.done, FUTEX_WAIT_PRIVATE, d);
        __atomic_store_n(&P.caller_waiting, 0, __ATOMIC_SEQ_CST);
    }
}

int nn_workers_run(nn_piece_fn fn, void *ctx, int npieces, const int *piece_node)
{
    if (in_worker)
        return -EDEADLK;
    if (!fn || npieces < 1 || npieces > NN_MAX_PIECES)
        return -EINVAL;
    if (pthread_mutex_trylock(&P.run_lock) != 0) {
        __atomic_fetch_add(&P.stats.busy, 1, __ATOMIC_RELAXED);
        return -EBUSY;
    }
    restart_locked();
    if (!P.nworkers) {
        pthread_mutex_unlock(&P.run_lock);
        return -ESRCH;
    }
    unsigned g = P.gen + 1;
    J.fn = fn;
    J.ctx = ctx;
    J.npieces = npieces;
    J.fpe = 0;
    for (int i = 0; i < npieces; i++) {
        int want = piece_node ? piece_node[i] : -1;
        J.node[i] = want >= 0 && nn_workers_on_node(want) ? want : -1;
        J.rec_cpu[i] = J.rec_node[i] = -1;
        STORE(&J.claim[i], 2u * g);
    }
    STORE(&P.done, 0u);
    __atomic_store_n(&P.gen, g, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&P.sleepers, __ATOMIC_SEQ_CST))
        futex(&P.gen, FUTEX_WAKE_PRIVATE, INT_MAX);
    int saved = fetestexcept(FE_ALL_EXCEPT);
    take_pieces(g, caller_node(), 1);
    wait_done((unsigned)npieces);
    feclearexcept(FE_ALL_EXCEPT);
    int flags = saved | __atomic_load_n(&J.fpe, __ATOMIC_ACQUIRE);
    if (flags)
        feraiseexcept(flags);
    P.stats.jobs++;
    pthread_mutex_unlock(&P.run_lock);
    return 0;
}

void nn_workers_set_record(int on) { __atomic_store_n(&P.record, on != 0, __ATOMIC_RELAXED); }

int nn_workers_record(int *cpus, int *nodes, int max)
{
    pthread_mutex_lock(&P.run_lock);
    int k = J.npieces;
    for (int i = 0; i < k && i < max; i++) {
        cpus[i] = J.rec_cpu[i];
        nodes[i] = J.rec_node[i];
    }
    pthread_mutex_unlock(&P.run_lock);
    return k;
}

void nn_workers_stats_get(nn_workers_stats *out)
{
    *out = P.stats;
    out->workers = P.nworkers;
    out->forked = P.forked;
}

/* ---- a job without NumPy, for tests of the pool ---- */

typedef struct selftest_job {
    long spin_ns;
    int raise_piece; /* this piece raises FE_DIVBYZERO (-1: none, -2: workers' pieces) */
    int ran[NN_MAX_PIECES];
    int nested[NN_MAX_PIECES]; /* what a job started inside the piece got */
} selftest_job;

static void noop_piece(void *ctx, int piece) { (void)ctx, (void)piece; }

static void selftest_piece(void *ctx, int piece)
{
    selftest_job *t = ctx;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < t->spin_ns);
    if (piece == t->raise_piece || (t->raise_piece == -2 && in_worker)) {
        volatile double zero = 0.0, one = 1.0;
        volatile double inf = one / zero;
        (void)inf;
    }
    t->ran[piece] = in_worker ? 2 : 1;
    t->nested[piece] = nn_workers_run(noop_piece, NULL, 2, NULL);
}

int nn_workers_selftest(int npieces, const int *piece_node, long spin_ns, int raise_piece,
                        int *flags_after, int *ran, int *nested)
{
    selftest_job t = {.spin_ns = spin_ns, .raise_piece = raise_piece};
    feclearexcept(FE_ALL_EXCEPT);
    int rc = nn_workers_run(selftest_piece, &t, npieces, piece_node);
    if (flags_after)
        *flags_after = fetestexcept(FE_ALL_EXCEPT) & FE_DIVBYZERO ? 1 : 0;
    feclearexcept(FE_ALL_EXCEPT);
    for (int i = 0; ran && i < npieces && i < NN_MAX_PIECES; i++)
        ran[i] = t.ran[i];
    for (int i = 0; nested && i < npieces && i < NN_MAX_PIECES; i++)
        nested[i] = t.nested[i];
    return rc;
}
