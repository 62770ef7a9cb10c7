ef_unit_test(test_shield ef_guard)
ef_unit_test(test_rules ef_guard ef_conf)
ef_unit_test(test_throttle ef_guard)
