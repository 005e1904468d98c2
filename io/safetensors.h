// Safetensors checkpoints: memory-mapped read-only, header validated up front, tensors converted at load.
// Format: 8-byte little-endian header length N, N bytes of JSON header, then the data (offsets relative to it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "model/core/dtype.h"

namespace ditrun::io {

// A bad or missing checkpoint file: bad input, reported before any GPU work.
// what() is the whole line "<reason> (<where>)"; `where` is the file, or "<file>: <tensor>".
class LoadError : public std::runtime_error {
 public:
  LoadError(const std::string& reason, const std::string& where);
  const std::string& reason() const noexcept { return reason_; }
  const std::string& where() const noexcept { return where_; }

 private:
  std::string reason_, where_;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // inside the file's mapping; valid while the file (or set) lives
  size_t bytes = 0;
  std::string file;
  int64_t numel() const;
};

// One .safetensors file, mapped MAP_PRIVATE read-only: pages are read from disk only when touched, so a rank
// pays only for the tensors it converts. Movable, not copyable; TensorInfo pointers survive a move.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<std::string>& names() const { return names_; }  // sorted
  const TensorInfo* find(std::string_view name) const;               // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  void unmap() noexcept;

  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::map<std::string, TensorInfo, std::less<>> tensors_;
  std::vector<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

// A model folder's shards: `<stem>.safetensors.index.json` with its shards (preferred, as diffusers does),
// else `<stem>.safetensors`, else every *.safetensors in the folder. Tensor names are unique across shards.
class SafetensorsSet {
 public:
  static SafetensorsSet open_folder(const std::filesystem::path& dir,
                                    const std::string& stem = "diffusion_pytorch_model");

  std::vector<std::string> names() const;  // sorted
  const TensorInfo* find(std::string_view name) const;
  const TensorInfo& at(std::string_view name) const;  // LoadError "missing tensor <name>" (<dir>)
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  void add_file(std::unique_ptr<SafetensorsFile> file);

  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*, std::less<>> index_;
};

// Converts to fp32 into `out` (numel elements), from F32, BF16, F16 or F64; other dtypes are a LoadError.
void copy_to_f32(const TensorInfo& t, float* out);
// Converts to bf16 (uint16 storage) with round-to-nearest-even from F32, F64, F16; BF16 is copied as is.
void copy_to_bf16(const TensorInfo& t, uint16_t* out);

// Safetensors dtype strings ("F32", "BF16", ...); the parser rejects the ones DType cannot hold.
std::string_view safetensors_dtype_name(DType t);

// Writes tensors (raw little-endian bytes of numel × dtype_size each) with a reference-style header
// (padded with spaces to 8 bytes). Written through `<path>.part` and renamed. Throws std::runtime_error.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace ditrun::io
