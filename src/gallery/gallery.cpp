#include "finch/gallery/gallery.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "finch/core/error.h"
#include "finch/data/loader.h"
#include "finch/io/image.h"
#include "finch/io/safetensors.h"

namespace finch::gallery {

namespace fs = std::filesystem;

namespace {

constexpr const char* kGalleryFormat = "finch-gallery";
constexpr const char* kEmbeddingsFormat = "finch-embeddings";
constexpr int kGalleryVersion = 1;

torch::Tensor cat_rows(const std::vector<torch::Tensor>& rows, int64_t dim) {
  return rows.empty() ? torch::zeros({0, dim}) : torch::cat(rows).contiguous();
}

}  // namespace

EmbeddedImages embed_dataset(eval::InferenceSession& session, const data::DatasetPtr& dataset,
                             const EmbedOptions& options) {
  if (options.batch_size < 1) throw Error("embed: batch size must be >= 1");
  data::LoaderOptions loader_options;
  loader_options.batch_size = options.batch_size;
  loader_options.workers = std::max(1, options.workers);
  loader_options.shard_rank = options.shard_rank;
  loader_options.shard_count = options.shard_count;
  loader_options.pad_shards = false;  // each sample once
  data::Loader loader(dataset, session.pipeline(), loader_options);
  EmbeddedImages out;
  out.classes = dataset->class_names();
  std::vector<torch::Tensor> rows, logit_rows;
  Progress progress("embed", loader.num_batches(), options.progress);
  loader.start_epoch(0);
  int64_t done = 0, dim = 0;
  while (auto batch = loader.next()) {
    eval::InferenceOutput output = session.forward(batch->images, /*normalize_embedding=*/true);
    if (!output.embedding.defined()) throw Error("this model's head returns no embedding");
    dim = output.embedding.size(1);
    rows.push_back(output.embedding);
    if (output.logits.defined()) logit_rows.push_back(output.logits);
    for (size_t i : batch->indices) {
      out.labels.push_back(dataset->label(i));
      out.paths.push_back(dataset->describe(i));
      out.indices.push_back(static_cast<int64_t>(i));
    }
    progress.update(++done, "");
  }
  progress.finish("");
  for (const auto& skipped : loader.skipped())
    out.errors.emplace_back(dataset->describe(skipped.index), skipped.reason);
  out.embeddings = cat_rows(rows, dim);
  out.logits = cat_rows(logit_rows, static_cast<int64_t>(session.classes().size()));
  return out;
}

EmbeddedImages merge_embedded_shards(const EmbeddedImages& mine, const data::Dataset& dataset,
                                     const AllGather& all_gather) {
  auto flat = [](const torch::Tensor& t) { return t.reshape({-1}).contiguous(); };
  const auto indices = all_gather(torch::tensor(mine.indices, torch::kInt64));
  const auto embeddings = all_gather(flat(mine.embeddings));
  const auto logits = all_gather(flat(mine.logits));
  const std::string errors_json = nlohmann::json(mine.errors).dump();
  const auto errors =
      all_gather(torch::from_blob(const_cast<char*>(errors_json.data()),
                                  {static_cast<int64_t>(errors_json.size())}, torch::kUInt8)
                     .clone());
  EmbeddedImages out;
  out.classes = mine.classes;
  const torch::Tensor all_indices = torch::cat(indices);
  const int64_t rows = all_indices.numel();
  // Row widths from the totals: a rank whose shard was all unreadable has no rows to tell.
  const torch::Tensor all_embeddings = torch::cat(embeddings), all_logits = torch::cat(logits);
  const int64_t dim = rows ? all_embeddings.numel() / rows : mine.embeddings.size(1);
  const int64_t classes = rows ? all_logits.numel() / rows : mine.logits.size(1);
  // Dataset order, as one process delivers it (the shards take every world-th sample).
  const torch::Tensor order = std::get<1>(all_indices.sort());
  out.embeddings = all_embeddings.view({rows, dim}).index_select(0, order).contiguous();
  out.logits = all_logits.view({rows, classes}).index_select(0, order).contiguous();
  const torch::Tensor sorted = all_indices.index_select(0, order).contiguous();
  for (int64_t r = 0; r < rows; ++r) {
    const auto k = static_cast<size_t>(sorted.data_ptr<int64_t>()[r]);
    out.indices.push_back(static_cast<int64_t>(k));
    out.labels.push_back(dataset.label(k));
    out.paths.push_back(dataset.describe(k));
  }
  for (const auto& bytes : errors) {
    const std::string text(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                           static_cast<size_t>(bytes.numel()));
    for (const auto& e : nlohmann::json::parse(text))
      out.errors.emplace_back(e.at(0).get<std::string>(), e.at(1).get<std::string>());
  }
  return out;
}

EmbeddedImages embed_files(eval::InferenceSession& session, const std::vector<fs::path>& paths,
                           const std::vector<int64_t>& labels,
                           const std::vector<std::string>& classes, const EmbedOptions& options) {
  if (options.batch_size < 1) throw Error("embed: batch size must be >= 1");
  if (!labels.empty() && labels.size() != paths.size())
    throw Error("embed: one label per image expected");
  EmbeddedImages out;
  out.classes = classes;
  std::vector<torch::Tensor> rows, logit_rows;
  int64_t dim = 0;
  const int64_t batches =
      (static_cast<int64_t>(paths.size()) + options.batch_size - 1) / options.batch_size;
  Progress progress("embed", batches, options.progress);
  for (size_t begin = 0, done = 0; begin < paths.size(); begin += options.batch_size) {
    const size_t end = std::min(paths.size(), begin + static_cast<size_t>(options.batch_size));
    std::vector<torch::Tensor> inputs;
    for (size_t i = begin; i < end; ++i) {
      try {
        inputs.push_back(session.preprocess(io::read_image_rgb(paths[i], options.max_pixels)));
      } catch (const Error& e) {
        out.errors.emplace_back(paths[i].string(), e.what());
        continue;
      }
      out.paths.push_back(paths[i].string());
      out.labels.push_back(labels.empty() ? -1 : labels[i]);
    }
    if (!inputs.empty()) {
      auto output = session.forward(torch::stack(inputs), /*normalize_embedding=*/true);
      if (!output.embedding.defined()) throw Error("this model's head returns no embedding");
      dim = output.embedding.size(1);
      rows.push_back(output.embedding);
      if (output.logits.defined()) logit_rows.push_back(output.logits);
    }
    progress.update(static_cast<int64_t>(++done), "");
  }
  progress.finish("");
  out.embeddings = cat_rows(rows, dim);
  out.logits = cat_rows(logit_rows, static_cast<int64_t>(session.classes().size()));
  return out;
}

void list_class_folders(const fs::path& dir, std::vector<fs::path>& paths,
                        std::vector<int64_t>& labels, std::vector<std::string>& classes) {
  if (!fs::is_directory(dir))
    throw Error(fmt::format("{} is not a folder (expected DIR/<class>/<image>)", dir.string()));
  std::vector<fs::path> folders;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_directory()) folders.push_back(entry.path());
  std::sort(folders.begin(), folders.end());
  for (const auto& folder : folders) {
    std::vector<fs::path> images;
    for (const auto& entry : fs::recursive_directory_iterator(folder))
      if (entry.is_regular_file() && io::has_image_extension(entry.path()))
        images.push_back(entry.path());
    if (images.empty()) continue;
    std::sort(images.begin(), images.end());
    const int64_t label = static_cast<int64_t>(classes.size());
    classes.push_back(folder.filename().string());
    for (auto& image : images) {
      paths.push_back(std::move(image));
      labels.push_back(label);
    }
  }
  if (classes.empty())
    throw Error(fmt::format("{} has no class folders with images (expected DIR/<class>/<image>)",
                            dir.string()));
}

