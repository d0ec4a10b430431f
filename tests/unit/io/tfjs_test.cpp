// The TF.js layers-model reader on hand-built model.json + shard files: every stored dtype
// (float32, int32, uint8 / uint16 with min + scale * q, float16), weights split across shards,
// several groups, and malformed files, each of which must give a finch::Error naming the
// problem. The real models (nsfwjs' Keras InceptionV3 / MobileNetV2) are checked against
// TensorFlow.js itself in tests/integration/import_tfjs_test.cpp.
#include "finch/io/tfjs.h"

#include <c10/util/Half.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "finch/core/error.h"
#include "finch/models/keras_import.h"
#include "test_support.h"

namespace finch::io {
namespace {

using finch::test::error_of;
using nlohmann::json;

template <typename T>
std::string bytes_of(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

json weight(const std::string& name, std::vector<int64_t> shape, const std::string& dtype,
            json quantization = nullptr) {
  json w = {{"name", name}, {"shape", shape}, {"dtype", dtype}};
  if (!quantization.is_null()) w["quantization"] = quantization;
  return w;
}

json model_json(json manifest) {
  return {
      {"format", "layers-model"},
      {"modelTopology", {{"model_config", {{"class_name", "Model"}, {"config", json::object()}}}}},
      {"weightsManifest", std::move(manifest)}};
}

// parse_tfjs over in-memory shards.
TfjsModel parse(const json& model, const std::map<std::string, std::string>& shards) {
  return parse_tfjs(
      model.dump(),
      [&](const std::string& path) {
        auto it = shards.find(path);
        if (it == shards.end()) throw Error("no shard " + path);
        return it->second;
      },
      "model.json");
}

TEST(Tfjs, DecodesEveryStoredTypeAcrossShardsAndGroups) {
  const std::vector<float> f32 = {1.5f, -2.0f, 0.25f, 3.0f, 4.0f, -5.5f};
  const std::vector<int32_t> i32 = {7, -8};
  const std::vector<uint8_t> u8 = {0, 1, 255, 128};
  const std::vector<uint16_t> u16 = {0, 65535, 1000};
  std::vector<uint16_t> f16;
  for (float v : {0.5f, -1.25f, 1024.0f}) f16.push_back(c10::Half(v).x);
  // Group 0 spans two shards, cut inside the float32 tensor.
  const std::string group0 = bytes_of(f32) + bytes_of(i32) + bytes_of(u8);
  const std::map<std::string, std::string> shards = {{"g0-1", group0.substr(0, 10)},
                                                     {"g0-2", group0.substr(10)},
                                                     {"sub/g1", bytes_of(u16) + bytes_of(f16)}};
  const json manifest = json::array(
      {{{"paths", {"g0-1", "g0-2"}},
        {"weights",
         {weight("dense/kernel", {2, 3}, "float32"), weight("step", {2}, "int32"),
          weight("conv/kernel", {2, 2}, "float32",
                 {{"dtype", "uint8"}, {"min", -1.0}, {"scale", 0.5}})}}},
       {{"paths", {"sub/g1"}},
        {"weights",
         {weight("bn/gamma", {3}, "float32", {{"dtype", "uint16"}, {"min", 2.0}, {"scale", 0.001}}),
          weight("bn/beta", {3}, "float32", {{"dtype", "float16"}})}}}});
  TfjsModel model = parse(model_json(manifest), shards);
  ASSERT_EQ(model.weights.size(), 5u);
  EXPECT_EQ(model.format, "layers-model");
  EXPECT_EQ(model.stored_types,
            (std::vector<std::string>{"float32", "int32", "uint8", "uint16", "float16"}));
  EXPECT_EQ(model.weights[0].first, "dense/kernel");
  EXPECT_TRUE(torch::equal(model.weights[0].second,
                           torch::tensor({1.5f, -2.0f, 0.25f, 3.0f, 4.0f, -5.5f}).view({2, 3})));
  EXPECT_EQ(model.weights[1].second.scalar_type(), torch::kInt32);
  EXPECT_TRUE(torch::equal(model.weights[1].second, torch::tensor({7, -8}, torch::kInt32)));
  // min + scale * q
  EXPECT_TRUE(torch::allclose(model.weights[2].second,
                              torch::tensor({-1.0f, -0.5f, 126.5f, 63.0f}).view({2, 2})));
  EXPECT_TRUE(torch::allclose(model.weights[3].second, torch::tensor({2.0f, 67.535f, 3.0f})));
  EXPECT_TRUE(torch::equal(model.weights[4].second, torch::tensor({0.5f, -1.25f, 1024.0f})));
}

TEST(Tfjs, MalformedFilesGiveErrorsThatNameTheProblem) {
  const std::string four_floats = bytes_of(std::vector<float>{1, 2, 3, 4});
  auto manifest_with = [](json weights, json paths = {"s"}) {
    return json::array({{{"paths", paths}, {"weights", weights}}});
  };
  const json ok = weight("a/kernel", {4}, "float32");
  auto error = [&](const json& model, const std::map<std::string, std::string>& shards) {
    return error_of([&] { parse(model, shards); });
  };

  EXPECT_CONTAINS(error_of([] { parse_tfjs("{\"weightsManifest\": [", nullptr, "m.json"); }),
                  "m.json: not a TF.js model.json");
  json graph = model_json(manifest_with({ok}));
  graph["format"] = "graph-model";
  EXPECT_CONTAINS(error(graph, {{"s", four_floats}}), "graph model");
  json no_topology = model_json(manifest_with({ok}));
  no_topology.erase("modelTopology");
  EXPECT_CONTAINS(error(no_topology, {{"s", four_floats}}), "no 'modelTopology'");
  // Truncated shard, extra bytes, missing shard.
  EXPECT_CONTAINS(error(model_json(manifest_with({ok})), {{"s", four_floats.substr(0, 15)}}),
                  "runs past the end of its shards");
  EXPECT_CONTAINS(error(model_json(manifest_with({ok})), {{"s", four_floats + "xx"}}),
                  "the shards hold 18 bytes but the manifest describes 16");
  EXPECT_CONTAINS(error(model_json(manifest_with({ok})), {}), "no shard s");
  // Paths that leave the folder.
  EXPECT_CONTAINS(error(model_json(manifest_with({ok}, {"../s"})), {{"../s", four_floats}}),
                  "leaves the model's folder");
  EXPECT_CONTAINS(error(model_json(manifest_with({ok}, {"/etc/s"})), {{"/etc/s", four_floats}}),
                  "must be relative");
  // Dtypes, shapes, names.
  EXPECT_CONTAINS(
      error(model_json(manifest_with({weight("a/k", {4}, "complex64")})), {{"s", four_floats}}),
      "dtype 'complex64' is not supported");
  EXPECT_CONTAINS(
      error(model_json(manifest_with({weight("a/k", {4}, "float32", {{"dtype", "int4"}})})),
            {{"s", four_floats}}),
      "quantization dtype 'int4'");
  EXPECT_CONTAINS(error(model_json(manifest_with(
                            {weight("a/k", {4}, "float32", {{"dtype", "uint8"}, {"min", 0}})})),
                        {{"s", four_floats}}),
                  "needs a finite 'scale'");
  EXPECT_CONTAINS(
      error(model_json(manifest_with({weight("a/k", {-4}, "float32")})), {{"s", four_floats}}),
      "not a size");
  EXPECT_CONTAINS(error(model_json(manifest_with({weight("a/k", {1 << 20, 1 << 20}, "float32")})),
                        {{"s", four_floats}}),
                  "too large");
  EXPECT_CONTAINS(
      error(
          model_json(manifest_with({weight("a/k", {2}, "float32"), weight("a/k", {2}, "float32")})),
          {{"s", four_floats}}),
      "appears twice");
}

TEST(Tfjs, ReadsFilesBesideModelJsonAndSaysWhichShardIsMissing) {
  finch::test::TempDir dir;
  const json model = model_json(json::array(
      {{{"paths", {"group1-shard1of1"}}, {"weights", {weight("a/kernel", {2}, "float32")}}}}));
  finch::test::write_text(dir / "model.json", model.dump());
  EXPECT_TRUE(is_tfjs_model(dir / "model.json"));
  EXPECT_CONTAINS(error_of([&] { read_tfjs(dir / "model.json"); }), "group1-shard1of1 is missing");
  finch::test::write_text(dir / "group1-shard1of1", bytes_of(std::vector<float>{3, 4}));
  EXPECT_TRUE(torch::equal(read_tfjs(dir / "model.json").weights.at(0).second,
                           torch::tensor({3.0f, 4.0f})));
  finch::test::write_text(dir / "other.json", "{\"a\": 1}");
  EXPECT_FALSE(is_tfjs_model(dir / "other.json"));
}

TEST(KerasImport, ModelsOtherThanInceptionV3AndMobileNetV2AreRefusedByName) {
  TfjsModel model;
  model.topology = {{"model_config",
                     {{"class_name", "Model"},
                      {"config",
                       {{"layers",
                         {{{"name", "input_1"}, {"class_name", "InputLayer"}},
                          {{"name", "block1_conv1"}, {"class_name", "Conv2D"}}}}}}}}};
  EXPECT_CONTAINS(error_of([&] { models::convert_keras(model, "vgg.json"); }),
                  "vgg.json: finch maps keras.applications InceptionV3 and MobileNetV2 models; "
                  "this Keras model is neither (first layers: input_1 (InputLayer), block1_conv1 "
                  "(Conv2D))");
  model.topology = json::object();
  EXPECT_CONTAINS(error_of([&] { models::convert_keras(model, "empty.json"); }), "lists no layers");
}

}  // namespace
}  // namespace finch::io
