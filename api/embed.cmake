# Turns the binary descriptor set into a C source file (no xxd needed).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR bytes "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE ${OUT} "/* Generated from descriptor_set.bin: FileDescriptorSet of the served protos. */\n#include <stddef.h>\nconst unsigned char sb_descriptor_set[] = {${body}};\nconst size_t sb_descriptor_set_len = ${bytes};\n")
