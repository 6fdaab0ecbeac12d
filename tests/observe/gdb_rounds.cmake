# observe tests (cmake -P helpers) — runs a probe under gdb in batch mode with a breakpoint in
# a function the probe calls twice, with round=1 and round=2.
#
# gdb_two_rounds(FUNCTION), with -DGDB=... -DPROBE=... given to the script, sets in the
# caller's scope:
#   GDB_ALL       everything gdb and the probe printed (GDB_RC: gdb's exit status)
#   GDB_ROUND1    the output from the first stop (its bt) up to the second
#   GDB_ROUND2    the output from the second stop on
#   GDB_PROBLEMS  what went wrong running it ("" when gdb stopped twice and the probe printed
#                 "probe: done" and exited normally)
function(gdb_two_rounds function)
  foreach(v GDB PROBE)
    if(NOT DEFINED ${v})
      message(FATAL_ERROR "${CMAKE_SCRIPT_MODE_FILE}: -D${v}=... is required")
    endif()
  endforeach()
  set(gdb ${GDB})
  set(probe ${PROBE})
  # In the ASan build: LeakSanitizer cannot run under ptrace (it aborts the probe at exit).
  if(DEFINED ENV{ASAN_OPTIONS})
    set(ENV{ASAN_OPTIONS} "$ENV{ASAN_OPTIONS}:detect_leaks=0")
  else()
    set(ENV{ASAN_OPTIONS} "detect_leaks=0")
  endif()
  execute_process(
    COMMAND ${gdb} -batch -nx -ex "set debuginfod enabled off" -ex "break ${function}"
            -ex run -ex bt -ex continue -ex bt -ex continue ${probe}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  set(all "${out}\n${err}")
  string(FIND "${all}" "${function} (round=1)" first)
  string(FIND "${all}" "${function} (round=2)" second)
  set(problems "")
  set(round1 "")
  set(round2 "")
  if(first EQUAL -1 OR second EQUAL -1)
    string(APPEND problems "gdb did not stop twice in ${function}\n")
  else()
    math(EXPR len "${second} - ${first}")
    string(SUBSTRING "${all}" ${first} ${len} round1)
    string(SUBSTRING "${all}" ${second} -1 round2)
  endif()
  if(NOT all MATCHES "probe: done" OR NOT all MATCHES "exited normally")
    string(APPEND problems "the probe did not finish normally under gdb\n")
  endif()
  set(GDB_ALL "${all}" PARENT_SCOPE)
  set(GDB_RC "${rc}" PARENT_SCOPE)
  set(GDB_ROUND1 "${round1}" PARENT_SCOPE)
  set(GDB_ROUND2 "${round2}" PARENT_SCOPE)
  set(GDB_PROBLEMS "${problems}" PARENT_SCOPE)
endfunction()