void save_embeddings_file(const fs::path& path, const EmbeddedImages& images,
                          const std::string& model_sha256) {
  if (!images.embeddings.defined() || images.embeddings.size(0) == 0)
    throw Error("no image could be embedded: nothing to write to " + path.string());
  io::write_safetensors(path,
                        {{"embeddings", images.embeddings.to(torch::kFloat).contiguous()},
                         {"labels", torch::tensor(images.labels, torch::kLong)}},
                        {{"format", kEmbeddingsFormat},
                         {"paths", nlohmann::json(images.paths).dump()},
                         {"classes", nlohmann::json(images.classes).dump()},
                         {"model_sha256", model_sha256}});
}

// --- Gallery ------------------------------------------------------------------------------

Gallery::Gallery(const eval::InferenceSession& session)
    : model_sha256_(session.content_hash()), model_arch_(session.info().arch) {
  if (model_sha256_.empty())
    throw Error("a gallery needs a model read from a file (its SHA-256 is the gallery's key)");
  embeddings_ = torch::zeros({0, 0});
  labels_ = torch::zeros({0}, torch::kLong);
  rebuild_prototypes();
}

Gallery Gallery::load(const fs::path& path) {
  const std::string source = path.string();
  io::TensorFile file = io::read_safetensors(path);
  auto format = file.metadata.find("format");
  auto meta = file.metadata.find("finch");
  if (format == file.metadata.end() || format->second != kGalleryFormat ||
      meta == file.metadata.end())
    throw Error(source + " is not a finch gallery (build one with `finch gallery build`)");
  nlohmann::json j = nlohmann::json::parse(meta->second, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw Error(source + ": the gallery metadata is not a JSON object");
  Gallery g;
  try {
    if (j.at("version").get<int>() > kGalleryVersion)
      throw Error(fmt::format("{}: gallery version {} is newer than this finch reads ({})", source,
                              j.at("version").get<int>(), kGalleryVersion));
    g.model_sha256_ = j.at("model_sha256").get<std::string>();
    g.model_arch_ = j.value("model_arch", nlohmann::json::object());
    g.dim_ = j.at("embedding_dim").get<int64_t>();
    g.classes_ = j.at("classes").get<std::vector<std::string>>();
    g.paths_ = j.at("paths").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": malformed gallery metadata: " + e.what());
  }
  g.embeddings_ = file.find("embeddings");
  g.labels_ = file.find("labels");
  if (!g.embeddings_.defined() || !g.labels_.defined())
    throw Error(source + ": a gallery needs 'embeddings' and 'labels' tensors");
  const int64_t n = static_cast<int64_t>(g.paths_.size());
  if (g.embeddings_.scalar_type() != torch::kFloat || g.embeddings_.dim() != 2 ||
      g.embeddings_.size(0) != n || g.embeddings_.size(1) != g.dim_)
    throw Error(fmt::format("{}: embeddings must be float32 [{}, {}], found {} {}", source, n,
                            g.dim_, std::string(c10::toString(g.embeddings_.scalar_type())),
                            c10::str(g.embeddings_.sizes())));
  if (g.labels_.scalar_type() != torch::kLong || g.labels_.dim() != 1 || g.labels_.size(0) != n)
    throw Error(fmt::format("{}: labels must be int64 [{}]", source, n));
  if (n > 0) {
    const int64_t lo = g.labels_.min().item<int64_t>(), hi = g.labels_.max().item<int64_t>();
    if (lo < 0 || hi >= static_cast<int64_t>(g.classes_.size()))
      throw Error(fmt::format("{}: labels must lie in [0, {}), found [{}, {}]", source,
                              g.classes_.size(), lo, hi));
  }
  g.rebuild_prototypes();
  return g;
}

