#pragma once
// Pretrained weights from other tools: torchvision, timm and Hugging Face state dicts (in
// safetensors, or in a PyTorch zip file that LibTorch can read without running Python code),
// mapped onto a classifier's names.
#include <torch/types.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "finch/models/model.h"

namespace finch::models {

using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

/// Reads a state dict from a .safetensors file, a GGUF file (.gguf or the GGUF magic;
/// io/gguf.h), a TF.js layers model's model.json (a Keras InceptionV3 / MobileNetV2, mapped by
/// models/keras_import.h), or a PyTorch zip file (.pth / .pt) that holds a plain dict of
/// tensors or {"state_dict" | "model": dict}. A file LibTorch cannot
/// read (an OrderedDict from `torch.save(model.state_dict())`, the legacy format) throws a
/// finch::Error with the one-line conversion to safetensors.
StateDict read_weights_file(const std::filesystem::path& path);

/// What load_pretrained() did, by finch tensor name (source names for `unexpected`).
struct WeightsReport {
  std::string source;
  std::vector<std::string> loaded;
  std::vector<std::string> missing;        // in the model, not in the file
  std::vector<std::string> unexpected;     // in the file, matching nothing in the model
  std::vector<std::string> mismatched;     // same name, other shape (left at initialisation)
  std::vector<std::string> reinitialised;  // classifier tensors sized for another class count
  std::vector<std::string> adapted;        // loaded after the backbone resized them (ViT positions)
  /// A few lines for the log: counts and the first names of each list.
  std::string summary() const;
};

/// Copies `weights` into `model`. Names are mapped: "module." / "model." / "_orig_mod."
/// prefixes are dropped, torchvision / timm names go under "backbone.", and the
/// architecture's torchvision classifier ("fc", "classifier.6") becomes "head.fc". Classifier
/// tensors whose shape differs (another number of classes) keep their initialisation.
/// strict: any missing, unexpected, mismatched or re-initialised tensor is an error. Always an
/// error when no backbone tensor matches (the wrong architecture or file).
WeightsReport load_pretrained(Classifier& model, const StateDict& weights,
                              const std::string& source, bool strict);

}  // namespace finch::models
