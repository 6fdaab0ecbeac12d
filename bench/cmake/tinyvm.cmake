# BM_TinyVm_* (bench/bm_tinyvm.cpp) link tinyvm_core from examples/tinyvm. The top level adds
# examples/ after bench/, so the link is deferred to the end of the top-level directory;
# without tinyvm_core (examples off) bm_tinyvm.cpp compiles to nothing (no TINYVM_AVAILABLE).
if(NOT TARGET patchcall_bench)
  return()
endif()

function(patchcall_bench_link_tinyvm)
  if(TARGET tinyvm_core)
    target_link_libraries(patchcall_bench PRIVATE tinyvm_core)
  endif()
endfunction()

if(TARGET tinyvm_core)
  patchcall_bench_link_tinyvm()
else()
  cmake_language(DEFER DIRECTORY ${PROJECT_SOURCE_DIR} CALL patchcall_bench_link_tinyvm)
endif()
