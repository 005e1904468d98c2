#include "io/hdf5_file.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <type_traits>
#include <utility>

namespace ditrun::io {

static_assert(std::is_same_v<hid_t, int64_t>, "the header stores hid_t as int64_t (HDF5 >= 1.10)");

namespace {

std::string one_line(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return s;
}

// Automatic printing is per error stack, which is per thread in thread-safe builds: silence it before each use.
void silence_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

herr_t take_innermost(unsigned n, const H5E_error2_t* err, void* out) {
  if (n == 0 && err && err->desc) *static_cast<std::string*>(out) = err->desc;
  return 0;
}

// The most specific message on HDF5's error stack (then cleared), e.g. "component not found".
std::string hdf5_detail() {
  std::string s;
  if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, &s) < 0) s.clear();
  H5Eclear2(H5E_DEFAULT);
  return s;
}

[[noreturn]] void fail(const char* call, const std::string& where) {
  const std::string detail = hdf5_detail();
  throw Hdf5Error(std::string(call) + " failed" + (detail.empty() ? "" : ": " + detail), where);
}

void check(herr_t rc, const char* call, const std::string& where) {
  if (rc < 0) fail(call, where);
}

// Owns one HDF5 id. Success paths close() explicitly so that the close is checked too; the destructor closes
// quietly on the way out of an exception.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle(hid_t id, Closer closer, const char* call, const std::string& where) : id_(id), closer_(closer) {
    if (id_ < 0) fail(call, where);
  }
  ~Handle() {
    if (id_ >= 0) closer_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  void close(const std::string& where) {
    if (id_ >= 0 && closer_(std::exchange(id_, -1)) < 0) fail("close", where);
  }

 private:
  hid_t id_;
  Closer closer_;
};

// "a//b/" -> {"a", "b"}; HDF5 paths are built from these as "/a/b".
std::vector<std::string> split_name(const std::string& name) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= name.size()) {
    const size_t j = std::min(name.find('/', i), name.size());
    if (j > i) parts.push_back(name.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

std::string abs_path(const std::vector<std::string>& parts) {
  std::string p;
  for (const std::string& s : parts) p += "/" + s;
  return p.empty() ? "/" : p;
}

// Type of the object at `parts` (H5I_GROUP, H5I_DATASET, ...), or H5I_BADID when there is none. Walks the path
// because H5Lexists fails, rather than answering no, when an intermediate group is missing.
H5I_type_t object_type(hid_t file, const std::vector<std::string>& parts, const std::string& where) {
  std::string p;
  for (size_t i = 0; i < parts.size(); ++i) {
    p += "/" + parts[i];
    const htri_t exists = H5Lexists(file, p.c_str(), H5P_DEFAULT);
    if (exists < 0) fail("H5Lexists", where);
    if (exists == 0) return H5I_BADID;
    Handle obj(H5Oopen(file, p.c_str(), H5P_DEFAULT), H5Oclose, "H5Oopen", where);
    const H5I_type_t type = H5Iget_type(obj.get());
    if (type == H5I_BADID) fail("H5Iget_type", where);
    obj.close(where);
    if (i + 1 == parts.size()) return type;
    if (type != H5I_GROUP) return H5I_BADID;
  }
  return H5I_GROUP;  // the root
}

std::vector<int64_t> dims_of(hid_t space, const std::string& where) {
  const H5S_class_t cls = H5Sget_simple_extent_type(space);
  if (cls == H5S_NO_CLASS) fail("H5Sget_simple_extent_type", where);
  if (cls == H5S_NULL) throw Hdf5Error("dataset has a null dataspace (no elements)", where);
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) fail("H5Sget_simple_extent_ndims", where);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "H5Sget_simple_extent_dims", where);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

template <typename T>
std::vector<T> read_numeric(hid_t file, const std::string& name, const std::string& where, hid_t mem_type,
                            std::vector<int64_t>* shape) {
  silence_hdf5();
  const std::vector<std::string> parts = split_name(name);
  if (parts.empty() || object_type(file, parts, where) != H5I_DATASET) throw Hdf5Error("no such dataset", where);
  Handle ds(H5Dopen2(file, abs_path(parts).c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", where);
  Handle type(H5Dget_type(ds.get()), H5Tclose, "H5Dget_type", where);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls == H5T_NO_CLASS) fail("H5Tget_class", where);
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) throw Hdf5Error("dataset is not numeric", where);
  Handle space(H5Dget_space(ds.get()), H5Sclose, "H5Dget_space", where);
  std::vector<int64_t> dims = dims_of(space.get(), where);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) fail("H5Sget_simple_extent_npoints", where);
  std::vector<T> out(static_cast<size_t>(n));
  if (n > 0) check(H5Dread(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), "H5Dread", where);
  space.close(where);
  type.close(where);
  ds.close(where);
  if (shape) *shape = std::move(dims);
  return out;
}

