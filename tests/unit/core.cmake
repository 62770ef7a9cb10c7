ef_unit_test(test_siphash ef_core)
