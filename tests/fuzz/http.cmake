ef_fuzz(http_request ef_http)
ef_fuzz(http_response ef_http)
ef_fuzz(http_chunked ef_http)
