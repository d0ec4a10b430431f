#include "finch/io/safetensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "test_support.h"

namespace finch::io {
namespace {

using Tensors = std::vector<std::pair<std::string, torch::Tensor>>;

// The same tensors as expected() in tests/parity/safetensors_reference.py, in its order.
Tensors expected_tensors() {
  return {
      {"layer.f64", torch::arange(6, torch::kFloat64).reshape({2, 3}) * 0.5 - 1},
      {"a.f32", torch::arange(12, torch::kFloat32).reshape({3, 4}) / 3},
      {"f16", (torch::arange(-4, 4, torch::kFloat32) / 8).to(torch::kFloat16)},
      {"bf16", (torch::arange(8, torch::kFloat32) / 4 - 1).to(torch::kBFloat16).reshape({2, 2, 2})},
      {"i64", torch::tensor({-(int64_t{1} << 40), int64_t{0}, (int64_t{1} << 40) + 3})},
      {"i32", torch::tensor(
                  {std::numeric_limits<int32_t>::min(), 7, std::numeric_limits<int32_t>::max(), -1},
                  torch::kInt32)
                  .reshape({2, 2})},
      {"i16", torch::tensor({-32768, 1, 32767}, torch::kInt16)},
      {"i8", torch::tensor({-128, 0, 127}, torch::kInt8)},
      {"u8", torch::tensor({0, 127, 255}, torch::kUInt8)},
      {"bool", torch::tensor({true, false, true})},
      {"scalar", torch::scalar_tensor(3.25, torch::kFloat32)},
      {"empty", torch::zeros({0, 3}, torch::kFloat32)},
  };
}

const std::map<std::string, std::string> kMetadata = {{"format", "pt"},
                                                      {"note", "gr\u00fc\u00dfe"}};

void expect_same(const Tensors& got, const Tensors& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(want[i].first);
    EXPECT_EQ(got[i].first, want[i].first);
    EXPECT_EQ(got[i].second.scalar_type(), want[i].second.scalar_type());
    EXPECT_EQ(got[i].second.sizes(), want[i].second.sizes());
    EXPECT_TRUE(torch::equal(got[i].second, want[i].second));
  }
}

Tensors sorted_by_name(Tensors tensors) {
  std::sort(tensors.begin(), tensors.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return tensors;
}

// 8-byte little-endian length, header text, data: a file built by hand.
std::string make_file(const std::string& header, const std::string& data = "",
                      uint64_t length = std::numeric_limits<uint64_t>::max()) {
  if (length == std::numeric_limits<uint64_t>::max()) length = header.size();
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes += static_cast<char>((length >> (8 * i)) & 0xff);
  return bytes + header + data;
}

uint64_t header_length(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  return n;
}

TEST(Safetensors, RoundTripsEveryDtypeScalarsAndEmptyTensors) {
  TensorFile file = parse_safetensors(serialize_safetensors(expected_tensors(), kMetadata), "mem");
  expect_same(file.tensors, sorted_by_name(expected_tensors()));
  EXPECT_EQ(file.metadata, kMetadata);
  EXPECT_EQ(file.find("scalar").dim(), 0);
}

TEST(Safetensors, WritesPaddedHeaderSortedNamesAndContiguousOffsets) {
  std::string bytes = serialize_safetensors(expected_tensors(), kMetadata);
  uint64_t n = header_length(bytes);
  EXPECT_EQ(n % 8, 0u);
  std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}'));
  auto json = nlohmann::json::parse(header);
  EXPECT_EQ(json["__metadata__"], nlohmann::json(kMetadata));
  json.erase("__metadata__");
  uint64_t offset = 0;
  std::string previous;
  for (const auto& [name, info] : json.items()) {  // nlohmann iterates keys in sorted order
    EXPECT_LT(previous, name);
    previous = name;
    EXPECT_EQ(info["data_offsets"][0].get<uint64_t>(), offset) << name;
    offset = info["data_offsets"][1].get<uint64_t>();
  }
  EXPECT_EQ(8 + n + offset, bytes.size());
  EXPECT_EQ(json["scalar"]["shape"], nlohmann::json::array());
  EXPECT_EQ(json["bf16"]["dtype"], "BF16");
  EXPECT_EQ(serialize_safetensors({}, {}), make_file("{}      "));  // no empty __metadata__
}

TEST(Safetensors, WriterMakesViewsContiguous) {
  torch::Tensor base = torch::arange(24, torch::kFloat32).reshape({4, 6});
  Tensors views = {{"t", base.t()}, {"slice", base.slice(1, 2, 5)}, {"step", base.select(1, 3)}};
  TensorFile file = parse_safetensors(serialize_safetensors(views, {}), "mem");
  expect_same(file.tensors,
              {{"slice", base.slice(1, 2, 5)}, {"step", base.select(1, 3)}, {"t", base.t()}});
  EXPECT_TRUE(file.metadata.empty());
}

TEST(Safetensors, WriterRejectsBadInput) {
  auto one = torch::ones({1});
  EXPECT_THROW(serialize_safetensors({{"a", one}, {"a", one}}, {}), finch::Error);
  EXPECT_THROW(serialize_safetensors({{"__metadata__", one}}, {}), finch::Error);
  EXPECT_THROW(serialize_safetensors({{"a", torch::Tensor()}}, {}), finch::Error);
  EXPECT_THROW(serialize_safetensors({{"a", torch::ones({2}, torch::kComplexFloat)}}, {}),
               finch::Error);
  EXPECT_THROW(serialize_safetensors({{"\xff", one}}, {}), finch::Error);  // not UTF-8
}

TEST(Safetensors, ReadsTensorsInFileOrderAndCopiesTheirData) {
  std::string bytes = make_file(
      R"({"a": {"dtype": "I32", "shape": [1], "data_offsets": [4, 8]},
          "b": {"dtype": "I32", "shape": [], "data_offsets": [0, 4]}})",
      std::string("\x07\0\0\0\x09\0\0\0", 8));
  TensorFile file = parse_safetensors(bytes, "mem");
  ASSERT_EQ(file.tensors.size(), 2u);
  EXPECT_EQ(file.tensors[0].first, "b");
  EXPECT_EQ(file.tensors[0].second.item<int32_t>(), 7);
  EXPECT_EQ(file.tensors[1].first, "a");
  // The tensors own their memory: clobbering the input leaves them intact.
  std::fill(bytes.begin(), bytes.end(), '\0');
  EXPECT_EQ(file.find("a").item<int32_t>(), 9);
  EXPECT_FALSE(file.find("c").defined());
}

