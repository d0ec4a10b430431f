#pragma once
namespace finch {
/// Semantic version of the library and of the model-file format it writes.
inline constexpr const char* kVersion = "0.1.0";
}  // namespace finch
