#pragma once
// A structural check of MATLAB .mat files, run before libmatio sees them (finch/io/mat.h).
#include <filesystem>

namespace finch::io {

/// Walks every data element of a level-5 .mat file (inflating compressed variables) and
/// throws finch::Error naming the file, the variable and the byte offset when a declared
/// size (an element's byte count, a matrix's dimensions, a struct's field names, a cell's
/// elements) does not fit in the bytes that hold it, or when the nesting is deeper than any
/// dataset needs. libmatio allocates what headers declare before it reads, so this bounds
/// its memory by the file's real (inflated) size. Version 7.3 files are HDF5 and are left
/// to HDF5's own checks; anything else (level 4, text, a truncated header) is refused.
void check_mat_structure(const std::filesystem::path& path);

}  // namespace finch::io
