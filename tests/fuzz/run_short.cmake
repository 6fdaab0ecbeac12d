# ctest ApiFuzz_Short (cmake -P): configure + build the clang/libFuzzer build of api_fuzz in
# BUILD_DIR (tests/fuzz/CMakeLists.txt), then fuzz RUNS inputs (at most SECONDS) from the seed
# corpus alone, with a fixed SEED: every machine explores the same inputs, so a failure here
# is one CI sees too and a fix can be checked against it (a longer, wider search: set SEED and
# RUNS, e.g. PATCHCALL_FUZZ_SEED / PATCHCALL_FUZZ_RUNS at configure time). Any crash, sanitizer
# report or invariant violation fails the test; the reproducer is left in BUILD_DIR/artifacts/
# (add it to tests/fuzz/corpus once fixed). Inputs: SOURCE_DIR (tests/fuzz), BUILD_DIR, CXX,
# CC, SECONDS, RUNS, SEED, JOBS.
foreach(v SOURCE_DIR BUILD_DIR CXX CC SECONDS)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_short.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT JOBS)
  set(JOBS 2)
endif()
if(NOT RUNS)
  set(RUNS 4000)
endif()
if(NOT SEED)
  set(SEED 1)
endif()

function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "FAILED (${rc}): ${cmd}\n${out}\n${err}")
  endif()
endfunction()

step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BUILD_DIR} -DCMAKE_BUILD_TYPE=RelWithDebInfo
     -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_C_COMPILER=${CC})
step(${CMAKE_COMMAND} --build ${BUILD_DIR} --target api_fuzz -j${JOBS})

# New inputs go to a scratch corpus in the build dir, never into the source tree; it starts
# empty every run, so the search depends on the seed corpus and SEED only.
set(work ${BUILD_DIR}/corpus)
file(REMOVE_RECURSE ${work})
file(MAKE_DIRECTORY ${work} ${BUILD_DIR}/artifacts)
execute_process(
  COMMAND ${BUILD_DIR}/api_fuzz -seed=${SEED} -runs=${RUNS} -max_total_time=${SECONDS} -timeout=30 -rss_limit_mb=3072
          -print_final_stats=1 -artifact_prefix=${BUILD_DIR}/artifacts/ ${work} ${SOURCE_DIR}/corpus
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(REGEX MATCH "stat::number_of_executed_units: *[0-9]+" runs "${err}")
if(NOT rc EQUAL 0)
  # The report, not the progress lines before it: from the first sanitizer or invariant line.
  string(REGEX MATCH "(==[0-9]+==ERROR|api_fuzz: invariant|==[0-9]+== ERROR|deadly signal|ERROR: libFuzzer).*" report "${err}")
  if(report)
    set(err "${report}")
  endif()
  string(LENGTH "${err}" n)
  if(n GREATER 20000)
    string(SUBSTRING "${err}" 0 20000 err)
  endif()
  message(FATAL_ERROR "api_fuzz failed (exit ${rc}); reproducer in ${BUILD_DIR}/artifacts/\n${err}")
endif()
message(STATUS "api_fuzz: seed ${SEED}, ${RUNS} inputs (at most ${SECONDS} s) without a failure (${runs})")
