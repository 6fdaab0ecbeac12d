# C API tests (tests/c_api/*.c): each file is a C11 executable and one ctest, CApi_<Name>.
# Compiled as strict C11 with -Wpedantic so the public header stays plain C.
file(GLOB PATCHCALL_CAPI_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/c_api/*_test.c)
# All seven run on both ISAs: their machine code (sites, a foreign caller, returners) comes from
# c_api/<isa>/capi_code.h; on aarch64 the toggle and breakpoint checks become checks that those
# forms are refused (INVALID_ARGUMENT), and foreign sites are BLs patched as Direct sites.
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
  if(CMAKE_CROSSCOMPILING_EMULATOR)  # capi_emulated() in capi_check.h
    set_tests_properties(CApi_${camel} PROPERTIES ENVIRONMENT PATCHCALL_TEST_EMULATED=1)
  endif()
endforeach()
