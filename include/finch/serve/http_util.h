#pragma once
// Small pieces of the HTTP layer that are tested on their own.
#include <optional>
#include <string>

namespace finch::serve {

/// RFC 4648 base64 (standard alphabet; padding optional; whitespace and a "data:...;base64,"
/// prefix ignored) -> bytes; nullopt for any other character or a bad length.
std::optional<std::string> base64_decode(const std::string& text);

/// The OpenAPI 3.0 description of the endpoints (GET /v1/openapi.json).
std::string openapi_json();

}  // namespace finch::serve
