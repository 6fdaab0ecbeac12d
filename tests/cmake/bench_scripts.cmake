# Smoke tests of the benchmark scripts: bench-table refuses to judge under load (exit 2), the
# pair benchmarks run and report per-round ratios, bench-callgrind parses one dump per call
# variant, and the one Google Benchmark JSON reader they share (bench/gbench_json.py) keeps its
# rules. They check the mechanics, never a timing.
find_package(Python3 COMPONENTS Interpreter QUIET)
if(NOT Python3_Interpreter_FOUND)
  return()
endif()
add_test(NAME BenchTable_RefusesUnderLoad
         COMMAND sh -c "${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/bench-table --max-load -1; test $? -eq 2")
set_tests_properties(BenchTable_RefusesUnderLoad PROPERTIES PASS_REGULAR_EXPRESSION "refusing to judge" TIMEOUT 30)
add_test(NAME GbenchJson_Rules
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/bench_scripts/gbench_json_check.py)
set_tests_properties(GbenchJson_Rules PROPERTIES TIMEOUT 30)
if(PATCHCALL_BUILD_BENCH)  # bench/ is added after tests/: the target exists at generation time
  add_test(NAME Bench_CallPairsReportsRatios
           COMMAND $<TARGET_FILE:patchcall_bench> --benchmark_filter=^BM_CallPairs --benchmark_format=json)
  set_tests_properties(Bench_CallPairsReportsRatios PROPERTIES
                       PASS_REGULAR_EXPRESSION "ctl_jmp/direct.p50" FAIL_REGULAR_EXPRESSION "error_message" TIMEOUT 60)
  find_program(PATCHCALL_VALGRIND valgrind)
  if(PATCHCALL_VALGRIND)
    add_test(NAME Bench_CallgrindCounts
             COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/bench-callgrind --exe $<TARGET_FILE:patchcall_bench>)
    set_tests_properties(Bench_CallgrindCounts PROPERTIES PASS_REGULAR_EXPRESSION "\\| toggle \\| 6\\.0" TIMEOUT 120)
  endif()
endif()
