# Static calls of compiled code on every ISA (tests/static_portable/): the patched sites of
# x86-64 and aarch64 must agree on what a NULL target is. Its own binary: a module with static calls installs patchcall's SIGTRAP handler when it
# loads (see the comment on PATCHCALL_TEST_SOURCES in tests/CMakeLists.txt).
add_executable(static_portable_tests ${CMAKE_CURRENT_SOURCE_DIR}/static_portable/static_call_null_test.cpp)
target_compile_options(static_portable_tests PRIVATE -Wall -Wextra)
target_link_libraries(static_portable_tests PRIVATE patchcall GTest::gtest GTest::gtest_main Threads::Threads)
if(CMAKE_CROSSCOMPILING_EMULATOR)
  gtest_discover_tests(static_portable_tests DISCOVERY_TIMEOUT 120 PROPERTIES TIMEOUT 120 ENVIRONMENT PATCHCALL_TEST_EMULATED=1)
else()
  gtest_discover_tests(static_portable_tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 60)
endif()
