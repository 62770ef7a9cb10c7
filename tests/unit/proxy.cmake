ef_unit_test(test_conn ef_net)
ef_unit_test(test_term ef_proxy)
if(TARGET test_term)
  # The table operators read must say what the code writes.
  target_compile_definitions(test_term PRIVATE EF_README="${CMAKE_SOURCE_DIR}/README.md")
endif()
ef_unit_test(test_txn ef_daemon)
ef_unit_test(test_backlog ef_proxy)
