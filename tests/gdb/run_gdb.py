# Batch driver for ctest GdbBreakpointThroughSites: `break probeTarget`, run gdb_probe, and on
# every stop either count the breakpoint and `continue`, or deliver patchcall's SIGTRAP with
# `signal SIGTRAP` (the decision of patchcall_gdb.py, made synchronously here because posted
# events only run once gdb is idle, which batch mode never is). Prints one summary line.
import os
import sys

import gdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import patchcall_gdb  # noqa: E402  (needs $patchcall_manual set before it is imported)

state = {"exit": None, "last": None}
gdb.events.stop.connect(lambda ev: state.__setitem__("last", ev))
gdb.events.exited.connect(lambda ev: state.__setitem__("exit", getattr(ev, "exit_code", "signal")))

gdb.execute("set pagination off")
gdb.execute("break probeTarget")
hits = delivered = 0
gdb.execute("run")
for _ in range(200000):
    if state["exit"] is not None:
        break
    ev = state["last"]
    if isinstance(ev, gdb.BreakpointEvent):
        hits += 1
        print("gdb: stopped in %s" % gdb.selected_frame().name())
        gdb.execute("continue")
    elif patchcall_gdb.is_program_sigtrap(ev):
        delivered += 1
        gdb.execute("signal SIGTRAP", to_string=True)
    else:
        print("gdb: unexpected stop %r signal=%s" % (ev, getattr(ev, "stop_signal", "?")))
        break
print("gdb: breakpoint hits=%d sigtraps delivered=%d exit=%s" % (hits, delivered, state["exit"]))