// The dataset or group at `name` ("/" or "" for the root), opened, or an Hdf5Error when there is none.
hid_t open_object(hid_t file, const std::string& name, const std::string& where) {
  const std::vector<std::string> parts = split_name(name);
  const H5I_type_t type = object_type(file, parts, where);
  if (type != H5I_DATASET && type != H5I_GROUP) throw Hdf5Error("no such dataset or group", where);
  return H5Oopen(file, abs_path(parts).c_str(), H5P_DEFAULT);
}

}  // namespace

Hdf5Error::Hdf5Error(const std::string& reason, const std::string& where)
    : std::runtime_error(one_line(reason) + " (" + one_line(where) + ")"),
      reason_(one_line(reason)),
      where_(one_line(where)) {}

// ---- Hdf5File -----------------------------------------------------------------------------------------------

Hdf5File::Hdf5File(const std::filesystem::path& path, Mode mode) : path_(path), writable_(mode == Mode::write) {
  silence_hdf5();
  const std::string file = path.string();
  std::error_code ec;
  if (mode == Mode::read && !std::filesystem::is_regular_file(path, ec)) throw Hdf5Error("no such HDF5 file", file);
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate", file);
#if H5_VERSION_GE(1, 10, 7) && !(H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 12 && H5_VERS_RELEASE == 0)
  // Lock files fail on many cluster file systems (Lustre, NFS); .part + rename already keeps readers off
  // half-written files.
  check(H5Pset_file_locking(fapl.get(), false, true), "H5Pset_file_locking", file);
#endif
  file_ = mode == Mode::write ? H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get())
                              : H5Fopen(file.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (file_ < 0) fail(mode == Mode::write ? "H5Fcreate" : "H5Fopen", file);
  fapl.close(file);
}

Hdf5File::~Hdf5File() {
  if (file_ >= 0) H5Fclose(file_);
}

Hdf5File::Hdf5File(Hdf5File&& other) noexcept
    : path_(std::move(other.path_)), file_(std::exchange(other.file_, -1)), writable_(other.writable_) {}

Hdf5File& Hdf5File::operator=(Hdf5File&& other) noexcept {
  if (this != &other) {
    if (file_ >= 0) H5Fclose(file_);
    path_ = std::move(other.path_);
    file_ = std::exchange(other.file_, -1);
    writable_ = other.writable_;
  }
  return *this;
}

void Hdf5File::close() {
  if (file_ < 0) return;
  silence_hdf5();
  if (H5Fclose(std::exchange(file_, -1)) < 0) fail("H5Fclose", path_.string());
}

std::string Hdf5File::where(const std::string& name) const { return path_.string() + ": " + name; }

bool Hdf5File::has(const std::string& name) const {
  silence_hdf5();
  const std::vector<std::string> parts = split_name(name);
  return !parts.empty() && object_type(file_, parts, where(name)) == H5I_DATASET;
}

