// Precompiled header: the heavy, stable third-party headers most translation units need.
#pragma once
#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>
#include <fmt/format.h>
#include <filesystem>
#include <string>
#include <vector>
