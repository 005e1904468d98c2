# cmake -DINPUT=file -DOUTPUT=file.cc -P embed_file.cmake: the bytes of INPUT as ditrun::text::kTinySpmModel.
file(READ ${INPUT} hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){32})" "\\1\n" bytes "${bytes}")
file(WRITE ${OUTPUT} "// Generated from ${INPUT} by model/text/embed_file.cmake.\n#include <cstddef>\n"
     "namespace ditrun::text {\nextern const unsigned char kTinySpmModel[];\nextern const size_t kTinySpmModelSize;\n"
     "const unsigned char kTinySpmModel[] = {\n${bytes}\n};\nconst size_t kTinySpmModelSize = ${size};\n}\n")
