# The Debian package, easfront_<version>_<arch>.deb (deploy/debian/build-deb.sh,
# or `cpack -G DEB` in any build directory). CPack packs what the install()
# rules of `cmake --install` install, so the two cannot drift apart; only
# the package adds the config in /etc/easfront (a conffile; a plain
# `cmake --install` must never overwrite an operator's) and the maintainer
# scripts that make the user.
set(deb_dir ${CMAKE_CURRENT_LIST_DIR})
install(FILES ${deb_dir}/easfront.yaml DESTINATION /etc/easfront
        COMPONENT debian EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME easfront)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "easfront maintainers <easfront@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "site-aware HTTPS front end for Exchange ActiveSync")
# CPack writes the summary as the first line and indents these.
set(CPACK_PACKAGE_DESCRIPTION
"easfront stands at the edge of each datacenter of a multi-site Exchange
organisation. It terminates TLS, works out whose mailbox a request is for
and which site holds it, then proxies to that site's Client Access Servers
or redirects the phone there (451), and shields the directory from stale
passwords and runaway devices.")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
# Libraries from dpkg-shlibdeps; these two the maintainer scripts and the
# packaged config need.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, ssl-cert")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS logrotate)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${deb_dir}/conffiles ${deb_dir}/postinst ${deb_dir}/prerm ${deb_dir}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# One package holding the default component and the /etc one.
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_COMPONENTS_ALL Unspecified debian)
include(CPack)
