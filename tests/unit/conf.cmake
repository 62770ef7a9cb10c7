ef_unit_test(test_conf ef_conf)
if(TARGET test_conf)
  # The shipped example must keep loading: the test reads it where it lives,
  # also when run by hand or under valgrind, without EF_TEST_DATA.
  target_compile_definitions(test_conf PRIVATE
    EF_EXAMPLE_CONF="${CMAKE_SOURCE_DIR}/conf/easfront.yaml")
endif()
