# The libFuzzer target over the public API (tests/fuzz/, docs/sanitizers.md "Fuzzing").
#  - ApiFuzz_ReplayCorpus: this build (any compiler) replays the seed corpus through the same
#    harness without libFuzzer, so every seed (and any reproducer added to the corpus) keeps
#    passing its invariants.
#  - ApiFuzz_Short: when clang++ is available, a separate clang build of the fuzzer with
#    ASan+UBSan in ${CMAKE_BINARY_DIR}/fuzz-build, fuzzed for PATCHCALL_FUZZ_RUNS inputs with
#    PATCHCALL_FUZZ_SEED (deterministic: the same search everywhere), at most PATCHCALL_FUZZ_SECONDS.
# The host instructions the harness writes and reads back are in fuzz/<isa>/ (fuzz_code.h,
# fuzz_layout.h). On aarch64 (a cross build runs it under CMAKE_CROSSCOMPILING_EMULATOR) only
# the replay is registered: see ApiFuzz_Short below.
set(PATCHCALL_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
set(PATCHCALL_FUZZ_SECONDS 120 CACHE STRING "Upper bound of the ApiFuzz_Short ctest run, in seconds")
set(PATCHCALL_FUZZ_RUNS 4000 CACHE STRING "Inputs ApiFuzz_Short runs")
set(PATCHCALL_FUZZ_SEED 1 CACHE STRING "libFuzzer seed of ApiFuzz_Short (fixed: every machine searches alike)")

add_executable(api_fuzz_replay ${PATCHCALL_FUZZ_DIR}/api_fuzz.cpp ${PATCHCALL_FUZZ_DIR}/fuzz_ops.cpp
               ${PATCHCALL_FUZZ_DIR}/fuzz_model.cpp ${PATCHCALL_FUZZ_DIR}/fuzz_support.cpp
               ${PATCHCALL_FUZZ_DIR}/fuzz_fixtures.cpp ${PATCHCALL_FUZZ_DIR}/replay_main.cpp
               ${PATCHCALL_FUZZ_DIR}/${PATCHCALL_ARCH}/fuzz_code.cpp ${PATCHCALL_FUZZ_DIR}/${PATCHCALL_ARCH}/fuzz_layout.cpp)
target_include_directories(api_fuzz_replay PRIVATE ${PATCHCALL_FUZZ_DIR})
target_compile_options(api_fuzz_replay PRIVATE -Wall -Wextra)
target_link_libraries(api_fuzz_replay PRIVATE patchcall patchcall_testsupport Threads::Threads)
add_test(NAME ApiFuzz_ReplayCorpus COMMAND api_fuzz_replay ${PATCHCALL_FUZZ_DIR}/corpus)
set_tests_properties(ApiFuzz_ReplayCorpus PROPERTIES TIMEOUT 120 LABELS "fuzz")
if(CMAKE_CROSSCOMPILING_EMULATOR)
  set_tests_properties(ApiFuzz_ReplayCorpus PROPERTIES ENVIRONMENT PATCHCALL_TEST_EMULATED=1)
endif()

# ApiFuzz_Short stays x86-64 only: it configures, builds and runs a second project on the host
# (clang, libFuzzer, ASan+UBSan, Zydis: fuzz/CMakeLists.txt) without the toolchain file or the
# emulator, so in a cross build it would fuzz the x86-64 host again; the replay covers aarch64.
if(NOT PATCHCALL_ARCH STREQUAL "x86_64")
  return()
endif()

find_program(PATCHCALL_CLANGXX NAMES clang++ clang++-14)
find_program(PATCHCALL_CLANG NAMES clang clang-14)
if(PATCHCALL_CLANGXX AND PATCHCALL_CLANG)
  add_test(NAME ApiFuzz_Short
           COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${PATCHCALL_FUZZ_DIR} -DBUILD_DIR=${CMAKE_BINARY_DIR}/fuzz-build
                   -DCXX=${PATCHCALL_CLANGXX} -DCC=${PATCHCALL_CLANG} -DSECONDS=${PATCHCALL_FUZZ_SECONDS}
                   -DRUNS=${PATCHCALL_FUZZ_RUNS} -DSEED=${PATCHCALL_FUZZ_SEED}
                   -P ${PATCHCALL_FUZZ_DIR}/run_short.cmake)
  # Includes configuring and building the fuzz target the first time (~25 s on 2 cores).
  set_tests_properties(ApiFuzz_Short PROPERTIES TIMEOUT 600 LABELS "fuzz")
else()
  message(STATUS "clang++ not found: ApiFuzz_Short is not registered (apt-get install clang)")
endif()
