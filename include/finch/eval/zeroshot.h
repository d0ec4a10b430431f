#pragma once
// Zero-shot recognition with class attributes, the cross-modal route without a text model:
// a linear compatibility F(x, y) = x^T W a_y between an image embedding x and the attribute
// vector a_y of class y, learnt on seen classes and applied to the attribute vectors of
// classes without a single training image. Protocol and metrics as Xian et al. 2018
// ("Zero-shot learning: the good, the bad and the ugly"): per-class mean top-1 on the unseen
// classes among the unseen classes (ZSL), and among all classes (GZSL) the seen and unseen
// accuracies and their harmonic mean H.
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace finch::eval {

/// One row of attribute values per class.
struct AttributeTable {
  std::vector<std::string> classes;
  std::vector<std::string> attributes;  // column names
  torch::Tensor values;                 // [classes, attributes] float32, finite
  std::string source;
};

/// A CSV `class,attr_1,...,attr_M` with that header line. Errors name the file and line (a
/// missing value, a non-number, NaN or infinity, a repeated class).
AttributeTable read_attribute_csv(const std::filesystem::path& file);

/// CUB-200-2011's attributes/class_attribute_labels_continuous.txt (200 rows of 312
/// percentages, classes.txt order) with the names of attributes.txt (in the root or the
/// folder above it, as the archive ships it; attr_1, ... without it).
AttributeTable read_cub_attributes(const std::filesystem::path& cub_root);

/// Xian et al.'s proposed split ("the good, the bad and the ugly", the xlsa17 archive):
/// `att_splits.mat` holds the class names (`allclasses_names`) and the attribute matrix `att`
/// (one column per class), and the image indices of each part of the split; the unseen
/// classes are the labels of its `test_unseen_loc` images, read from `res101.mat` in the same
/// folder (as the archive ships them). Errors name the file and variable.
struct XianSplit {
  AttributeTable attributes;
  std::vector<std::string> seen_classes, unseen_classes;  // in allclasses_names order
};
XianSplit read_xian_split(const std::filesystem::path& att_splits);

/// The table's rows for `classes`, in that order. Throws finch::Error naming the first class
/// the table lacks (and a few it has).
torch::Tensor attribute_rows(const AttributeTable& table, const std::vector<std::string>& classes);

enum class ZeroShotMethod {
  kEszsl,    // Romera-Paredes & Torr 2015: closed form, squared loss, two ridge terms
  kSoftmax,  // cross-entropy over the seen classes of the compatibility scores (as ALE /
             // DeViSE with a softmax instead of a ranking loss), Adam with weight decay
};
ZeroShotMethod parse_zeroshot_method(const std::string& name);
std::string to_string(ZeroShotMethod method);

struct ZeroShotOptions {
  ZeroShotMethod method = ZeroShotMethod::kEszsl;
  /// Hyperparameters are chosen by cross-validation over seen classes (Xian et al.): folds
  /// hold out a fifth of the seen classes (at least 2) as pseudo-unseen classes, each
  /// candidate is scored by per-class ZSL accuracy on them, the best is refit on all seen
  /// classes. With fewer than 3 seen classes the defaults below are used.
  int folds = 3;
  uint64_t seed = 0;
  double gamma = 1, lambda = 1;  // ESZSL ridge terms (features, attributes)
  double weight_decay = 1e-3;    // softmax
  int64_t epochs = 100;          // softmax: full-batch Adam steps
};

/// W [D, M] of F(x, y) = x^T W a_y, with the hyperparameters it was fit with.
struct Compatibility {
  torch::Tensor weights;
  nlohmann::json hyperparameters;
  nlohmann::json validation;  // the cross-validation scores of each candidate
  /// Calibrated stacking (Chao et al. 2016) for GZSL: seen classes' scores are lowered by
  /// stacking * score_scale before the argmax. `stacking` is chosen by the cross-validation
  /// over seen classes (0 without it); score_scale is the standard deviation of the fit's
  /// scores on its training images.
  double stacking = 0, score_scale = 1;
  /// [N, C] scores of embeddings [N, D] against attribute rows [C, M].
  torch::Tensor scores(const torch::Tensor& embeddings, const torch::Tensor& attributes) const;
};

/// Fits on embeddings [N, D] of seen-class images with labels [N] in [0, S) and the seen
/// classes' attribute rows [S, M]. Attribute rows are L2-normalised here (and must be by the
/// caller for scoring: use normalized_attributes).
Compatibility fit_compatibility(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                const torch::Tensor& seen_attributes,
                                const ZeroShotOptions& options);

/// Rows scaled to unit length (all-zero rows stay zero).
torch::Tensor normalized_attributes(const torch::Tensor& attributes);

/// Mean over classes of the per-class top-1 of `predicted` against `labels` (classes with no
/// test image are left out).
double per_class_accuracy(const std::vector<int64_t>& predicted,
                          const std::vector<int64_t>& labels);

struct ZeroShotResult {
  double zsl = 0;                                // unseen images among unseen classes
  double gzsl_seen = 0, gzsl_unseen = 0, h = 0;  // all images among all classes
  /// The same with calibrated stacking (the model's `stacking`).
  double calibrated_seen = 0, calibrated_unseen = 0, calibrated_h = 0, stacking = 0;
  int64_t seen_images = 0, unseen_images = 0;
};

/// Scores test embeddings: `seen_embeddings` / `seen_labels` (in [0, S)) of seen classes,
/// `unseen_embeddings` / `unseen_labels` (in [0, U)); attribute rows [S, M] and [U, M]. In
/// GZSL the classes are the S seen then the U unseen ones.
ZeroShotResult zeroshot_evaluate(const Compatibility& model, const torch::Tensor& seen_attributes,
                                 const torch::Tensor& unseen_attributes,
                                 const torch::Tensor& seen_embeddings,
                                 const std::vector<int64_t>& seen_labels,
                                 const torch::Tensor& unseen_embeddings,
                                 const std::vector<int64_t>& unseen_labels);

}  // namespace finch::eval