TEST(Safetensors, AcceptsGapsAndUnknownEntryFields) {
  // The Python library rejects gaps (its offsets must tile the buffer) but ignores unknown
  // fields; neither makes a tensor ambiguous or unsafe to read, so finch reads both.
  TensorFile file = parse_safetensors(
      make_file(R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3], "x": 1}})",
                "\x05\x06\x07\x08"),
      "mem");
  EXPECT_TRUE(torch::equal(file.find("a"), torch::tensor({6, 7}, torch::kUInt8)));
}

TEST(Safetensors, WritesAndReadsFilesAtomically) {
  test::TempDir dir;
  write_safetensors(dir / "model.safetensors", expected_tensors(), kMetadata);
  TensorFile file = read_safetensors(dir / "model.safetensors");
  expect_same(file.tensors, sorted_by_name(expected_tensors()));
  namespace fs = std::filesystem;
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
  EXPECT_THROW(read_safetensors(dir / "missing.safetensors"), finch::Error);
}

TEST(Safetensors, MappedFileReadsTheSameAndWritesNeverReachTheFile) {
  test::TempDir dir;
  const auto path = dir / "model.safetensors";
  write_safetensors(path, expected_tensors(), kMetadata);
  const std::string before = read_file(path);
  {
    TensorFile mapped = map_safetensors(path);
    expect_same(mapped.tensors, sorted_by_name(expected_tensors()));
    EXPECT_EQ(mapped.metadata, kMetadata);
    // The mapping is private: a tensor written to changes in memory, the file does not.
    mapped.find("a.f32").fill_(-7);
    EXPECT_EQ(mapped.find("a.f32")[0][0].item<float>(), -7);
  }
  EXPECT_EQ(read_file(path), before);
  // A tensor outlives the TensorFile it came from (it keeps the mapping alive).
  torch::Tensor kept = map_safetensors(path).find("i64");
  EXPECT_TRUE(torch::equal(kept, expected_tensors()[4].second));

  // Data not aligned for its type (legal in the format) is copied rather than viewed.
  std::string header = R"({"x": {"dtype": "I32", "shape": [1], "data_offsets": [1, 5]}})";
  header.append((8 - header.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  write_file_atomic(dir / "odd.safetensors", make_file(header, std::string("\0\x2a\0\0\0", 5)));
  EXPECT_EQ(map_safetensors(dir / "odd.safetensors").find("x").item<int32_t>(), 42);
  EXPECT_THROW(map_safetensors(dir / "missing.safetensors"), finch::Error);
}

TEST(Safetensors, PythonReadsOurFile) {
  test::TempDir dir;
  write_safetensors(dir / "ours.safetensors", expected_tensors(), kMetadata);
  std::string output = test::run_python_reference("safetensors_reference.py",
                                                  "check " + (dir / "ours.safetensors").string());
  EXPECT_NE(output.find("ok: 12 tensors match"), std::string::npos) << output;
}

TEST(Safetensors, WeReadPythonFile) {
  test::TempDir dir;
  test::run_python_reference("safetensors_reference.py",
                             "write " + (dir / "theirs.safetensors").string());
  TensorFile file = read_safetensors(dir / "theirs.safetensors");
  expect_same(file.tensors, expected_tensors());  // python lays them out unsorted
  EXPECT_EQ(file.metadata, kMetadata);
}

// ---- Malformed files: each must throw finch::Error naming the file and the problem. ----

struct BadFile {
  std::string test_name;
  std::string bytes;
  std::string message;  // a part of the expected error message
};

std::string entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"dtype": )" + dtype + R"(, "shape": )" + shape + R"(, "data_offsets": )" + offsets +
         "}";
}