void Gallery::save(const fs::path& path) const {
  const nlohmann::json meta{{"version", kGalleryVersion}, {"model_sha256", model_sha256_},
                            {"model_arch", model_arch_},  {"embedding_dim", dim_},
                            {"classes", classes_},        {"paths", paths_}};
  io::write_safetensors(path,
                        {{"embeddings", embeddings_.contiguous()},
                         {"labels", labels_.contiguous()},
                         {"prototypes", prototypes_.contiguous()},
                         {"counts", counts_.contiguous()}},
                        {{"format", kGalleryFormat}, {"finch", meta.dump()}});
}

void Gallery::add(const EmbeddedImages& images) {
  if (!images.embeddings.defined() || images.embeddings.size(0) == 0) return;
  const int64_t d = images.embeddings.size(1);
  if (dim_ == 0 && size() == 0) dim_ = d;
  if (d != dim_)
    throw Error(fmt::format("embeddings of size {} cannot join a gallery of size {}", d, dim_));
  std::vector<int64_t> mapped;
  mapped.reserve(images.labels.size());
  std::map<int64_t, int64_t> to_gallery;
  for (size_t i = 0; i < images.labels.size(); ++i) {
    const int64_t label = images.labels[i];
    if (label < 0 || label >= static_cast<int64_t>(images.classes.size()))
      throw Error(
          fmt::format("{} has no class: every gallery item needs one (class folders or "
                      "a labelled dataset)",
                      images.paths.at(i)));
    auto it = to_gallery.find(label);
    if (it == to_gallery.end()) {
      const std::string& name = images.classes[label];
      auto known = std::find(classes_.begin(), classes_.end(), name);
      int64_t index = known - classes_.begin();
      if (known == classes_.end()) classes_.push_back(name);
      it = to_gallery.emplace(label, index).first;
    }
    mapped.push_back(it->second);
  }
  if (size() == 0) embeddings_ = torch::zeros({0, dim_});
  embeddings_ = torch::cat({embeddings_, images.embeddings.to(torch::kFloat)}).contiguous();
  labels_ = torch::cat({labels_, torch::tensor(mapped, torch::kLong)});
  paths_.insert(paths_.end(), images.paths.begin(), images.paths.end());
  rebuild_prototypes();
}

