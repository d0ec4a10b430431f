// RAII wrapper over libmatio (see finch/io/mat.h). matio keeps the data of a variable read
// with Mat_VarRead in memory, so parts (fields, cells) are plain pointers into it, kept alive
// by a shared owner.
#include "finch/io/mat.h"

#include <matio.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>

#include "finch/core/error.h"
#include "mat_structure.h"

namespace finch::io {

namespace {

const char* class_name(matio_classes c) {
  switch (c) {
    case MAT_C_CELL:
      return "cell";
    case MAT_C_STRUCT:
      return "struct";
    case MAT_C_OBJECT:
      return "object";
    case MAT_C_CHAR:
      return "char";
    case MAT_C_SPARSE:
      return "sparse";
    case MAT_C_DOUBLE:
      return "double";
    case MAT_C_SINGLE:
      return "single";
    case MAT_C_INT8:
      return "int8";
    case MAT_C_UINT8:
      return "uint8";
    case MAT_C_INT16:
      return "int16";
    case MAT_C_UINT16:
      return "uint16";
    case MAT_C_INT32:
      return "int32";
    case MAT_C_UINT32:
      return "uint32";
    case MAT_C_INT64:
      return "int64";
    case MAT_C_UINT64:
      return "uint64";
    case MAT_C_FUNCTION:
      return "function";
    default:
      return "empty";
  }
}

template <typename T>
void append(const void* data, size_t n, std::vector<double>& out) {
  const T* p = static_cast<const T*>(data);
  for (size_t i = 0; i < n; ++i) out.push_back(static_cast<double>(p[i]));
}

// Bytes per element of a numeric class as matio stores it after reading.
size_t class_bytes(matio_classes c) {
  switch (c) {
    case MAT_C_DOUBLE:
    case MAT_C_INT64:
    case MAT_C_UINT64:
      return 8;
    case MAT_C_SINGLE:
    case MAT_C_INT32:
    case MAT_C_UINT32:
      return 4;
    case MAT_C_INT16:
    case MAT_C_UINT16:
      return 2;
    default:
      return 1;
  }
}

// matio's data buffer holds `nbytes`; a damaged file can declare more elements than it read
// (found by cars_fuzz: a UTF-16 string read past its buffer).
void require_elements(const matvar_t* var, size_t n, size_t element_bytes,
                      const std::string& context) {
  if (element_bytes == 0 || var->nbytes / element_bytes < n)
    throw Error(context + ": the file declares " + std::to_string(n) + " elements but holds " +
                std::to_string(var->nbytes) + " bytes of data (a damaged file)");
}

void append_utf8(uint32_t c, std::string& out) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

std::string dims_text(const matvar_t* v) {
  std::string s;
  for (int i = 0; i < v->rank; ++i) s += (i ? "x" : "") + std::to_string(v->dims[i]);
  return s.empty() ? "0x0" : s;
}

}  // namespace

size_t MatVar::size() const {
  if (var_->rank == 0) return 0;
  size_t n = 1;
  for (int i = 0; i < var_->rank; ++i) n *= var_->dims[i];
  return n;
}

std::vector<size_t> MatVar::dims() const {
  return std::vector<size_t>(var_->dims, var_->dims + var_->rank);
}

bool MatVar::is_struct() const { return var_->class_type == MAT_C_STRUCT; }
bool MatVar::is_cell() const { return var_->class_type == MAT_C_CELL; }
bool MatVar::is_char() const { return var_->class_type == MAT_C_CHAR; }
bool MatVar::is_numeric() const {
  return var_->class_type >= MAT_C_DOUBLE && var_->class_type <= MAT_C_UINT64;
}

void MatVar::fail(const std::string& expected) const {
  throw Error(context_ + ": expected " + expected + ", found a " + dims_text(var_) + " " +
              class_name(var_->class_type) + " array");
}

std::vector<double> MatVar::numbers() const {
  if (!is_numeric() || var_->isComplex) fail("a real numeric array");
  const size_t n = size();
  std::vector<double> out;
  out.reserve(n);
  if (n == 0) return out;
  if (var_->data == nullptr) throw Error(context_ + ": numeric data could not be read");
  require_elements(var_, n, class_bytes(var_->class_type), context_);
  switch (var_->class_type) {
    case MAT_C_DOUBLE:
      append<double>(var_->data, n, out);
      break;
    case MAT_C_SINGLE:
      append<float>(var_->data, n, out);
      break;
    case MAT_C_INT8:
      append<int8_t>(var_->data, n, out);
      break;
    case MAT_C_UINT8:
      append<uint8_t>(var_->data, n, out);
      break;
    case MAT_C_INT16:
      append<int16_t>(var_->data, n, out);
      break;
    case MAT_C_UINT16:
      append<uint16_t>(var_->data, n, out);
      break;
    case MAT_C_INT32:
      append<int32_t>(var_->data, n, out);
      break;
    case MAT_C_UINT32:
      append<uint32_t>(var_->data, n, out);
      break;
    case MAT_C_INT64:
      append<int64_t>(var_->data, n, out);
      break;
    case MAT_C_UINT64:
      append<uint64_t>(var_->data, n, out);
      break;
    default:
      fail("a real numeric array");
  }
  return out;
}

double MatVar::number() const {
  if (!is_numeric() || size() != 1) fail("one number (a 1x1 numeric array)");
  return numbers()[0];
}

std::string MatVar::text() const {
  if (!is_char()) fail("a char string");
  const size_t n = size();
  if (n == 0) return "";
  if (var_->rank > 2 || var_->dims[0] != 1) fail("a char string (one row)");
  if (var_->data == nullptr) throw Error(context_ + ": char data could not be read");
  require_elements(var_, n, var_->data_size, context_);
  std::string out;
  // matio hands v5 text over as UTF-8/bytes or UTF-16 code units depending on how it was
  // written; the element width tells which.
  if (var_->data_size == 1) {
    out.assign(static_cast<const char*>(var_->data), n);
  } else if (var_->data_size == 2) {
    const auto* p = static_cast<const uint16_t*>(var_->data);
    for (size_t i = 0; i < n; ++i) {
      uint32_t c = p[i];
      if (c >= 0xD800 && c < 0xDC00 && i + 1 < n && p[i + 1] >= 0xDC00 && p[i + 1] < 0xE000)
        c = 0x10000 + ((c - 0xD800) << 10) + (p[++i] - 0xDC00);
      append_utf8(c, out);
    }
  } else if (var_->data_size == 4) {
    const auto* p = static_cast<const uint32_t*>(var_->data);
    for (size_t i = 0; i < n; ++i) append_utf8(p[i], out);
  } else {
    throw Error(context_ + ": unsupported char encoding (" + std::to_string(var_->data_size) +
                " bytes per character)");
  }
  return out;
}

std::vector<std::string> MatVar::strings() const {
  if (!is_cell()) fail("a cell array of strings");
  std::vector<std::string> out;
  const size_t n = size();
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    MatVar c = cell(i);
    // Stanford Dogs' lists hold each path as a 1x1 cell around the string.
    while (c.is_cell() && c.size() == 1) c = c.cell(0);
    if (!c.is_char()) c.fail("a char string");
    out.push_back(c.text());
  }
  return out;
}

