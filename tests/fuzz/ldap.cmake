ef_fuzz(ldap_dn ef_ldap)