void Gallery::check_model(const eval::InferenceSession& session) const {
  if (session.content_hash() != model_sha256_)
    throw Error(fmt::format(
        "this gallery was built with another model (SHA-256 {}..., the given model is {}...): "
        "embeddings of different models are not comparable; rebuild it with `finch gallery "
        "build --model` this model",
        model_sha256_.substr(0, 12), session.content_hash().substr(0, 12)));
}

void Gallery::rebuild_prototypes() {
  const int64_t c = static_cast<int64_t>(classes_.size());
  torch::Tensor sums = torch::zeros({c, dim_});
  counts_ = torch::zeros({c}, torch::kLong);
  if (size() > 0) {
    sums.index_add_(0, labels_, embeddings_);
    counts_.index_add_(0, labels_, torch::ones_like(labels_));
  }
  prototypes_ = torch::nn::functional::normalize(
                    sums, torch::nn::functional::NormalizeFuncOptions().dim(1).eps(1e-12))
                    .contiguous();
}

// --- search and classification ------------------------------------------------------------

std::vector<std::vector<Neighbour>> exact_search(const torch::Tensor& queries,
                                                 const torch::Tensor& items, int64_t k) {
  TORCH_CHECK(queries.dim() == 2 && items.dim() == 2 && queries.size(1) == items.size(1),
              "exact_search: queries ", queries.sizes(), " and items ", items.sizes());
  const int64_t n = items.size(0), b = queries.size(0);
  std::vector<std::vector<Neighbour>> out(b);
  if (n == 0 || b == 0) return out;
  k = std::clamp<int64_t>(k, 1, n);
  c10::InferenceMode guard;
  // Blocks of items: each block's top-k candidates, then the top-k of all candidates.
  constexpr int64_t kBlock = 1 << 17;
  std::vector<torch::Tensor> scores, indices;
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t len = std::min(kBlock, n - begin);
    torch::Tensor sim = torch::matmul(queries, items.narrow(0, begin, len).t());
    auto [v, i] = sim.topk(std::min(k, len), 1);
    scores.push_back(v);
    indices.push_back(i + begin);
  }
  torch::Tensor all_scores = torch::cat(scores, 1), all_indices = torch::cat(indices, 1);
  auto [v, pos] = all_scores.topk(k, 1);
  torch::Tensor idx = all_indices.gather(1, pos);
  auto va = v.accessor<float, 2>();
  auto ia = idx.accessor<int64_t, 2>();
  for (int64_t q = 0; q < b; ++q)
    for (int64_t j = 0; j < k; ++j) out[q].push_back({ia[q][j], va[q][j]});
  return out;
}

