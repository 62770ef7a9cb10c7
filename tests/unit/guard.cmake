ef_unit_test(test_shield ef_guard)
