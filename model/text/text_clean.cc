#include "model/text/text_clean.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

namespace ditrun::text {

namespace {

struct NamedEntity {
  const char* name;
  const char* text;
};
#include "model/text/html_entities.inc"

using Text = std::u32string;

// --- UTF-8 <-> code points. Invalid bytes decode to U+FFFD; encoded surrogates (ED A0..BF xx) decode to the
// surrogate code point, which fix_surrogates then pairs or replaces, as ftfy does with Python's lone surrogates.
Text decode_utf8(std::string_view s) {
  Text out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    int extra = b < 0x80 ? 0 : (b >> 5) == 6 ? 1 : (b >> 4) == 14 ? 2 : (b >> 3) == 30 ? 3 : -1;
    char32_t cp = extra == 0 ? b : extra == 1 ? (b & 0x1f) : extra == 2 ? (b & 0x0f) : (b & 0x07);
    bool ok = extra >= 0;
    for (int k = 1; ok && k <= extra; ++k) {
      if (i + k >= s.size()) { ok = false; break; }
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c >> 6) != 2) ok = false;
      else cp = (cp << 6) | (c & 0x3f);
    }
    static constexpr char32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (ok && extra > 0 && (cp < kMin[extra] || cp > 0x10ffff)) ok = false;
    if (!ok) {
      out.push_back(0xfffd);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += extra + 1;
  }
  return out;
}

std::string encode_utf8(const Text& t) {
  std::string out;
  out.reserve(t.size());
  for (char32_t c : t) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xc0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xe0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xf0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    }
  }
  return out;
}

// --- Lookup tables.
struct Tables {
  std::unordered_map<std::u32string, Text> html5;        // "amp;" / "amp" -> "&"
  std::unordered_map<std::u32string, Text> ftfy_entities;  // "&amp;" (names with ';' and ftfy's upper-case ones)
  std::unordered_map<char32_t, Text> width;              // fix_character_width
};

const Tables& tables() {
  static const Tables t = [] {
    Tables t;
    for (const NamedEntity& e : kHtml5Entities) {
      const Text name = decode_utf8(e.name), value = decode_utf8(e.text);
      t.html5.emplace(name, value);
      if (name.back() == U';') t.ftfy_entities.emplace(U"&" + name, value);
    }
    for (const NamedEntity& e : kUpperCaseEntities) t.ftfy_entities.emplace(U"&" + decode_utf8(e.name), decode_utf8(e.text));
    // ftfy: U+3000 IDEOGRAPHIC SPACE -> ' ', and every halfwidth/fullwidth form U+FF01..U+FFEF -> its NFKC form.
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* nfkc = icu::Normalizer2::getNFKCInstance(status);
    t.width[0x3000] = U" ";
    for (char32_t c = 0xff01; c < 0xfff0 && U_SUCCESS(status); ++c) {
      icu::UnicodeString in(static_cast<UChar32>(c)), out;
      nfkc->normalize(in, out, status);
      if (U_SUCCESS(status) && out != in) {
        Text alt;
        for (int32_t k = 0; k < out.length(); k = out.moveIndex32(k, 1)) alt.push_back(out.char32At(k));
        t.width[c] = alt;
      }
    }
    return t;
  }();
  return t;
}

// Windows-1252 for bytes 0x80..0x9f, with the five undefined bytes kept as the C1 control of the same value: both
// ftfy's "sloppy-windows-1252" (fix_c1_controls) and Python html.unescape's table for numeric references 0x80..0x9f.
constexpr char32_t kWindows1252C1[32] = {
    0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008d, 0x017d, 0x008f, 0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178};

bool is_ascii_alnum(char32_t c) {
  return (c >= U'0' && c <= U'9') || (c >= U'a' && c <= U'z') || (c >= U'A' && c <= U'Z');
}
bool is_hex(char32_t c) { return (c >= U'0' && c <= U'9') || (c >= U'a' && c <= U'f') || (c >= U'A' && c <= U'F'); }

