# ctest GdbBreakpointThroughSites (cmake -P): runs PROBE (tests/gdb/gdb_probe.cpp) under GDB in
# batch mode with run_gdb.py and checks that the breakpoint on probeTarget stopped exactly on
# the three calls made through a Direct site, a Breakpoint site and a trampoline, that the
# program finished correctly while patchcall's int3s fired, and that it exited with 0.
foreach(v GDB PROBE)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_gdb.cmake: -D${v}=... is required")
  endif()
endforeach()
get_filename_component(here ${CMAKE_CURRENT_LIST_FILE} DIRECTORY)
# In the ASan build: LeakSanitizer cannot run under ptrace (it aborts the probe at exit).
if(DEFINED ENV{ASAN_OPTIONS})
  set(ENV{ASAN_OPTIONS} "$ENV{ASAN_OPTIONS}:detect_leaks=0")
else()
  set(ENV{ASAN_OPTIONS} "detect_leaks=0")
endif()
execute_process(
  COMMAND ${GDB} -batch -nx -ex "set \$patchcall_manual = 1" -x ${here}/run_gdb.py ${PROBE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 150)
set(all "${out}\n${err}")
string(REGEX MATCHALL "gdb: stopped in probeTarget" stops "${all}")
list(LENGTH stops nstops)
set(problems "")
if(NOT nstops EQUAL 3)
  string(APPEND problems "expected 3 stops in probeTarget, got ${nstops}\n")
endif()
if(NOT all MATCHES "probe: r1=11 r2=21 r3=31 r4=42 [^\n]* ok")
  string(APPEND problems "the probe did not print its results or they were wrong\n")
endif()
if(NOT all MATCHES "gdb: breakpoint hits=3 sigtraps delivered=[0-9]+ exit=0")
  string(APPEND problems "the probe did not exit with 0 under gdb\n")
endif()
if(problems)
  message(FATAL_ERROR "${problems}--- gdb output (rc ${rc}) ---\n${all}")
endif()
string(REGEX MATCH "sigtraps delivered=[0-9]+" delivered "${all}")
string(REGEX MATCH "traps emulated=[0-9]+" emulated "${all}")
message(STATUS "gdb: 3 breakpoint stops, ${delivered} (${emulated}), exit 0")
