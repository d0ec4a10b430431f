#pragma once
// Attention blocks inserted after backbone stages (`model.attention: {type: se | cbam,
// stages: [-2, -1], reduction: 16}`). Each is a gated residual, y = x + gamma * (block(x) - x),
// with gamma initialised to 0: a pretrained backbone computes exactly what it did before at
// step 0, and gamma = 1 is the published block.
#include <memory>
#include <string>

#include "finch/models/model.h"

namespace finch::models {

/// Squeeze-and-excitation (Hu et al., CVPR 2018) or CBAM (Woo et al., ECCV 2018) for a map
/// with `channels` channels; throws finch::Error for an unknown type.
std::shared_ptr<StageBlockImpl> make_stage_block(const std::string& type, int64_t channels,
                                                 int64_t reduction);

/// A stage number from a config list (`key`, for the message): 1-based, or negative counting
/// from the end (-1 = the last of `count`); throws finch::Error when there is no such stage.
size_t resolve_stage_number(int64_t listed, int64_t count, const std::string& key);

/// Inserts the blocks `spec["attention"]` asks for into `backbone` (nothing when absent or
/// type none).
void insert_attention_blocks(BackboneImpl& backbone, const ModelSpec& spec);

}  // namespace finch::models