// Python's str whitespace (str.isspace, re's \s for str patterns).
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// html.unescape's result for a numeric reference.
Text numeric_reference(uint64_t num, bool overflow) {
  if (!overflow) {
    if (num == 0x00) return U"\ufffd";
    if (num == 0x0d) return U"\r";
    if (num >= 0x80 && num <= 0x9f) return Text(1, kWindows1252C1[num - 0x80]);
  }
  if (overflow || (num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return U"\ufffd";
  const bool invalid = (num >= 0x1 && num <= 0x8) || (num >= 0xe && num <= 0x1f) || (num >= 0x7f && num <= 0x9f) ||
                       (num >= 0xfdd0 && num <= 0xfdef) || num == 0xb || (num & 0xfffe) == 0xfffe;
  if (invalid) return U"";
  return Text(1, static_cast<char32_t>(num));
}

// Python html.unescape on code points: regex &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?).
Text html_unescape(const Text& s) {
  if (s.find(U'&') == Text::npos) return s;
  const auto& html5 = tables().html5;
  Text out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != U'&') {
      out.push_back(s[i++]);
      continue;
    }
    size_t j = i + 1;
    if (j < s.size() && s[j] == U'#') {
      const bool hex = j + 1 < s.size() && (s[j + 1] == U'x' || s[j + 1] == U'X');
      size_t k = j + (hex ? 2 : 1), first = k;
      uint64_t num = 0;
      bool overflow = false;
      while (k < s.size() && (hex ? is_hex(s[k]) : (s[k] >= U'0' && s[k] <= U'9'))) {
        const char32_t c = s[k];
        const uint64_t digit = c <= U'9' ? c - U'0' : (c | 0x20) - U'a' + 10;
        if (num > 0xffffffffull) overflow = true;
        else num = num * (hex ? 16 : 10) + digit;
        ++k;
      }
      if (k == first) {  // "&#" or "&#x" with no digits: not a reference
        out.push_back(s[i++]);
        continue;
      }
      if (k < s.size() && s[k] == U';') ++k;
      out += numeric_reference(num, overflow);
      i = k;
      continue;
    }
    auto in_name = [](char32_t c) { return c != U'\t' && c != U'\n' && c != U'\f' && c != U' ' && c != U'<' &&
                                           c != U'&' && c != U'#' && c != U';'; };
    size_t k = j;
    while (k < s.size() && k - j < 32 && in_name(s[k])) ++k;
    if (k == j) {
      out.push_back(s[i++]);
      continue;
    }
    if (k < s.size() && s[k] == U';') ++k;
    const Text name = s.substr(j, k - j);
    if (auto it = html5.find(name); it != html5.end()) {
      out += it->second;
    } else {
      bool found = false;
      for (size_t x = name.size() - 1; x > 1 && !found; --x)
        if (auto p = html5.find(name.substr(0, x)); p != html5.end()) {
          out += p->second + name.substr(x);
          found = true;
        }
      if (!found) out += U"&" + name;
    }
    i = k;
  }
  return out;
}

// --- ftfy's default fixes (ftfy 6.3 fixes.py / chardata.py), on one segment.

// unescape_html: &#?[0-9A-Za-z]{1,24}; -> a known entity (ftfy's table), or a numeric reference that html.unescape
// decodes completely; anything else stays.
Text ftfy_unescape_html(const Text& s) {
  const auto& entities = tables().ftfy_entities;
  Text out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == U'&') {
      size_t k = i + 1;
      if (k < s.size() && s[k] == U'#') ++k;
      const size_t first = k;
      while (k < s.size() && k - first < 24 && is_ascii_alnum(s[k])) ++k;
      if (k > first && k < s.size() && s[k] == U';') {
        const Text match = s.substr(i, k + 1 - i);
        if (auto it = entities.find(match); it != entities.end()) {
          out += it->second;
          i = k + 1;
          continue;
        }
        if (match[1] == U'#') {
          const Text decoded = html_unescape(match);
          if (decoded.find(U';') == Text::npos) {
            out += decoded;
            i = k + 1;
            continue;
          }
        }
      }
    }
    out.push_back(s[i++]);
  }
  return out;
}

void fix_c1_controls(Text& s) {
  for (char32_t& c : s)
    if (c >= 0x80 && c <= 0x9f) c = kWindows1252C1[c - 0x80];
}

Text fix_latin_ligatures(const Text& s) {
  static const std::map<char32_t, Text> kLigatures = {
      {U'Ĳ', U"IJ"}, {U'ĳ', U"ij"}, {U'ŉ', U"ʼn"}, {U'Ǳ', U"DZ"}, {U'ǲ', U"Dz"}, {U'ǳ', U"dz"},
      {U'Ǆ', U"DŽ"}, {U'ǅ', U"Dž"}, {U'ǆ', U"dž"}, {U'Ǉ', U"LJ"}, {U'ǈ', U"Lj"}, {U'ǉ', U"lj"},
      {U'Ǌ', U"NJ"}, {U'ǋ', U"Nj"}, {U'ǌ', U"nj"}, {U'ﬀ', U"ff"}, {U'ﬁ', U"fi"}, {U'ﬂ', U"fl"},
      {U'ﬃ', U"ffi"}, {U'ﬄ', U"ffl"}, {U'ﬅ', U"ſt"}, {U'ﬆ', U"st"}};
  Text out;
  for (char32_t c : s) {
    if (auto it = kLigatures.find(c); it != kLigatures.end()) out += it->second;
    else out.push_back(c);
  }
  return out;
}

