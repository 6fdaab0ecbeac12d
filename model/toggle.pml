/*
 * toggle.pml -- Promela model of the dual-call toggle protocol as patchcall
 * runs it (runtime/retargeter.cpp, runtime/quiescence.{h,cpp}).
 *
 * Site layout:   [T: 2-byte toggle] [call A rel32] [call B rel32]
 *   T == 0 : call A executes;  T == 1 : call B executes.
 * A call's 4-byte displacement is not written atomically: two halves (lo,
 * hi), each holding the version of the update that wrote it. A caller that
 * reads halves of different versions has executed a torn call.
 *
 * Grace periods (Quiescence::runGracePeriod), shared by every caller of
 * waitFor and by other users of the domain (the reclaimer, synchronize()):
 *     seq++ (odd: running); gp_ctr++; target := gp_ctr
 *     wait until each thread is offline or has acknowledged target, OR the
 *     deadline passes: then the grace period FAILS and rolls back, seq--
 *     (gp_ctr stays incremented); on success seq++ (even: completed).
 * snapshot() = (seq + 3) & ~1: the completion value of a full grace period
 * that starts after the call; completed(s) = seq >= s.
 *
 * Writer (one updater; its updates are serialized by the text mutex):
 *     tgt := inactive call
 *     [RULE] the snapshot rule: if the site's flip snapshot has not completed,
 *            wait for it: lead a grace period (which may fail) or wait for
 *            another's; on the deadline the update fails having written
 *            nothing, and is retried later
 *     disp[tgt].lo := v ; disp[tgt].hi := v ; sync ; T := tgt ; sync
 *     flip_snap := snapshot()            (taken AFTER the flip)
 * With -DSNAP_EARLY the snapshot is taken before the displacement write, a
 * plausible bug: a grace period that starts before the flip satisfies it.
 *
 * Other grace periods: process `other` runs grace periods of its own (they
 * may fail too); the writer may share them.
 * Callers, forever: read T -> (any delay) -> read lo -> read hi ->
 * assert(lo == hi) -> safepoint (ctr := gp_ctr); or go offline and back.
 *
 * -DRULE=0: rule off, the torn call is found.  -DRULE=1 (default): verified.
 * -DPROBE_WRITER_DONE: a deliberately failing assert after the last update
 * (shows the writer can finish: the verification is not vacuous).
 * MAXGP bounds the grace-period attempts (successful or not) to keep the
 * state space finite; the writer then can still share completed ones.
 */

#ifndef RULE
#define RULE 1
#endif
#ifndef NTHREADS
#define NTHREADS 2
#endif
#ifndef NUPD
#define NUPD 3
#endif
#ifndef MAXGP
#define MAXGP 4
#endif

#define OFFLINE 0

byte T = 0;
byte disp_lo[2];
byte disp_hi[2];

byte seq = 0;             /* grace-period sequence: even idle, odd running */
byte gp_ctr = 1;          /* what threads acknowledge */
byte ctr[NTHREADS];       /* per thread: OFFLINE or the last counter acknowledged */
bit gp_busy = 0;          /* gpMutex_: one grace period at a time */
byte attempts = 0;        /* grace periods started (bounded by MAXGP) */
byte flip_snap = 0;            /* the site's flip snapshot (toggleFlipSnap); 0: none */

/* One grace period; it fails (rolls back) if the deadline passes first. */
inline run_gp()
{
    atomic { gp_busy == 0 && attempts < MAXGP -> gp_busy = 1; attempts++ };
    seq++;
    gp_ctr++;
    target = gp_ctr;
    failed = false;
    i = 0;
    do
    :: i < NTHREADS && (ctr[i] == OFFLINE || ctr[i] == target) -> i++
    :: i < NTHREADS -> failed = true; break     /* the deadline passed */
    :: i == NTHREADS -> break
    od;
    if
    :: failed -> seq--                          /* not completed: back to idle */
    :: else -> seq++                            /* completed */
    fi;
    i = 0;
    target = 0;
    gp_busy = 0
}

proctype writer()
{
    byte v = 1, tgt, i, target;
    bool failed;

    do
    :: v <= NUPD ->
retry:
        tgt = 1 - T;
#if RULE
        /* waitFor(flip_snap): done, or lead a grace period, or sleep until another
         * completes one, or give up at the deadline (nothing written) */
        do
        :: seq >= flip_snap -> break
        :: seq < flip_snap -> run_gp()
        :: seq < flip_snap -> goto retry
        od;
#endif
#ifdef SNAP_EARLY
        flip_snap = (seq + 3) & 254;
#endif
        disp_lo[tgt] = v;                       /* non-atomic displacement write */
        disp_hi[tgt] = v;
        T = tgt;                                /* syncs before and after: atomic steps */
#ifndef SNAP_EARLY
        flip_snap = (seq + 3) & 254;                 /* snapshot() after the flip */
#endif
        tgt = 0;
        v++
    :: else -> break
    od;
#ifdef PROBE_WRITER_DONE
    assert(false)
#endif
}

proctype other()
{
    byte i, target;
    bool failed;
    do
    :: run_gp()
    od
}

proctype caller(byte me)
{
    byte sel, lo, hi;

    ctr[me] = gp_ctr;
    do
    :: sel = T;                                 /* decode the toggle */
        lo = disp_lo[sel];                      /* ... any preemption ... */
        hi = disp_hi[sel];
        assert(lo == hi);                       /* SAFETY: no torn displacement */
        sel = 0; lo = 0; hi = 0;
        ctr[me] = gp_ctr                        /* safepoint */
    :: ctr[me] = OFFLINE;                       /* offline (a blocking call) and back */
        ctr[me] = gp_ctr
    od
}

init
{
    byte k;
    atomic {
        run writer();
        run other();
        k = 0;
        do
        :: k < NTHREADS -> run caller(k); k++
        :: else -> break
        od;
        k = 0
    }
}
