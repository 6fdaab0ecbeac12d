# ctest driver for FindPackageConsumer (cmake -P): install the build tree into a prefix,
# then configure, build and run tests/consumer against it.
# Inputs: BUILD_DIR, SOURCE_DIR (this folder), WORK_DIR, GENERATOR, CXX_COMPILER,
# BUILD_TYPE, LINK_FLAGS (sanitizer builds); QUICKSTART_C (the C consumer's source);
# PKG_CONFIG_C (a C file built with `cc $(pkg-config --cflags --libs --static patchcall)`).
foreach(v BUILD_DIR SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run.cmake: -D${v}=... is required")
  endif()
endforeach()

include(${CMAKE_CURRENT_LIST_DIR}/step.cmake)

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/build")
set(configure_args -S "${SOURCE_DIR}" -B "${build}" "-DCMAKE_PREFIX_PATH=${prefix}")
if(GENERATOR)
  list(APPEND configure_args -G "${GENERATOR}")
endif()
if(CXX_COMPILER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(BUILD_TYPE)
  list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
endif()
if(LINK_FLAGS)
  list(APPEND configure_args "-DCMAKE_EXE_LINKER_FLAGS=${LINK_FLAGS}")
endif()
if(QUICKSTART_C)
  list(APPEND configure_args "-DQUICKSTART_C=${QUICKSTART_C}")
endif()

step("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")
step("${CMAKE_COMMAND}" ${configure_args})
step("${CMAKE_COMMAND}" --build "${build}")
step("${build}/consumer")

if(PKG_CONFIG_C)
  set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig:${prefix}/lib/x86_64-linux-gnu/pkgconfig")
  execute_process(COMMAND pkg-config --cflags --libs --static patchcall
    RESULT_VARIABLE rc OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config --libs patchcall failed: ${err}")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  separate_arguments(link UNIX_COMMAND "${LINK_FLAGS}")
  step(cc -std=c11 -Wall -Wextra -Werror -pedantic "${PKG_CONFIG_C}" -o "${WORK_DIR}/pkgconfig-consumer" ${flags} ${link})
  step("${WORK_DIR}/pkgconfig-consumer")
endif()
