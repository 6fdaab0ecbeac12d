# patchcall-stress: the retarget/stress driver (bench/stress/), built as <build>/bench/patchcall-stress.
file(GLOB PATCHCALL_STRESS_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/stress/*.cpp)
add_executable(patchcall-stress ${PATCHCALL_STRESS_SOURCES})
set_target_properties(patchcall-stress PROPERTIES
  OUTPUT_NAME patchcall-stress
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
target_compile_options(patchcall-stress PRIVATE -Wall -Wextra)
target_link_libraries(patchcall-stress PRIVATE patchcall Threads::Threads)
