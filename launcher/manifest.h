// JSONL prompt manifest, and the checks of one prompt's fields shared with the job file's inline prompts.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

#include "launcher/job.h"

namespace ditrun {

// One JSON object per line; blank lines are skipped. `defaults` supplies sampling/negative_prompt; the seed
// default is base_seed + (index of the prompt in the file, 0-based, counting only prompt lines).
// `name` is used in messages ("<name>:<line>") and as each item's source. Throws InputError.
std::vector<PromptItem> parse_manifest(std::istream& in, const std::string& name, const SamplingParams& defaults,
                                       const std::string& negative_prompt, uint64_t base_seed);
std::vector<PromptItem> load_manifest(const std::filesystem::path& file, const SamplingParams& defaults,
                                      const std::string& negative_prompt, uint64_t base_seed);

// Keys one prompt may set (a manifest line, or an inline table in the job file's prompts.list).
inline constexpr std::array<std::string_view, 11> kPromptKeys = {
    "id", "prompt", "negative_prompt", "seed", "steps", "guidance", "shift", "solver", "frames", "width", "height"};

// --- Shared validation. Each check returns "" when valid, else what is wrong ("must be ..., got 0"); the
// caller prefixes the key and throws InputError with its own `where`.

enum class SamplingKeyType { kNone, kInteger, kNumber, kString };
// The type a sampling key takes (steps frames width height: integer; guidance shift: number; solver: string).
SamplingKeyType sampling_key_type(std::string_view key);

// Check a value's range and store it in `s`.
std::string set_sampling_integer(SamplingParams& s, std::string_view key, int64_t value);
std::string set_sampling_number(SamplingParams& s, std::string_view key, double value);
std::string set_sampling_string(SamplingParams& s, std::string_view key, const std::string& value);

std::string check_prompt_id(std::string_view id);        // 1..128 of [A-Za-z0-9._-], not starting with '.' or '-'
std::string check_prompt_text(std::string_view prompt);  // non-empty after trimming whitespace
std::string check_seed(int64_t seed);                    // 0 .. 2^63-1

// base + index; `problem` says why when the sum passes 2^63-1, else is set to "".
uint64_t derive_seed(uint64_t base, uint64_t index, std::string& problem);

// `s` quoted and escaped as a JSON string, cut to a readable length (for messages).
std::string quote_for_message(std::string_view s);

}  // namespace ditrun
