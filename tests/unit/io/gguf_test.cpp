// The GGUF reader against files written by an independent Python writer (tests/parity/
// gguf_writer.py: torchvision's mobilenet_v3_small in F32 / F16 / BF16, Q8_0, metadata of every
// type) and against hand-built malformed files, each of which must give a finch::Error naming
// the file: no crash, no read out of bounds, no allocation sized by a corrupt count.
#include "finch/io/gguf.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstring>
#include <random>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/io/safetensors.h"
#include "finch/models/model.h"
#include "finch/models/pretrained.h"
#include "test_support.h"

namespace finch::io {
namespace {

namespace fs = std::filesystem;
using finch::test::error_of;

// --- fixtures from the Python writer ---------------------------------------------------------

class GgufFixtures : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new finch::test::TempDir("finch-gguf");
    finch::test::run_python_reference("gguf_writer.py", "fixtures " + dir_->path().string());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static fs::path path(const std::string& name) { return *dir_ / name; }

  // What `kind` (f32 / f16 / bf16) should read as: expected.safetensors' "<kind>.<name>".
  static std::vector<std::pair<std::string, torch::Tensor>> expected(const std::string& kind) {
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (auto& [name, tensor] : read_safetensors(path("expected.safetensors")).tensors)
      if (name.rfind(kind + ".", 0) == 0) out.emplace_back(name.substr(kind.size() + 1), tensor);
    return out;
  }

