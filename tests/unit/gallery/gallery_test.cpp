// Galleries: files round-trip and refuse what does not fit, exact search equals a brute-force
// sort, prototype and k-NN classification, FAISS recall against exact search.
#include "finch/gallery/gallery.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>

#include "finch/core/error.h"
#include "finch/gallery/ann.h"
#include "finch/io/safetensors.h"
#include "finch/models/model_file.h"
#include "test_support.h"

namespace fg = finch::gallery;
namespace fe = finch::eval;
namespace fm = finch::models;
namespace fs = std::filesystem;

namespace {

torch::Tensor unit(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

// A model file of its own, so that sessions carry a real SHA-256.
fs::path write_model(const fs::path& path, int seed) {
  torch::manual_seed(seed);
  fm::ModelInfo info;
  info.arch = {{"backbone", "resnet20"},
               {"head", "linear"},
               {"num_classes", 3},
               {"width", 8},
               {"input_size", 16}};
  info.classes = {"a", "b", "c"};
  info.preprocess.eval_transforms =
      nlohmann::json::array({{{"type", "resize"}, {"size", nlohmann::json::array({16, 16})}}});
  fm::Classifier model = fm::build_classifier(info.arch);
  fm::save_model_file(path, model, info);
  return path;
}

fg::EmbeddedImages items(const torch::Tensor& x, std::vector<int64_t> labels,
                         std::vector<std::string> classes, const std::string& prefix) {
  fg::EmbeddedImages e;
  e.embeddings = unit(x);
  e.labels = std::move(labels);
  e.classes = std::move(classes);
  for (size_t i = 0; i < e.labels.size(); ++i) e.paths.push_back(prefix + std::to_string(i));
  return e;
}

}  // namespace

TEST(Gallery, SaveLoadAddNewClassesAndPrototypes) {
  finch::test::TempDir dir;
  fe::InferenceSession session(write_model(dir / "m.safetensors", 1));
  fg::Gallery g(session);
  EXPECT_EQ(g.size(), 0u);
  torch::Tensor x = torch::tensor({{1.f, 0.f}, {0.8f, 0.2f}, {0.f, 1.f}});
  g.add(items(x, {0, 0, 1}, {"rose", "tulip"}, "first/"));
  // A second batch with one known and one new class, labelled in its own class list.
  g.add(items(torch::tensor({{0.1f, 0.9f}, {-1.f, 0.f}}), {0, 1}, {"tulip", "daisy"}, "second/"));
  EXPECT_EQ(g.classes(), (std::vector<std::string>{"rose", "tulip", "daisy"}));
  EXPECT_TRUE(torch::equal(g.labels(), torch::tensor({0, 0, 1, 1, 2}, torch::kLong)));
  EXPECT_EQ(g.paths()[3], "second/0");
  EXPECT_TRUE(torch::equal(g.counts(), torch::tensor({2, 2, 1}, torch::kLong)));
  // Prototype of rose: normalised mean of its two unit rows.
  torch::Tensor rose = unit(unit(x.narrow(0, 0, 2)).mean(0, true));
  EXPECT_TRUE(torch::allclose(g.prototypes()[0], rose[0], 1e-5, 1e-6));

  g.save(dir / "g.safetensors");
  fg::Gallery back = fg::Gallery::load(dir / "g.safetensors");
  EXPECT_EQ(back.classes(), g.classes());
  EXPECT_EQ(back.paths(), g.paths());
  EXPECT_TRUE(torch::equal(back.embeddings(), g.embeddings()));
  EXPECT_TRUE(torch::allclose(back.prototypes(), g.prototypes()));
  EXPECT_EQ(back.model_sha256(), session.content_hash());
  back.check_model(session);  // same model: fine

  fe::InferenceSession other(write_model(dir / "other.safetensors", 2));
  EXPECT_CONTAINS(finch::test::error_of([&] { back.check_model(other); }),
                  "built with another model");
  // Items without a class cannot join a gallery.
  EXPECT_CONTAINS(finch::test::error_of([&] {
                    g.add(items(torch::tensor({{1.f, 1.f}}), {-1}, {}, "x/"));
                  }),
                  "has no class");
  EXPECT_CONTAINS(finch::test::error_of([&] {
                    g.add(items(torch::ones({1, 3}), {0}, {"rose"}, "x/"));
                  }),
                  "size 3 cannot join a gallery of size 2");
}

TEST(Gallery, MalformedFilesAreClearErrors) {
  finch::test::TempDir dir;
  finch::test::write_text(dir / "junk.safetensors", "not a safetensors file at all");
  EXPECT_THROW(fg::Gallery::load(dir / "junk.safetensors"), finch::Error);
  finch::io::write_safetensors(dir / "plain.safetensors", {{"x", torch::zeros({2})}}, {});
  EXPECT_CONTAINS(finch::test::error_of([&] { fg::Gallery::load(dir / "plain.safetensors"); }),
                  "is not a finch gallery");
  // Labels outside the class list.
  const nlohmann::json meta{{"version", 1},
                            {"model_sha256", "ab"},
                            {"embedding_dim", 2},
                            {"classes", {"a"}},
                            {"paths", {"p0", "p1"}}};
  finch::io::write_safetensors(
      dir / "bad.safetensors",
      {{"embeddings", torch::zeros({2, 2})}, {"labels", torch::tensor({0, 3}, torch::kLong)}},
      {{"format", "finch-gallery"}, {"finch", meta.dump()}});
  EXPECT_CONTAINS(finch::test::error_of([&] { fg::Gallery::load(dir / "bad.safetensors"); }),
                  "labels must lie in [0, 1)");
  // Row count that does not match the paths.
  finch::io::write_safetensors(
      dir / "rows.safetensors",
      {{"embeddings", torch::zeros({3, 2})}, {"labels", torch::tensor({0, 0}, torch::kLong)}},
      {{"format", "finch-gallery"}, {"finch", meta.dump()}});
  EXPECT_CONTAINS(finch::test::error_of([&] { fg::Gallery::load(dir / "rows.safetensors"); }),
                  "embeddings must be float32 [2, 2]");
}

TEST(ExactSearch, EqualsABruteForceSortAcrossBlocks) {
  torch::manual_seed(5);
  // More items than one scan block (2^17), so the block merge is exercised.
  torch::Tensor db = unit(torch::randn({140000, 8}));
  torch::Tensor q = unit(torch::randn({3, 8}));
  auto hits = fg::exact_search(q, db, 5);
  torch::Tensor sim = torch::matmul(q, db.t());
  for (int64_t i = 0; i < 3; ++i) {
    auto order = std::get<1>(sim[i].sort(0, /*descending=*/true));
    ASSERT_EQ(hits[i].size(), 5u);
    for (int64_t j = 0; j < 5; ++j) {
      EXPECT_EQ(hits[i][j].item, order[j].item<int64_t>());
      EXPECT_NEAR(hits[i][j].score, sim[i][order[j]].item<float>(), 1e-6);
    }
  }
  EXPECT_EQ(fg::exact_search(q, db.narrow(0, 0, 2), 10)[0].size(), 2u);  // k clamped to N
}

TEST(GalleryClassifier, PrototypesAndKnnVotes) {
  finch::test::TempDir dir;
  fe::InferenceSession session(write_model(dir / "m.safetensors", 1));
  fg::Gallery g(session);
  // Class "x" around +x, class "y" around +y; one "y" item close to +x (a noisy label).
  g.add(items(torch::tensor({{1.f, 0.05f}, {1.f, -0.05f}, {0.f, 1.f}, {0.1f, 1.f}, {1.f, 0.2f}}),
              {0, 0, 1, 1, 1}, {"x", "y"}, "g/"));
  torch::Tensor q = unit(torch::tensor({{1.f, 0.1f}, {0.05f, 1.f}}));
  fg::GalleryClassifierOptions prototypes;
  auto p = fg::classify(g, q, 2, prototypes);
  EXPECT_EQ(p[0][0].name, "x");
  EXPECT_EQ(p[1][0].name, "y");
  EXPECT_NEAR(p[0][0].prob + p[0][1].prob, 1.0, 1e-6);
  EXPECT_NEAR(p[1][0].score, torch::dot(q[1], g.prototypes()[1]).item<double>(), 1e-6);
  // 3-NN of the first query: the two "x" items and the noisy "y": x wins 2 votes to 1.
  fg::GalleryClassifierOptions knn;
  knn.knn = 3;
  auto k = fg::classify(g, q, 2, knn);
  EXPECT_EQ(k[0][0].name, "x");
  EXPECT_GT(k[0][0].prob, 0.5);
  EXPECT_LT(k[0][1].prob, 0.5);
  EXPECT_NEAR(k[0][0].prob + k[0][1].prob, 1.0, 1e-6);
  fg::Gallery empty(session);
  EXPECT_CONTAINS(finch::test::error_of([&] { fg::classify(empty, q, 1, prototypes); }),
                  "the gallery is empty");
}

TEST(AnnIndex, HnswAndIvfRecallAgainstExact) {
  torch::manual_seed(11);
  // Clustered data, as embeddings are: 50 clusters in 32-d.
  torch::Tensor centres = torch::randn({50, 32});
  torch::Tensor db = unit(centres.index_select(0, torch::randint(50, {5000}, torch::kLong)) +
                          0.3 * torch::randn({5000, 32}));
  torch::Tensor q = unit(centres.index_select(0, torch::randint(50, {100}, torch::kLong)) +
                         0.3 * torch::randn({100, 32}));
  const auto exact = fg::exact_search(q, db, 10);
  EXPECT_DOUBLE_EQ(fg::recall_at_k(exact, exact), 1.0);
  fg::AnnOptions hnsw;
  fg::AnnIndex h(db, hnsw);
  EXPECT_EQ(h.description(), "HNSW32,Flat");
  EXPECT_GT(fg::recall_at_k(h.search(q, 10), exact), 0.9);
  fg::AnnOptions ivf;
  ivf.kind = "ivf";
  ivf.nlist = 50;
  ivf.nprobe = 50;  // every cell: exact up to float rounding
  fg::AnnIndex i(db, ivf);
  EXPECT_GT(fg::recall_at_k(i.search(q, 10), exact), 0.99);
  ivf.nprobe = 1;  // one cell: at most as good as scanning all, far better than chance
  const double one_cell = fg::recall_at_k(fg::AnnIndex(db, ivf).search(q, 10), exact);
  EXPECT_LE(one_cell, fg::recall_at_k(i.search(q, 10), exact));
  EXPECT_GT(one_cell, 0.3);
  fg::AnnOptions bad;
  bad.kind = "lsh";
  EXPECT_THROW(fg::AnnIndex(db, bad), finch::Error);
}
