// io/: safetensors (our writer and Python's), shard sets and their errors, 16-bit float conversions, HDF5.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "model/core/half.h"
#include "io/hdf5_file.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using namespace ditrun;
using namespace ditrun::io;

namespace {

// A fresh folder per test, removed afterwards.
class IoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("ditrun_io_test_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

// A file with a hand-made header, to build broken ones.
void write_raw(const fs::path& path, const std::string& header, size_t data_bytes, int64_t header_len = -1) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t len = header_len < 0 ? header.size() : static_cast<uint64_t>(header_len);
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << header << std::string(data_bytes, '\0');
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Runs `f`, expects a LoadError whose message holds every one of `parts`.
template <typename F>
void expect_load_error(F f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no LoadError";
  } catch (const LoadError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

std::vector<float> to_f32(const TensorInfo& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  copy_to_f32(t, v.data());
  return v;
}

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }

fs::path fixture_path() { return fs::path(__FILE__).parent_path() / "data" / "io" / "tiny.safetensors"; }

}  // namespace

// ---- safetensors ----------------------------------------------------------------------------------------------

TEST_F(IoTest, SafetensorsRoundTripF32AndBf16) {
  std::vector<float> a(3 * 5 * 7);
  for (size_t i = 0; i < a.size(); ++i) a[i] = std::sin(static_cast<float>(i)) * 1e3f - 0.1f * i;
  const std::vector<uint16_t> b = {0x3f80, 0x7fc1, 0x0001};  // 1.0, a NaN with payload, a subnormal
  const float s = -0.0f;
  write_safetensors(dir_ / "m.safetensors",
                    {{"z.weight", DType::f32, {3, 5, 7}, a.data()},
                     {"a.bias", DType::bf16, {1, 3, 1}, b.data()},
                     {"m.scalar", DType::f32, {}, &s},
                     {"e.empty", DType::f32, {0, 3}, nullptr}},
                    {{"format", "pt"}, {"note", "round trip"}});
  EXPECT_FALSE(fs::exists(dir_ / "m.safetensors.part"));
  const std::string raw = slurp(dir_ / "m.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);  // data 8-byte aligned, header padded with spaces
  EXPECT_EQ(raw[8 + n - 1] == ' ' || raw[8 + n - 1] == '}', true);

  SafetensorsFile f(dir_ / "m.safetensors");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a.bias", "e.empty", "m.scalar", "z.weight"}));
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "round trip"}}));
  EXPECT_EQ(f.find("nope"), nullptr);
  const TensorInfo* z = f.find("z.weight");
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->dtype, DType::f32);
  EXPECT_EQ(z->shape, (std::vector<int64_t>{3, 5, 7}));
  EXPECT_EQ(z->numel(), 105);
  EXPECT_EQ(z->bytes, 420u);
  EXPECT_EQ(z->file, (dir_ / "m.safetensors").string());
  const std::vector<float> za = to_f32(*z);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(bits(za[i]), bits(a[i])) << i;

  const TensorInfo* bt = f.find("a.bias");
  ASSERT_NE(bt, nullptr);
  EXPECT_EQ(bt->dtype, DType::bf16);
  std::vector<uint16_t> bb(3);
  copy_to_bf16(*bt, bb.data());
  EXPECT_EQ(bb, b);
  const std::vector<float> bf = to_f32(*bt);
  EXPECT_EQ(bf[0], 1.0f);
  EXPECT_EQ(bits(bf[1]), 0x7fc10000u);
  EXPECT_EQ(bf[2], std::ldexp(1.0f, -133));

  EXPECT_EQ(f.find("m.scalar")->shape.size(), 0u);
  EXPECT_EQ(f.find("m.scalar")->numel(), 1);
  EXPECT_EQ(bits(to_f32(*f.find("m.scalar"))[0]), bits(-0.0f));
  EXPECT_EQ(f.find("e.empty")->numel(), 0);

  // A moved file keeps its tensors' addresses.
  SafetensorsFile g = std::move(f);
  EXPECT_EQ(g.find("z.weight"), z);
}

