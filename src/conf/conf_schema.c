/*
 * The config schema, in libcyaml's terms. Key names are the operators'
 * interface (DESIGN.md "Configuration"): add keys, never rename them.
 *
 * conf_scan walks these same tables to check a document before libcyaml
 * sees it, reading them as follows: a field without CYAML_FLAG_OPTIONAL is
 * required; a sequence's min and max bound its entries; a string's min and
 * max bound its length; a CYAML_IGNORE field is a mapping of free string
 * keys to strings that conf_scan reads itself (libcyaml has no such type).
 */
#include "conf/conf_int.h"

#include <stddef.h>

#include "core/log.h"

#define OPT CYAML_FLAG_OPTIONAL
#define STR_FIELD(key, flags, type, member)                                    \
	CYAML_FIELD_STRING_PTR(key, flags, type, member, 1, CONF_STR_MAX)

static const cyaml_schema_value_t string_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, CONF_STR_MAX),
};

static const cyaml_schema_field_t listen_fields[] = {
    STR_FIELD("address", CYAML_FLAG_DEFAULT, struct conf_raw_listen, address),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t listen_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct conf_raw_listen,
                        listen_fields),
};

static const cyaml_schema_field_t cert_fields[] = {
    STR_FIELD("cert", CYAML_FLAG_DEFAULT, struct conf_cert, cert),
    STR_FIELD("key", CYAML_FLAG_DEFAULT, struct conf_cert, key),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t cert_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct conf_cert, cert_fields),
};

