#include "finch/io/idx.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

// IDX bytes: 0, 0, type, ndims, big-endian uint32 dims, data.
std::string idx_bytes(const std::vector<uint32_t>& shape, const std::vector<uint8_t>& data,
                      uint8_t type = 0x08) {
  std::string out = {0, 0, static_cast<char>(type), static_cast<char>(shape.size())};
  for (uint32_t d : shape)
    for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<char>((d >> shift) & 0xFF));
  out.append(data.begin(), data.end());
  return out;
}

void write_gzip(const fs::path& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  finch::test::require(f != nullptr, "gzopen " + path.string());
  finch::test::require(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) ==
                           static_cast<int>(bytes.size()),
                       "gzwrite " + path.string());
  finch::test::require(gzclose(f) == Z_OK, "gzclose " + path.string());
}

std::vector<uint8_t> iota_bytes(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 7 + 3);
  return v;
}

std::string error_of(const fs::path& path) {
  try {
    finch::io::read_idx(path);
  } catch (const finch::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected finch::Error for " << path;
  return "";
}

}  // namespace

TEST(Idx, ReadsPlainAndGzipped) {
  finch::test::TempDir dir;
  std::vector<uint8_t> images = iota_bytes(5 * 4 * 3);
  finch::write_file_atomic(dir / "images", idx_bytes({5, 4, 3}, images));
  write_gzip(dir / "images.gz", idx_bytes({5, 4, 3}, images));
  for (const char* name : {"images", "images.gz"}) {
    finch::io::IdxArray a = finch::io::read_idx(dir / name);
    EXPECT_EQ(a.shape, (std::vector<int64_t>{5, 4, 3})) << name;
    EXPECT_EQ(a.data, images) << name;
  }
  std::vector<uint8_t> labels = {3, 1, 4, 1, 5, 9};
  write_gzip(dir / "labels.gz", idx_bytes({6}, labels));
  EXPECT_EQ(finch::io::read_idx(dir / "labels.gz").data, labels);
  finch::write_file_atomic(dir / "four", idx_bytes({2, 1, 2, 3}, iota_bytes(12)));
  EXPECT_EQ(finch::io::read_idx(dir / "four").shape, (std::vector<int64_t>{2, 1, 2, 3}));
  finch::write_file_atomic(dir / "empty", idx_bytes({0, 28, 28}, {}));
  EXPECT_TRUE(finch::io::read_idx(dir / "empty").data.empty());
}

TEST(Idx, BadFilesNameTheFile) {
  finch::test::TempDir dir;
  std::string good = idx_bytes({4, 2, 2}, iota_bytes(16));
  struct Case {
    const char* name;
    std::string bytes;
    const char* expect;
  };
  std::string bad_magic = good;
  bad_magic[0] = 1;
  std::vector<Case> cases = {
      {"bad_magic", bad_magic, "magic"},
      {"float_type", idx_bytes({4}, iota_bytes(16), 0x0D), "0x0d"},
      {"zero_dims", idx_bytes({}, {}), "dimensions"},
      {"five_dims", idx_bytes({1, 1, 1, 1, 1}, {7}), "dimensions"},
      {"short_header", good.substr(0, 9), "too short"},
      {"short_data", good.substr(0, good.size() - 1), "truncated"},
      {"trailing", good + "x", "trailing"},
      {"tiny", std::string(2, '\0'), "too short"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    for (bool gz : {false, true}) {
      fs::path path = dir / (std::string(c.name) + (gz ? ".gz" : ""));
      if (gz)
        write_gzip(path, c.bytes);
      else
        finch::write_file_atomic(path, c.bytes);
      std::string message = error_of(path);
      EXPECT_NE(message.find(path.string()), std::string::npos) << message;
      EXPECT_NE(message.find(c.expect), std::string::npos) << message;
    }
  }
  EXPECT_NE(error_of(dir / "missing.gz").find("missing.gz"), std::string::npos);
}

TEST(Idx, CorruptGzipIsAnError) {
  finch::test::TempDir dir;
  std::vector<uint8_t> data(4000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>((i * i) >> 3);
  write_gzip(dir / "ok.gz", idx_bytes({4000}, data));
  std::string bytes = finch::read_file(dir / "ok.gz");
  for (size_t i = bytes.size() / 3; i < bytes.size() / 3 + 16; ++i) bytes[i] = ~bytes[i];
  finch::write_file_atomic(dir / "bad.gz", bytes);
  EXPECT_NE(error_of(dir / "bad.gz").find("bad.gz"), std::string::npos);
}
