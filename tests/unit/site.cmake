ef_unit_test(test_sitemap ef_site)
ef_unit_test(test_route ef_site)
ef_unit_test(test_health ef_site)
