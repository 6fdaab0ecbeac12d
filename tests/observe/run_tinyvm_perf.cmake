# ctest TinyvmPerfNamesFib (cmake -P): the issue's check on the example runtime.
#   files: `tinyvm run fib.tvm --perf-map --jitdump` leaves /tmp/perf-<pid>.map with a line for
#          fib (the JIT code), lazy:fib (its lazy-compile stub), trampoline:fib and the
#          safepoint stub, and jit-<pid>.dump holding the name fib.
#   perf:  perf record -k mono + perf inject --jit + perf report name fib for most samples.
#          100 iterations of fib: a sanitizer build's start and exit (ASan registering globals,
#          LeakSanitizer's scan) took over half of the samples of 20 (CI, fib at 45%).
# The arena is a memfd mapping, which perf report does not look up in the perf map (only
# anonymous memory): perf names JIT code through jitdump. If the kernel refuses perf events,
# the perf part is skipped with "perf unavailable" and the file contents are still checked.
foreach(v PERF TINYVM PROGRAM WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_tinyvm_perf.cmake: -D${v}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(problems "")

# The shell prints its pid and execs tinyvm, so the pid is tinyvm's (the files' names).
execute_process(COMMAND ${CMAKE_COMMAND} -E env JITDUMPDIR=${WORK}
                        sh -c "echo \"pid $$\"; exec \"$0\" run \"$1\" --perf-map --jitdump" ${TINYVM} ${PROGRAM}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
string(REGEX MATCH "pid ([0-9]+)" _ "${out}")
set(pid ${CMAKE_MATCH_1})
if(NOT rc EQUAL 0 OR NOT out MATCHES "196418")
  string(APPEND problems "tinyvm run failed (exit ${rc}):\n${out}\n${err}\n")
endif()
set(mapfile /tmp/perf-${pid}.map)
if(NOT EXISTS ${mapfile})
  string(APPEND problems "no ${mapfile}\n")
else()
  file(READ ${mapfile} map)
  file(REMOVE ${mapfile})
  foreach(name "fib" "lazy:fib" "main" "trampoline:fib" "patchcall_safepoint_stub")
    if(NOT map MATCHES "(^|\n)[0-9a-f]+ [0-9a-f]+ ${name}\n")
      string(APPEND problems "perf map: no line for ${name}\n")
    endif()
  endforeach()
endif()
if(NOT EXISTS ${WORK}/jit-${pid}.dump)
  string(APPEND problems "no ${WORK}/jit-${pid}.dump\n")
else()
  file(STRINGS ${WORK}/jit-${pid}.dump names REGEX "^(lazy:)?fib$")
  if(NOT names)
    string(APPEND problems "jitdump: no record names fib\n")
  endif()
endif()

include(${CMAKE_CURRENT_LIST_DIR}/perf_available.cmake)
perf_events_available(${PERF} ${WORK})
if(NOT PERF_AVAILABLE)
  if(problems)
    message(FATAL_ERROR "${problems}")
  endif()
  message(STATUS "perf unavailable (${PERF_REFUSAL}); the perf map and jitdump contents are right")
  return()
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E env JITDUMPDIR=${WORK}
                        ${PERF} record -k mono -e cycles:u -o ${WORK}/fib.data
                        ${TINYVM} run ${PROGRAM} --iterations 100 --jitdump
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${problems}tinyvm under perf record failed (exit ${rc}):\n${out}\n${err}")
endif()
execute_process(COMMAND ${PERF} inject --jit -i ${WORK}/fib.data -o ${WORK}/fib.jit.data
                RESULT_VARIABLE rc ERROR_VARIABLE err TIMEOUT 120)
execute_process(COMMAND ${PERF} report -i ${WORK}/fib.jit.data --stdio --sort sym
                OUTPUT_VARIABLE report ERROR_VARIABLE err TIMEOUT 120)
if(NOT report MATCHES "([0-9.]+)%[ ]+\\[\\.\\] fib\n")
  string(APPEND problems "perf report does not name fib\n${report}\n")
elseif(CMAKE_MATCH_1 LESS 50)
  string(APPEND problems "fib has only ${CMAKE_MATCH_1}% of the samples\n${report}\n")
endif()
file(GLOB jitted ${WORK}/jitted-*.so)
file(REMOVE ${jitted})
if(problems)
  message(FATAL_ERROR "${problems}")
endif()
message(STATUS "perf: fib named for the JIT samples (jitdump + perf inject --jit); perf map lines present")
