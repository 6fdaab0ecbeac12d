# Static keys and static calls for AOT-compiled C/C++ (issue 16; tests/static_aot/):
#  - StaticAot_Stress_<variant>: stress_main.c + the dlopen()ed stress_lib.c, 100 keys and 100
#    static calls flipped and retargeted 10,000 times under 4 reader threads, every site decoded
#    (static_aot/<isa>/aot_decode.c: Zydis on x86-64, Capstone on aarch64); built 4 ways: C
#    with this build's C compiler at -O0 and -O2 (C_O0, C_O2) and as C++ with clang++ -x c++
#    at -O0 and -O2 (CXX_Clang_O0, CXX_Clang_O2: compiled by custom commands, linked by this
#    build, so they link the same runtime; skipped without clang++, and in a cross build).
#    Each also reloads the library, and churns (dlopen/dlclose in a loop on another thread) a
#    second library, churn_lib.c, of branches on the executable's keys and calls of its calls.
#  - StaticAot_Stress_C_O3_NoPie: the C program at -O3 as a non-PIE executable.
#  - StaticAot_Fork: the C -O2 program forking in the middle of its run (and a fork storm).
#  - StaticAot_Stress_C_O2_LazyPLT: the library lazily bound (no inline sites found there).
#  - StaticAot_TableFull: a library with more keys than PATCHCALL_STATIC_KEYS_MAX.
#  - StaticAot_ManyBranches: one key with 20,000 branches (more than one protocol round).
#  - StaticAot_SelfTest_*: the stress program's checks catch a writer that lies.
#  - StaticAot_CompileFail_*: snippets the headers must refuse at compile time.
# Every program links the runtime statically and exports its symbols (-rdynamic) for the
# library; every module links with -Wl,-z,now so cross-module PLT slots are bound at load.
# A cross build runs every program under qemu-user (CMAKE_CROSSCOMPILING_EMULATOR) with
# PATCHCALL_TEST_EMULATED=1 and the emulator's sync (end of this file); scripts/test-aarch64's
# PATCHCALL_TEST_SCALE shortens the stress runs there (stress_main.c --scale).
set(_aot_dir ${CMAKE_CURRENT_SOURCE_DIR}/static_aot)
set(_aot_headers ${_aot_dir}/aot_stress.h ${_aot_dir}/aot_sites.h
    ${PROJECT_SOURCE_DIR}/include/patchcall/static_key.h ${PROJECT_SOURCE_DIR}/include/patchcall/static_call_aot.h
    ${PROJECT_SOURCE_DIR}/include/patchcall/static_module.h)
set(_aot_timeout 90)
set(_aot_short_timeout 60)
if(CMAKE_CROSSCOMPILING_EMULATOR)  # (scaled runs, but each emulated instruction costs 10-30 native ones)
  set(_aot_timeout 240)
  set(_aot_short_timeout 240)
endif()
# The site checks (aot_sites.c) and this ISA's decoder behind them, with its disassembler (found
# by tests/CMakeLists.txt for tests/support/).
set(_aot_check_sources ${_aot_dir}/aot_sites.c ${_aot_dir}/${PATCHCALL_ARCH}/aot_decode.c)
if(PATCHCALL_ARCH STREQUAL "x86_64")
  set(_aot_decoder_lib Zydis::Zydis)
else()
  set(_aot_decoder_lib PkgConfig::CAPSTONE)
endif()

function(_aot_program target)
  set_target_properties(${target} PROPERTIES ENABLE_EXPORTS ON LINKER_LANGUAGE CXX)
  target_link_libraries(${target} PRIVATE patchcall_runtime ${_aot_decoder_lib} Threads::Threads ${CMAKE_DL_LIBS})
  target_link_options(${target} PRIVATE -Wl,-z,now)
endfunction()
function(_aot_library target)
  set_target_properties(${target} PROPERTIES PREFIX "" LINKER_LANGUAGE C)
  target_link_options(${target} PRIVATE -Wl,-z,now)
endfunction()

