ef_unit_test(test_eas ef_eas)
ef_unit_test(test_autodiscover ef_eas)
