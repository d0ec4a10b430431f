#pragma once
// `finch import`: a pretrained classifier from torchvision / timm (weights only) becomes a
// self-describing finch model file, with the evaluation preprocessing those weights expect.
#include <filesystem>
#include <string>
#include <vector>

#include "finch/models/model_file.h"
#include "finch/models/pretrained.h"

namespace finch::models {

struct ImportOptions {
  std::string arch;                    // a registered backbone, e.g. "resnet50"
  std::filesystem::path weights;       // .safetensors, .gguf, a readable .pth, TF.js model.json
  std::filesystem::path classes_file;  // one class name per line; empty = class_0, class_1, ...
  int64_t input_size = 0;        // crop side; 0 = the architecture's (299 Inception, else 224)
  std::vector<float> mean, std;  // empty = what the torchvision weights expect
};

struct ImportedModel {
  LoadedModel model;  // eval mode, with info (classes, preprocess) filled in
  WeightsReport report;
};

/// Builds the architecture with the file's class count and loads every tensor strictly.
/// A TF.js layers model (models/keras_import.h) brings its own architecture, head and input
/// size; it must match `arch`. Preprocessing recorded for it: resize to input_size x input_size,
/// mean = std = 0.5 (Keras' preprocess_input for these networks; --mean / --std override).
/// Otherwise: resize the shorter side to round(input_size / 0.875) with PIL's
/// antialiased bilinear filter, center crop input_size, ImageNet mean/std (Inception-v3:
/// mean = std = 0.5, equivalent to torchvision's transform_input).
ImportedModel import_classifier(const ImportOptions& options);

}  // namespace finch::models