// tiny.safetensors is written by Python's safetensors package (tests/data/io/make_fixture.py).
TEST(IoFixture, ReadsFileWrittenByPythonSafetensors) {
  ASSERT_TRUE(fs::exists(fixture_path())) << fixture_path();
  SafetensorsFile f(fixture_path());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("source"), "make_fixture.py");
  EXPECT_TRUE(std::is_sorted(f.names().begin(), f.names().end()));
  EXPECT_EQ(f.names().size(), 10u);

  const TensorInfo& r32 = *f.find("ramp.f32");
  EXPECT_EQ(r32.shape, (std::vector<int64_t>{2, 3}));
  const std::vector<float> v32 = to_f32(r32);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(v32[i], i * 0.25f - 3) << i;

  const TensorInfo& r16 = *f.find("ramp.f16");
  EXPECT_EQ(r16.dtype, DType::f16);
  const std::vector<float> v16 = to_f32(r16);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(v16[i], i * 0.25f - 3) << i;

  const TensorInfo& rb = *f.find("ramp.bf16");
  EXPECT_EQ(rb.dtype, DType::bf16);
  EXPECT_EQ(rb.shape, (std::vector<int64_t>{3, 1, 2}));
  const std::vector<float> vb = to_f32(rb);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(vb[i], i * 0.25f - 3) << i;

  const std::vector<float> sp = to_f32(*f.find("specials.f16"));
  EXPECT_EQ(bits(sp[0]), bits(0.0f));
  EXPECT_EQ(bits(sp[1]), bits(-0.0f));
  EXPECT_EQ(sp[2], std::ldexp(1.0f, -24));
  EXPECT_EQ(sp[3], std::ldexp(1.0f, -14) - std::ldexp(1.0f, -24));
  EXPECT_EQ(sp[4], 65504.0f);
  EXPECT_EQ(sp[5], std::numeric_limits<float>::infinity());
  EXPECT_EQ(sp[6], -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(sp[7]));

  const std::vector<float> sc = to_f32(*f.find("scale.f64"));
  EXPECT_EQ(sc[0], 0.1f);
  EXPECT_EQ(sc[1], -2.5f);
  const TensorInfo& st = *f.find("steps.i64");
  EXPECT_EQ(st.dtype, DType::i64);
  int64_t steps[3];
  std::memcpy(steps, st.data, sizeof steps);
  EXPECT_EQ(steps[0], 0);
  EXPECT_EQ(steps[1], -1);
  EXPECT_EQ(steps[2], int64_t{1} << 40);
  EXPECT_EQ(to_f32(*f.find("scalar.f32")), std::vector<float>{7.5f});
  EXPECT_EQ(f.find("empty.f32")->shape, (std::vector<int64_t>{0, 4}));

  // Our fp32 -> bf16 rounding agrees with ml_dtypes' on ties, overflow, subnormals, NaN and ordinary values.
  const TensorInfo& src = *f.find("rounding.f32");
  const TensorInfo& ref = *f.find("rounding.bf16");
  ASSERT_EQ(src.numel(), ref.numel());
  std::vector<uint16_t> ours(static_cast<size_t>(src.numel())), theirs(ours.size());
  copy_to_bf16(src, ours.data());
  copy_to_bf16(ref, theirs.data());
  for (size_t i = 0; i < ours.size(); ++i) {
    if (std::isnan(bf16_to_f32(theirs[i]))) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(ours[i]))) << i;
    } else {
      EXPECT_EQ(ours[i], theirs[i]) << i;
    }
  }
}

