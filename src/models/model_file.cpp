#include "finch/models/model_file.h"

#include <torch/torch.h>

#include "finch/core/error.h"
#include "finch/core/version.h"
#include "finch/core/yaml_json.h"
#include "finch/data/transforms.h"
#include "finch/io/safetensors.h"
#include "finch/models/weight_init.h"

namespace finch::models {

namespace {

constexpr const char* kFormatTag = "finch-model";

nlohmann::json info_to_json(const ModelInfo& info) {
  return {{"version", kVersion},
          {"arch", info.arch},
          {"classes", info.classes},
          {"preprocess",
           {{"eval_transforms", info.preprocess.eval_transforms},
            {"mean", info.preprocess.mean},
            {"std", info.preprocess.std},
            {"input_size", info.preprocess.input_size}}},
          {"training", info.training},
          {"open_set", info.open_set},
          {"dtype_checks", info.dtype_checks}};
}

ModelInfo info_from_json(const nlohmann::json& j, const std::string& source) {
  try {
    ModelInfo info;
    info.finch_version = j.at("version").get<std::string>();
    info.arch = j.at("arch");
    info.classes = j.at("classes").get<std::vector<std::string>>();
    const auto& p = j.at("preprocess");
    info.preprocess.eval_transforms = p.at("eval_transforms");
    info.preprocess.mean = p.at("mean").get<std::vector<float>>();
    info.preprocess.std = p.at("std").get<std::vector<float>>();
    info.preprocess.input_size = p.at("input_size").get<int64_t>();
    if (j.contains("training")) info.training = j.at("training");
    if (j.contains("open_set")) info.open_set = j.at("open_set");
    if (j.contains("dtype_checks")) info.dtype_checks = j.at("dtype_checks");
    if (info.preprocess.mean.size() != 3 || info.preprocess.std.size() != 3) {
      throw Error("mean and std need 3 values");
    }
    if (static_cast<int64_t>(info.classes.size()) != info.arch.at("num_classes").get<int64_t>()) {
      throw Error("the class list has " + std::to_string(info.classes.size()) +
                  " names but the model has " + info.arch.at("num_classes").dump() + " outputs");
    }
    return info;
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": malformed finch metadata: " + e.what());
  } catch (const Error& e) {
    throw Error(source + ": malformed finch metadata: " + e.what());
  }
}

}  // namespace

void save_model_file(const std::filesystem::path& path, Classifier& model, const ModelInfo& info) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& [name, tensor] : state_dict(*model)) {
    tensors.emplace_back(name, tensor.detach().to(torch::kCPU).contiguous());
  }
  io::write_safetensors(path, tensors,
                        {{"format", kFormatTag}, {"finch", info_to_json(info).dump()}});
}

LoadedModel load_model_file(const std::filesystem::path& path) {
  io::TensorFile file = io::map_safetensors(path);  // copied into the model below
  const std::string source = path.string();
  auto format = file.metadata.find("format");
  auto meta = file.metadata.find("finch");
  if (format == file.metadata.end() || format->second != kFormatTag ||
      meta == file.metadata.end()) {
    throw Error(source +
                " is a safetensors file but not a finch model file (no finch metadata); "
                "to use plain pretrained weights, import them into a model first");
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(meta->second);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": finch metadata is not valid JSON: " + e.what());
  }
  LoadedModel loaded;
  loaded.info = info_from_json(j, source);
  {
    SkipRandomInit loaded_next;  // load_state_dict checks that every weight is in the file
    loaded.model = build_classifier(loaded.info.arch);
  }
  load_state_dict(*loaded.model, file.tensors, source);
  loaded.model->eval();
  return loaded;
}

data::Pipeline eval_pipeline(const Preprocess& preprocess) {
  return data::build_pipeline(json_to_yaml(preprocess.eval_transforms), preprocess.mean,
                              preprocess.std);
}

}  // namespace finch::models