torch::Tensor kth_similarity(const torch::Tensor& queries, const torch::Tensor& items, int64_t k) {
  if (items.size(0) == 0) throw Error("k-NN scores need reference items; there are none");
  constexpr int64_t kQueryBlock = 1024;
  std::vector<double> out;
  out.reserve(static_cast<size_t>(queries.size(0)));
  for (int64_t begin = 0; begin < queries.size(0); begin += kQueryBlock) {
    const int64_t len = std::min(kQueryBlock, queries.size(0) - begin);
    for (const auto& hits : exact_search(queries.narrow(0, begin, len), items, k))
      out.push_back(hits.back().score);
  }
  return torch::tensor(out, torch::kDouble);
}

std::vector<std::vector<GalleryScore>> classify(const Gallery& gallery,
                                                const torch::Tensor& queries, int64_t k,
                                                const GalleryClassifierOptions& options) {
  if (gallery.size() == 0) throw Error("the gallery is empty: add images with `finch gallery add`");
  if (queries.size(1) != gallery.dim())
    throw Error(fmt::format("queries of size {} against a gallery of size {}", queries.size(1),
                            gallery.dim()));
  if (!(options.temperature > 0)) throw Error("the gallery temperature must be > 0");
  const auto& classes = gallery.classes();
  const int64_t c = static_cast<int64_t>(classes.size());
  c10::InferenceMode guard;
  torch::Tensor prob, score;
  if (options.knn <= 0) {
    score = torch::matmul(queries, gallery.prototypes().t());  // [B, C]
    // Classes without items cannot be predicted.
    torch::Tensor empty = gallery.counts().eq(0).unsqueeze(0);
    score = score.masked_fill(empty, -2.0);
    prob = torch::softmax((score / options.temperature).masked_fill(empty, -1e30), 1);
  } else {
    const auto hits = exact_search(queries, gallery.embeddings(), options.knn);
    auto labels = gallery.labels().accessor<int64_t, 1>();
    prob = torch::zeros({queries.size(0), c});
    score = torch::full({queries.size(0), c}, -2.0);
    auto pa = prob.accessor<float, 2>();
    auto sa = score.accessor<float, 2>();
    for (size_t q = 0; q < hits.size(); ++q) {
      double total = 0;
      for (const auto& h : hits[q]) {
        const int64_t label = labels[h.item];
        pa[q][label] += std::max(h.score, 0.0f);
        sa[q][label] = std::max(sa[q][label], h.score);
        total += std::max(h.score, 0.0f);
      }
      // All neighbours dissimilar (cosine <= 0): an unweighted vote.
      if (total <= 0) {
        for (const auto& h : hits[q]) pa[q][labels[h.item]] += 1.0f;
        total = static_cast<double>(hits[q].size());
      }
      for (int64_t j = 0; j < c; ++j) pa[q][j] = static_cast<float>(pa[q][j] / total);
    }
  }
  k = std::clamp<int64_t>(k, 1, c);
  // Rank by probability, then by score (k-NN ties).
  torch::Tensor key = prob.to(torch::kDouble) + 1e-9 * (score.to(torch::kDouble) + 2);
  torch::Tensor order = std::get<1>(key.topk(k, 1));
  auto oa = order.accessor<int64_t, 2>();
  auto pa = prob.accessor<float, 2>();
  auto sa = score.accessor<float, 2>();
  std::vector<std::vector<GalleryScore>> out(queries.size(0));
  for (int64_t q = 0; q < queries.size(0); ++q)
    for (int64_t j = 0; j < k; ++j) {
      const int64_t cls = oa[q][j];
      out[q].push_back({classes[cls], cls, pa[q][cls], sa[q][cls]});
    }
  return out;
}

}  // namespace finch::gallery