  static finch::test::TempDir* dir_;
};

finch::test::TempDir* GgufFixtures::dir_ = nullptr;

void expect_same_tensors(const GgufFile& file,
                         std::vector<std::pair<std::string, torch::Tensor>> want) {
  // The writer lays tensors out in state-dict order; expected.safetensors is sorted by name.
  std::map<std::string, torch::Tensor> by_name(want.begin(), want.end());
  ASSERT_EQ(file.tensors.size(), by_name.size());
  for (const auto& [name, tensor] : file.tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(by_name.count(name));
    EXPECT_EQ(tensor.scalar_type(), torch::kFloat32);
    EXPECT_EQ(tensor.sizes(), by_name[name].sizes());
    EXPECT_TRUE(torch::equal(tensor, by_name[name]));  // bit-exact
  }
}

TEST_F(GgufFixtures, F32TensorsAreExact) {
  GgufFile file = read_gguf(path("f32.gguf"));
  EXPECT_EQ(file.version, 3u);
  expect_same_tensors(file, expected("f32"));
  EXPECT_EQ(file.tensors.front().first, "features.0.0.weight");  // file order
  EXPECT_EQ(file.tensors.front().second.sizes(), (std::vector<int64_t>{16, 3, 3, 3}));
  EXPECT_EQ(file.stored_types.front(), "F32");
}

TEST_F(GgufFixtures, F16TensorsAreFp16ExactInVersion2WithAlignment64) {
  GgufFile file = read_gguf(path("f16.gguf"));
  EXPECT_EQ(file.version, 2u);
  EXPECT_EQ(file.metadata["general.alignment"], 64);
  expect_same_tensors(file, expected("f16"));
  EXPECT_EQ(file.stored_types.back(), "F16");
}

TEST_F(GgufFixtures, Bf16TensorsAreBf16Exact) {
  GgufFile file = read_gguf(path("bf16.gguf"));
  expect_same_tensors(file, expected("bf16"));
  EXPECT_EQ(file.stored_types.back(), "BF16");
}

TEST_F(GgufFixtures, Q8_0IsDequantizedLikeGgml) {
  GgufFile file = read_gguf(path("q8_0.gguf"));
  ASSERT_EQ(file.tensors.size(), 2u);
  auto ref = read_safetensors(path("expected.safetensors"));
  EXPECT_TRUE(torch::equal(file.tensors[0].second, ref.find("q8_0.q")));
  // Within half a quantization step of the source (scale = max|x| / 127 per 32 values).
  const torch::Tensor source = ref.find("q8_0.source");
  EXPECT_LT((file.tensors[0].second - source).abs().max().item<double>(), 5.0 / 127 / 2 + 1e-3);
  EXPECT_TRUE(torch::equal(file.tensors[1].second, torch::zeros({32})));
  EXPECT_EQ(file.stored_types[0], "Q8_0");
}

TEST_F(GgufFixtures, MetadataOfEveryType) {
  const nlohmann::json m = read_gguf(path("bf16.gguf")).metadata;
  EXPECT_EQ(m["test.u8"], 250);
  EXPECT_EQ(m["test.i8"], -120);
  EXPECT_EQ(m["test.u16"], 65000);
  EXPECT_EQ(m["test.i16"], -32000);
  EXPECT_EQ(m["test.u32"], 4000000000u);
  EXPECT_EQ(m["test.i32"], -2000000000);
  EXPECT_EQ(m["test.f32"].get<double>(), 0.375);
  EXPECT_EQ(m["test.bool"], true);
  EXPECT_EQ(m["test.string"], "gr\u00fc\u00dfe, finch");
  EXPECT_TRUE(m["test.u64"].is_number_unsigned());
  EXPECT_EQ(m["test.u64"].get<uint64_t>(), (uint64_t{1} << 63) + 5);
  EXPECT_EQ(m["test.i64"].get<int64_t>(), -(int64_t{1} << 62));
  EXPECT_EQ(m["test.f64"].get<double>(), -1.25e100);
  EXPECT_EQ(m["test.strings"], nlohmann::json::array({"a", "", "bc"}));
  EXPECT_EQ(m["test.nested"], nlohmann::json::parse("[[1, -2], []]"));
  EXPECT_EQ(m["test.empty"], nlohmann::json::array());
  EXPECT_EQ(m["general.architecture"], "mobilenet_v3_small");
}

TEST_F(GgufFixtures, LoadsIntoFinchMobileNetByExtensionOrMagic) {
  auto model = models::build_classifier(
      {{"backbone", "mobilenet_v3_small"}, {"head", "linear"}, {"num_classes", 1000}});
  auto weights = models::read_weights_file(path("f16.gguf"));
  auto report = models::load_pretrained(model, weights, "f16.gguf", true);
  EXPECT_EQ(report.loaded.size(), models::state_dict(*model).size());
  // The same file under another name is recognised by its magic.
  fs::copy_file(path("f16.gguf"), path("weights.bin"), fs::copy_options::overwrite_existing);
  auto renamed = models::read_weights_file(path("weights.bin"));
  ASSERT_EQ(renamed.size(), weights.size());
  EXPECT_TRUE(torch::equal(renamed.back().second, weights.back().second));
  // Fine-tuning for another class count (model.pretrained): only the classifier stays at its
  // initialisation.
  auto five = models::build_classifier(
      {{"backbone", "mobilenet_v3_small"}, {"head", "linear"}, {"num_classes", 5}});
  auto partial = models::load_pretrained(five, weights, "f16.gguf", false);
  EXPECT_EQ(partial.reinitialised.size(), 2u) << partial.summary();
  EXPECT_EQ(partial.loaded.size(), weights.size() - 2) << partial.summary();
  EXPECT_TRUE(partial.missing.empty() && partial.unexpected.empty()) << partial.summary();
}

// --- hand-built files --------------------------------------------------------------------------

enum : uint32_t { kU8 = 0, kU32 = 4, kBool = 7, kString = 8, kArray = 9 };
enum : uint32_t { kF32 = 0, kF16 = 1, kQ8_0 = 8, kQ4_K = 12 };

std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string u64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string str(const std::string& s) { return u64(s.size()) + s; }
std::string kv(const std::string& key, uint32_t type, const std::string& value) {
  return str(key) + u32(type) + value;
}
std::string kv_string(const std::string& key, const std::string& value) {
  return kv(key, kString, str(value));
}

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> ggml_dims;
  uint32_t type;
  uint64_t offset;
};

