ef_fuzz(store_reply ef_store)
