# The Promela model of the toggle protocol as the code runs it: spin must find the torn call
# with the snapshot rule off (and with the snapshot taken before the flip) and verify safety
# with it on (model/check.sh asserts all).
find_program(SPIN_EXECUTABLE spin)
if(SPIN_EXECUTABLE)
  add_test(NAME ToggleModel_Spin
           COMMAND sh ${PROJECT_SOURCE_DIR}/model/check.sh ${CMAKE_CURRENT_BINARY_DIR}/spin-work)
else()
  message(WARNING "spin not found: ToggleModel_Spin is not registered (apt-get install spin)")
endif()
