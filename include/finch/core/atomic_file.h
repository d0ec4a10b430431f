#pragma once
// Every artifact a user relies on is written to a temporary file in the same folder,
// flushed to disk and renamed into place, so a crash never leaves a half-written file.
#include <filesystem>
#include <functional>
#include <string>

namespace finch {

/// Writes `bytes` to `path` atomically (temp file + fsync + rename).
void write_file_atomic(const std::filesystem::path& path, const std::string& bytes);

/// Calls `writer(tmp_path)` to produce the file, then fsyncs and renames it onto `path`.
/// Any failure (the writer's exception, fsync, rename) removes the temporary file and throws
/// finch::Error naming `path`, saying when the disk is full and that the previous file, if
/// any, is unchanged.
void write_atomic_with(const std::filesystem::path& path,
                       const std::function<void(const std::filesystem::path&)>& writer);

/// Creates `folder` if needed and checks that a file can be created in it, so a command fails
/// before any work instead of after hours of training; `what` names it in the message
/// ("the run folder"). Throws finch::Error saying why (read-only file system, permission).
void require_writable_folder(const std::filesystem::path& folder, const std::string& what);

/// Reads a whole file; throws finch::Error naming the path when it cannot.
std::string read_file(const std::filesystem::path& path);

}  // namespace finch