std::string one_tensor(const std::string& dtype, const std::string& shape,
                       const std::string& offsets, const std::string& data = std::string(8, 'x')) {
  return make_file(R"({"t": )" + entry(dtype, shape, offsets) + "}", data);
}

std::string truncated_real_file() {
  std::string bytes = serialize_safetensors({{"w", torch::ones({4})}}, {});
  bytes.pop_back();
  return bytes;
}

std::vector<BadFile> bad_files() {
  const std::string ok = entry(R"("F32")", "[2]", "[0, 8]");
  return {
      {"Empty", "", "shorter than the 8-byte"},
      {"ShorterThanLength", "abc", "shorter than the 8-byte"},
      {"HeaderLongerThanFile", make_file("{}", "", 100), "larger than the rest of the file"},
      {"AbsurdHeaderLength", make_file("{}", "", 200'000'000), "absurd"},
      {"MaxHeaderLength", make_file("{}", "", std::numeric_limits<uint64_t>::max() - 1), "absurd"},
      {"NotJson", make_file(R"({"t": )"), "not valid JSON"},
      {"NotUtf8", make_file("{\"\xff\": 1}"), "not valid JSON"},
      {"DeepNesting", make_file(std::string(100000, '[') + std::string(100000, ']')),
       "deeper than 32 levels"},
      {"DeepNestingInEntry",
       make_file(R"({"t": {"x": )" + std::string(40, '[') + std::string(40, ']') + "}}"),
       "deeper than 32 levels"},
      {"HeaderNotObject", make_file("[1, 2]"), "not a JSON object"},
      {"EntryNotObject", make_file(R"({"t": 3})"), "entry is not a JSON object"},
      {"MissingDtype", make_file(R"({"t": {"shape": [], "data_offsets": [0, 4]}})"),
       "no \"dtype\""},
      {"MissingOffsets", make_file(R"({"t": {"shape": [], "dtype": "F32"}})"),
       "no \"data_offsets\""},
      {"UnknownDtype", one_tensor(R"("F8")", "[8]", "[0, 8]"), "unknown dtype \"F8\""},
      {"DtypeNotString", one_tensor("4", "[2]", "[0, 8]"), "unknown dtype 4"},
      {"ShapeNotArray", one_tensor(R"("F32")", "2", "[0, 8]"), "shape is not an array"},
      {"NegativeDim", one_tensor(R"("F32")", "[-2]", "[0, 8]"), "non-negative integers"},
      {"FractionalDim", one_tensor(R"("F32")", "[1.5]", "[0, 8]"), "non-negative integers"},
      {"StringDim", one_tensor(R"("F32")", R"(["2"])", "[0, 8]"), "non-negative integers"},
      {"DimBeyondUint64", one_tensor(R"("F32")", "[18446744073709551616]", "[0, 8]"),
       "non-negative integers"},
      {"RankAbove64",
       one_tensor(R"("F32")", nlohmann::json(std::vector<int>(65, 1)).dump(), "[0, 4]"),
       "65 dimensions"},
      {"ElementCountOverflow",
       one_tensor(R"("U8")", "[4294967296, 4294967296, 4294967296]", "[0, 8]"), "overflows"},
      {"ByteCountOverflow", one_tensor(R"("F64")", "[2305843009213693952]", "[0, 8]"), "overflows"},
      {"StrideOverflowBehindZeroDim",
       one_tensor(R"("U8")", "[0, 4294967296, 4294967296]", "[0, 0]"), "overflows"},
      {"OffsetsNotArray", one_tensor(R"("F32")", "[2]", "8"), "not a pair"},
      {"OffsetsOneValue", one_tensor(R"("F32")", "[2]", "[8]"), "not a pair"},
      {"OffsetsThreeValues", one_tensor(R"("F32")", "[2]", "[0, 4, 8]"), "not a pair"},
      {"OffsetsNegative", one_tensor(R"("F32")", "[2]", "[-8, 0]"), "not a pair"},
      {"OffsetsFloat", one_tensor(R"("F32")", "[2]", "[0, 8.0]"), "not a pair"},
      {"BeginAfterEnd", one_tensor(R"("F32")", "[2]", "[8, 0]"), "begin after end"},
      {"EndBeyondBuffer", one_tensor(R"("F32")", "[2]", "[0, 8]", "1234"),
       "beyond the data buffer of 4 bytes"},
      {"TruncatedFile", truncated_real_file(), "beyond the data buffer"},
      {"SizeMismatch", one_tensor(R"("F32")", "[3]", "[0, 8]"), "needs 12"},
      {"Overlap",
       make_file(R"({"a": )" + ok + R"(, "b": )" + entry(R"("F32")", "[2]", "[4, 12]") + "}",
                 std::string(12, 'x')),
       "'a' and 'b' have overlapping"},
      {"DuplicateName", make_file(R"({"t": )" + ok + R"(, "t": )" + ok + "}", std::string(8, 'x')),
       "'t' more than once"},
      {"DuplicateField",
       make_file(R"({"t": {"dtype": "F32", "dtype": "I64", "shape": [2], "data_offsets": [0, 8]}})",
                 std::string(8, 'x')),
       "'dtype' more than once"},
      {"MetadataNotObject", make_file(R"({"__metadata__": ["a"]})"),
       "__metadata__ is not a JSON object"},
      {"MetadataValueNotString", make_file(R"({"__metadata__": {"epoch": 3}})"),
       "'epoch' is not a string"},
      {"BoolNotZeroOrOne", one_tensor(R"("BOOL")", "[2]", "[0, 2]", std::string("\x01\x02", 2)),
       "other than 0 and 1"},
  };
}

class MalformedSafetensors : public testing::TestWithParam<BadFile> {};

TEST_P(MalformedSafetensors, ThrowsErrorNamingFileAndProblem) {
  try {
    parse_safetensors(GetParam().bytes, "bad.safetensors");
    FAIL() << "no finch::Error thrown";
  } catch (const finch::Error& e) {
    std::string message = e.what();
    EXPECT_EQ(message.rfind("bad.safetensors: ", 0), 0u) << message;
    EXPECT_NE(message.find(GetParam().message), std::string::npos)
        << "expected \"" << GetParam().message << "\" in: " << message;
  }
}

INSTANTIATE_TEST_SUITE_P(Safetensors, MalformedSafetensors, testing::ValuesIn(bad_files()),
                         [](const auto& info) { return info.param.test_name; });

}  // namespace
}  // namespace finch::io