TEST_F(IoTest, FolderWithSingleFileOrIndexedShards) {
  const float x[2] = {1, 2}, y[3] = {3, 4, 5};
  const fs::path single = dir_ / "single";
  fs::create_directories(single);
  write_safetensors(single / "diffusion_pytorch_model.safetensors", {{"x", DType::f32, {2}, x}});
  write_safetensors(single / "other.safetensors", {{"x", DType::f32, {2}, x}});  // ignored: the stem wins
  EXPECT_EQ(SafetensorsSet::open_folder(single).names(), std::vector<std::string>{"x"});

  const fs::path sharded = dir_ / "sharded";
  fs::create_directories(sharded);
  write_safetensors(sharded / "m-00001-of-00002.safetensors", {{"blocks.1.w", DType::f32, {2}, x}});
  write_safetensors(sharded / "m-00002-of-00002.safetensors",
                    {{"blocks.0.w", DType::f32, {3}, y}, {"head.b", DType::f32, {2}, x}});
  std::ofstream(sharded / "m.safetensors.index.json")
      << R"({"metadata": {"total_size": 28}, "weight_map": {"blocks.1.w": "m-00001-of-00002.safetensors",)"
      << R"("blocks.0.w": "m-00002-of-00002.safetensors", "head.b": "m-00002-of-00002.safetensors"}})";
  const SafetensorsSet set = SafetensorsSet::open_folder(sharded, "m");
  EXPECT_EQ(set.names(), (std::vector<std::string>{"blocks.0.w", "blocks.1.w", "head.b"}));
  EXPECT_EQ(set.files().size(), 2u);
  EXPECT_EQ(to_f32(set.at("blocks.0.w")), (std::vector<float>{3, 4, 5}));
  EXPECT_EQ(to_f32(set.at("blocks.1.w")), (std::vector<float>{1, 2}));
  EXPECT_NE(set.at("blocks.1.w").file.find("00001"), std::string::npos);
  EXPECT_EQ(set.find("nope"), nullptr);
  expect_load_error([&] { set.at("blocks.9.w"); }, {"missing tensor blocks.9.w", sharded.string()});

  // No stem file and no index: every *.safetensors in the folder.
  const fs::path loose = dir_ / "loose";
  fs::create_directories(loose);
  write_safetensors(loose / "a.safetensors", {{"p", DType::f32, {2}, x}});
  write_safetensors(loose / "b.safetensors", {{"q", DType::f32, {3}, y}});
  EXPECT_EQ(SafetensorsSet::open_folder(loose).names(), (std::vector<std::string>{"p", "q"}));
}

TEST_F(IoTest, FolderErrors) {
  const float x[2] = {1, 2};
  expect_load_error([&] { SafetensorsSet::open_folder(dir_ / "absent"); }, {"no such model folder", "absent"});
  expect_load_error([&] { SafetensorsSet::open_folder(dir_); }, {"no safetensors files", dir_.string()});

  // Duplicate name across shards (no index).
  write_safetensors(dir_ / "a.safetensors", {{"w", DType::f32, {2}, x}});
  write_safetensors(dir_ / "b.safetensors", {{"w", DType::f32, {2}, x}});
  expect_load_error([&] { SafetensorsSet::open_folder(dir_); }, {"'w'", "a.safetensors", "b.safetensors"});

  // Index naming a missing shard.
  const fs::path idx = dir_ / "diffusion_pytorch_model.safetensors.index.json";
  std::ofstream(idx) << R"({"weight_map": {"w": "a.safetensors", "v": "gone.safetensors"}})";
  expect_load_error([&] { SafetensorsSet::open_folder(dir_); }, {"missing shard gone.safetensors", "v", idx.string()});

  // Tensor listed in the index but absent from its shard.
  std::ofstream(idx) << R"({"weight_map": {"w": "a.safetensors", "v": "a.safetensors"}})";
  expect_load_error([&] { SafetensorsSet::open_folder(dir_); }, {"'v'", "absent from shard a.safetensors"});

  std::ofstream(idx) << R"({"weight_map": )";
  expect_load_error([&] { SafetensorsSet::open_folder(dir_); }, {"bad safetensors index JSON", idx.string()});
}