std::string info(const TensorSpec& t) {
  std::string s = str(t.name) + u32(static_cast<uint32_t>(t.ggml_dims.size()));
  for (uint64_t d : t.ggml_dims) s += u64(d);
  return s + u32(t.type) + u64(t.offset);
}

std::string pad(std::string s, size_t alignment = 32) {
  s.append((alignment - s.size() % alignment) % alignment, '\0');
  return s;
}

// Header, metadata, tensor infos, padding to `alignment`, data.
std::string gguf(const std::vector<std::string>& kvs, const std::vector<TensorSpec>& tensors,
                 const std::string& data, uint32_t version = 3, size_t alignment = 32) {
  std::string s = "GGUF" + u32(version) + u64(tensors.size()) + u64(kvs.size());
  for (const auto& k : kvs) s += k;
  for (const auto& t : tensors) s += info(t);
  return pad(s, alignment) + data;
}

std::string floats(std::initializer_list<float> values) {
  std::string s;
  for (float v : values) s += std::string(reinterpret_cast<const char*>(&v), 4);
  return s;
}

// A valid file: two metadata values, "a" F32 [2, 3] and "b" F16 [4] (stored as 1.0).
std::string valid_file() {
  std::string half_one = std::string("\x00\x3c", 2);
  return gguf({kv_string("general.architecture", "test"),
               kv("test.bytes", kArray, u32(kU8) + u64(3) + std::string("\x01\x02\x03", 3))},
              {{"a", {3, 2}, kF32, 0}, {"b", {4}, kF16, 32}},
              pad(floats({1, 2, 3, 4, 5, 6})) + half_one + half_one + half_one + half_one);
}

// The finch::Error message for parsing `bytes` as "bad.gguf" (it must name the file).
std::string parse_error(const std::string& bytes) {
  std::string message = error_of([&] { parse_gguf(bytes, "bad.gguf"); });
  EXPECT_NE(message.find("bad.gguf"), std::string::npos) << message;
  return message;
}

