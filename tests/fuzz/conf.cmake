ef_fuzz(conf ef_conf)
