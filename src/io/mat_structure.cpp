// The level-5 MAT-file layout (MathWorks, "MAT-File Format", 2023): a 128-byte header, then
// data elements, each an 8-byte tag (type, byte count) or a 4-byte "small element" tag with
// up to 4 bytes of data, padded to 8 bytes inside a matrix. A variable is a miMATRIX element
// (array flags, dimensions, name, then the data or the nested cells / struct fields), or a
// miCOMPRESSED element holding one miMATRIX deflated with zlib.
#include "mat_structure.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "finch/core/error.h"

namespace finch::io {

namespace {

enum : uint32_t {
  miINT8 = 1,
  miUINT8 = 2,
  miINT16 = 3,
  miUINT16 = 4,
  miINT32 = 5,
  miUINT32 = 6,
  miSINGLE = 7,
  miDOUBLE = 9,
  miINT64 = 12,
  miUINT64 = 13,
  miMATRIX = 14,
  miCOMPRESSED = 15,
  miUTF8 = 16,
  miUTF16 = 17,
  miUTF32 = 18,
};

enum : uint32_t {
  kCellClass = 1,
  kStructClass = 2,
  kCharClass = 4,
  kFirstNumeric = 6,
  kLastNumeric = 15
};
constexpr uint32_t kComplexFlag = 0x0800;

// Stanford Dogs nests cells three deep; anything far deeper is damage (and would recurse
// libmatio's readers off the stack).
constexpr int kMaxDepth = 32;
// A compressed variable inflates to at most this much (zlib's best ratio is about 1032:1).
constexpr uint64_t kMaxInflated = uint64_t{2} << 30;

size_t type_bytes(uint32_t type) {
  switch (type) {
    case miINT8:
    case miUINT8:
    case miUTF8:
      return 1;
    case miINT16:
    case miUINT16:
    case miUTF16:
      return 2;
    case miINT32:
    case miUINT32:
    case miSINGLE:
    case miUTF32:
      return 4;
    case miDOUBLE:
    case miINT64:
    case miUINT64:
      return 8;
    default:
      return 0;
  }
}

// A run of bytes and where it starts, for messages: a file offset, or an offset into the
// inflated data of the compressed variable at `compressed_at`.
struct Bytes {
  const unsigned char* data;
  size_t size;
  uint64_t offset;
  int64_t compressed_at = -1;
};

struct Element {
  uint32_t type = 0;
  Bytes tag{nullptr, 0, 0};  // from the tag on: where messages about the element point
  Bytes body{nullptr, 0, 0};
  size_t consumed = 0;  // tag, data and padding
};

class Walker {
 public:
  Walker(std::string file, bool swap) : file_(std::move(file)), swap_(swap) {}

  void variables(const std::vector<unsigned char>& bytes) {
    size_t at = 128;
    while (bytes.size() - at >= 8) {
      variable_ = "";
      const Bytes rest{bytes.data() + at, bytes.size() - at, at};
      const Element e = element(rest, /*padded=*/false);
      if (e.type == miMATRIX) {
        matrix(e.body, 0);
      } else if (e.type == miCOMPRESSED) {
        compressed(e.body);
      } else {
        fail(rest, "a data element of type " + std::to_string(e.type) +
                       " where a variable (miMATRIX or miCOMPRESSED) belongs");
      }
      at += e.consumed;
    }
  }

 private:
  [[noreturn]] void fail(const Bytes& where, const std::string& what) const {
    std::string place = "byte " + std::to_string(where.offset);
    if (where.compressed_at >= 0)
      place += " of the compressed variable at byte " + std::to_string(where.compressed_at);
    throw Error(file_ + ": " + (variable_.empty() ? "" : "variable '" + variable_ + "', ") + place +
                ": " + what +
                " (a damaged .mat file; download it again, or re-save it from MATLAB)");
  }

  uint32_t u32(const unsigned char* p) const {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return swap_ ? __builtin_bswap32(v) : v;
  }

  static Bytes advance(const Bytes& b, size_t n) {
    return {b.data + n, b.size - n, b.offset + n, b.compressed_at};
  }

