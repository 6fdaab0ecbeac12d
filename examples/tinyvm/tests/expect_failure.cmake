# ctest helper: `tinyvm run PROGRAM [ARGS]` must exit 2 and print EXPECT on stderr. ARGS and
# EMULATOR (a cross build's CMAKE_CROSSCOMPILING_EMULATOR, which ctest does not prefix to a
# script's commands) are lists with `|` between their items.
string(REPLACE "|" ";" args "${ARGS}")
string(REPLACE "|" ";" emulator "${EMULATOR}")
execute_process(COMMAND ${emulator} ${TINYVM} run ${PROGRAM} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 2)
  message(FATAL_ERROR "expected exit status 2, got ${rc}\nstdout: ${out}\nstderr: ${err}")
endif()
string(FIND "${err}" "${EXPECT}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "expected '${EXPECT}' in stderr, got:\n${err}")
endif()
message(STATUS "ok: ${err}")
