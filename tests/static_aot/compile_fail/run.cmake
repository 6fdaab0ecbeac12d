# A compile-failure check (tests/cmake/static_aot.cmake): SOURCE compiled by COMPILER with
# FLAGS (comma-separated) must compile with -DAOT_SNIPPET_OK (the control: the snippet is
# otherwise valid) and must fail without it, with an error matching the regexes EXPECT1 and
# (when given) EXPECT2.
foreach(v COMPILER SOURCE INCLUDE EXPECT1)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run.cmake: -D${v}= is required")
  endif()
endforeach()
string(REPLACE "," ";" flags "${FLAGS}")
execute_process(COMMAND ${COMPILER} ${flags} -fsyntax-only -I${INCLUDE} -DAOT_SNIPPET_OK ${SOURCE}
                RESULT_VARIABLE ok_rc OUTPUT_VARIABLE ok_out ERROR_VARIABLE ok_out)
if(NOT ok_rc EQUAL 0)
  message(FATAL_ERROR "FAIL: the control (-DAOT_SNIPPET_OK) of ${SOURCE} does not compile with ${COMPILER}, so "
                      "the failure below would prove nothing:\n${ok_out}")
endif()
execute_process(COMMAND ${COMPILER} ${flags} -fsyntax-only -I${INCLUDE} ${SOURCE}
                RESULT_VARIABLE bad_rc OUTPUT_VARIABLE bad_out ERROR_VARIABLE bad_out)
if(bad_rc EQUAL 0)
  message(FATAL_ERROR "FAIL: ${SOURCE} compiled with ${COMPILER}, but the header promises a compile error")
endif()
foreach(regex IN ITEMS "${EXPECT1}" "${EXPECT2}")
  if(regex STREQUAL "")
    continue()
  endif()
  if(NOT bad_out MATCHES "${regex}")
    message(FATAL_ERROR "FAIL: ${SOURCE} fails to compile with ${COMPILER}, but the error does not match "
                        "'${regex}':\n${bad_out}")
  endif()
endforeach()
string(REGEX MATCH "[^\n]*error[^\n]*" first_error "${bad_out}")
message(STATUS "OK: ${COMPILER} refuses ${SOURCE}: ${first_error}")
