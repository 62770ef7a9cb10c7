ef_unit_test(test_ldap ef_ldap)

# The client against a real slapd on 127.0.0.1 (run.sh installs slapd from
# Debian's packages when it is missing; it never skips).
if(TARGET ef_ldap)
  set(ef_ldap_integ ${CMAKE_SOURCE_DIR}/tests/integration/ldap)
  add_executable(integ_ldap ${ef_ldap_integ}/integ_ldap.c)
  target_link_libraries(integ_ldap PRIVATE ef_ldap PkgConfig::CMOCKA)
  add_test(NAME integ_ldap
    COMMAND bash ${ef_ldap_integ}/run.sh $<TARGET_FILE:integ_ldap>)
  set_tests_properties(integ_ldap PROPERTIES
    ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=stdout"
    LABELS integration TIMEOUT 900)

  # Every symbol of ef_ldap keeps libldap's prefix: none may be one of
  # libldap's own, or it would silently take its place.
  add_test(NAME ldap_symbols
    COMMAND bash ${ef_ldap_integ}/symbols.sh $<TARGET_FILE:ef_ldap>)
  set_tests_properties(ldap_symbols PROPERTIES LABELS unit)
endif()