TEST_F(IoTest, BrokenFilesAreLoadErrors) {
  const fs::path p = dir_ / "bad.safetensors";
  const std::string file = p.string();
  auto open = [&] { SafetensorsFile f(p); };

  expect_load_error(open, {"cannot open", file});  // missing

  std::ofstream(p) << "abc";
  expect_load_error(open, {"shorter than the 8-byte header", file});

  write_raw(p, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8, 4096);
  expect_load_error(open, {"header length 4096 beyond file size", file});

  write_raw(p, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8);
  expect_load_error(open, {"bad safetensors header JSON", file});

  write_raw(p, R"([1,2])", 0);
  expect_load_error(open, {"not a JSON object", file});

  // Truncated: the header promises 8 bytes of data, the file holds 5.
  write_raw(p, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 5);
  expect_load_error(open, {"beyond the data section", "truncated", file + ": w"});

  // Truncating a real file anywhere in its data is caught the same way.
  const float a[4] = {1, 2, 3, 4};
  write_safetensors(p, {{"a", DType::f32, {4}, a}});
  fs::resize_file(p, fs::file_size(p) - 1);
  expect_load_error(open, {"beyond the data section", file + ": a"});

  write_raw(p, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
  expect_load_error(open, {"hold 8 bytes but shape [3] of F32 needs 12", file + ": w"});

  write_raw(p, R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2);
  expect_load_error(open, {"unsupported dtype 'F8_E4M3'", file + ": w"});

  write_raw(p,
            R"({"u":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
            R"("v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            12);
  expect_load_error(open, {"overlap", file});

  write_raw(p, R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8);
  expect_load_error(open, {"bad dimension", file + ": w"});

  write_raw(p, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8);
  expect_load_error(open, {"data_offsets", file + ": w"});

  write_raw(p, R"({"__metadata__":{"n":3}})", 0);
  expect_load_error(open, {"__metadata__", file});

  // Integer tensors load, but are not converted to floats.
  const int32_t ints[2] = {1, 2};
  write_safetensors(p, {{"i", DType::i32, {2}, ints}});
  SafetensorsFile f(p);
  expect_load_error([&] { to_f32(*f.find("i")); }, {"cannot convert I32", file + ": i"});
}

// ---- 16-bit floats --------------------------------------------------------------------------------------------

TEST(IoFloat16, HalfDecoding) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));        // smallest normal
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));        // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));     // largest subnormal
  EXPECT_EQ(f16_to_f32(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(bits(f16_to_f32(0x8000)), bits(-0.0f));
  EXPECT_EQ(f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7c01)));  // signalling payload must not become inf
  EXPECT_EQ(bits(f16_to_f32(0xfe00)), 0xffc00000u);
  EXPECT_EQ(f16_to_f32(0x3555), 0x1.554p-2f);
}

TEST(IoFloat16, Bfloat16RoundsToNearestEven) {
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0x0001), std::ldexp(1.0f, -133));
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);                 // tie, even below
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);             // tie, even above
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-23f), 0x3f81);      // just above the tie
  EXPECT_EQ(f32_to_bf16(-(1.0f + 0x1p-8f)), 0xbf80);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);   // overflows to inf
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(std::ldexp(1.0f, -149)), 0x0000);          // subnormal tie to even zero
  EXPECT_EQ(f32_to_bf16(std::ldexp(3.0f, -149) + std::ldexp(1.0f, -133)), 0x0001);
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x7f800001u)) & 0x7fc0, 0x7fc0);  // low-payload NaN stays NaN
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0xffc00000u)), 0xffc0);
  for (uint32_t h = 0; h < 0x10000; ++h) {  // every bf16 survives f32 and back
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) {
      ASSERT_EQ(f32_to_bf16(f), h) << h;
    }
  }
  static_assert(f32_to_bf16(2.0f) == 0x4000 && bf16_to_f32(0x4000) == 2.0f && f16_to_f32(0x3c00) == 1.0f);

  // fp64 rounds once: via fp32 this would tie at 1 + 2^-8 and go down to 1.0.
  EXPECT_EQ(f64_to_bf16(1.0 + 0x1p-8 + 0x1p-30), 0x3f81);
  EXPECT_EQ(f64_to_bf16(1.0 + 0x1p-8), 0x3f80);
  EXPECT_EQ(f64_to_bf16(-1.0 - 0x1p-8 - 0x1p-30), 0xbf81);
  EXPECT_EQ(f64_to_bf16(1e300), 0x7f80);
  EXPECT_EQ(f64_to_bf16(-1e300), 0xff80);
  EXPECT_EQ(f64_to_bf16(1e-300), 0x0000);
  EXPECT_EQ(f64_to_bf16(0.1), f32_to_bf16(0.1f));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f64_to_bf16(std::nan("")))));
}

