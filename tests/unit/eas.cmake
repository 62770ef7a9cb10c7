ef_unit_test(test_eas ef_eas)
