# step(cmd args...): runs a command for a cmake -P test driver; stops with its output when it
# fails, else prints it and leaves it in step_output for the caller.
function(step)
  string(REPLACE ";" " " cmd "${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAILED (${rc}): ${cmd}\n${out}\n${err}")
  endif()
  message(STATUS "ok: ${cmd}\n${out}")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()