static const cyaml_schema_field_t tls_fields[] = {
    CYAML_FIELD_SEQUENCE("certificates", CYAML_FLAG_POINTER,
                         struct conf_raw_tls, certificates, &cert_entry, 1, 64),
    CYAML_FIELD_UINT("hsts", OPT, struct conf_raw_tls, hsts),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t health_fields[] = {
    STR_FIELD("path", OPT, struct conf_health, path),
    CYAML_FIELD_UINT("interval", OPT, struct conf_health, interval),
    CYAML_FIELD_UINT("timeout", OPT, struct conf_health, timeout),
    CYAML_FIELD_UINT("rise", OPT, struct conf_health, rise),
    CYAML_FIELD_UINT("fall", OPT, struct conf_health, fall),
    /* "" is meaningful: any 200 is healthy */
    CYAML_FIELD_STRING_PTR("expect", OPT, struct conf_health, expect, 0,
                           CONF_STR_MAX),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t site_fields[] = {
    STR_FIELD("name", CYAML_FLAG_DEFAULT, struct conf_raw_site, name),
    STR_FIELD("external_url", OPT, struct conf_raw_site, external_url),
    /* Required of every site but a cloud one: conf_check says so. */
    CYAML_FIELD_SEQUENCE("cas", CYAML_FLAG_POINTER | OPT, struct conf_raw_site,
                         cas, &string_entry, 1, 256),
    STR_FIELD("fallback", OPT, struct conf_raw_site, fallback),
    STR_FIELD("proxy_path", OPT, struct conf_raw_site, proxy_path),
    CYAML_FIELD_MAPPING("health", OPT, struct conf_raw_site, health,
                        health_fields),
    CYAML_FIELD_BOOL("cloud", OPT, struct conf_raw_site, cloud),
    STR_FIELD("min_version", OPT, struct conf_raw_site, min_version),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t site_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct conf_raw_site, site_fields),
};

static const cyaml_schema_field_t upstream_fields[] = {
    STR_FIELD("ca_file", OPT, struct conf_raw_upstream, ca_file),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t dns_fields[] = {
    CYAML_FIELD_SEQUENCE("servers", CYAML_FLAG_POINTER | OPT,
                         struct conf_raw_dns, servers, &string_entry, 1, 16),
    CYAML_FIELD_UINT("min_ttl", OPT, struct conf_raw_dns, min_ttl),
    CYAML_FIELD_UINT("max_ttl", OPT, struct conf_raw_dns, max_ttl),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t ldap_cloud_fields[] = {
    STR_FIELD("site", CYAML_FLAG_DEFAULT, struct conf_raw_ldap_cloud, site),
    CYAML_FIELD_SEQUENCE("target_domains", CYAML_FLAG_POINTER | OPT,
                         struct conf_raw_ldap_cloud, target_domains,
                         &string_entry, 0, 64),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t ldap_fields[] = {
    CYAML_FIELD_SEQUENCE("uris", CYAML_FLAG_POINTER | OPT,
                         struct conf_raw_ldap, uris, &string_entry, 1, 16),
    CYAML_FIELD_BOOL("starttls", OPT, struct conf_raw_ldap, starttls),
    STR_FIELD("ca_file", OPT, struct conf_raw_ldap, ca_file),
    STR_FIELD("bind_dn", OPT, struct conf_raw_ldap, bind_dn),
    STR_FIELD("password_file", OPT, struct conf_raw_ldap, password_file),
    CYAML_FIELD_BOOL("sasl_external", OPT, struct conf_raw_ldap,
                     sasl_external),
    STR_FIELD("base", OPT, struct conf_raw_ldap, base),
    STR_FIELD("filter", OPT, struct conf_raw_ldap, filter),
    STR_FIELD("attribute", OPT, struct conf_raw_ldap, attribute),
    CYAML_FIELD_UINT("timeout_ms", OPT, struct conf_raw_ldap, timeout_ms),
    CYAML_FIELD_UINT("cache_ttl", OPT, struct conf_raw_ldap, cache_ttl),
    CYAML_FIELD_UINT("negative_ttl", OPT, struct conf_raw_ldap,
                     negative_ttl),
    CYAML_FIELD_UINT("cache_size", OPT, struct conf_raw_ldap, cache_size),
    CYAML_FIELD_UINT("max_inflight", OPT, struct conf_raw_ldap,
                     max_inflight),
    CYAML_FIELD_MAPPING("cloud", OPT, struct conf_raw_ldap, cloud,
                        ldap_cloud_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t sitemap_fields[] = {
    STR_FIELD("file", OPT, struct conf_raw_sitemap, file),
    STR_FIELD("default_site", OPT, struct conf_raw_sitemap, default_site),
    CYAML_FIELD_MAPPING("ldap", OPT, struct conf_raw_sitemap, ldap,
                        ldap_fields),
    CYAML_FIELD_IGNORE("netbios", OPT),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t timeout_fields[] = {
    CYAML_FIELD_UINT("handshake", OPT, struct conf_timeouts, handshake),
    CYAML_FIELD_UINT("client_header", OPT, struct conf_timeouts, client_header),
    CYAML_FIELD_UINT("client_body", OPT, struct conf_timeouts, client_body),
    CYAML_FIELD_UINT("idle", OPT, struct conf_timeouts, idle),
    CYAML_FIELD_UINT("upstream_connect", OPT, struct conf_timeouts,
                     upstream_connect),
    CYAML_FIELD_UINT("upstream_response", OPT, struct conf_timeouts,
                     upstream_response),
    CYAML_FIELD_UINT("long_poll", OPT, struct conf_timeouts, long_poll),
    CYAML_FIELD_UINT("drain", OPT, struct conf_timeouts, drain),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t admin_fields[] = {
    STR_FIELD("listen", CYAML_FLAG_DEFAULT, struct conf_raw_admin, listen),
    CYAML_FIELD_END,
};

static const cyaml_strval_t format_names[] = {
    {"json", CONF_LOG_JSON},
    {"text", CONF_LOG_TEXT},
};

/* Same names as log_level_parse, which conf.c uses to copy them out. */
static const cyaml_strval_t level_names[] = {
    {"error", LOG_L_ERROR},
    {"warn", LOG_L_WARN},
    {"info", LOG_L_INFO},
    {"debug", LOG_L_DEBUG},
};

static const cyaml_schema_field_t log_fields[] = {
    STR_FIELD("access", OPT, struct conf_raw_log, access),
    CYAML_FIELD_ENUM("format", OPT | CYAML_FLAG_STRICT, struct conf_raw_log,
                     format, format_names, CYAML_ARRAY_LEN(format_names)),
    CYAML_FIELD_BOOL("hash_identities", OPT, struct conf_raw_log,
                     hash_identities),
    STR_FIELD("hash_key_file", OPT, struct conf_raw_log, hash_key_file),
    CYAML_FIELD_ENUM("level", OPT | CYAML_FLAG_STRICT, struct conf_raw_log,
                     level, level_names, CYAML_ARRAY_LEN(level_names)),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t limit_fields[] = {
    CYAML_FIELD_UINT("connections", OPT, struct conf_limits, connections),
    CYAML_FIELD_UINT("connections_per_client", OPT, struct conf_limits,
                     connections_per_client),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t rule_match_fields[] = {
    STR_FIELD("device_id", OPT, struct conf_raw_rule_match, device_id),
    STR_FIELD("device_type", OPT, struct conf_raw_rule_match, device_type),
    STR_FIELD("user_agent", OPT, struct conf_raw_rule_match, user_agent),
    STR_FIELD("user", OPT, struct conf_raw_rule_match, user),
    STR_FIELD("cmd", OPT, struct conf_raw_rule_match, cmd),
    STR_FIELD("version", OPT, struct conf_raw_rule_match, version),
    CYAML_FIELD_END,
};

/* Both optional here: "exactly one" is conf.c's to say, with its line. */
static const cyaml_schema_field_t rule_fields[] = {
    CYAML_FIELD_MAPPING("block", OPT, struct conf_raw_rule, block,
                        rule_match_fields),
    CYAML_FIELD_MAPPING("allow", OPT, struct conf_raw_rule, allow,
                        rule_match_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t rule_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct conf_raw_rule, rule_fields),
};

static const cyaml_schema_field_t passwords_fields[] = {
    CYAML_FIELD_UINT("password_failures", OPT, struct conf_guard_passwords,
                     password_failures),
    CYAML_FIELD_UINT("user_failures", OPT, struct conf_guard_passwords,
                     user_failures),
    CYAML_FIELD_UINT("window", OPT, struct conf_guard_passwords, window),
    CYAML_FIELD_UINT("hold", OPT, struct conf_guard_passwords, hold),
    CYAML_FIELD_END,
};

/* An empty devices list is no rule at all, as when the key is absent. */
static const cyaml_schema_field_t bucket_fields[] = {
    CYAML_FIELD_UINT("requests", OPT, struct conf_bucket, requests),
    CYAML_FIELD_UINT("per", OPT, struct conf_bucket, per),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t throttle_fields[] = {
    CYAML_FIELD_MAPPING("device", OPT, struct conf_guard_throttle, device,
                        bucket_fields),
    CYAML_FIELD_MAPPING("user", OPT, struct conf_guard_throttle, user,
                        bucket_fields),
    CYAML_FIELD_MAPPING("client", OPT, struct conf_guard_throttle, client,
                        bucket_fields),
    CYAML_FIELD_UINT("long_polls_per_device", OPT, struct conf_guard_throttle,
                     long_polls_per_device),
    CYAML_FIELD_UINT("retry_after", OPT, struct conf_guard_throttle,
                     retry_after),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t guard_fields[] = {
    CYAML_FIELD_SEQUENCE("devices", CYAML_FLAG_POINTER | OPT,
                         struct conf_raw_guard, devices, &rule_entry, 0,
                         CONF_GUARD_RULES_MAX),
    CYAML_FIELD_MAPPING("passwords", OPT, struct conf_raw_guard, passwords,
                        passwords_fields),
    CYAML_FIELD_MAPPING("throttle", OPT, struct conf_raw_guard, throttle,
                        throttle_fields),
    STR_FIELD("key_file", OPT, struct conf_raw_guard, key_file),
    CYAML_FIELD_UINT("max_entries", OPT, struct conf_raw_guard, max_entries),
    STR_FIELD("store", OPT, struct conf_raw_guard, store),
    STR_FIELD("store_password_file", OPT, struct conf_raw_guard,
              store_password_file),
    CYAML_FIELD_END,
};

static const cyaml_strval_t autodiscover_names[] = {
    {"proxy", CONF_AUTODISCOVER_PROXY},
    {"answer", CONF_AUTODISCOVER_ANSWER},
};

static const cyaml_schema_field_t top_fields[] = {
    STR_FIELD("site", CYAML_FLAG_DEFAULT, struct conf_raw, site),
    CYAML_FIELD_SEQUENCE("listen", CYAML_FLAG_POINTER, struct conf_raw, listen,
                         &listen_entry, 1, 64),
    CYAML_FIELD_MAPPING("tls", CYAML_FLAG_DEFAULT, struct conf_raw, tls,
                        tls_fields),
    CYAML_FIELD_SEQUENCE("sites", CYAML_FLAG_POINTER, struct conf_raw, sites,
                         &site_entry, 1, 1024),
    CYAML_FIELD_MAPPING("upstream", OPT, struct conf_raw, upstream,
                        upstream_fields),
    CYAML_FIELD_ENUM("autodiscover", OPT | CYAML_FLAG_STRICT, struct conf_raw,
                     autodiscover, autodiscover_names,
                     CYAML_ARRAY_LEN(autodiscover_names)),
    CYAML_FIELD_MAPPING("dns", OPT, struct conf_raw, dns, dns_fields),
    CYAML_FIELD_MAPPING("sitemap", OPT, struct conf_raw, sitemap,
                        sitemap_fields),
    CYAML_FIELD_MAPPING("timeouts", OPT, struct conf_raw, timeouts,
                        timeout_fields),
    CYAML_FIELD_MAPPING("admin", OPT, struct conf_raw, admin, admin_fields),
    CYAML_FIELD_MAPPING("log", OPT, struct conf_raw, log, log_fields),
    STR_FIELD("user", OPT, struct conf_raw, user),
    STR_FIELD("pid_file", OPT, struct conf_raw, pid_file),
    CYAML_FIELD_UINT("workers", OPT, struct conf_raw, workers),
    CYAML_FIELD_MAPPING("limits", OPT, struct conf_raw, limits, limit_fields),
    CYAML_FIELD_MAPPING("guard", OPT, struct conf_raw, guard, guard_fields),
    CYAML_FIELD_END,
};

const cyaml_schema_value_t conf_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct conf_raw, top_fields),
};
