#pragma once
// Keras models saved as TF.js layers models (io/tfjs.h) -> finch classifiers with torchvision's
// names. Recognised backbones: keras.applications' InceptionV3 and MobileNetV2 (alpha 1.0),
// whose layers are those of torchvision's inception_v3 / mobilenet_v2 created in the same
// order; any stack of Dense layers on the pooled features becomes the linear head
// (`model.linear.hidden` + `fc`).
//
// Conversions: conv kernels HWIO -> OIHW, depthwise H W C 1 -> C 1 H W, Dense (in, out) ->
// (out, in); BatchNorm without scale / center gets weight 1 / bias 0, and its moving variance
// absorbs the difference of epsilons (Keras 1e-3, torchvision's MobileNetV2 1e-5:
// var + 1e-3 - 1e-5 under sqrt(var + 1e-5) is exactly Keras' normalisation). The model is built
// with `model.tf_padding: true` so that it computes what Keras computes.
#include <string>
#include <vector>

#include "finch/io/tfjs.h"
#include "finch/models/model.h"
#include "finch/models/pretrained.h"

namespace finch::models {

struct KerasConversion {
  /// backbone, head: linear, linear.hidden, num_classes (0 when the model ends at the
  /// backbone), input_size (the InputLayer's), tf_padding: true.
  ModelSpec spec;
  /// finch names: "backbone.<torchvision name>", "head.mlp.<i>.*", "head.fc.*".
  StateDict weights;
  /// What was mapped, for the log ("Keras InceptionV3: 94 convolutions, 94 BatchNorms, 3 Dense
  /// -> inception_v3 + linear head [256, 128] -> 5 classes").
  std::string summary;
};

/// Maps a Keras InceptionV3 / MobileNetV2 (+ Dense layers) onto finch's names; throws
/// finch::Error naming the first layer that does not fit (another architecture, another width).
KerasConversion convert_keras(const io::TfjsModel& model, const std::string& source);

}  // namespace finch::models