# ---- the C variants (this build's C compiler) ----------------------------------------------
foreach(opt O0 O2)
  string(TOLOWER ${opt} _o)
  foreach(lib stress churn)
    add_library(static_aot_${lib}_lib_c_${_o} MODULE ${_aot_dir}/${lib}_lib.c)
    target_include_directories(static_aot_${lib}_lib_c_${_o} PRIVATE ${PROJECT_SOURCE_DIR}/include)
    target_compile_options(static_aot_${lib}_lib_c_${_o} PRIVATE -${opt} -Wall -Wextra)
    _aot_library(static_aot_${lib}_lib_c_${_o})
  endforeach()

  add_executable(static_aot_stress_c_${_o} ${_aot_dir}/stress_main.c ${_aot_check_sources})
  target_compile_options(static_aot_stress_c_${_o} PRIVATE -${opt} -Wall -Wextra)
  _aot_program(static_aot_stress_c_${_o})
  add_dependencies(static_aot_stress_c_${_o} static_aot_stress_lib_c_${_o} static_aot_churn_lib_c_${_o})
  add_test(NAME StaticAot_Stress_C_${opt}
           COMMAND static_aot_stress_c_${_o} --lib $<TARGET_FILE:static_aot_stress_lib_c_${_o}>
                   --churn-lib $<TARGET_FILE:static_aot_churn_lib_c_${_o}>)
  set_tests_properties(StaticAot_Stress_C_${opt} PROPERTIES TIMEOUT ${_aot_timeout} LABELS "static_aot")
endforeach()

# A non-PIE executable at -O3 (absolute addresses in its records, the trampolines' indirect
# path and the jump tables; text at 0x400000, its own libraries far beyond rel32 reach), with
# its library at -O3 too.
foreach(lib stress churn)
  add_library(static_aot_${lib}_lib_c_o3 MODULE ${_aot_dir}/${lib}_lib.c)
  target_include_directories(static_aot_${lib}_lib_c_o3 PRIVATE ${PROJECT_SOURCE_DIR}/include)
  target_compile_options(static_aot_${lib}_lib_c_o3 PRIVATE -O3 -Wall -Wextra)
  _aot_library(static_aot_${lib}_lib_c_o3)
endforeach()
add_executable(static_aot_stress_c_o3_nopie ${_aot_dir}/stress_main.c ${_aot_check_sources})
target_compile_options(static_aot_stress_c_o3_nopie PRIVATE -O3 -fno-pie -Wall -Wextra)
_aot_program(static_aot_stress_c_o3_nopie)
target_link_options(static_aot_stress_c_o3_nopie PRIVATE -no-pie)
add_dependencies(static_aot_stress_c_o3_nopie static_aot_stress_lib_c_o3 static_aot_churn_lib_c_o3)
add_test(NAME StaticAot_Stress_C_O3_NoPie
         COMMAND static_aot_stress_c_o3_nopie --lib $<TARGET_FILE:static_aot_stress_lib_c_o3>
                 --churn-lib $<TARGET_FILE:static_aot_churn_lib_c_o3>)
set_tests_properties(StaticAot_Stress_C_O3_NoPie PROPERTIES TIMEOUT ${_aot_timeout} LABELS "static_aot")

