#pragma once
// The training objective, a weighted sum of the terms listed in `train.losses`:
//   - {type: cross_entropy, weight: 1}: with train.label_smoothing; averaged over the main view
//     and the head's extra training views (WS-DAN's (raw + crop + drop) / 3); Inception's
//     auxiliary logits add train.aux_loss_weight x their cross-entropy;
//   - {type: triplet, margin: 0.3, weight: 1}: batch-hard triplet loss on the embedding
//     (Hermans et al., 2017), with class-balanced P x K batches (data.sampler: pk);
//   - {type: centre, weight: 1, beta: 0.05}: centre loss on the embedding (Wen et al., 2016),
//     centres moved towards each step's class means by beta (as WS-DAN does).
// An empty list means [{type: cross_entropy}].
#include <torch/nn/module.h>
#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

#include "finch/core/config.h"
#include "finch/models/model.h"

namespace finch::train {

/// mean over anchors with a positive and a negative in the batch of
/// max(0, max_pos d(a, p) - min_neg d(a, n) + margin), Euclidean d; 0 when no anchor has both.
torch::Tensor batch_hard_triplet_loss(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                      double margin);

/// mean over the batch of ||f_i - c_{y_i}||^2.
torch::Tensor centre_loss(const torch::Tensor& embeddings, const torch::Tensor& labels,
                          const torch::Tensor& centres);

/// c_y += beta * (mean of the batch's embeddings of class y - c_y), for classes in the batch.
void update_centres(torch::Tensor& centres, const torch::Tensor& embeddings,
                    const torch::Tensor& labels, double beta);

struct LossTerm {
  std::string type;  // cross_entropy | triplet | centre
  double weight = 1.0;
  double margin = 0.3;  // triplet
  double beta = 0.05;   // centre
};

/// Parses train.losses; throws finch::Error naming the bad entry.
std::vector<LossTerm> parse_losses(const Config& config);

/// The objective with its state (the class centres, a buffer saved with checkpoints).
class ObjectiveImpl : public torch::nn::Module {
 public:
  ObjectiveImpl(const Config& config, int64_t num_classes, int64_t embedding_dim);
  /// Loss of one step. view_logits: logits of the head's extra training views.
  torch::Tensor forward(const models::ModelOutput& output, const torch::Tensor& labels,
                        const std::vector<torch::Tensor>& view_logits);
  /// True when a term needs several samples of each class per batch (triplet).
  bool wants_class_balanced_batches() const;
  /// Each term's (weighted) value at the last step, for the log.
  const std::vector<std::pair<std::string, double>>& last_terms() const { return last_; }

 private:
  std::vector<LossTerm> terms_;
  double label_smoothing_ = 0, aux_weight_ = 0;
  torch::Tensor centres_;
  std::vector<std::pair<std::string, double>> last_;
};
TORCH_MODULE(Objective);

}  // namespace finch::train
