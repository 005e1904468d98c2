// Wan2.1 DiT hyper-parameters (spec §1.1) and their reading from a checkpoint's config.json.
#pragma once
#include <filesystem>
#include <string>

namespace ditrun::wan {

struct DitConfig {
  std::string name;      // "t2v-1.3b", "t2v-14b", "tiny", or the folder it was read from
  int dim = 0;           // D
  int ffn_dim = 0;
  int freq_dim = 256;    // timestep sinusoid width
  int heads = 0;
  int layers = 0;
  int in_dim = 16;
  int out_dim = 16;
  int text_dim = 4096;   // umT5-XXL output width
  int text_len = 512;    // context rows after zero padding (spec §1.2 step 5)
  double eps = 1e-6;
  int patch_t = 1, patch_h = 2, patch_w = 2;

  int head_dim() const { return dim / heads; }
  int patch_features() const { return in_dim * patch_t * patch_h * patch_w; }
  int out_features() const { return out_dim * patch_t * patch_h * patch_w; }
  long long parameter_count() const;
};

DitConfig dit_config_1_3b();
DitConfig dit_config_14b();
// The built-in toy model: the real architecture at toy width (no download needed).
DitConfig dit_config_tiny();
// "tiny", "1.3b", "14b" (also "t2v-1.3b", "t2v-14b").
DitConfig dit_config_named(const std::string& name);

// Reads a Diffusers `transformer/config.json` (WanTransformer3DModel) or an original Wan `config.json`
// (WanModel). Throws std::runtime_error naming the file and key.
DitConfig read_dit_config(const std::filesystem::path& config_json);

// Checks the constraints the implementation relies on (patch (1,2,2), dim = heads × head_dim, even head_dim).
void validate_dit_config(const DitConfig& c);

}  // namespace ditrun::wan