# The library linked -z lazy and dlopen()ed RTLD_LAZY: its PLT slots are unbound when it is
# registered, so none of its inline call sites is found (they keep calling the trampoline
# through the PLT, README "Static keys and calls"); every call must still be right.
add_library(static_aot_stress_lib_c_o2_lazy MODULE ${_aot_dir}/stress_lib.c)
target_include_directories(static_aot_stress_lib_c_o2_lazy PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_compile_options(static_aot_stress_lib_c_o2_lazy PRIVATE -O2 -Wall -Wextra)
set_target_properties(static_aot_stress_lib_c_o2_lazy PROPERTIES PREFIX "" LINKER_LANGUAGE C)
target_link_options(static_aot_stress_lib_c_o2_lazy PRIVATE -Wl,-z,lazy)
add_dependencies(static_aot_stress_c_o2 static_aot_stress_lib_c_o2_lazy)
add_test(NAME StaticAot_Stress_C_O2_LazyPLT
         COMMAND static_aot_stress_c_o2 --lib $<TARGET_FILE:static_aot_stress_lib_c_o2_lazy> --lazy --changes 3000)
set_tests_properties(StaticAot_Stress_C_O2_LazyPLT PROPERTIES TIMEOUT ${_aot_timeout} LABELS "static_aot")

# The checks themselves: with --inject-lie the program applies other values than it publishes
# for 10 changes; the readers' version window and the site walk must each report it.
add_test(NAME StaticAot_SelfTest_ReadersNoticeALie
         COMMAND static_aot_stress_c_o2 --lib $<TARGET_FILE:static_aot_stress_lib_c_o2> --changes 1000 --inject-lie 600
                 --walk-every 1000000)
set_tests_properties(StaticAot_SelfTest_ReadersNoticeALie PROPERTIES TIMEOUT ${_aot_timeout} LABELS "static_aot"
                     PASS_REGULAR_EXPRESSION "FAIL: (key|static call) [^\n]*allow only")
add_test(NAME StaticAot_SelfTest_SiteWalkNoticesALie
         COMMAND static_aot_stress_c_o2 --lib $<TARGET_FILE:static_aot_stress_lib_c_o2> --changes 1000 --inject-lie 600
                 --readers 0 --walk-every 1)
set_tests_properties(StaticAot_SelfTest_SiteWalkNoticesALie PROPERTIES TIMEOUT ${_aot_timeout} LABELS "static_aot"
                     PASS_REGULAR_EXPRESSION "FAIL: [^\n]*(BRANCH|TRAMPOLINE|CALL|TAIL_CALL) [^\n]*decodes as")

if(PATCHCALL_SANITIZE MATCHES "thread")
  # TSan refuses new threads in the child of a multi-threaded fork (die_after_fork), and the
  # fork child runs readers.
  add_test(NAME StaticAot_Fork COMMAND ${CMAKE_COMMAND} -E echo
           "SKIPPED under ThreadSanitizer: it cannot start threads in the child of a multi-threaded fork")
  set_tests_properties(StaticAot_Fork PROPERTIES SKIP_REGULAR_EXPRESSION "SKIPPED" LABELS "static_aot")
else()
  # The fork storm forks from a second thread while the main thread may be in malloc: glibc's
  # fork() makes malloc safe in the child, gcc's ASan allocator does not (a storm child was seen
  # blocked in asan_calloc, on a lock the parent's main thread held), so no storm under ASan.
  set(_aot_storm --fork-storm 30)
  if(PATCHCALL_SANITIZE MATCHES "address")
    set(_aot_storm "")
  endif()
  add_test(NAME StaticAot_Fork
           COMMAND static_aot_stress_c_o2 --lib $<TARGET_FILE:static_aot_stress_lib_c_o2> --fork ${_aot_storm}
                   --changes 3000)
  set_tests_properties(StaticAot_Fork PROPERTIES TIMEOUT ${_aot_timeout} LABELS "static_aot")
endif()

# ---- the C++ variants: the same sources, clang++ -x c++ ----------------------------------------
# The host's clang++ compiles for the host: a cross build (no clang cross setup: sysroot,
# target libstdc++) skips them, saying so.
find_program(PATCHCALL_CLANGXX NAMES clang++ clang++-14)
if(CMAKE_CROSSCOMPILING)
  set(_aot_no_clang "SKIPPED: a cross build (${PATCHCALL_ARCH}) has no clang cross setup; the clang variants run in the native builds")
elseif(NOT PATCHCALL_CLANGXX)
  set(_aot_no_clang "SKIPPED: clang++ not found (apt-get install clang; scripts/deps installs it): the C++ variants of the static_aot stress program need it")
else()
  get_target_property(_aot_decoder_includes ${_aot_decoder_lib} INTERFACE_INCLUDE_DIRECTORIES)
endif()
set(_aot_clang_includes -I${PROJECT_SOURCE_DIR}/include)
foreach(dir IN LISTS _aot_decoder_includes)
  if(dir AND NOT dir STREQUAL "/usr/include") # (-I/usr/include breaks libstdc++'s #include_next)
    list(APPEND _aot_clang_includes -I${dir})
  endif()
endforeach()
foreach(opt O0 O2)
  string(TOLOWER ${opt} _o)
  set(_test StaticAot_Stress_CXX_Clang_${opt})
  if(_aot_no_clang)
    add_test(NAME ${_test} COMMAND ${CMAKE_COMMAND} -E echo "${_aot_no_clang}")
    set_tests_properties(${_test} PROPERTIES SKIP_REGULAR_EXPRESSION "SKIPPED:" LABELS "static_aot")
    continue()
  endif()
  set(_out ${CMAKE_CURRENT_BINARY_DIR}/static_aot/cxx_${_o})
  file(MAKE_DIRECTORY ${_out})
  set(_objects "")
  foreach(source stress_main aot_sites ${PATCHCALL_ARCH}/aot_decode stress_lib churn_lib)
    get_filename_component(stem ${source} NAME)
    set(_pic -fPIE)
    if(stem MATCHES "_lib$")
      set(_pic -fPIC)
    endif()
    add_custom_command(
      OUTPUT ${_out}/${stem}.o
      COMMAND ${PATCHCALL_CLANGXX} -x c++ -std=c++20 -${opt} -g ${_pic} -Wall -Wextra ${_aot_clang_includes}
              -c ${_aot_dir}/${source}.c -o ${_out}/${stem}.o
      DEPENDS ${_aot_dir}/${source}.c ${_aot_headers}
      COMMENT "clang++ -x c++ -${opt}: static_aot/${source}.c"
      VERBATIM)
    set_source_files_properties(${_out}/${stem}.o PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
  endforeach()
  foreach(lib stress churn)
    add_library(static_aot_${lib}_lib_cxx_${_o} MODULE ${_out}/${lib}_lib.o)
    _aot_library(static_aot_${lib}_lib_cxx_${_o})
    set_target_properties(static_aot_${lib}_lib_cxx_${_o} PROPERTIES LINKER_LANGUAGE CXX)
  endforeach()
  add_executable(static_aot_stress_cxx_${_o} ${_out}/stress_main.o ${_out}/aot_sites.o ${_out}/aot_decode.o)
  _aot_program(static_aot_stress_cxx_${_o})
  add_dependencies(static_aot_stress_cxx_${_o} static_aot_stress_lib_cxx_${_o} static_aot_churn_lib_cxx_${_o})
  add_test(NAME ${_test} COMMAND static_aot_stress_cxx_${_o} --lib $<TARGET_FILE:static_aot_stress_lib_cxx_${_o}>
                                 --churn-lib $<TARGET_FILE:static_aot_churn_lib_cxx_${_o}>)
  set_tests_properties(${_test} PROPERTIES TIMEOUT ${_aot_timeout} LABELS "static_aot")
endforeach()

# ---- more keys than the table holds -------------------------------------------------------------
add_library(static_aot_table_full_lib MODULE ${_aot_dir}/table_full_lib.c)
target_include_directories(static_aot_table_full_lib PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_compile_options(static_aot_table_full_lib PRIVATE -Wall -Wextra)
_aot_library(static_aot_table_full_lib)
add_executable(static_aot_table_full ${_aot_dir}/table_full_main.c ${_aot_check_sources})
target_compile_options(static_aot_table_full PRIVATE -Wall -Wextra)
_aot_program(static_aot_table_full)
add_dependencies(static_aot_table_full static_aot_table_full_lib)
add_test(NAME StaticAot_TableFull COMMAND static_aot_table_full $<TARGET_FILE:static_aot_table_full_lib>)
set_tests_properties(StaticAot_TableFull PROPERTIES TIMEOUT ${_aot_short_timeout} LABELS "static_aot")

# ---- GoogleTest cases that use the headers from C++ (static_aot/*_test.cpp) ----------------------
#  - StaticAotFailedBatch.*: a batch whose sync fails before / after its tails, threads running.
#  - StaticCallHandle.*: PATCHCALL_STATIC_CALL_HANDLE's calls are inline sites that follow update().
#  - StaticAotShadowStack.*: with shadow stacks inline calls keep their trampoline (in
#    static_call_handle_test.cpp, on the same handle).
file(GLOB _aot_gtests CONFIGURE_DEPENDS ${_aot_dir}/*_test.cpp)
add_executable(static_aot_tests ${_aot_gtests})
target_compile_options(static_aot_tests PRIVATE -Wall -Wextra)
target_link_libraries(static_aot_tests PRIVATE patchcall patchcall::testing GTest::gtest GTest::gtest_main Threads::Threads)
if(CMAKE_CROSSCOMPILING_EMULATOR)
  # (Discovery runs the binary under the emulator, at build time.) Its readers must see what
  # the runtime writes: the emulator's sync (below). These cases read nothing else of the
  # emulator's, and a discovered test takes one ENVIRONMENT entry (CMake flattens a list).
  gtest_discover_tests(static_aot_tests DISCOVERY_TIMEOUT 120 PROPERTIES TIMEOUT 120 LABELS "static_aot"
                       ENVIRONMENT PATCHCALL_SYNC=emulator-remap)
else()
  gtest_discover_tests(static_aot_tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 60 LABELS "static_aot")
endif()
#  - StaticAotShadowStack_Faked: the process pretends to run with shadow stacks from its start
#    (hook builds): on x86-64 inline calls keep their trampoline (no int3 can emulate a call);
#    on A64, which takes no trap, they stay inline sites (the discovered entry skips without it).
if(PATCHCALL_TEST_HOOKS)
  add_test(NAME StaticAotShadowStack_Faked COMMAND static_aot_tests --gtest_filter=StaticAotShadowStack.*)
  set_tests_properties(StaticAotShadowStack_Faked PROPERTIES ENVIRONMENT PATCHCALL_TEST_FAKE_SHADOW_STACK=1 TIMEOUT ${_aot_short_timeout}
                       LABELS "static_aot" FAIL_REGULAR_EXPRESSION "SKIPPED")
endif()

# ---- one key with more branches than one protocol round protects ---------------------------------
add_executable(static_aot_many_branches ${_aot_dir}/many_branches_main.c ${_aot_check_sources})
target_compile_options(static_aot_many_branches PRIVATE -Wall -Wextra)
_aot_program(static_aot_many_branches)
add_test(NAME StaticAot_ManyBranches COMMAND static_aot_many_branches)
set_tests_properties(StaticAot_ManyBranches PROPERTIES TIMEOUT ${_aot_short_timeout} LABELS "static_aot")

# ---- compile errors the headers promise ------------------------------------------------------------
# Each compiles the snippet twice (tests/static_aot/compile_fail/run.cmake): with
# -DAOT_SNIPPET_OK it must compile, without it must fail with the expected error.
function(_aot_compile_fail name compiler flags source expect1 expect2)
  add_test(NAME StaticAot_CompileFail_${name}
           COMMAND ${CMAKE_COMMAND} -DCOMPILER=${compiler} -DFLAGS=${flags} -DSOURCE=${_aot_dir}/compile_fail/${source}
                   -DINCLUDE=${PROJECT_SOURCE_DIR}/include -DEXPECT1=${expect1} -DEXPECT2=${expect2}
                   -P ${_aot_dir}/compile_fail/run.cmake)
  set_tests_properties(StaticAot_CompileFail_${name} PROPERTIES TIMEOUT 60 LABELS "static_aot")
endfunction()
# The wrong target's type and the call's type both appear in the error (g++: "invalid
# conversion from 'int (*)(int)' to 'long int (*)(long int)'"; clang++: "no known conversion
# from 'int (int)' to 'long (*)(long)'").
set(_aot_wrong_type "int (\\(\\*\\))?\\(int\\)")
set(_aot_call_type "long( int)? \\(\\*\\)\\(long( int)?\\)")
set(_aot_null_message "a NULL static call target \\(a no-op\\) is only for calls returning void")
set(_aot_negative_array "array (size )?is negative")
# This build's compilers run on the host also in a cross build (the snippets are only compiled);
# clang's entries are skipped there like the clang variants above (the host's clang would check
# the host ISA's expansion of the headers, not this build's).
set(_aot_cxx_compilers "GXX=${CMAKE_CXX_COMPILER}")
set(_aot_c_compilers "CC=${CMAKE_C_COMPILER}")
find_program(PATCHCALL_CLANG NAMES clang clang-14)
if(PATCHCALL_CLANGXX)
  list(APPEND _aot_cxx_compilers "Clang=${PATCHCALL_CLANGXX}")
endif()
if(PATCHCALL_CLANG)
  list(APPEND _aot_c_compilers "Clang=${PATCHCALL_CLANG}")
endif()
if(CMAKE_CROSSCOMPILING)
  foreach(name CxxWrongSignature CxxNullNonVoid CxxHandleWrongSignature CxxHandleNullNonVoid CWrongSignature)
    add_test(NAME StaticAot_CompileFail_${name}_Clang COMMAND ${CMAKE_COMMAND} -E echo "${_aot_no_clang}")
    set_tests_properties(StaticAot_CompileFail_${name}_Clang PROPERTIES SKIP_REGULAR_EXPRESSION "SKIPPED:" LABELS "static_aot")
  endforeach()
  list(FILTER _aot_cxx_compilers EXCLUDE REGEX "^Clang=")
  list(FILTER _aot_c_compilers EXCLUDE REGEX "^Clang=")
endif()
foreach(entry IN LISTS _aot_cxx_compilers)
  string(REGEX REPLACE "=.*" "" tag "${entry}")
  string(REGEX REPLACE "^[^=]*=" "" compiler "${entry}")
  _aot_compile_fail(CxxWrongSignature_${tag} ${compiler} "-std=c++20" cxx_wrong_signature.cpp
                    "${_aot_wrong_type}" "${_aot_call_type}")
  _aot_compile_fail(CxxNullNonVoid_${tag} ${compiler} "-std=c++20" cxx_null_nonvoid.cpp "${_aot_null_message}" "")
  _aot_compile_fail(CxxHandleWrongSignature_${tag} ${compiler} "-std=c++20" cxx_handle_wrong_signature.cpp
                    "${_aot_wrong_type}" "${_aot_call_type}")
  _aot_compile_fail(CxxHandleNullNonVoid_${tag} ${compiler} "-std=c++20,-DAOT_SNIPPET_NULL" cxx_handle_wrong_signature.cpp
                    "${_aot_null_message}" "")
endforeach()
foreach(entry IN LISTS _aot_c_compilers)
  string(REGEX REPLACE "=.*" "" tag "${entry}")
  string(REGEX REPLACE "^[^=]*=" "" compiler "${entry}")
  _aot_compile_fail(CWrongSignature_${tag} ${compiler} "-std=gnu11" c_wrong_signature.c "${_aot_negative_array}" "")
endforeach()

# ---- under the emulator ------------------------------------------------------------------------------
# Every program above runs under qemu-user in a cross build: the tests know it
# (PATCHCALL_TEST_EMULATED=1: the bounded stale-translation tolerance of stress_main.c) and the
# runtime remaps what it wrote so qemu retranslates it (PATCHCALL_SYNC=emulator-remap, never on
# hardware). (The compile-fail entries run the cross compiler on the host: no emulator.)
if(CMAKE_CROSSCOMPILING_EMULATOR)
  get_property(_aot_all_tests DIRECTORY PROPERTY TESTS)
  list(FILTER _aot_all_tests INCLUDE REGEX "^StaticAot(_Stress|_Fork|_SelfTest|_TableFull|_ManyBranches|ShadowStack_Faked)")
  set_property(TEST ${_aot_all_tests} APPEND PROPERTY ENVIRONMENT PATCHCALL_TEST_EMULATED=1 PATCHCALL_SYNC=emulator-remap)
endif()