TEST_F(IoTest, ConvertsTensorsFromF16AndF64) {
  const uint16_t h[4] = {0x3c00, 0x0001, 0x7c00, 0x3c01};
  const double d[3] = {1.0 + 0x1p-8 + 0x1p-30, -0.5, 1e-45};
  write_safetensors(dir_ / "c.safetensors", {{"h", DType::f16, {4}, h}, {"d", DType::f64, {3}, d}});
  SafetensorsFile f(dir_ / "c.safetensors");
  EXPECT_EQ(to_f32(*f.find("h")), (std::vector<float>{1.0f, std::ldexp(1.0f, -24),
                                                      std::numeric_limits<float>::infinity(), 1.0f + 0x1p-10f}));
  uint16_t hb[4], db[3];
  copy_to_bf16(*f.find("h"), hb);
  EXPECT_EQ(hb[0], 0x3f80);
  EXPECT_EQ(hb[1], 0x3380);  // 2^-24
  EXPECT_EQ(hb[2], 0x7f80);
  EXPECT_EQ(hb[3], 0x3f80);  // 1 + 2^-10 rounds down
  copy_to_bf16(*f.find("d"), db);
  EXPECT_EQ(db[0], 0x3f81);
  EXPECT_EQ(db[1], 0xbf00);
  EXPECT_EQ(db[2], 0x0000);
  EXPECT_EQ(to_f32(*f.find("d"))[1], -0.5f);
}

// ---- HDF5 -----------------------------------------------------------------------------------------------------

