#include "finch/core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "finch/core/error.h"

namespace finch {

namespace fs = std::filesystem;

namespace {

// 0 on success, else errno. Folders may refuse fsync on some file systems (EINVAL): harmless.
int fsync_path(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return errno;
  const int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc == EINVAL ? 0 : rc;
}

fs::path folder_of(const fs::path& path) {
  return path.has_parent_path() ? path.parent_path() : fs::path(".");
}

// " (the disk is full: 0.0 MB free on FOLDER)" when it nearly is, so the reason of a failed
// write is plain whatever layer (ofstream, safetensors) reported it.
std::string disk_space_note(const fs::path& folder) {
  std::error_code ec;
  const auto space = fs::space(folder, ec);
  if (ec || space.available > (16u << 20)) return "";
  return " (the disk is full: " + std::to_string(space.available >> 10) + " KB free on " +
         folder.string() + ")";
}

}  // namespace

void write_atomic_with(const fs::path& path, const std::function<void(const fs::path&)>& writer) {
  const fs::path folder = folder_of(path);
  {
    std::error_code ec;
    fs::create_directories(folder, ec);
    if (ec) throw Error("cannot create the folder " + folder.string() + ": " + ec.message());
  }
  fs::path tmp = path;
  tmp += ".tmp-" + std::to_string(::getpid());
  const std::string unchanged =
      fs::exists(path) ? "; the previous " + path.string() + " is unchanged" : "";
  try {
    writer(tmp);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw Error("cannot write " + path.string() + ": " + e.what() + disk_space_note(folder) +
                unchanged);
  }
  if (const int err = fsync_path(tmp)) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw Error("cannot write " + path.string() + ": fsync failed: " + std::strerror(err) +
                disk_space_note(folder) + unchanged);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error("cannot move " + tmp.string() + " onto " + path.string() + ": " + ec.message());
  }
  fsync_path(folder);
}

void require_writable_folder(const fs::path& folder, const std::string& what) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec)
    throw Error("cannot create " + what + " " + folder.string() + ": " + ec.message() +
                "; choose a writable location");
  // Permissions alone do not tell (read-only mounts, root, ACLs): try a real write.
  const fs::path probe = folder / (".finch-write-test-" + std::to_string(::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0)
    throw Error("cannot write to " + what + " " + folder.string() + ": " + std::strerror(errno) +
                "; choose a writable location");
  ::close(fd);
  fs::remove(probe, ec);
}

void write_file_atomic(const fs::path& path, const std::string& bytes) {
  write_atomic_with(path, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("cannot write " + tmp.string() + ": " + std::strerror(errno));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) throw Error(std::string("write failed: ") + std::strerror(errno));
  });
}

std::string read_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error("file not found: " + path.string());
  if (fs::is_directory(path, ec))
    throw Error("expected a file but found a folder: " + path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path.string() + ": " + std::strerror(errno));
  // A regular file is read in one piece into a string of its size: streaming it through an
  // ostringstream copied a 98 MB model file about three times while the buffer grew (15% of
  // `finch predict`'s start-up). Pipes and other streams keep the growing buffer.
  const auto size = fs::is_regular_file(path, ec) ? fs::file_size(path, ec) : 0;
  if (!ec && size > 0) {
    std::string bytes(size, '\0');
    in.read(bytes.data(), static_cast<std::streamsize>(size));
    bytes.resize(static_cast<size_t>(in.gcount()));  // the file may have shrunk meanwhile
    if (in.bad()) throw Error("cannot read " + path.string() + ": " + std::strerror(errno));
    if (in.gcount() == static_cast<std::streamsize>(size) && in.peek() == EOF) return bytes;
    // It grew while being read: fall through and read the rest as a stream.
    in.clear();
    std::ostringstream rest;
    rest << in.rdbuf();
    return bytes + rest.str();
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace finch
