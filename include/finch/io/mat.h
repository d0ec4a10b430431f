#pragma once
// MATLAB .mat files (Stanford Cars, Stanford Dogs, Oxford Flowers-102 annotations), read only
// through libmatio: v5 files and v7.3 (HDF5) files go through the same Mat_Open. Every error
// names the file and the variable (and field) and says what was expected.
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

struct _mat_t;
struct matvar_t;

namespace finch::io {

/// One variable of a .mat file, or a part of one (a struct field, a cell): owns the whole
/// variable it came from, so parts stay valid as long as any of them lives.
class MatVar {
 public:
  /// "PATH: variable 'annotations'" (plus field and element for parts), for messages.
  const std::string& context() const { return context_; }
  /// Number of elements (product of the dimensions).
  size_t size() const;
  /// The dimensions (rows, columns, ...).
  std::vector<size_t> dims() const;
  bool is_struct() const;
  bool is_cell() const;
  bool is_char() const;
  bool is_numeric() const;

  /// Every element as a double, in MATLAB (column-major) order, whatever the numeric class
  /// (double, single, int*, uint*, logical). Throws unless the variable is numeric.
  std::vector<double> numbers() const;
  /// The one number of a 1x1 numeric variable.
  double number() const;
  /// A char array as text (1xN; an MxN char matrix must have one row).
  std::string text() const;
  /// A cell array whose elements are char strings (or 1x1 cells holding one), in order.
  std::vector<std::string> strings() const;

  /// Field names of a struct (array).
  std::vector<std::string> field_names() const;
  /// Throws naming the file, variable and every missing field unless the struct has them all.
  void require_fields(const std::vector<std::string>& fields) const;
  /// Field `field` of struct-array element `index` (0-based).
  MatVar field(size_t index, const std::string& field) const;
  /// Element `index` (0-based) of a cell array.
  MatVar cell(size_t index) const;

 private:
  friend class MatFile;
  MatVar(std::shared_ptr<matvar_t> owner, matvar_t* var, std::string context)
      : owner_(std::move(owner)), var_(var), context_(std::move(context)) {}
  [[noreturn]] void fail(const std::string& expected) const;
  std::shared_ptr<matvar_t> owner_;
  matvar_t* var_;
  std::string context_;
};

/// An open .mat file (closed by the destructor).
class MatFile {
 public:
  /// Throws finch::Error naming the path when it is missing or not a MATLAB file.
  explicit MatFile(const std::filesystem::path& path);
  ~MatFile();
  MatFile(const MatFile&) = delete;
  MatFile& operator=(const MatFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  /// Names of the variables in the file, in file order.
  std::vector<std::string> variable_names() const;
  bool has(const std::string& name) const;
  /// Reads variable `name`; throws naming the file and listing its variables when absent.
  MatVar read(const std::string& name) const;

 private:
  std::filesystem::path path_;
  _mat_t* mat_ = nullptr;
};

}  // namespace finch::io