TEST_F(IoTest, Hdf5RoundTrip) {
  const fs::path p = dir_ / "a.h5";
  std::vector<float> f(2 * 3 * 4);
  std::vector<double> d(5 * 2);
  std::vector<int64_t> i(7);
  for (size_t k = 0; k < f.size(); ++k) f[k] = 0.5f * k - 3;
  for (size_t k = 0; k < d.size(); ++k) d[k] = 1.0 / (k + 1);
  for (size_t k = 0; k < i.size(); ++k) i[k] = (int64_t{1} << 40) * static_cast<int64_t>(k) - 5;
  {
    Hdf5File h(p, Hdf5File::Mode::write);
    h.write_f32("latent", f.data(), {2, 3, 4});
    h.write_f64("steps/0001/x", d.data(), {5, 2});
    h.write_i64("/steps/0001/ids", i.data(), {7});
    h.write_scalar("sigma", 0.25);
    h.write_f32("steps/0002/empty", nullptr, {0, 3});
    h.write_attribute("latent", "layout", "dropped with the dataset");
    const std::vector<float> g = {9, 8};
    h.write_f32("latent", g.data(), {2});  // replaced, attributes and all
    EXPECT_EQ(h.read_attribute("latent", "layout"), "");
    h.write_attribute("/", "model", "wan2.1-t2v-1.3B");
    h.write_attribute("latent", "layout", "[C,T,H,W] ünïcode");
    h.write_attribute("/", "model", "tiny");  // replaced
    h.write_attribute("steps/0001", "empty", "");
    EXPECT_TRUE(h.has("latent"));
    h.close();
  }
  Hdf5File h(p, Hdf5File::Mode::read);
  EXPECT_TRUE(h.has("steps/0001/x"));
  EXPECT_TRUE(h.has("/steps/0001/x"));
  EXPECT_FALSE(h.has("steps/0001"));  // a group, not a dataset
  EXPECT_FALSE(h.has("steps/0003/x"));
  EXPECT_FALSE(h.has("latent/x"));
  EXPECT_EQ(h.shape("latent"), (std::vector<int64_t>{2}));
  EXPECT_EQ(h.shape("sigma"), std::vector<int64_t>{});
  EXPECT_EQ(h.shape("steps/0002/empty"), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(h.read_f32("latent"), (std::vector<float>{9, 8}));

  std::vector<int64_t> shape;
  EXPECT_EQ(h.read_f64("steps/0001/x", &shape), d);
  EXPECT_EQ(shape, (std::vector<int64_t>{5, 2}));
  const std::vector<float> df = h.read_f32("steps/0001/x");  // HDF5 converts f64 -> f32
  for (size_t k = 0; k < d.size(); ++k) EXPECT_EQ(df[k], static_cast<float>(d[k]));
  EXPECT_EQ(h.read_i64("steps/0001/ids", &shape), i);
  EXPECT_EQ(shape, (std::vector<int64_t>{7}));
  EXPECT_EQ(h.read_f64("steps/0001/ids")[3], static_cast<double>(i[3]));
  EXPECT_EQ(h.read_scalar("sigma"), 0.25);
  EXPECT_EQ(h.read_f32("sigma", &shape), std::vector<float>{0.25f});
  EXPECT_TRUE(shape.empty());
  EXPECT_TRUE(h.read_f32("steps/0002/empty").empty());

  EXPECT_EQ(h.read_attribute("/", "model"), "tiny");
  EXPECT_EQ(h.read_attribute("latent", "layout"), "[C,T,H,W] ünïcode");
  EXPECT_EQ(h.read_attribute("steps/0001", "empty"), "");
  EXPECT_EQ(h.read_attribute("latent", "absent"), "");
}

TEST_F(IoTest, Hdf5Errors) {
  const fs::path p = dir_ / "e.h5";
  const std::string file = p.string();
  auto expect_error = [](auto f, std::initializer_list<std::string> parts) {
    try {
      f();
      ADD_FAILURE() << "no Hdf5Error";
    } catch (const Hdf5Error& e) {
      const std::string msg = e.what();
      for (const std::string& s : parts) EXPECT_NE(msg.find(s), std::string::npos) << "'" << s << "' not in: " << msg;
    }
  };
  expect_error([&] { Hdf5File h(p, Hdf5File::Mode::read); }, {"no such HDF5 file", file});
  {
    Hdf5File h(p, Hdf5File::Mode::write);
    const double v[2] = {1, 2};
    h.write_f64("x/y", v, {2});
    expect_error([&] { h.write_f64("x", v, {2}); }, {"a group of that name exists", file + ": x"});
  }
  Hdf5File h(p, Hdf5File::Mode::read);
  expect_error([&] { h.read_f32("steps/0007/latent"); }, {"no such dataset", file + ": steps/0007/latent"});
  expect_error([&] { h.shape("nope"); }, {"no such dataset", file + ": nope"});
  expect_error([&] { h.read_scalar("x/y"); }, {"expected a scalar, found 2 elements", file + ": x/y"});
  expect_error([&] { h.read_attribute("nope", "k"); }, {"no such dataset or group", "nope"});
  const float f = 1;
  expect_error([&] { h.write_f32("z", &f, {}); }, {"reading only", file + ": z"});

  std::ofstream(dir_ / "junk.h5") << "not hdf5 at all";
  expect_error([&] { Hdf5File j(dir_ / "junk.h5", Hdf5File::Mode::read); }, {"H5Fopen failed", "junk.h5"});
}

TEST_F(IoTest, Hdf5WriterCommitsOrLeavesNothing) {
  const fs::path p = dir_ / "out.h5";
  const float v[3] = {1, 2, 3};
  {
    Hdf5Writer w(p);
    w.file().write_f32("x", v, {3});
    EXPECT_TRUE(fs::exists(dir_ / "out.h5.part"));
    EXPECT_FALSE(fs::exists(p));
  }  // not committed
  EXPECT_FALSE(fs::exists(p));
  EXPECT_FALSE(fs::exists(dir_ / "out.h5.part"));
  {
    Hdf5Writer w(p);
    w.file().write_f32("x", v, {3});
    w.file().write_attribute("/", "status", "complete");
    EXPECT_FALSE(fs::exists(p));
    w.commit();
    EXPECT_TRUE(fs::exists(p));
    EXPECT_FALSE(fs::exists(w.part_path()));
  }
  EXPECT_TRUE(fs::exists(p));
  Hdf5File h(p, Hdf5File::Mode::read);
  EXPECT_EQ(h.read_f32("x"), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(h.read_attribute("/", "status"), "complete");
}
