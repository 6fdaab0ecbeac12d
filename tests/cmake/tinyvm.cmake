# tinyvm (examples/tinyvm): GoogleTest cases (tinyvm.*) and CLI runs (tinyvm_*).
# tinyvm_core and the tinyvm executable are defined by examples/, which is added after
# tests/; target names used here resolve at generate time.
if(NOT PATCHCALL_BUILD_EXAMPLES OR NOT EXISTS ${PROJECT_SOURCE_DIR}/examples/tinyvm/CMakeLists.txt)
  return()
endif()

set(TINYVM_DIR ${PROJECT_SOURCE_DIR}/examples/tinyvm)
string(REPLACE ";" "|" TINYVM_EMULATOR "${CMAKE_CROSSCOMPILING_EMULATOR}")  # for the cmake -P helpers
file(GLOB TINYVM_TEST_SOURCES CONFIGURE_DEPENDS ${TINYVM_DIR}/tests/*_test.cpp)
add_executable(tinyvm_tests ${TINYVM_TEST_SOURCES})
target_compile_options(tinyvm_tests PRIVATE -Wall -Wextra)
target_compile_definitions(tinyvm_tests PRIVATE
  TINYVM_PROGRAMS_DIR="${TINYVM_DIR}/programs" TINYVM_TEST_DATA_DIR="${TINYVM_DIR}/tests/data")
target_link_libraries(tinyvm_tests PRIVATE tinyvm_core patchcall_testsupport GTest::gtest GTest::gtest_main)
# Both ISAs (the JIT has a backend per ISA, examples/tinyvm/src/jit/). Cross builds run every
# entry under CMAKE_CROSSCOMPILING_EMULATOR (qemu-user); the entries are short enough to run
# there unchanged (10-15 s in all on 2 cores).
if(CMAKE_CROSSCOMPILING_EMULATOR)
  gtest_discover_tests(tinyvm_tests TEST_PREFIX "tinyvm." DISCOVERY_TIMEOUT 120
                       PROPERTIES TIMEOUT 300 ENVIRONMENT PATCHCALL_TEST_EMULATED=1)
else()
  gtest_discover_tests(tinyvm_tests TEST_PREFIX "tinyvm." DISCOVERY_TIMEOUT 120 PROPERTIES TIMEOUT 120)
endif()

# The CLI: every sample agrees with the interpreter in every JIT configuration (and with its
# '# expect:' line), and tier-up is observed (check exits 1 otherwise).
foreach(sample fib ackermann loops reload)
  add_test(NAME tinyvm_check_${sample}
           COMMAND tinyvm check ${TINYVM_DIR}/programs/${sample}.tvm)
  set_tests_properties(tinyvm_check_${sample} PROPERTIES TIMEOUT 120)
endforeach()

# Hot reload under 4 threads: run exits 1 on any wrong result, if no thread saw the new
# definition, or if retired code was not all freed (it prints the counts).
add_test(NAME tinyvm_reload_4_threads
         COMMAND tinyvm run ${TINYVM_DIR}/programs/reload.tvm --threads 4 --iterations 20
                 --reload ${TINYVM_DIR}/programs/reload_v2.tvm --after-ms 50 --timeout-ms 60000)
set_tests_properties(tinyvm_reload_4_threads PROPERTIES TIMEOUT 120)
if(PATCHCALL_ARCH STREQUAL "x86_64")
  # Toggle sites are x86-64's (aarch64 has Direct sites only).
  add_test(NAME tinyvm_reload_4_threads_toggle_sites
           COMMAND tinyvm run ${TINYVM_DIR}/programs/reload.tvm --threads 4 --iterations 20
                   --site-form toggle --tier threshold=3
                   --reload ${TINYVM_DIR}/programs/reload_v2.tvm --after-ms 50 --timeout-ms 60000)
  set_tests_properties(tinyvm_reload_4_threads_toggle_sites PROPERTIES TIMEOUT 120)
else()
  # ... where asking for them is a clear error (exit 2), not a crash or a silent interpreter run.
  add_test(NAME tinyvm_toggle_sites_refused
           COMMAND ${CMAKE_COMMAND} -DTINYVM=$<TARGET_FILE:tinyvm> "-DEMULATOR=${TINYVM_EMULATOR}"
                   -DPROGRAM=${TINYVM_DIR}/programs/fib.tvm "-DARGS=--site-form|toggle"
                   "-DEXPECT=aarch64 has only Direct sites" -P ${TINYVM_DIR}/tests/expect_failure.cmake)
endif()

add_test(NAME tinyvm_help COMMAND tinyvm --help)
set_tests_properties(tinyvm_help PROPERTIES PASS_REGULAR_EXPRESSION "Usage: tinyvm COMMAND FILE.*--reload FILE")
# A bad program: exit status 2 and a diagnostic with file, line and column.
add_test(NAME tinyvm_parse_error
         COMMAND ${CMAKE_COMMAND} -DTINYVM=$<TARGET_FILE:tinyvm> "-DEMULATOR=${TINYVM_EMULATOR}"
                 -DPROGRAM=${TINYVM_DIR}/tests/data/missing_paren.tvm
                 "-DEXPECT=missing_paren.tvm:3:16: error: expected ')'" -P ${TINYVM_DIR}/tests/expect_failure.cmake)
