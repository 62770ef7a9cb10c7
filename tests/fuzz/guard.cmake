ef_fuzz(shield ef_guard)
ef_fuzz(rules ef_guard)
ef_fuzz(throttle ef_guard)
