# patchcall-stress: the retarget/stress driver (bench/stress/), built as <build>/bench/patchcall-stress.
# The ISA-neutral sources, plus the host ISA's instructions (stress/<isa>/, behind stress/isa.h).
file(GLOB PATCHCALL_STRESS_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/stress/*.cpp
     ${CMAKE_CURRENT_SOURCE_DIR}/stress/${PATCHCALL_ARCH}/*.cpp)
# The fiber switch (--fibers) is shared with the benchmarks.
add_executable(patchcall-stress ${PATCHCALL_STRESS_SOURCES}
               ${CMAKE_CURRENT_SOURCE_DIR}/support/${PATCHCALL_ARCH}/fiber_switch.cpp)
target_include_directories(patchcall-stress PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/support)
set_target_properties(patchcall-stress PROPERTIES
  OUTPUT_NAME patchcall-stress
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
target_compile_options(patchcall-stress PRIVATE -Wall -Wextra)
target_link_libraries(patchcall-stress PRIVATE patchcall Threads::Threads)
if(TARGET patchcall::testing)  # --fault (PATCHCALL_TEST_HOOKS builds only)
  target_link_libraries(patchcall-stress PRIVATE patchcall::testing)
endif()
