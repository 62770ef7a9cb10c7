ef_unit_test(test_tls ef_tls)
