#include "finch/serve/http_util.h"

#include <nlohmann/json.hpp>

namespace finch::serve {

std::optional<std::string> base64_decode(const std::string& text) {
  size_t begin = 0;
  if (text.rfind("data:", 0) == 0) {
    const size_t comma = text.find(',');
    if (comma == std::string::npos) return std::nullopt;
    begin = comma + 1;
  }
  std::string out;
  uint32_t buffer = 0;
  int bits = 0, padding = 0, symbols = 0;
  for (size_t i = begin; i < text.size(); ++i) {
    const char c = text[i];
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '+')
      v = 62;
    else if (c == '/')
      v = 63;
    else if (c == '=') {
      ++padding;
      ++symbols;
      continue;
    } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
      continue;
    else
      return std::nullopt;
    if (padding > 0) return std::nullopt;  // data after padding
    ++symbols;
    buffer = (buffer << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  if (padding > 2 || (padding > 0 && symbols % 4 != 0)) return std::nullopt;
  if ((symbols - padding) % 4 == 1) return std::nullopt;  // 6 stray bits
  return out;
}

std::string openapi_json() {
  using nlohmann::json;
  const json image_body{
      {"required", true},
      {"content",
       {{"image/*", {{"schema", {{"type", "string"}, {"format", "binary"}}}}},
        {"multipart/form-data",
         {{"schema",
           {{"type", "object"},
            {"additionalProperties", {{"type", "string"}, {"format", "binary"}}}}}}},
        {"application/json",
         {{"schema",
           {{"type", "object"},
            {"properties",
             {{"image", {{"type", "string"}, {"format", "byte"}}},
              {"images",
               {{"type", "array"}, {"items", {{"type", "string"}, {"format", "byte"}}}}}}}}}}}}}};
  const json errors{
      {"400", {{"description", "bad query parameter or JSON body"}}},
      {"401", {{"description", "missing or wrong bearer token"}}},
      {"413", {{"description", "body larger than --max-body-mb"}}},
      {"415", {{"description", "unsupported Content-Type"}}},
      {"422", {{"description", "not an image, truncated, empty, or above --max-pixels"}}},
      {"503", {{"description", "queue full or timed out (Retry-After)"}}}};
  auto post = [&](const std::string& summary, const json& params) {
    json responses = errors;
    responses["200"] = {{"description",
                         "JSON records as `finch predict --json` (one object "
                         "for one image, {\"results\": [...]} for several)"}};
    return json{{"post",
                 {{"summary", summary},
                  {"parameters", params},
                  {"requestBody", image_body},
                  {"responses", responses}}}};
  };
  auto query = [](const std::string& name, const std::string& type, const std::string& what) {
    return json{{"name", name},
                {"in", "query"},
                {"required", false},
                {"schema", {{"type", type}}},
                {"description", what}};
  };
  auto get = [](const std::string& summary) {
    return json{{"get", {{"summary", summary}, {"responses", {{"200", {{"description", "OK"}}}}}}}};
  };
  json spec{
      {"openapi", "3.0.3"},
      {"info", {{"title", "finch serve"}, {"version", "1"}}},
      {"paths",
       {{"/v1/predict", post("Top-k classes of each image",
                             json::array({query("topk", "integer", "classes per image (5)")}))},
        {"/v1/embed", post("L2-normalised embedding of each image", json::array())},
        {"/v1/search", post("Nearest gallery items (needs --gallery)",
                            json::array({query("k", "integer", "neighbours (10)")}))},
        {"/v1/explain",
         post("Grad-CAM overlay (PNG) or, with format=json, base64 PNG + box",
              json::array({query("class", "string", "class to explain (default: predicted)"),
                           query("format", "string", "png | json")}))},
        {"/v1/model", get("Architecture, classes, preprocessing, SHA-256")},
        {"/v1/admin/reload", json{{"post",
                                   {{"summary", "Reload the model file (token required)"},
                                    {"responses",
                                     {{"200", {{"description", "reloaded"}}},
                                      {"409", {{"description", "refused; old model serves"}}}}}}}}},
        {"/healthz", get("Process alive")},
        {"/readyz", get("Model loaded and queue below its limit (503 otherwise)")},
        {"/metrics", get("Prometheus text format")},
        {"/", get("The web page")}}}};
  return spec.dump();
}

}  // namespace finch::serve
