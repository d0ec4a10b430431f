// SHA-256 against the FIPS 180-4 example digests and the block-boundary cases.
#include "finch/core/sha256.h"

#include <gtest/gtest.h>

#include "finch/core/error.h"
#include "test_support.h"

TEST(Sha256, FipsExamples) {
  EXPECT_EQ(finch::sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(finch::sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(finch::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(finch::sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, FileEqualsBytesAcrossReadBlocks) {
  finch::test::TempDir dir;
  // Longer than the 1 MiB read block, not a multiple of the 64-byte SHA block.
  std::string bytes;
  for (int i = 0; i < (1 << 20) + 1234; ++i) bytes += static_cast<char>(i * 7 + 3);
  finch::test::write_text(dir / "f.bin", bytes);
  EXPECT_EQ(finch::sha256_file(dir / "f.bin"), finch::sha256_hex(bytes));
  EXPECT_THROW(finch::sha256_file(dir / "missing.bin"), finch::Error);
}
