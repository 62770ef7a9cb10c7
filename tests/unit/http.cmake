ef_unit_test(test_http ef_http)