std::vector<std::string> MatVar::field_names() const {
  if (!is_struct()) fail("a struct array");
  std::vector<std::string> names;
  const unsigned n = Mat_VarGetNumberOfFields(var_);
  char* const* raw = Mat_VarGetStructFieldnames(var_);
  for (unsigned i = 0; i < n && raw != nullptr; ++i) names.emplace_back(raw[i]);
  return names;
}

void MatVar::require_fields(const std::vector<std::string>& fields) const {
  const std::vector<std::string> have = field_names();
  std::string missing;
  for (const auto& f : fields)
    if (std::find(have.begin(), have.end(), f) == have.end())
      missing += (missing.empty() ? "" : ", ") + f;
  if (missing.empty()) return;
  std::string found;
  for (const auto& f : have) found += (found.empty() ? "" : ", ") + f;
  throw Error(context_ + ": struct has no field " + missing + " (expected fields " +
              [&] {
                std::string all;
                for (const auto& f : fields) all += (all.empty() ? "" : ", ") + f;
                return all;
              }() +
              "; found " + (found.empty() ? "none" : found) + ")");
}

MatVar MatVar::field(size_t index, const std::string& name) const {
  if (!is_struct()) fail("a struct array");
  if (index >= size())
    throw Error(context_ + ": element " + std::to_string(index + 1) + " of " +
                std::to_string(size()) + " does not exist");
  matvar_t* f = Mat_VarGetStructFieldByName(var_, name.c_str(), index);
  const std::string where =
      context_ + ", element " + std::to_string(index + 1) + ", field '" + name + "'";
  if (f == nullptr) throw Error(where + ": field missing (or element unreadable)");
  return MatVar(owner_, f, where);
}

