// The prompt clean-up of the Wan text encoder (spec §5.2, Wan `tokenizers.py` with clean='whitespace'):
//   ftfy.fix_text(text) → html.unescape(html.unescape(·)) → strip → every run of whitespace becomes one space.
// UTF-8 in, UTF-8 out. What of ftfy is reproduced and what is not: README.md ("Text encoder").
#pragma once
#include <string>
#include <string_view>

namespace ditrun::text {

// The whole clean-up of spec §5.2.
std::string clean_prompt(std::string_view utf8);

// ftfy.fix_text with its default configuration, without the mojibake repair (fix_encoding, restore_byte_a0,
// replace_lossy_sequences, decode_inconsistent_utf8). The other default fixes run in ftfy's order, per line, until
// nothing changes: unescape_html ('auto': off from the first line holding '<' on), fix_c1_controls,
// fix_latin_ligatures, fix_character_width, uncurl_quotes, fix_line_breaks, fix_surrogates,
// remove_terminal_escapes, remove_control_chars, NFC.
std::string ftfy_fix_text(std::string_view utf8);

// Python's html.unescape: named references of HTML5 (with ';', and the legacy ones without), the longest-prefix rule
// for names, decimal and hex references with or without ';' and their replacement rules.
std::string python_html_unescape(std::string_view utf8);

// Python's `re.sub(r'\s+', ' ', text).strip()` with str (Unicode) whitespace.
std::string collapse_whitespace(std::string_view utf8);

}  // namespace ditrun::text
