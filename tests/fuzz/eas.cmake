ef_fuzz(eas_query ef_eas)
ef_fuzz(eas_auth ef_eas)
ef_fuzz(eas_facts ef_eas ef_http)
ef_fuzz(autodiscover ef_eas)
