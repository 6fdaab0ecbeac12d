/*
 * toggle.pml -- Promela model of the "dual-call toggle" code-patching
 * protocol (x86-64 cross-modifying code).
 *
 * Site layout:   [T: 2-byte toggle] [call A rel32] [call B rel32]
 *   T == 0  : toggle falls through  -> call A executes
 *   T == 1  : toggle is a short jmp -> call B executes
 *
 * A call's 4-byte displacement cannot be written atomically, so it is
 * modelled as two halves (lo, hi) that are written and read separately.
 * Each half holds the *version* of the update that wrote it; a caller that
 * reads two halves with different versions has executed a torn call.
 *
 * Writer (single updater), per update v = 1..NUPD:
 *     tgt := inactive call (1 - T)
 *     [GRACE] wait for a grace period since the last flip   (QSBR)
 *     disp[tgt].lo := v ; disp[tgt].hi := v                 (non-atomic)
 *     sync                                                   (cross-core)
 *     T := tgt                                               (atomic 2-byte store)
 *     sync
 *
 * Caller threads, forever:
 *     either: read T -> (arbitrary delay) -> read lo -> read hi ->
 *             assert(lo == hi) -> call -> safepoint
 *     or:     go offline (idle), later come back online.
 *
 * QSBR: global counter gp_ctr (starts at 1); per-thread ctr[i]:
 *     0          = thread offline / idle (not inside any call sequence)
 *     ctr[i] = c = thread's last announced quiescent state saw gp_ctr == c
 * synchronize(): gp_ctr++ and block until every thread has ctr[i] == gp_ctr
 * (passed a safepoint after the increment, hence after the flip) or is
 * offline.  A thread between reading T and finishing its call has not
 * passed a safepoint, so its ctr[i] is stale and the writer waits for it.
 *
 * Build with -DGRACE=0 (grace period disabled: torn read reachable) or
 * -DGRACE=1 (default: protocol safe).  -DPROBE_WRITER_DONE adds a
 * deliberately failing assert after the writer's last update (reachability).
 */

#ifndef GRACE
#define GRACE 1
#endif

#ifndef NTHREADS
#define NTHREADS 2
#endif

#ifndef NUPD
#define NUPD 3            /* successive updates, versions 1..NUPD */
#endif

#define CALL_A 0
#define CALL_B 1
#define OFFLINE 0

byte T = CALL_A;          /* the toggle: which call executes */
byte disp_lo[2];          /* version of the low  half of call A / call B */
byte disp_hi[2];          /* version of the high half of call A / call B */

byte gp_ctr = 1;          /* QSBR grace-period counter */
byte ctr[NTHREADS];       /* per-thread QSBR snapshot, OFFLINE = idle */

/* Cross-core serialising sync (e.g. membarrier / IPI + serialising insn).
 * One atomic step; it does not undo a toggle decision a thread already made. */
#define cross_core_sync() skip

inline synchronize_qsbr()
{
    gp_ctr++;
    i = 0;
    do
    :: i < NTHREADS ->
        /* block until thread i is quiescent w.r.t. this grace period */
        (ctr[i] == OFFLINE || ctr[i] == gp_ctr);
        i++
    :: else -> break
    od;
    i = 0
}

proctype writer()
{
    byte v = 1;
    byte tgt;
    byte i;

    do
    :: v <= NUPD ->
        tgt = 1 - T;                   /* the currently inactive call */
#if GRACE
        if
        :: v > 1 -> synchronize_qsbr() /* grace period since the last flip */
        :: else -> skip                /* no flip happened yet */
        fi;
#endif
        disp_lo[tgt] = v;              /* non-atomic displacement write */
        disp_hi[tgt] = v;
        cross_core_sync();
        T = tgt;                       /* atomic 2-byte toggle flip */
        cross_core_sync();
        tgt = 0;
        v++
    :: else -> break
    od;
#ifdef PROBE_WRITER_DONE
    /* Non-vacuity probe (check.sh only): this assertion is EXPECTED to be
     * violated, proving the writer can finish all NUPD updates, i.e. the
     * grace-period wait does not simply deadlock the writer. */
    assert(false)
#endif
}

proctype caller(byte me)
{
    byte sel, lo, hi;

    ctr[me] = gp_ctr;                  /* thread comes online */
    do
    :: /* execute the toggle site once */
        sel = T;                       /* decode toggle: call A or call B */
        /* ... arbitrary preemption delay here ... */
        lo = disp_lo[sel];             /* fetch displacement, first half */
        hi = disp_hi[sel];             /* fetch displacement, second half */
        assert(lo == hi);              /* SAFETY: no torn displacement */
        /* call target(lo:hi) */
        sel = 0; lo = 0; hi = 0;
        ctr[me] = gp_ctr               /* safepoint: announce quiescence */
    :: /* go idle / offline (e.g. blocked in a syscall) and come back */
        ctr[me] = OFFLINE;
        ctr[me] = gp_ctr
    od
}

init
{
    byte k;
    atomic {
        run writer();
        k = 0;
        do
        :: k < NTHREADS -> run caller(k); k++
        :: else -> break
        od;
        k = 0
    }
}
