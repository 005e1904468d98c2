// Small HDF5 reader/writer for embeddings, latents, checkpoints and goldens (HDF5 C API kept out of this header).
// Dataset names may hold groups ("steps/0001/x"); writing creates the groups on the way.
// HDF5 calls go through the library's own lock (Debian builds it thread-safe); one Hdf5File per thread is simplest.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ditrun::io {

// what() is the whole line "<reason> (<where>)"; `where` is the file, or "<file>: <dataset>".
class Hdf5Error : public std::runtime_error {
 public:
  Hdf5Error(const std::string& reason, const std::string& where);
  const std::string& reason() const noexcept { return reason_; }
  const std::string& where() const noexcept { return where_; }

 private:
  std::string reason_, where_;
};

class Hdf5File {
 public:
  enum class Mode { read, write };  // write = create or truncate

  // Turns off HDF5's automatic error printing; failures are thrown as Hdf5Error instead.
  Hdf5File(const std::filesystem::path& path, Mode mode);
  ~Hdf5File();  // closes quietly; call close() to see a failed flush
  Hdf5File(Hdf5File&& other) noexcept;
  Hdf5File& operator=(Hdf5File&& other) noexcept;
  Hdf5File(const Hdf5File&) = delete;
  Hdf5File& operator=(const Hdf5File&) = delete;

  const std::filesystem::path& path() const { return path_; }
  void close();  // flushes and closes; throws on failure; later calls are no-ops

  bool has(const std::string& name) const;                    // a dataset of that name exists
  std::vector<int64_t> shape(const std::string& name) const;  // [] for a scalar

  // Any integer or float dataset, converted by HDF5 to the asked type; a scalar reads as 1 element.
  std::vector<float> read_f32(const std::string& name, std::vector<int64_t>* shape = nullptr) const;
  std::vector<double> read_f64(const std::string& name, std::vector<int64_t>* shape = nullptr) const;
  std::vector<int64_t> read_i64(const std::string& name, std::vector<int64_t>* shape = nullptr) const;
  double read_scalar(const std::string& name) const;  // a scalar or 1-element dataset

  // Stored as little-endian f32 / f64 / i64; shape [] writes a scalar. An existing dataset is
  // replaced (its attributes go with it).
  void write_f32(const std::string& name, const float* data, const std::vector<int64_t>& shape);
  void write_f64(const std::string& name, const double* data, const std::vector<int64_t>& shape);
  void write_i64(const std::string& name, const int64_t* data, const std::vector<int64_t>& shape);
  void write_scalar(const std::string& name, double value);

  // String attributes on a dataset or group; "/" is the file root. Reading gives "" when the key is absent
  // (a numeric scalar attribute reads as its shortest decimal text).
  void write_attribute(const std::string& dataset_or_root, const std::string& key, const std::string& value);
  std::string read_attribute(const std::string& dataset_or_root, const std::string& key) const;

 private:
  void write_any(const std::string& name, int64_t file_type, int64_t mem_type, const void* data,
                 const std::vector<int64_t>& shape);
  std::string where(const std::string& name) const;

  std::filesystem::path path_;
  int64_t file_ = -1;  // hid_t
  bool writable_ = false;
};

// Writes `<path>.part` and renames it to `<path>` on commit(), so an output is complete or absent.
class Hdf5Writer {
 public:
  explicit Hdf5Writer(const std::filesystem::path& final_path);
  ~Hdf5Writer();  // not committed: closes and deletes the .part
  Hdf5Writer(const Hdf5Writer&) = delete;
  Hdf5Writer& operator=(const Hdf5Writer&) = delete;

  Hdf5File& file();
  void commit();  // close (flushed to disk) + rename; throws Hdf5Error

  const std::filesystem::path& part_path() const { return part_path_; }

 private:
  std::filesystem::path final_path_, part_path_;
  std::optional<Hdf5File> file_;
  bool committed_ = false;
};

}  // namespace ditrun::io
