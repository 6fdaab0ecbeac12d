# GdbBreakpointThroughSites: gdb in batch mode stops on a C++ function called through a
# Direct site, a Breakpoint site and a trampoline, and the program runs to completion while
# patchcall's own int3s fire under the debugger (tests/gdb/run_gdb.cmake asserts the output;
# docs/sanitizers.md "Debugging with gdb" explains the SIGTRAP settings it uses).
add_executable(gdb_probe ${CMAKE_CURRENT_SOURCE_DIR}/gdb/gdb_probe.cpp)
target_compile_options(gdb_probe PRIVATE -Wall -Wextra)
target_link_libraries(gdb_probe PRIVATE patchcall Threads::Threads)

find_program(GDB_EXECUTABLE gdb)
if(GDB_EXECUTABLE)
  add_test(NAME GdbBreakpointThroughSites
           COMMAND ${CMAKE_COMMAND} -DGDB=${GDB_EXECUTABLE} -DPROBE=$<TARGET_FILE:gdb_probe>
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/gdb/run_gdb.cmake)
  set_tests_properties(GdbBreakpointThroughSites PROPERTIES TIMEOUT 180 LABELS "gdb")
else()
  message(WARNING "gdb not found: GdbBreakpointThroughSites is not registered (apt-get install gdb)")
endif()