std::vector<int64_t> Hdf5File::shape(const std::string& name) const {
  silence_hdf5();
  const std::string w = where(name);
  const std::vector<std::string> parts = split_name(name);
  if (parts.empty() || object_type(file_, parts, w) != H5I_DATASET) throw Hdf5Error("no such dataset", w);
  Handle ds(H5Dopen2(file_, abs_path(parts).c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", w);
  Handle space(H5Dget_space(ds.get()), H5Sclose, "H5Dget_space", w);
  std::vector<int64_t> dims = dims_of(space.get(), w);
  space.close(w);
  ds.close(w);
  return dims;
}

std::vector<float> Hdf5File::read_f32(const std::string& name, std::vector<int64_t>* shape) const {
  return read_numeric<float>(file_, name, where(name), H5T_NATIVE_FLOAT, shape);
}
std::vector<double> Hdf5File::read_f64(const std::string& name, std::vector<int64_t>* shape) const {
  return read_numeric<double>(file_, name, where(name), H5T_NATIVE_DOUBLE, shape);
}
std::vector<int64_t> Hdf5File::read_i64(const std::string& name, std::vector<int64_t>* shape) const {
  return read_numeric<int64_t>(file_, name, where(name), H5T_NATIVE_INT64, shape);
}

double Hdf5File::read_scalar(const std::string& name) const {
  const std::vector<double> v = read_f64(name);
  if (v.size() != 1)
    throw Hdf5Error("expected a scalar, found " + std::to_string(v.size()) + " elements", where(name));
  return v[0];
}

void Hdf5File::write_any(const std::string& name, int64_t file_type, int64_t mem_type, const void* data,
                         const std::vector<int64_t>& shape) {
  silence_hdf5();
  const std::string w = where(name);
  if (!writable_) throw Hdf5Error("file is open for reading only", w);
  const std::vector<std::string> parts = split_name(name);
  if (parts.empty()) throw Hdf5Error("empty dataset name", w);
  std::vector<hsize_t> dims;
  size_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Hdf5Error("negative dimension in shape", w);
    dims.push_back(static_cast<hsize_t>(d));
    numel *= static_cast<size_t>(d);
  }
  const std::string path = abs_path(parts);
  const H5I_type_t existing = object_type(file_, parts, w);
  if (existing == H5I_DATASET)
    check(H5Ldelete(file_, path.c_str(), H5P_DEFAULT), "H5Ldelete", w);
  else if (existing != H5I_BADID)
    throw Hdf5Error("a group of that name exists", w);
  const hid_t space_id = shape.empty() ? H5Screate(H5S_SCALAR)
                                        : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  Handle space(space_id, H5Sclose, "H5Screate", w);
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "H5Pcreate", w);
  check(H5Pset_create_intermediate_group(lcpl.get(), 1), "H5Pset_create_intermediate_group", w);
  Handle ds(H5Dcreate2(file_, path.c_str(), file_type, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
            "H5Dcreate2", w);
  if (numel > 0) {
    if (!data) throw Hdf5Error("no data given", w);
    check(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dwrite", w);
  }
  ds.close(w);
  lcpl.close(w);
  space.close(w);
}

void Hdf5File::write_f32(const std::string& name, const float* data, const std::vector<int64_t>& shape) {
  write_any(name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, shape);
}
void Hdf5File::write_f64(const std::string& name, const double* data, const std::vector<int64_t>& shape) {
  write_any(name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, data, shape);
}
void Hdf5File::write_i64(const std::string& name, const int64_t* data, const std::vector<int64_t>& shape) {
  write_any(name, H5T_STD_I64LE, H5T_NATIVE_INT64, data, shape);
}
void Hdf5File::write_scalar(const std::string& name, double value) { write_f64(name, &value, {}); }

void Hdf5File::write_attribute(const std::string& dataset_or_root, const std::string& key, const std::string& value) {
  silence_hdf5();
  const std::string w = where(dataset_or_root) + " @" + key;
  if (!writable_) throw Hdf5Error("file is open for reading only", w);
  Handle obj(open_object(file_, dataset_or_root, w), H5Oclose, "H5Oopen", w);
  const htri_t exists = H5Aexists(obj.get(), key.c_str());
  if (exists < 0) fail("H5Aexists", w);
  if (exists > 0) check(H5Adelete(obj.get(), key.c_str()), "H5Adelete", w);
  // Variable-length UTF-8, as h5py writes a Python str (and reads it back as str, not bytes).
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy", w);
  check(H5Tset_size(type.get(), H5T_VARIABLE), "H5Tset_size", w);
  check(H5Tset_cset(type.get(), H5T_CSET_UTF8), "H5Tset_cset", w);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate", w);
  Handle attr(H5Acreate2(obj.get(), key.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
              "H5Acreate2", w);
  const char* text = value.c_str();
  check(H5Awrite(attr.get(), type.get(), &text), "H5Awrite", w);
  attr.close(w);
  space.close(w);
  type.close(w);
  obj.close(w);
}

std::string Hdf5File::read_attribute(const std::string& dataset_or_root, const std::string& key) const {
  silence_hdf5();
  const std::string w = where(dataset_or_root) + " @" + key;
  Handle obj(open_object(file_, dataset_or_root, w), H5Oclose, "H5Oopen", w);
  const htri_t exists = H5Aexists(obj.get(), key.c_str());
  if (exists < 0) fail("H5Aexists", w);
  if (exists == 0) return "";
  Handle attr(H5Aopen(obj.get(), key.c_str(), H5P_DEFAULT), H5Aclose, "H5Aopen", w);
  Handle type(H5Aget_type(attr.get()), H5Tclose, "H5Aget_type", w);
  Handle space(H5Aget_space(attr.get()), H5Sclose, "H5Aget_space", w);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) fail("H5Sget_simple_extent_npoints", w);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls == H5T_NO_CLASS) fail("H5Tget_class", w);
  if (n != 1 || (cls != H5T_STRING && cls != H5T_INTEGER && cls != H5T_FLOAT))
    throw Hdf5Error("attribute is not a single string or number", w);
  std::string out;
  if (cls == H5T_STRING) {
    const htri_t variable = H5Tis_variable_str(type.get());
    if (variable < 0) fail("H5Tis_variable_str", w);
    if (variable > 0) {
      Handle mem(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy", w);
      check(H5Tset_size(mem.get(), H5T_VARIABLE), "H5Tset_size", w);
      const H5T_cset_t cset = H5Tget_cset(type.get());
      if (cset == H5T_CSET_ERROR) fail("H5Tget_cset", w);
      check(H5Tset_cset(mem.get(), cset), "H5Tset_cset", w);
      char* text = nullptr;
      check(H5Aread(attr.get(), mem.get(), &text), "H5Aread", w);
      out = text ? text : "";
      if (text) check(H5free_memory(text), "H5free_memory", w);
      mem.close(w);
    } else {
      const size_t size = H5Tget_size(type.get());
      if (size == 0) fail("H5Tget_size", w);
      std::string buf(size, '\0');
      check(H5Aread(attr.get(), type.get(), buf.data()), "H5Aread", w);
      const H5T_str_t pad = H5Tget_strpad(type.get());
      if (pad == H5T_STR_ERROR) fail("H5Tget_strpad", w);
      buf.resize(std::min(buf.find('\0'), buf.size()));
      if (pad == H5T_STR_SPACEPAD) buf.erase(buf.find_last_not_of(' ') + 1);
      out = std::move(buf);
    }
  } else if (cls == H5T_INTEGER) {
    int64_t v = 0;
    check(H5Aread(attr.get(), H5T_NATIVE_INT64, &v), "H5Aread", w);
    out = std::to_string(v);
  } else {
    double v = 0;
    check(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &v), "H5Aread", w);
    char buf[32];
    out.assign(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  }
  space.close(w);
  type.close(w);
  attr.close(w);
  obj.close(w);
  return out;
}

// ---- Hdf5Writer ---------------------------------------------------------------------------------------------

namespace {
// Makes `path` durable so that a crash right after the rename cannot leave a complete-looking empty file.
void sync_path(const std::filesystem::path& path, bool required) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (required) throw Hdf5Error(std::string("cannot open for sync: ") + std::strerror(errno), path.string());
    return;
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && required) throw Hdf5Error(std::string("fsync failed: ") + std::strerror(err), path.string());
}
}  // namespace

Hdf5Writer::Hdf5Writer(const std::filesystem::path& final_path)
    : final_path_(final_path), part_path_(final_path.string() + ".part") {
  file_.emplace(part_path_, Hdf5File::Mode::write);
}

Hdf5Writer::~Hdf5Writer() {
  if (committed_) return;
  file_.reset();
  std::error_code ec;
  std::filesystem::remove(part_path_, ec);
}

Hdf5File& Hdf5Writer::file() {
  if (committed_) throw Hdf5Error("file already committed", final_path_.string());
  return *file_;
}

void Hdf5Writer::commit() {
  if (committed_) return;
  file_->close();
  sync_path(part_path_, true);
  std::error_code ec;
  std::filesystem::rename(part_path_, final_path_, ec);
  if (ec) throw Hdf5Error("cannot rename " + part_path_.string() + ": " + ec.message(), final_path_.string());
  sync_path(final_path_.parent_path().empty() ? "." : final_path_.parent_path(), false);  // the rename itself
  committed_ = true;
  file_.reset();
}

}  // namespace ditrun::io
