# patchcall_fork_baseline (bench/fork_baseline/): glibc's fork() against _Fork() in a process
# that links no patchcall, the baseline BM_ForkChild's "child start, fork() - _Fork()" needs.
if(NOT TARGET patchcall_bench)
  return()
endif()
add_executable(patchcall_fork_baseline ${CMAKE_CURRENT_SOURCE_DIR}/fork_baseline/fork_baseline.cpp)
target_include_directories(patchcall_fork_baseline PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/support)
target_compile_options(patchcall_fork_baseline PRIVATE -Wall -Wextra)
target_link_libraries(patchcall_fork_baseline PRIVATE benchmark::benchmark benchmark::benchmark_main Threads::Threads)
