# C API tests (tests/c_api/*.c): each file is a C11 executable and one ctest, CApi_<Name>.
# Compiled as strict C11 with -Wpedantic so the public header stays plain C.
file(GLOB PATCHCALL_CAPI_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/c_api/*_test.c)
if(PATCHCALL_ARCH STREQUAL "aarch64")
  # The others still hold x86 of their own (an asm foreign caller, `mov eax, imm ; ret` bytes,
  # ucontext's x86 registers) or test toggle/breakpoint sites throughout: not yet ported.
  set(PATCHCALL_CAPI_ISA_NEUTRAL capi_quiescence_test.c capi_runtime_test.c capi_thread_exit_test.c capi_threads_test.c)
  list(TRANSFORM PATCHCALL_CAPI_ISA_NEUTRAL PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/c_api/)
  set(PATCHCALL_CAPI_TESTS ${PATCHCALL_CAPI_ISA_NEUTRAL})
endif()
foreach(source IN LISTS PATCHCALL_CAPI_TESTS)
  get_filename_component(stem ${source} NAME_WE)      # capi_keys_code_test
  string(REGEX REPLACE "^capi_(.*)_test$" "\\1" topic ${stem})
  string(REPLACE "_" ";" words ${topic})
  set(camel "")
  foreach(w IN LISTS words)
    string(SUBSTRING ${w} 0 1 first)
    string(SUBSTRING ${w} 1 -1 rest)
    string(TOUPPER ${first} first)
    string(APPEND camel ${first}${rest})
  endforeach()
  add_executable(${stem} ${source})
  target_include_directories(${stem} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/c_api/${PATCHCALL_ARCH})  # capi_code.h
  set_target_properties(${stem} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF LINKER_LANGUAGE CXX)
  target_compile_options(${stem} PRIVATE -Wall -Wextra -Wpedantic)
  # -fexceptions: capi_errors_test throws std::bad_alloc through its C operator new interposer.
  target_compile_options(${stem} PRIVATE -fexceptions)
  target_link_libraries(${stem} PRIVATE patchcall Threads::Threads ${CMAKE_DL_LIBS})
  add_test(NAME CApi_${camel} COMMAND ${stem})
  set_tests_properties(CApi_${camel} PROPERTIES TIMEOUT 120)
endforeach()
