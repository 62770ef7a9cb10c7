ef_unit_test(test_conn ef_net)
