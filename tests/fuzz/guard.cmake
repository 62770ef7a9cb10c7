ef_fuzz(shield ef_guard)
