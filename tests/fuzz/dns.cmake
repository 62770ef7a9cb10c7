ef_fuzz(dns_answer ef_dns)
