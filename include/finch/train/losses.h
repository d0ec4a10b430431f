#pragma once
// The training objective, a weighted sum of the terms listed in `train.losses`:
//   - {type: cross_entropy, weight: 1}: with train.label_smoothing; averaged over the main view
//     and the head's extra training views (WS-DAN's (raw + crop + drop) / 3); Inception's
//     auxiliary logits add train.aux_loss_weight x their cross-entropy;
//   - {type: triplet, margin: 0.3, weight: 1}: batch-hard triplet loss on the embedding
//     (Hermans et al., 2017), with class-balanced P x K batches (data.sampler: pk);
//   - {type: centre, weight: 1, beta: 0.05}: centre loss on the embedding (Wen et al., 2016),
//     centres moved towards each step's class means by beta (as WS-DAN does);
//   - {type: multi_similarity, alpha: 2, beta: 50, base: 0.5, epsilon: 0.1, weight: 1}:
//     multi-similarity loss on cosine similarities of the embedding (Wang et al., 2019), with
//     its pair mining (epsilon; 0 keeps every pair), with data.sampler: pk;
//   - {type: cosface, margin: 0.35} / {type: arcface, margin: 0.5}: normalised-softmax margin
//     losses (Wang et al. 2018 / Deng et al. 2019) on the logits of the `cosine` head, which
//     are scale x cos(embedding, class weight);
//   - {type: contrastive, margin: 0.4, weight: 1}: TransFG's contrastive loss (He et al. 2022)
//     on cosine similarities of the embedding, over every pair of the batch.
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

/// Multi-similarity loss with cosine similarities S of L2-normalised embeddings, as
/// pytorch-metric-learning's MultiSimilarityLoss (+ MultiSimilarityMiner when epsilon > 0):
/// mean over the batch's anchors i of
///   1/alpha log(1 + sum_{p in P_i} exp(-alpha (S_ip - base)))
/// + 1/beta  log(1 + sum_{n in N_i} exp( beta (S_in - base)))
/// where, with mining, P_i keeps positives with S_ip - epsilon < max_n S_in and N_i negatives
/// with S_in + epsilon > min_p S_ip (pairs of anchors lacking the other kind are dropped).
torch::Tensor multi_similarity_loss(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                    double alpha = 2, double beta = 50, double base = 0.5,
                                    double epsilon = 0.1);

enum class MarginKind { kCosFace, kArcFace };

/// Cross-entropy of margin-adjusted cosine logits. `cosine_logits` [B, C] = scale x cos;
/// the target class's cosine c becomes c - margin (CosFace) or cos(acos(c) + margin) (ArcFace,
/// acos clamped to [0, pi - margin] as in the reference implementations), others unchanged.
torch::Tensor margin_softmax_loss(const torch::Tensor& cosine_logits, const torch::Tensor& labels,
                                  double scale, double margin, MarginKind kind);

/// TransFG's contrastive loss (He et al. 2022) with z the L2-normalised embeddings:
///   1/B^2 sum over all pairs (i, j) of the batch of
///   1 - cos(z_i, z_j) when y_i = y_j, max(cos(z_i, z_j) - margin, 0) otherwise.
/// That is the paper's 1/B^2; the authors' code (TACJu/TransFG, con_loss) divides the same sum
/// by B, i.e. B times this loss.
torch::Tensor contrastive_loss(const torch::Tensor& embeddings, const torch::Tensor& labels,
                               double margin = 0.4);

struct LossTerm {
  // cross_entropy | triplet | centre | multi_similarity | cosface | arcface | contrastive
  std::string type;
  double weight = 1.0;
  double margin = 0.3;  // triplet (0.3), cosface (0.35), arcface (0.5), contrastive (0.4)
  double beta = 0.05;   // centre; multi_similarity: 50
  double alpha = 2, base = 0.5, epsilon = 0.1;  // multi_similarity
};

/// Cui et al. 2019's class-balanced weights (1 - beta) / (1 - beta^n_c), scaled so that they
/// average 1 over the classes that have images (classes without images get 0).
torch::Tensor effective_number_weights(const std::vector<int64_t>& class_counts, double beta);

/// Parses train.losses; throws finch::Error naming the bad entry.
std::vector<LossTerm> parse_losses(const Config& config);
/// Names of the registered losses (`finch list losses` describes them).
std::vector<std::string> loss_names();

/// The objective with its state (the class centres, a buffer saved with checkpoints).
class ObjectiveImpl : public torch::nn::Module {
 public:
  /// `class_counts`: training images per class, for train.class_weights and
  /// train.logit_adjustment (long-tailed data); may be empty when neither is set.
  ObjectiveImpl(const Config& config, int64_t num_classes, int64_t embedding_dim,
                const std::vector<int64_t>& class_counts = {});
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
  torch::Tensor class_weights_;  // [C] or undefined (not buffers: derived from the data)
  torch::Tensor logit_shift_;    // [C] tau * log prior, or undefined
  torch::Tensor centres_;
  double cosine_scale_ = 0;  // the cosine head's scale, for margin losses
  std::vector<std::pair<std::string, double>> last_;
};
TORCH_MODULE(Objective);

}  // namespace finch::train
