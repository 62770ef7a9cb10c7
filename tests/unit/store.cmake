# The store against a real redis-server (started by the test itself on
# 127.0.0.1; tests/run.sh installs it) and in-process fake servers.
ef_unit_test(test_store ef_store)
if(TARGET test_store)
  set_tests_properties(unit_test_store PROPERTIES TIMEOUT 120)
endif()