Text fix_character_width(const Text& s) {
  const auto& width = tables().width;
  Text out;
  for (char32_t c : s) {
    if (auto it = width.find(c); it != width.end()) out += it->second;
    else out.push_back(c);
  }
  return out;
}

void uncurl_quotes(Text& s) {
  for (char32_t& c : s) {
    if (c == 0x02bc || (c >= 0x2018 && c <= 0x201b)) c = U'\'';
    else if (c >= 0x201c && c <= 0x201f) c = U'"';
  }
}

Text fix_line_breaks(const Text& s) {
  Text out;
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == U'\r' && i + 1 < s.size() && s[i + 1] == U'\n') continue;  // CRLF -> the LF that follows
    out.push_back(c == U'\r' || c == 0x2028 || c == 0x2029 || c == 0x85 ? U'\n' : c);
  }
  return out;
}

Text fix_surrogates(const Text& s) {
  Text out;
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.size() && s[i + 1] >= 0xdc00 && s[i + 1] <= 0xdfff) {
      out.push_back(0x10000 + (c - 0xd800) * 0x400 + (s[i + 1] - 0xdc00));
      ++i;
    } else {
      out.push_back(c >= 0xd800 && c <= 0xdfff ? 0xfffd : c);
    }
  }
  return out;
}

// ESC '[' [\d;]* [a-zA-Z] removed (\d: any Unicode decimal digit, as Python's re).
Text remove_terminal_escapes(const Text& s) {
  Text out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == 0x1b && i + 1 < s.size() && s[i + 1] == U'[') {
      size_t k = i + 2;
      while (k < s.size() && (s[k] == U';' || u_charType(static_cast<UChar32>(s[k])) == U_DECIMAL_DIGIT_NUMBER)) ++k;
      if (k < s.size() && ((s[k] >= U'a' && s[k] <= U'z') || (s[k] >= U'A' && s[k] <= U'Z'))) {
        i = k + 1;
        continue;
      }
    }
    out.push_back(s[i++]);
  }
  return out;
}

Text remove_control_chars(const Text& s) {
  Text out;
  for (char32_t c : s) {
    const bool control = c <= 0x08 || c == 0x0b || (c >= 0x0e && c <= 0x1f) || c == 0x7f ||
                         (c >= 0x206a && c <= 0x206f) || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffc);
    if (!control) out.push_back(c);
  }
  return out;
}

Text nfc(const Text& s) {
  icu::UnicodeString in, out;
  for (char32_t c : s) in.append(static_cast<UChar32>(c));
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) return s;
  n->normalize(in, out, status);
  if (U_FAILURE(status)) return s;
  Text r;
  for (int32_t k = 0; k < out.length(); k = out.moveIndex32(k, 1)) r.push_back(out.char32At(k));
  return r;
}

// ftfy.fix_and_explain on one segment: the fixes in order, repeated until the text stops changing.
Text fix_segment(Text text, bool unescape) {
  while (true) {
    const Text before = text;
    if (unescape) text = ftfy_unescape_html(text);
    fix_c1_controls(text);
    text = fix_latin_ligatures(text);
    text = fix_character_width(text);
    uncurl_quotes(text);
    text = fix_line_breaks(text);
    text = fix_surrogates(text);
    text = remove_terminal_escapes(text);
    text = remove_control_chars(text);
    text = nfc(text);
    if (text == before) return text;
  }
}

Text fix_text(const Text& text) {
  // ftfy.fix_text: segments end after each '\n'; unescape_html='auto' turns off for good at the first segment that
  // holds '<' (the config is replaced inside the loop).
  Text out;
  bool unescape = true;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t nl = text.find(U'\n', pos);
    const size_t end = nl == Text::npos ? text.size() : nl + 1;
    const Text segment = text.substr(pos, end - pos);
    if (segment.find(U'<') != Text::npos) unescape = false;
    out += fix_segment(segment, unescape);
    pos = end;
  }
  return out;
}

Text collapse(const Text& s) {
  Text out;
  bool in_space = false;
  for (char32_t c : s) {
    if (is_python_space(c)) {
      in_space = true;
      continue;
    }
    if (in_space && !out.empty()) out.push_back(U' ');
    in_space = false;
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string ftfy_fix_text(std::string_view utf8) { return encode_utf8(fix_text(decode_utf8(utf8))); }

std::string python_html_unescape(std::string_view utf8) { return encode_utf8(html_unescape(decode_utf8(utf8))); }

std::string collapse_whitespace(std::string_view utf8) { return encode_utf8(collapse(decode_utf8(utf8))); }

std::string clean_prompt(std::string_view utf8) {
  // basic_clean: fix_text, unescape twice, strip; whitespace_clean: \s+ -> ' ', strip (collapse does both).
  Text t = fix_text(decode_utf8(utf8));
  t = html_unescape(html_unescape(t));
  return encode_utf8(collapse(t));
}

}  // namespace ditrun::text
