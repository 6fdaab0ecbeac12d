# ctest ObserveGdbJitFrames (cmake -P): runs PROBE (gdb_probe.cpp) under GDB in batch mode,
# breaking in observeProbeTarget. While the blob is registered through the GDB JIT interface
# `bt` must name jit_probe_frame and reach main; after GdbJit::remove() it must not name it.
include(${CMAKE_CURRENT_LIST_DIR}/gdb_rounds.cmake)
gdb_two_rounds(observeProbeTarget)
set(problems "${GDB_PROBLEMS}")
if(NOT GDB_ROUND1 MATCHES "#1 +0x[0-9a-f]+ in jit_probe_frame \\(\\)\n(#[0-9]+ [^\n]*\n)*#[0-9]+ [^\n]*main \\(\\)")
  string(APPEND problems "registered: bt does not show #1 jit_probe_frame, then callers up to main\n")
endif()
if(GDB_ROUND1 MATCHES "Backtrace stopped")
  string(APPEND problems "registered: gdb could not unwind through the JIT frame\n")
endif()
if(GDB_ROUND2 MATCHES "jit_probe_frame")
  string(APPEND problems "after GdbJit::remove: bt still names jit_probe_frame\n")
endif()
if(problems)
  message(FATAL_ERROR "${problems}--- gdb output (rc ${GDB_RC}) ---\n${GDB_ALL}")
endif()
message(STATUS "gdb: bt names jit_probe_frame while registered, not after remove")