  // The next element of `b`: a small element (type and count in one word) or a full tag.
  Element element(const Bytes& b, bool padded) const {
    if (b.size < 8)
      fail(b, "a data element's tag is cut off (" + std::to_string(b.size) + " bytes left)");
    const uint32_t first = u32(b.data);
    Element e;
    e.tag = b;
    if ((first >> 16) != 0) {
      e.type = first & 0xFFFF;
      const uint32_t n = first >> 16;
      if (n > 4)
        fail(b, "a small data element declares " + std::to_string(n) + " bytes (at most 4 fit)");
      e.body = {b.data + 4, n, b.offset + 4, b.compressed_at};
      e.consumed = 8;
      return e;
    }
    e.type = first;
    const uint64_t n = u32(b.data + 4);
    if (n > b.size - 8)
      fail(b, "a data element declares " + std::to_string(n) + " bytes where " +
                  std::to_string(b.size - 8) + " remain");
    e.body = {b.data + 8, static_cast<size_t>(n), b.offset + 8, b.compressed_at};
    const uint64_t with_padding = padded ? (n + 7) / 8 * 8 : n;
    e.consumed = static_cast<size_t>(std::min<uint64_t>(8 + with_padding, b.size));
    return e;
  }

  // The next element of `b`, which must be of `type` (any type when 0); `b` moves past it.
  Element take(Bytes& b, uint32_t type, const char* what) const {
    const Element e = element(b, /*padded=*/true);
    if (type != 0 && e.type != type)
      fail(b, std::string(what) + " has data type " + std::to_string(e.type) + " (expected " +
                  std::to_string(type) + ")");
    b = advance(b, e.consumed);
    return e;
  }

  void compressed(const Bytes& b) {
    z_stream z{};
    if (inflateInit(&z) != Z_OK) throw Error(file_ + ": zlib cannot start inflating");
    struct End {
      z_stream* z;
      ~End() { inflateEnd(z); }
    } end{&z};
    z.next_in = const_cast<unsigned char*>(b.data);
    z.avail_in = static_cast<uInt>(b.size);
    // The tag first: it says how much the variable inflates to.
    std::vector<unsigned char> out(8);
    auto inflate_into = [&](size_t from) {
      z.next_out = out.data() + from;
      z.avail_out = static_cast<uInt>(out.size() - from);
      while (z.avail_out > 0) {
        const int rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END && z.avail_out > 0)
          fail(b, "the compressed variable ends after " + std::to_string(z.total_out) + " of " +
                      std::to_string(out.size()) + " bytes");
        if (rc != Z_OK && rc != Z_STREAM_END)
          fail(b, std::string("the compressed variable does not inflate (zlib: ") +
                      (z.msg != nullptr ? z.msg : "error " + std::to_string(rc)) + ")");
        if (rc == Z_STREAM_END) break;
      }
    };
    inflate_into(0);
    if (u32(out.data()) != miMATRIX)
      fail(b, "a compressed variable that does not hold a matrix (type " +
                  std::to_string(u32(out.data())) + ")");
    const uint64_t n = u32(out.data() + 4);
    const uint64_t most = std::min<uint64_t>(kMaxInflated, uint64_t{b.size} * 1032 + 64);
    if (n > most)
      fail(b, "a compressed variable of " + std::to_string(b.size) + " bytes declares " +
                  std::to_string(n) + " bytes inflated (more than zlib can produce from it)");
    out.resize(static_cast<size_t>(8 + n));
    inflate_into(8);
    matrix({out.data() + 8, static_cast<size_t>(n), 8, static_cast<int64_t>(b.offset - 8)}, 0);
  }

