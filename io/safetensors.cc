#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "model/core/half.h"

namespace ditrun::io {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; so is this code");

namespace {

using nlohmann::json;

std::string one_line(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return s;
}

std::optional<DType> dtype_from_name(std::string_view s) {
  if (s == "F32") return DType::f32;
  if (s == "F64") return DType::f64;
  if (s == "BF16") return DType::bf16;
  if (s == "F16") return DType::f16;
  if (s == "I32") return DType::i32;
  if (s == "I64") return DType::i64;
  if (s == "U8") return DType::u8;
  return std::nullopt;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// A non-negative JSON integer, or nothing (negative, fractional, or not a number).
std::optional<uint64_t> as_size(const json& j) {
  if (!j.is_number_unsigned()) return std::nullopt;
  return j.get<uint64_t>();
}

}  // namespace

LoadError::LoadError(const std::string& reason, const std::string& where)
    : std::runtime_error(one_line(reason) + " (" + one_line(where) + ")"),
      reason_(one_line(reason)),
      where_(one_line(where)) {}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string_view safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
  }
  return "?";
}

// ---- SafetensorsFile ----------------------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path) {
  const std::string file = path.string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw LoadError(std::string("cannot open safetensors file: ") + std::strerror(errno), file);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw LoadError(std::string("cannot stat safetensors file: ") + std::strerror(err), file);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (!S_ISREG(st.st_mode) || size < 8) {
    ::close(fd);
    throw LoadError("not a safetensors file: " + std::to_string(size) + " bytes, shorter than the 8-byte header length",
                    file);
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file open
  if (map == MAP_FAILED) throw LoadError(std::string("cannot map safetensors file: ") + std::strerror(map_err), file);
  map_ = map;
  map_bytes_ = size;
  try {
    const auto* base = static_cast<const unsigned char*>(map_);
    uint64_t header_len = 0;
    std::memcpy(&header_len, base, 8);
    if (header_len > size - 8)
      throw LoadError("truncated safetensors file: header length " + std::to_string(header_len) + " beyond file size " +
                          std::to_string(size),
                      file);
    const char* hbegin = reinterpret_cast<const char*>(base + 8);
    const char* hend = hbegin + header_len;
    while (hend > hbegin && (hend[-1] == ' ' || hend[-1] == '\0')) --hend;  // padding
    json header;
    try {
      header = json::parse(hbegin, hend);
    } catch (const json::exception& e) {
      throw LoadError(std::string("bad safetensors header JSON: ") + e.what(), file);
    }
    if (!header.is_object()) throw LoadError("bad safetensors header: not a JSON object", file);

    const unsigned char* data = base + 8 + header_len;
    const uint64_t data_bytes = size - 8 - header_len;
    std::vector<std::pair<uint64_t, uint64_t>> spans;  // non-empty [begin, end) ranges, checked for overlap
    for (const auto& [name, entry] : header.items()) {
      const std::string where = file + ": " + name;
      if (name == "__metadata__") {
        if (!entry.is_object()) throw LoadError("__metadata__ is not a JSON object", file);
        for (const auto& [k, v] : entry.items()) {
          if (!v.is_string()) throw LoadError("__metadata__ value of '" + k + "' is not a string", file);
          metadata_[k] = v.get<std::string>();
        }
        continue;
      }
      if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
          !entry.contains("data_offsets"))
        throw LoadError("tensor entry needs dtype, shape and data_offsets", where);
      const json& jd = entry["dtype"];
      const json& js = entry["shape"];
      const json& jo = entry["data_offsets"];
      if (!jd.is_string()) throw LoadError("dtype is not a string", where);
      const std::optional<DType> dtype = dtype_from_name(jd.get<std::string>());
      if (!dtype) throw LoadError("unsupported dtype '" + jd.get<std::string>() + "'", where);
      if (!js.is_array()) throw LoadError("shape is not an array", where);
      TensorInfo t;
      t.name = name;
      t.dtype = *dtype;
      t.file = file;
      uint64_t bytes = dtype_size(*dtype);
      for (const json& d : js) {
        const std::optional<uint64_t> v = as_size(d);
        if (!v || *v > static_cast<uint64_t>(INT64_MAX)) throw LoadError("shape holds a bad dimension", where);
        t.shape.push_back(static_cast<int64_t>(*v));
        if (__builtin_mul_overflow(bytes, *v, &bytes)) throw LoadError("shape too large", where);
      }
      const std::optional<uint64_t> begin = jo.is_array() && jo.size() == 2 ? as_size(jo[0]) : std::nullopt;
      const std::optional<uint64_t> end = jo.is_array() && jo.size() == 2 ? as_size(jo[1]) : std::nullopt;
      if (!begin || !end || *begin > *end)
        throw LoadError("data_offsets must be [begin, end] with 0 <= begin <= end, got " + jo.dump(), where);
      if (*end > data_bytes)
        throw LoadError("data_offsets " + jo.dump() + " beyond the data section of " + std::to_string(data_bytes) +
                            " bytes (truncated file?)",
                        where);
      if (*end - *begin != bytes)
        throw LoadError("data_offsets " + jo.dump() + " hold " + std::to_string(*end - *begin) + " bytes but shape " +
                            shape_str(t.shape) + " of " + std::string(jd.get<std::string>()) + " needs " +
                            std::to_string(bytes),
                        where);
      t.data = data + *begin;
      t.bytes = static_cast<size_t>(bytes);
      if (bytes > 0) spans.emplace_back(*begin, *end);
      names_.push_back(name);
      tensors_.emplace(name, std::move(t));
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i)
      if (spans[i].first < spans[i - 1].second)
        throw LoadError("tensors overlap: data_offsets [" + std::to_string(spans[i].first) + "," +
                            std::to_string(spans[i].second) + "] and [" + std::to_string(spans[i - 1].first) + "," +
                            std::to_string(spans[i - 1].second) + "]",
                        file);
    std::sort(names_.begin(), names_.end());
  } catch (...) {
    unmap();
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_bytes_(std::exchange(other.map_bytes_, 0)),
      tensors_(std::move(other.tensors_)),
      names_(std::move(other.names_)),
      metadata_(std::move(other.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    tensors_ = std::move(other.tensors_);
    names_ = std::move(other.names_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

void SafetensorsFile::unmap() noexcept {
  if (map_) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

// ---- SafetensorsSet -----------------------------------------------------------------------------------------

void SafetensorsSet::add_file(std::unique_ptr<SafetensorsFile> file) {
  for (const std::string& name : file->names()) {
    const TensorInfo* t = file->find(name);
    auto [it, fresh] = index_.emplace(name, t);
    if (!fresh)
      throw LoadError("tensor '" + name + "' is in two shards: " + it->second->file + " and " + t->file,
                      dir_.string());
  }
  files_.push_back(std::move(file));
}

SafetensorsSet SafetensorsSet::open_folder(const std::filesystem::path& dir, const std::string& stem) {
  namespace fs = std::filesystem;
  SafetensorsSet set;
  set.dir_ = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw LoadError("no such model folder", dir.string());
  const fs::path index_path = dir / (stem + ".safetensors.index.json");
  const fs::path single_path = dir / (stem + ".safetensors");

  if (fs::exists(index_path, ec)) {
    const std::string where = index_path.string();
    json index;
    try {
      std::ifstream in(index_path);
      if (!in) throw LoadError("cannot read safetensors index", where);
      index = json::parse(in);
    } catch (const json::exception& e) {
      throw LoadError(std::string("bad safetensors index JSON: ") + e.what(), where);
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw LoadError("safetensors index has no weight_map object", where);
    std::map<std::string, std::string> shard_of;  // tensor -> shard file
    std::map<std::string, std::string> first_tensor_of;  // shard -> a tensor naming it, for messages
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
      if (!shard.is_string()) throw LoadError("weight_map value is not a file name", where + ": " + tensor);
      shard_of[tensor] = shard.get<std::string>();
      first_tensor_of.emplace(shard.get<std::string>(), tensor);
    }
    std::map<std::string, const SafetensorsFile*> shards;
    for (const auto& [shard, tensor] : first_tensor_of) {
      const fs::path p = dir / shard;
      if (!fs::is_regular_file(p, ec))
        throw LoadError("index names missing shard " + shard + " for tensor " + tensor, where);
      auto file = std::make_unique<SafetensorsFile>(p);
      shards[shard] = file.get();
      set.add_file(std::move(file));
    }
    for (const auto& [tensor, shard] : shard_of)
      if (!shards.at(shard)->find(tensor))
        throw LoadError("tensor '" + tensor + "' listed in the index is absent from shard " + shard, where);
  } else if (fs::exists(single_path, ec)) {
    set.add_file(std::make_unique<SafetensorsFile>(single_path));
  } else {
    std::vector<fs::path> found;
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".safetensors" && e.is_regular_file(ec)) found.push_back(e.path());
    if (ec) throw LoadError("cannot list model folder: " + ec.message(), dir.string());
    if (found.empty())
      throw LoadError("no safetensors files (expected " + stem + ".safetensors or its .index.json)", dir.string());
    std::sort(found.begin(), found.end());
    for (const fs::path& p : found) set.add_file(std::make_unique<SafetensorsFile>(p));
  }
  return set;
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& kv : index_) out.push_back(kv.first);  // std::map order = sorted
  return out;
}

const TensorInfo* SafetensorsSet::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorInfo& SafetensorsSet::at(std::string_view name) const {
  const TensorInfo* t = find(name);
  if (!t) throw LoadError("missing tensor " + std::string(name), dir_.string());
  return *t;
}

// ---- conversions --------------------------------------------------------------------------------------------

namespace {
// Mapped data need not be aligned to its element size (offsets are arbitrary), so load through memcpy.
template <typename T>
T load(const void* base, size_t i) {
  T v;
  std::memcpy(&v, static_cast<const unsigned char*>(base) + i * sizeof(T), sizeof(T));
  return v;
}
}  // namespace

void copy_to_f32(const TensorInfo& t, float* out) {
  const size_t n = static_cast<size_t>(t.numel());
  switch (t.dtype) {
    case DType::f32: std::memcpy(out, t.data, n * 4); return;
    case DType::bf16:
      for (size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load<uint16_t>(t.data, i));
      return;
    case DType::f16:
      for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(load<uint16_t>(t.data, i));
      return;
    case DType::f64:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load<double>(t.data, i));
      return;
    default: break;
  }
  throw LoadError("cannot convert " + std::string(safetensors_dtype_name(t.dtype)) + " to F32",
                  t.file + ": " + t.name);
}

void copy_to_bf16(const TensorInfo& t, uint16_t* out) {
  const size_t n = static_cast<size_t>(t.numel());
  switch (t.dtype) {
    case DType::bf16: std::memcpy(out, t.data, n * 2); return;
    case DType::f32:
      for (size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(load<float>(t.data, i));
      return;
    case DType::f16:  // every f16 is exact in fp32, so this rounds once
      for (size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(f16_to_f32(load<uint16_t>(t.data, i)));
      return;
    case DType::f64:
      for (size_t i = 0; i < n; ++i) out[i] = f64_to_bf16(load<double>(t.data, i));
      return;
    default: break;
  }
  throw LoadError("cannot convert " + std::string(safetensors_dtype_name(t.dtype)) + " to BF16",
                  t.file + ": " + t.name);
}

// ---- writer -------------------------------------------------------------------------------------------------

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__" || header.contains(t.name))
      throw std::runtime_error("write_safetensors: bad or repeated tensor name '" + t.name + "' (" + file + ")");
    uint64_t bytes = dtype_size(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0) throw std::runtime_error("write_safetensors: negative dimension in " + t.name + " (" + file + ")");
      bytes *= static_cast<uint64_t>(d);
    }
    if (bytes > 0 && !t.data)
      throw std::runtime_error("write_safetensors: no data for " + t.name + " (" + file + ")");
    header[t.name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    sizes.push_back(bytes);
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned, as the reference writer does
  const uint64_t len = text.size();

  const std::filesystem::path part = path.string() + ".part";
  {
    std::ofstream out(part, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("write_safetensors: cannot create " + part.string());
    out.write(reinterpret_cast<const char*>(&len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (size_t i = 0; i < tensors.size(); ++i)
      if (sizes[i] > 0) out.write(static_cast<const char*>(tensors[i].data), static_cast<std::streamsize>(sizes[i]));
    out.close();
    if (!out) {
      std::error_code ec;
      std::filesystem::remove(part, ec);
      throw std::runtime_error("write_safetensors: write failed (" + part.string() + ")");
    }
  }
  std::error_code ec;
  std::filesystem::rename(part, path, ec);
  if (ec) throw std::runtime_error("write_safetensors: cannot rename to " + file + ": " + ec.message());
}

}  // namespace ditrun::io
