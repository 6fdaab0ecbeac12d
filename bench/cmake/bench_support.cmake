# patchcall_bench extras: shared support code, the retpoline TU's flags, liburcu-qsbr for the
# grace-period baseline.
if(NOT TARGET patchcall_bench)
  return()
endif()

set(PCBENCH_SUPPORT ${CMAKE_CURRENT_SOURCE_DIR}/support)
target_sources(patchcall_bench PRIVATE
  ${PCBENCH_SUPPORT}/bench_support.cpp
  ${PCBENCH_SUPPORT}/callees.cpp
  ${PCBENCH_SUPPORT}/call_loops.cpp
  ${PCBENCH_SUPPORT}/retpoline_loop.cpp
  ${PCBENCH_SUPPORT}/${PATCHCALL_ARCH}/fiber_switch.cpp
  ${PCBENCH_SUPPORT}/update_fixture.cpp
  ${PCBENCH_SUPPORT}/static_loops.cpp
  ${PCBENCH_SUPPORT}/static_checks.cpp)
target_include_directories(patchcall_bench PRIVATE ${PCBENCH_SUPPORT})

# Only this TU is built with retpolines (indirect calls through __x86_indirect_thunk_*).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  set(PCBENCH_RETPOLINE_FLAGS -mindirect-branch=thunk -mfunction-return=keep -fcf-protection=none)
else()
  set(PCBENCH_RETPOLINE_FLAGS -mretpoline -fcf-protection=none)
endif()
set_source_files_properties(${PCBENCH_SUPPORT}/retpoline_loop.cpp PROPERTIES COMPILE_OPTIONS "${PCBENCH_RETPOLINE_FLAGS}")

# liburcu-qsbr (Debian liburcu-dev): BM_Urcu_GracePeriod. Without it that benchmark reports an error.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(PCBENCH_URCU_QSBR QUIET IMPORTED_TARGET liburcu-qsbr)
endif()
if(PCBENCH_URCU_QSBR_FOUND)
  target_link_libraries(patchcall_bench PRIVATE PkgConfig::PCBENCH_URCU_QSBR)
  target_compile_definitions(patchcall_bench PRIVATE PCBENCH_HAVE_URCU_QSBR)
else()
  message(STATUS "patchcall_bench: liburcu-qsbr not found (apt-get install liburcu-dev); BM_Urcu_GracePeriod will report an error")
endif()
