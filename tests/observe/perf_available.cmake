# observe tests (cmake -P helper) — whether the kernel lets PERF record user-space events here
# (perf_event_paranoid, containers): perf_events_available(PERF WORK) sets PERF_AVAILABLE
# (TRUE/FALSE) and, when refused, PERF_REFUSAL (perf's exit status and message).
function(perf_events_available perf work)
  execute_process(COMMAND ${perf} record -e cycles:u -o ${work}/probe.data true
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
  if(rc EQUAL 0)
    set(PERF_AVAILABLE TRUE PARENT_SCOPE)
  else()
    set(PERF_AVAILABLE FALSE PARENT_SCOPE)
    set(PERF_REFUSAL "perf record exit ${rc}: ${err}" PARENT_SCOPE)
  endif()
endfunction()