MatVar MatVar::cell(size_t index) const {
  if (!is_cell()) fail("a cell array");
  if (index >= size())
    throw Error(context_ + ": cell " + std::to_string(index + 1) + " of " + std::to_string(size()) +
                " does not exist");
  matvar_t* c = Mat_VarGetCell(var_, static_cast<int>(index));
  const std::string where = context_ + ", cell " + std::to_string(index + 1);
  if (c == nullptr) throw Error(where + ": cell could not be read");
  return MatVar(owner_, c, where);
}

MatFile::MatFile(const std::filesystem::path& path) : path_(path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw Error("MATLAB file not found: " + path.string());
  // libmatio trusts the sizes in a file's headers (found by cars_fuzz: Mat_GetDir allocating
  // 1.8 GB for a 2 KB file); every one of them is checked against the bytes first.
  check_mat_structure(path);
  mat_ = Mat_Open(path.c_str(), MAT_ACC_RDONLY);
  if (mat_ == nullptr)
    throw Error(path.string() +
                ": not a readable MATLAB .mat file (v4, v5 or v7.3); is it truncated or "
                "an HTML error page saved by a failed download?");
}

MatFile::~MatFile() {
  if (mat_ != nullptr) Mat_Close(mat_);
}

std::vector<std::string> MatFile::variable_names() const {
  size_t n = 0;
  char** names = Mat_GetDir(mat_, &n);
  std::vector<std::string> out;
  for (size_t i = 0; i < n && names != nullptr; ++i)
    if (names[i] != nullptr) out.emplace_back(names[i]);
  return out;
}

bool MatFile::has(const std::string& name) const {
  const auto names = variable_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

MatVar MatFile::read(const std::string& name) const {
  const std::string context = path_.string() + ": variable '" + name + "'";
  if (!has(name)) {
    std::string found;
    for (const auto& v : variable_names()) found += (found.empty() ? "" : ", ") + v;
    throw Error(context + " not found (variables in the file: " + (found.empty() ? "none" : found) +
                ")");
  }
  // libmatio allocates whatever size a variable's header declares before it reads the data,
  // so a damaged or hostile header (a 100000 x 100000 matrix in a 200-byte file) would ask for
  // gigabytes. The header alone says how much: refuse more than the file can hold, even
  // compressed (zlib expands at most about 1032:1), or more than 2 GiB.
  matvar_t* info = Mat_VarReadInfo(mat_, name.c_str());
  if (info == nullptr) throw Error(context + " could not be read (corrupt or unsupported)");
  bool overflow = false;
  uint64_t elements = 1;
  for (int d = 0; d < info->rank; ++d)
    overflow = overflow ||
               __builtin_mul_overflow(elements, static_cast<uint64_t>(info->dims[d]), &elements);
  const size_t declared = Mat_VarGetSize(info);  // 0 when matio's own product overflows
  const bool has_data = info->class_type != MAT_C_EMPTY && elements > 0;
  Mat_VarFree(info);
  std::error_code ec;
  const uint64_t file_bytes = std::filesystem::file_size(path_, ec);
  const uint64_t limit = std::min<uint64_t>(uint64_t{2} << 30, file_bytes * 1032 + (1 << 20));
  if (overflow || (has_data && declared == 0) || declared > limit)
    throw Error(context + " declares " +
                (overflow || declared == 0 ? std::string("an impossible number of")
                                           : std::to_string(declared)) +
                " bytes of data in a file of " + std::to_string(file_bytes) +
                " bytes: the file is damaged (or not what it claims to be)");
  matvar_t* var = Mat_VarRead(mat_, name.c_str());
  if (var == nullptr) throw Error(context + " could not be read (corrupt or unsupported)");
  std::shared_ptr<matvar_t> owner(var, Mat_VarFree);
  return MatVar(owner, var, context);
}

}  // namespace finch::io
