ef_fuzz(sitemap ef_site)