  // A miMATRIX element's body: array flags, dimensions, name, then what the class holds.
  void matrix(Bytes b, int depth) {
    if (b.size == 0) return;  // an empty cell element
    if (depth > kMaxDepth)
      fail(b, "cells or structs nested more than " + std::to_string(kMaxDepth) + " deep");
    const Element flags = take(b, miUINT32, "the array flags");
    if (flags.body.size != 8)
      fail(flags.tag, "array flags of " + std::to_string(flags.body.size) + " bytes (expected 8)");
    const uint32_t flag_word = u32(flags.body.data);
    const uint32_t cls = flag_word & 0xFF;

    const Element dims = take(b, miINT32, "the dimensions");
    if (dims.body.size % 4 != 0 || dims.body.size < 8 || dims.body.size > 4 * 32)
      fail(dims.tag,
           std::to_string(dims.body.size) + " bytes of dimensions (expected 2 to 32 int32 values)");
    uint64_t count = 1;
    bool overflow = false;
    for (size_t k = 0; k < dims.body.size; k += 4) {
      const auto d = static_cast<int32_t>(u32(dims.body.data + k));
      if (d < 0) fail(dims.tag, "a negative dimension (" + std::to_string(d) + ")");
      overflow = overflow || __builtin_mul_overflow(count, static_cast<uint64_t>(d), &count);
    }
    if (overflow) fail(dims.tag, "dimensions whose product overflows 64 bits");

    const Element name = take(b, 0, "the array name");
    if (name.type != miINT8 && name.type != miUINT8)
      fail(name.tag, "the array name has data type " + std::to_string(name.type));
    if (depth == 0) variable_.assign(reinterpret_cast<const char*>(name.body.data), name.body.size);

    if (cls == kCellClass) {
      if (count > b.size / 8)
        fail(b, std::to_string(count) + " cells declared where " + std::to_string(b.size) +
                    " bytes remain (each needs at least 8)");
      for (uint64_t i = 0; i < count; ++i) matrix(take(b, miMATRIX, "a cell").body, depth + 1);
    } else if (cls == kStructClass) {
      const Element length = take(b, miINT32, "the field name length");
      if (length.body.size != 4) fail(length.tag, "a field name length that is not one int32");
      const uint32_t width = u32(length.body.data);
      const Element names = take(b, 0, "the field names");
      if (names.type != miINT8 && names.type != miUINT8)
        fail(names.tag, "field names of data type " + std::to_string(names.type));
      if (width == 0 || width > 4096 || names.body.size % width != 0)
        fail(names.tag, std::to_string(names.body.size) + " bytes of field names in slots of " +
                            std::to_string(width));
      const uint64_t fields = names.body.size / width;
      uint64_t values = 0;
      if (__builtin_mul_overflow(count, fields, &values) || values > b.size / 8)
        fail(b, std::to_string(count) + " struct elements of " + std::to_string(fields) +
                    " fields declared where " + std::to_string(b.size) + " bytes remain");
      for (uint64_t i = 0; i < values; ++i)
        matrix(take(b, miMATRIX, "a struct field").body, depth + 1);
    } else if (cls == kCharClass || (cls >= kFirstNumeric && cls <= kLastNumeric)) {
      const int parts = (flag_word & kComplexFlag) != 0 ? 2 : 1;
      for (int part = 0; part < parts; ++part) {
        if (count == 0 && b.size == 0) break;  // MATLAB may omit the data of an empty array
        const Element data = take(b, 0, "the data");
        const size_t width = type_bytes(data.type);
        if (width == 0)
          fail(data.tag, "numeric data of unknown data type " + std::to_string(data.type));
        // libmatio allocates count x the class's width: bound count by what is stored.
        if (data.body.size / width < count)
          fail(data.tag, std::to_string(count) + " elements declared but the data holds " +
                             std::to_string(data.body.size) + " bytes");
      }
    } else {
      fail(flags.tag, "array class " + std::to_string(cls) +
                          " (finch reads numeric, char, logical, cell and struct arrays; sparse "
                          "arrays, objects and functions are not part of any dataset it knows)");
    }
  }

  std::string file_;
  bool swap_;
  std::string variable_;  // the top-level variable being walked, once its name is known
};

}  // namespace

void check_mat_structure(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path.string());
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)),
                                         std::istreambuf_iterator<char>());
  const std::string not_mat =
      path.string() +
      ": not a readable MATLAB .mat file (level 5 or v7.3 expected; is it truncated or an HTML "
      "error page saved by a failed download?)";
  if (bytes.size() < 128) throw Error(not_mat);
  // The endian indicator is "MI" written as a 16-bit number: "IM" in a little-endian file.
  bool swap = false;
  if (bytes[126] == 'I' && bytes[127] == 'M')
    swap = false;
  else if (bytes[126] == 'M' && bytes[127] == 'I')
    swap = true;
  else
    throw Error(not_mat);
  const unsigned version = swap ? (bytes[124] << 8 | bytes[125]) : (bytes[125] << 8 | bytes[124]);
  if (version == 0x0200) {
    static const char kHdf5Signature[] = "\x89HDF\r\n\x1a\n";
    if (bytes.size() < 520 || std::memcmp(bytes.data() + 512, kHdf5Signature, 8) != 0)
      throw Error(path.string() + ": a MATLAB v7.3 header without the HDF5 file after it");
    return;
  }
  if (version != 0x0100) throw Error(not_mat);
  Walker(path.string(), swap).variables(bytes);
}

}  // namespace finch::io
