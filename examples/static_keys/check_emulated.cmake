# Example_StaticKeysGcBarrier under qemu-user (cross builds only): runs gc_barrier through the
# emulator and passes when it passes, or when its only failure is at most MAX_LATE unshaded
# stores (a warning names them). qemu-user cannot honour "no core runs the old instruction
# once enable returns": a vCPU thread preempted inside a translated block resumes that block,
# old NOP included, after the writer dropped the translation and membarrier returned (the
# membarrier IPIs host threads, which does not end a translated block). The JIT stress runs
# accept the same class (EMULATOR_LATE_CALLS, bench/stress/check_run.cmake); on hardware the
# example runs as is and must report 0.
#   cmake -DEMULATOR="qemu-aarch64;-L;/" -DPROGRAM=gc_barrier -DMAX_LATE=n -P check_emulated.cmake
foreach(v EMULATOR PROGRAM MAX_LATE)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check_emulated.cmake: -D${v}= is required")
  endif()
endforeach()
execute_process(COMMAND ${EMULATOR} ${PROGRAM} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(rc EQUAL 0)
  return()
endif()
if(NOT out MATCHES "barrier branch\\(es\\); ([0-9]+) unshaded stores" OR CMAKE_MATCH_1 EQUAL 0)
  message(FATAL_ERROR "FAIL: gc_barrier exited ${rc}, not for unshaded stores")
endif()
set(late ${CMAKE_MATCH_1})
if(late GREATER MAX_LATE)
  message(FATAL_ERROR "FAIL: ${late} unshaded stores, more than the ${MAX_LATE} a stale qemu translation explains")
endif()
message(WARNING "emulator only: ${late} store(s) ran a barrier branch qemu had not retranslated yet (at most ${MAX_LATE} accepted)")
