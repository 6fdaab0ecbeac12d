# gdb helper for programs that use patchcall: `source tests/gdb/patchcall_gdb.py` (or add it to
# ~/.gdbinit). See docs/sanitizers.md, "Debugging with gdb".
#
# While patchcall retargets a Breakpoint-form site (or a foreign site) it writes int3 on the
# site's first byte for a few microseconds; a thread that executes it gets SIGTRAP and
# patchcall's handler performs the call. gdb uses SIGTRAP itself (breakpoints, stepping, the
# exec and shared-library events), so `handle SIGTRAP nostop noprint pass` makes gdb hand its
# OWN traps to the program, which then dies of SIGTRAP. With the default settings gdb stops
# instead and a plain `continue` drops the signal, so the thread resumes in the middle of the
# call instruction (garbage, then usually SIGSEGV). What works: when gdb stops with a SIGTRAP
# that none of its breakpoints explains, resume with `signal SIGTRAP` (delivers it to the
# program). This file does that automatically after each such stop.
import gdb


def is_program_sigtrap(event):
    """True if gdb stopped on a SIGTRAP that is not one of its own breakpoints or steps."""
    if isinstance(event, gdb.BreakpointEvent):
        return False
    try:
        return int(gdb.parse_and_eval("$_siginfo")["si_signo"]) == 5
    except gdb.error:
        return False


def _deliver_program_sigtrap(event):
    if is_program_sigtrap(event):
        gdb.post_event(lambda: gdb.execute("signal SIGTRAP"))


# Drivers that resume the inferior themselves (tests/gdb/run_gdb.py) set $patchcall_manual.
if gdb.convenience_variable("patchcall_manual") is None:
    gdb.events.stop.connect(_deliver_program_sigtrap)
