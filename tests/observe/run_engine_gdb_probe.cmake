# ctest ObserveEngineGdbFrames (cmake -P): runs PROBE (engine_gdb_probe.cpp) under GDB in
# batch mode, breaking in observeEngineTarget. Round 1 (called from the blob installed as
# jit_named_caller with its frame layout): bt must show jit_named_caller as #1 and reach
# main. Round 2 (after that blob was retired and freed; an unnamed blob calls): bt must not
# name jit_named_caller, and must show the unnamed blob as jit_<address> and reach main.
include(${CMAKE_CURRENT_LIST_DIR}/gdb_rounds.cmake)
gdb_two_rounds(observeEngineTarget)
set(problems "${GDB_PROBLEMS}")
if(NOT GDB_ROUND1 MATCHES "#1 +0x[0-9a-f]+ in jit_named_caller \\(\\)\n#2 [^\n]*main \\(\\)")
  string(APPEND problems "round 1: bt does not show #1 jit_named_caller, then main\n")
endif()
if(GDB_ROUND2 MATCHES "jit_named_caller")
  string(APPEND problems "round 2: the freed blob's name is still listed\n")
endif()
if(NOT GDB_ROUND2 MATCHES "#1 +0x[0-9a-f]+ in jit_[0-9a-f]+ \\(\\)\n#2 [^\n]*main \\(\\)")
  string(APPEND problems "round 2: bt does not show the unnamed blob as jit_<address>, then main\n")
endif()
if(problems)
  message(FATAL_ERROR "${problems}--- gdb output (rc ${GDB_RC}) ---\n${GDB_ALL}")
endif()
string(REGEX MATCH "probe: second blob [a-z ]+ the freed one's address" reuse "${GDB_ALL}")
message(STATUS "gdb: bt names jit_named_caller while installed, not after it was freed (${reuse})")
