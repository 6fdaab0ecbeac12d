# ctest ObservePerfMapAndJitdump (cmake -P): records PROBE (perf_probe.cpp) with PERF.
#   map:  perf report names the JIT samples jit_hot_loop ([JIT] from /tmp/perf-<pid>.map)
#   dump: perf record -k mono + perf inject --jit: the samples land in jitted-<pid>-0.so
#         (before the in-place patch) and jitted-<pid>-1.so (after JitDump::codeChanged),
#         both named jit_hot_loop, in about equal shares (the probe does equal work in each),
#         and perf annotate of the second shows the patched loop count.
# If the kernel refuses perf events here the test prints "perf unavailable" and is skipped.
foreach(v PERF PROBE WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_perf_probe.cmake: -D${v}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(problems "")

include(${CMAKE_CURRENT_LIST_DIR}/perf_available.cmake)
perf_events_available(${PERF} ${WORK})
if(NOT PERF_AVAILABLE)
  message(STATUS "perf unavailable (${PERF_REFUSAL})")
  return()
endif()
execute_process(COMMAND ${PERF} record -e cycles:u -o ${WORK}/map.data ${PROBE} map
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "map: the probe under perf record failed (exit ${rc}):\n${out}\n${err}")
endif()
string(REGEX MATCH "probe: done pid ([0-9]+)" _ "${out}")
set(mapfile /tmp/perf-${CMAKE_MATCH_1}.map)
execute_process(COMMAND ${PERF} report -i ${WORK}/map.data --stdio --sort sym
                OUTPUT_VARIABLE report ERROR_VARIABLE err TIMEOUT 120)
file(REMOVE ${mapfile})
if(NOT report MATCHES "([0-9.]+)%[^\n]*jit_hot_loop")
  string(APPEND problems "map: perf report does not name jit_hot_loop\n${report}\n")
elseif(CMAKE_MATCH_1 LESS 80)
  string(APPEND problems "map: jit_hot_loop has only ${CMAKE_MATCH_1}% of the samples\n")
endif()

execute_process(COMMAND ${PERF} record -k mono -e cycles:u -o ${WORK}/dump.data ${PROBE} dump ${WORK}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
string(REGEX MATCH "probe: done pid ([0-9]+)" _ "${out}")
set(pid ${CMAKE_MATCH_1})
execute_process(COMMAND ${PERF} inject --jit -i ${WORK}/dump.data -o ${WORK}/dump.jit.data
                RESULT_VARIABLE rc ERROR_VARIABLE err TIMEOUT 120)
execute_process(COMMAND ${PERF} report -i ${WORK}/dump.jit.data --stdio --sort dso,sym
                OUTPUT_VARIABLE report ERROR_VARIABLE err TIMEOUT 120)
foreach(index 0 1)
  if(NOT report MATCHES "([0-9.]+)%[ ]+jitted-${pid}-${index}\\.so[ ]+\\[\\.\\] jit_hot_loop")
    string(APPEND problems "dump: no samples in jitted-${pid}-${index}.so jit_hot_loop\n")
  elseif(CMAKE_MATCH_1 LESS 30 OR CMAKE_MATCH_1 GREATER 70)
    string(APPEND problems "dump: jitted-${pid}-${index}.so has ${CMAKE_MATCH_1}%, expected about 50%\n")
  endif()
endforeach()
execute_process(COMMAND ${PERF} annotate -i ${WORK}/dump.jit.data --stdio -d jitted-${pid}-1.so jit_hot_loop
                OUTPUT_VARIABLE annotate ERROR_VARIABLE err TIMEOUT 120)
if(NOT annotate MATCHES "mov +\\$0x2faf080,%ecx")  # 50000000: the patched count
  string(APPEND problems "dump: perf annotate of the changed code does not show the new bytes\n${annotate}\n")
endif()
if(problems)
  message(FATAL_ERROR "${problems}--- perf report ---\n${report}")
endif()
message(STATUS "perf: jit_hot_loop named from the perf map and from jitdump before and after codeChanged")
