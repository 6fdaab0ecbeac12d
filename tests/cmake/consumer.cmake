# FindPackageConsumer: installs this build tree into a prefix inside the build dir, then
# configures, builds and runs tests/consumer (find_package(patchcall CONFIG REQUIRED))
# against it. Proves the exported targets and the package config (asmjit, mimalloc) work.
set(_consumer_link_flags "")
if(PATCHCALL_SANITIZE)
  set(_consumer_link_flags "-fsanitize=${PATCHCALL_SANITIZE}")
endif()
add_test(NAME FindPackageConsumer
  COMMAND ${CMAKE_COMMAND}
    -DBUILD_DIR=${PROJECT_BINARY_DIR}
    -DSOURCE_DIR=${CMAKE_CURRENT_SOURCE_DIR}/consumer
    -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer-work
    -DGENERATOR=${CMAKE_GENERATOR}
    -DCXX_COMPILER=${CMAKE_CXX_COMPILER}
    -DBUILD_TYPE=$<CONFIG>
    -DLINK_FLAGS=${_consumer_link_flags}
    -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run.cmake)
set_tests_properties(FindPackageConsumer PROPERTIES TIMEOUT 300 LABELS "packaging")

# The same from C alone: a `project(LANGUAGES C)` consumer of patchcall::runtime, and a plain
# `cc` build through pkg-config; both build examples/quickstart/quickstart.c.
add_test(NAME FindPackageConsumerC
  COMMAND ${CMAKE_COMMAND}
    -DBUILD_DIR=${PROJECT_BINARY_DIR}
    -DSOURCE_DIR=${CMAKE_CURRENT_SOURCE_DIR}/consumer_c
    -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer-c-work
    -DGENERATOR=${CMAKE_GENERATOR}
    -DBUILD_TYPE=$<CONFIG>
    -DLINK_FLAGS=${_consumer_link_flags}
    -DQUICKSTART_C=${PROJECT_SOURCE_DIR}/examples/quickstart/quickstart.c
    -DPKG_CONFIG_C=${PROJECT_SOURCE_DIR}/examples/quickstart/quickstart.c
    -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run.cmake)
set_tests_properties(FindPackageConsumerC PROPERTIES TIMEOUT 300 LABELS "packaging")

# PATCHCALL_SHARED=ON: the runtime as a shared library, used by the C quick start.
add_test(NAME SharedRuntimeBuild
  COMMAND ${CMAKE_COMMAND} -DSOURCE_ROOT=${PROJECT_SOURCE_DIR} -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/shared-build
          -DCXX_COMPILER=${CMAKE_CXX_COMPILER}
          -DGENERATOR=${CMAKE_GENERATOR} -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/shared_build.cmake)
set_tests_properties(SharedRuntimeBuild PROPERTIES TIMEOUT 600 LABELS "packaging")

# add_subdirectory(patchcall) from another project: libraries only, no hooks (configure check).
add_test(NAME AddSubdirectoryEmbedder
  COMMAND ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_SOURCE_DIR}/consumer/subdirectory
          -B ${CMAKE_CURRENT_BINARY_DIR}/subdirectory-embedder -DPATCHCALL_SOURCE=${PROJECT_SOURCE_DIR})
set_tests_properties(AddSubdirectoryEmbedder PROPERTIES TIMEOUT 120 LABELS "packaging")
