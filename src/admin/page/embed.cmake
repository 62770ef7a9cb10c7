# Writes the bytes of IN into OUT as a C initializer list ending in a NUL,
# so that the status page's files are edited as HTML, CSS and JavaScript
# and compiled into the binary as they are.
#   cmake -DIN=status.js -DOUT=page_js.inc -P embed.cmake
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}" "${bytes}0x00\n")