TEST(Gguf, ReadsAHandBuiltFile) {
  GgufFile file = parse_gguf(valid_file(), "ok.gguf");
  ASSERT_EQ(file.tensors.size(), 2u);
  EXPECT_EQ(file.tensors[0].first, "a");
  EXPECT_TRUE(
      torch::equal(file.tensors[0].second, torch::arange(1, 7, torch::kFloat32).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(file.tensors[1].second, torch::ones({4})));
  EXPECT_EQ(file.metadata["test.bytes"], nlohmann::json::array({1, 2, 3}));
  EXPECT_EQ(file.stored_types, (std::vector<std::string>{"F32", "F16"}));
}

TEST(Gguf, ScalarsEmptyTensorsNoTensorsAndOtherAlignments) {
  // A 0-dimensional tensor is a scalar (the npm file stores num_batches_tracked so).
  auto scalar = parse_gguf(
      gguf({}, {{"s", {}, kF32, 0}, {"e", {0, 3}, kF32, 32}}, pad(floats({7}))), "s.gguf");
  EXPECT_EQ(scalar.tensors[0].second.dim(), 0);
  EXPECT_EQ(scalar.tensors[0].second.item<float>(), 7);
  EXPECT_EQ(scalar.tensors[1].second.sizes(), (std::vector<int64_t>{3, 0}));
  auto empty = parse_gguf("GGUF" + u32(3) + u64(0) + u64(0), "empty.gguf");
  EXPECT_TRUE(empty.tensors.empty());
  EXPECT_TRUE(empty.metadata.empty());
  auto aligned8 = parse_gguf(
      gguf({kv("general.alignment", kU32, u32(8))}, {{"a", {1}, kF32, 0}, {"b", {1}, kF32, 8}},
           pad(floats({1}), 8) + floats({2}), 3, 8),
      "a8.gguf");
  EXPECT_EQ(aligned8.tensors[1].second.item<float>(), 2);
}

TEST(Gguf, BadMagicAndVersions) {
  EXPECT_NE(parse_error("").find("not a GGUF file"), std::string::npos);
  std::string wrong = valid_file();
  wrong[3] = 'X';
  EXPECT_NE(parse_error(wrong).find("not a GGUF file"), std::string::npos);
  std::string v = valid_file();
  for (uint32_t version : {0u, 1u, 4u, 0x03000000u}) {
    std::memcpy(&v[4], &version, 4);
    const std::string message = parse_error(v);
    EXPECT_NE(message.find("version"), std::string::npos) << message;
  }
  std::memcpy(&v[4], "\0\0\0\x03", 4);
  EXPECT_NE(parse_error(v).find("big-endian"), std::string::npos);
}

TEST(Gguf, TruncatedAtEveryByte) {
  const std::string bytes = valid_file();
  for (size_t n = 0; n < bytes.size(); ++n) {
    SCOPED_TRACE(n);
    parse_error(bytes.substr(0, n));
  }
}

TEST(Gguf, TensorDataPastTheEnd) {
  for (uint64_t offset : {uint64_t{64}, uint64_t{1} << 20, uint64_t{1} << 63}) {
    std::string bytes = gguf({}, {{"a", {4}, kF32, offset}}, floats({1, 2, 3, 4}));
    EXPECT_NE(parse_error(bytes).find("runs past the end"), std::string::npos);
  }
  // A huge shape whose byte count does not overflow still needs the bytes to be there.
  std::string big = gguf({}, {{"a", {uint64_t{1} << 40, 16}, kF16, 0}}, floats({1}));
  const std::string message = parse_error(big);
  EXPECT_NE(message.find("'a'"), std::string::npos);
  EXPECT_NE(message.find("runs past the end"), std::string::npos);
}

TEST(Gguf, AbsurdDimensionsAndCounts) {
  std::string overflow = gguf({}, {{"a", {uint64_t{1} << 62, uint64_t{1} << 62}, kF32, 0}}, "");
  EXPECT_NE(parse_error(overflow).find("absurd"), std::string::npos);
  std::string one_huge = gguf({}, {{"a", {~uint64_t{0}}, kF32, 0}}, "");
  EXPECT_NE(parse_error(one_huge).find("absurd"), std::string::npos);
  std::string rank = "GGUF" + u32(3) + u64(1) + u64(0) + str("a") + u32(100000);
  EXPECT_NE(parse_error(rank + std::string(64, '\0')).find("100000 dimensions"), std::string::npos);
  std::string tensors = "GGUF" + u32(3) + u64(uint64_t{1} << 62) + u64(0);
  EXPECT_NE(parse_error(tensors + std::string(100, '\0')).find("announces"), std::string::npos);
  std::string kvs = "GGUF" + u32(3) + u64(0) + u64(uint64_t{1} << 62);
  EXPECT_NE(parse_error(kvs + std::string(100, '\0')).find("announces"), std::string::npos);
  std::string array = gguf({kv("x", kArray, u32(kString) + u64(uint64_t{1} << 61))}, {}, "");
  EXPECT_NE(parse_error(array).find("announces"), std::string::npos);
  std::string nested;
  for (int i = 0; i < 40; ++i) nested += u32(kArray) + u64(1);
  EXPECT_NE(
      parse_error(gguf({kv("deep", kArray, nested + u32(kU8) + u64(0))}, {}, "")).find("deeper"),
      std::string::npos);
}

TEST(Gguf, StringLengthsPastTheEnd) {
  const std::string header = "GGUF" + u32(3);
  // A metadata key, a string value, a tensor name, an array element.
  EXPECT_NE(parse_error(header + u64(0) + u64(1) + u64(uint64_t{1} << 40) + std::string(24, 'k'))
                .find("metadata key 0"),
            std::string::npos);
  EXPECT_NE(
      parse_error(gguf({kv("k", kString, u64(~uint64_t{0}) + "abc")}, {}, "")).find("metadata 'k'"),
      std::string::npos);
  EXPECT_NE(parse_error(header + u64(1) + u64(0) + u64(uint64_t{1} << 50) + std::string(40, 'n'))
                .find("tensor info 0"),
            std::string::npos);
  EXPECT_NE(parse_error(gguf({kv("s", kArray, u32(kString) + u64(1) + u64(1000) + "x")}, {}, ""))
                .find("metadata 's'[0]"),
            std::string::npos);
}

TEST(Gguf, UnsupportedTensorTypesNameTheTensorAndType) {
  std::string q4k = gguf({}, {{"blocks.0.weight", {256}, kQ4_K, 0}}, std::string(144, '\0'));
  std::string message = parse_error(q4k);
  EXPECT_NE(message.find("'blocks.0.weight'"), std::string::npos) << message;
  EXPECT_NE(message.find("Q4_K"), std::string::npos) << message;
  EXPECT_NE(parse_error(gguf({}, {{"t", {4}, 999, 0}}, floats({1, 2, 3, 4}))).find("999 (unknown)"),
            std::string::npos);
  // Q8_0 rows must hold whole 32-value blocks.
  EXPECT_NE(
      parse_error(gguf({}, {{"q", {16}, kQ8_0, 0}}, std::string(34, '\0'))).find("multiple of 32"),
      std::string::npos);
}

TEST(Gguf, OtherMalformedFields) {
  auto expect_error = [](const std::string& bytes, const std::string& part) {
    const std::string message = parse_error(bytes);
    EXPECT_NE(message.find(part), std::string::npos) << message;
  };
  expect_error(gguf({kv("t", 13, u32(0))}, {}, ""), "unknown value type 13");
  expect_error(gguf({kv("a", kArray, u32(77) + u64(0))}, {}, ""), "unknown element type 77");
  expect_error(gguf({kv("flag", kBool, "\x02")}, {}, ""), "only 0 and 1");
  expect_error(gguf({kv_string("bad\xff", "x")}, {}, ""), "not valid UTF-8");
  expect_error(gguf({kv_string("k", "v"), kv_string("k", "w")}, {}, ""), "more than once");
  expect_error(
      gguf({}, {{"a", {1}, kF32, 0}, {"a", {1}, kF32, 32}}, pad(floats({1})) + floats({2})),
      "more than once");
  expect_error(gguf({}, {{"a", {1}, kF32, 4}}, pad(floats({1}))),
               "not a multiple of the alignment");
  expect_error(gguf({}, {{"a", {16}, kF32, 0}, {"b", {1}, kF32, 32}}, std::string(64, '\0')),
               "overlap");
  for (const std::string& alignment :
       {kv("general.alignment", kU32, u32(3)), kv("general.alignment", kU32, u32(0)),
        kv_string("general.alignment", "32")})
    expect_error(gguf({alignment}, {}, ""), "general.alignment");
}

TEST(Gguf, RandomCorruptionsGiveErrorsOrValidFiles) {
  // Whatever the bytes, the reader returns or throws finch::Error (error_of would let any
  // other exception fail the test).
  const std::string bytes = valid_file();
  std::mt19937 rng(11);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string mutated = bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t at = rng() % mutated.size();
      mutated[at] = static_cast<char>(rng() % 3 == 0 ? 0xff : rng() % 256);
    }
    try {
      parse_gguf(mutated, "mutated.gguf");
    } catch (const finch::Error& e) {
      EXPECT_NE(std::string(e.what()).find("mutated.gguf"), std::string::npos) << e.what();
    }
  }
}

TEST(Gguf, ReadGgufNamesTheMissingFile) {
  EXPECT_NE(error_of([] { read_gguf("/nonexistent/x.gguf"); }).find("/nonexistent/x.gguf"),
            std::string::npos);
}

}  // namespace
}  // namespace finch::io
