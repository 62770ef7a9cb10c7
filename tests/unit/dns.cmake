ef_unit_test(test_dns ef_dns)

# The resolver against a real Knot DNS on 127.0.0.1 (run.sh installs knot
# from Debian's packages when it is missing; it never skips).
if(TARGET ef_dns)
  set(ef_dns_integ ${CMAKE_SOURCE_DIR}/tests/integration/dns)
  add_executable(integ_dns ${ef_dns_integ}/integ_dns.c)
  target_link_libraries(integ_dns PRIVATE ef_dns PkgConfig::CMOCKA)
  add_test(NAME integ_dns
    COMMAND bash ${ef_dns_integ}/run.sh $<TARGET_FILE:integ_dns>)
  set_tests_properties(integ_dns PROPERTIES
    ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=stdout"
    LABELS integration TIMEOUT 900)
endif()
