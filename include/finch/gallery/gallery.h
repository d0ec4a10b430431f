#pragma once
// Embeddings and searchable galleries: every finch model is also an embedding model (the
// head's input feature, L2-normalised), so images of classes it never saw can be embedded,
// stored in a gallery with their labels, searched by cosine similarity and classified by
// nearest class prototype or k-NN vote, without retraining.
//
// A gallery file is safetensors:
//   embeddings [N, D] float32 (unit rows), labels [N] int64, prototypes [C, D] float32 (unit
//   rows: the normalised mean of each class's embeddings), counts [C] int64,
//   metadata "format": "finch-gallery", "finch": JSON {version, model_sha256, model_arch,
//   embedding_dim, classes, paths}.
// Adding items rewrites only the gallery, never the model.
#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "finch/core/progress.h"
#include "finch/data/dataset.h"
#include "finch/eval/session.h"

namespace finch::gallery {

/// Images turned into unit-length embeddings, with their labels where known.
struct EmbeddedImages {
  torch::Tensor embeddings;          // [N, D] float32, L2-normalised rows
  torch::Tensor logits;              // [N, C] the classifier's logits (open-set scores)
  std::vector<int64_t> labels;       // N entries, index into `classes`, or -1 (unknown)
  std::vector<std::string> paths;    // N entries
  std::vector<int64_t> indices;      // N dataset indices (embed_dataset only)
  std::vector<std::string> classes;  // label index -> name (may be empty)
  /// Images that could not be decoded: (path, message). Never a crash.
  std::vector<std::pair<std::string, std::string>> errors;
};

struct EmbedOptions {
  int64_t batch_size = 64;
  int workers = 2;                // decode threads for datasets
  int64_t max_pixels = 40000000;  // image files declaring more are errors (not decoded)
  ProgressStyle progress = ProgressStyle::kNone;
  /// Data-parallel embedding of a dataset: this process embeds shard `shard_rank` of
  /// `shard_count` (each sample once); merge_embedded_shards puts the shards together.
  int shard_rank = 0, shard_count = 1;
};

/// Every sample of `dataset` (unreadable ones land in errors).
EmbeddedImages embed_dataset(eval::InferenceSession& session, const data::DatasetPtr& dataset,
                             const EmbedOptions& options);

/// Every rank's 1-d tensor, in rank order (train::ProcessGroup::all_gather_varying).
using AllGather = std::function<std::vector<torch::Tensor>(const torch::Tensor&)>;

/// The shards of a data-parallel embed_dataset (this rank's `mine`, the others' through
/// `all_gather`, a collective every rank calls) merged in dataset order: what one process
/// embedding all of `dataset` returns.
EmbeddedImages merge_embedded_shards(const EmbeddedImages& mine, const data::Dataset& dataset,
                                     const AllGather& all_gather);

/// Image files; `labels` is empty (unknown) or one class index per path into `classes`.
EmbeddedImages embed_files(eval::InferenceSession& session,
                           const std::vector<std::filesystem::path>& paths,
                           const std::vector<int64_t>& labels,
                           const std::vector<std::string>& classes, const EmbedOptions& options);

/// Class-subfolder layout (`DIR/<class>/<image>`, the imagefolder convention): paths, labels
/// and the sorted class names. Throws finch::Error when DIR has no class folder with images.
void list_class_folders(const std::filesystem::path& dir, std::vector<std::filesystem::path>& paths,
                        std::vector<int64_t>& labels, std::vector<std::string>& classes);

/// Writes `embeddings` [N, D] float32 and `labels` [N] int64 (-1 = unknown) as safetensors,
/// with "paths" and "classes" (JSON lists) and the model's SHA-256 in the metadata: loadable
/// with `safetensors.torch.load_file` (and the metadata with `safe_open(...).metadata()`).
void save_embeddings_file(const std::filesystem::path& path, const EmbeddedImages& images,
                          const std::string& model_sha256);

/// One search hit: a gallery item and its cosine similarity to the query.
struct Neighbour {
  int64_t item = 0;
  float score = 0;
};

class Gallery {
 public:
  /// An empty gallery for the model of `session`.
  explicit Gallery(const eval::InferenceSession& session);
  /// Reads and validates a gallery file; throws finch::Error naming what is wrong.
  static Gallery load(const std::filesystem::path& path);
  /// Writes atomically (temp file + rename).
  void save(const std::filesystem::path& path) const;

  /// Appends labelled items; class names new to the gallery are added after the known ones.
  /// Unlabelled items (label -1) are refused: a gallery needs a class per item.
  void add(const EmbeddedImages& images);

  /// Throws finch::Error unless the gallery was built with this session's model file (its
  /// SHA-256) and embedding size: embeddings of different models are not comparable.
  void check_model(const eval::InferenceSession& session) const;

  size_t size() const { return paths_.size(); }
  int64_t dim() const { return dim_; }
  const std::vector<std::string>& classes() const { return classes_; }
  const std::vector<std::string>& paths() const { return paths_; }
  const torch::Tensor& embeddings() const { return embeddings_; }  // [N, D]
  const torch::Tensor& labels() const { return labels_; }          // [N] int64
  /// [C, D] unit-length class means and [C] item counts (classes without items: zero rows).
  const torch::Tensor& prototypes() const { return prototypes_; }
  const torch::Tensor& counts() const { return counts_; }
  const std::string& model_sha256() const { return model_sha256_; }

 private:
  Gallery() = default;
  void rebuild_prototypes();

  std::string model_sha256_;
  nlohmann::json model_arch_;
  int64_t dim_ = 0;
  std::vector<std::string> classes_, paths_;
  torch::Tensor embeddings_, labels_, prototypes_, counts_;
};

/// Exact cosine search: queries [B, D] (unit rows) against items [N, D] (unit rows), the k
/// largest inner products of each query, best first (k clamped to N). The items are scanned
/// in blocks, so memory stays O(B x block) for any N.
std::vector<std::vector<Neighbour>> exact_search(const torch::Tensor& queries,
                                                 const torch::Tensor& items, int64_t k);

/// Each query's cosine similarity to its k-th nearest item (k clamped to N), [B] float64: the
/// k-NN open-set score of Sun et al. 2022 (monotone in their negative distance of unit
/// vectors, so rankings and AUROC are the same). Queries are processed in blocks.
torch::Tensor kth_similarity(const torch::Tensor& queries, const torch::Tensor& items, int64_t k);

/// Classification by a gallery: how `finch predict --gallery` answers for classes the model
/// was never trained on.
struct GalleryClassifierOptions {
  int64_t knn = 0;            // 0: nearest class prototype; K > 0: vote of the K nearest items
  double temperature = 0.05;  // prob = softmax(score / temperature) over classes (prototypes)
};

/// Per query, the top-k classes {name, index, prob} plus the cosine `score` of each:
///   prototypes: score = cosine to the class prototype, prob = softmax(score / temperature);
///   k-NN:       score = best cosine among the class's neighbours, prob = the class's share of
///               the similarity-weighted vote (weights max(cosine, 0)).
struct GalleryScore {
  std::string name;
  int64_t index = 0;
  double prob = 0, score = 0;
};
std::vector<std::vector<GalleryScore>> classify(const Gallery& gallery,
                                                const torch::Tensor& queries, int64_t k,
                                                const GalleryClassifierOptions& options);

}  // namespace finch::gallery
