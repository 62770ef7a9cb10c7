ef_fuzz(forward ef_proxy)
