# ctest driver for SharedRuntimeBuild (cmake -P): configures this source tree with
# PATCHCALL_SHARED=ON, builds the C quick start against libpatchcall_runtime.so and runs it.
# Inputs: SOURCE_ROOT, WORK_DIR, GENERATOR, CXX_COMPILER.
file(REMOVE_RECURSE "${WORK_DIR}")
include(${CMAKE_CURRENT_LIST_DIR}/step.cmake)
step("${CMAKE_COMMAND}" -S "${SOURCE_ROOT}" -B "${WORK_DIR}" -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Release
     -DPATCHCALL_SHARED=ON -DPATCHCALL_TEST_HOOKS=OFF -DPATCHCALL_BUILD_TESTS=OFF -DPATCHCALL_BUILD_BENCH=OFF)
step("${CMAKE_COMMAND}" --build "${WORK_DIR}" --target quickstart_c)
file(GLOB so "${WORK_DIR}/libpatchcall_runtime.so*")
if(NOT so)
  message(FATAL_ERROR "no libpatchcall_runtime.so in ${WORK_DIR}")
endif()
step(ldd "${WORK_DIR}/examples/quickstart/quickstart_c")
if(NOT step_output MATCHES "libpatchcall_runtime\\.so")
  message(FATAL_ERROR "quickstart_c is not linked against the shared runtime:\n${step_output}")
endif()
step("${WORK_DIR}/examples/quickstart/quickstart_c")
# The same build has no test hooks: the test-only stall-gap toggle must be refused there.
step("${CXX_COMPILER}" -std=c++20 -Wall -Wextra -Werror -I "${SOURCE_ROOT}/include"
     "${CMAKE_CURRENT_LIST_DIR}/no_hooks_check.cpp" -o "${WORK_DIR}/no_hooks_check"
     -L "${WORK_DIR}" -lpatchcall_runtime "-Wl,-rpath,${WORK_DIR}")
step("${WORK_DIR}/no_hooks_check")
