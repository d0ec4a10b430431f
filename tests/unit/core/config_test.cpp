#include "finch/core/config.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "finch/core/error.h"
#include "finch/core/yaml_json.h"
#include "finch/data/formats.h"
#include "finch/data/from_config.h"
#include "finch/models/model.h"
#include "finch/train/losses.h"
#include "test_support.h"

using finch::Config;

TEST(Config, DefaultsHaveTheStableKeys) {
  Config c = Config::defaults();
  for (const char* key : {"seed", "data.format", "data.root", "model.backbone", "train.epochs",
                          "train.batch_size", "optim.name", "optim.lr"}) {
    EXPECT_NO_THROW(c.node(key)) << key;
  }
  EXPECT_EQ(c.get<std::string>("optim.name"), "sgd");
}

TEST(Config, RecipeOverridesDefaultsAndKeepsTheRest) {
  Config c = Config::from_yaml("train:\n  epochs: 3\noptim:\n  lr: 0.5\n", "recipe.yaml");
  EXPECT_EQ(c.get<int>("train.epochs"), 3);
  EXPECT_DOUBLE_EQ(c.get<double>("optim.lr"), 0.5);
  EXPECT_EQ(c.get<int>("train.batch_size"), Config::defaults().get<int>("train.batch_size"));
}

TEST(Config, UnknownKeyIsAnErrorNamingIt) {
  try {
    Config::from_yaml("train:\n  epoch: 3\n", "recipe.yaml");
    FAIL() << "expected an error";
  } catch (const finch::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.epoch"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("recipe.yaml"), std::string::npos) << e.what();
  }
  Config c = Config::defaults();
  EXPECT_THROW(c.apply_override("optim.learning_rate=0.1"), finch::Error);
  EXPECT_THROW(c.apply_override("no_equals_sign"), finch::Error);
}

TEST(Config, SetOverridesScalarsAndLists) {
  Config c = Config::defaults();
  c.apply_override("train.epochs=7");
  c.apply_override("schedule.milestones=[5, 9]");
  c.apply_override("data.root=/tmp/x y");
  EXPECT_EQ(c.get<int>("train.epochs"), 7);
  EXPECT_EQ(c.get<std::vector<int>>("schedule.milestones"), (std::vector<int>{5, 9}));
  EXPECT_EQ(c.get<std::string>("data.root"), "/tmp/x y");
}

TEST(Config, WrongTypeNamesTheKey) {
  Config c = Config::from_yaml("train: {epochs: many}", "r.yaml");
  try {
    c.get<int>("train.epochs");
    FAIL();
  } catch (const finch::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.epochs"), std::string::npos);
  }
}

TEST(Config, MappingWhereValueExpectedIsAnError) {
  EXPECT_THROW(Config::from_yaml("train: {epochs: {a: 1}}", "r.yaml"), finch::Error);
  EXPECT_THROW(Config::from_yaml("train: 3", "r.yaml"), finch::Error);
}

TEST(Config, InvalidYamlReportsTheLine) {
  try {
    Config::from_yaml("seed: 1\ntrain: [unclosed\n", "bad.yaml");
    FAIL();
  } catch (const finch::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.yaml:"), std::string::npos) << e.what();
  }
}

TEST(Config, EffectiveConfigRoundTrips) {
  Config c = Config::from_yaml("train: {epochs: 4}\ndata: {root: /data/cub}", "r.yaml");
  c.apply_override("optim.name=adamw");
  Config again = Config::from_yaml(c.to_yaml(), "config.yaml");
  EXPECT_EQ(again.get<int>("train.epochs"), 4);
  EXPECT_EQ(again.get<std::string>("data.root"), "/data/cub");
  EXPECT_EQ(again.get<std::string>("optim.name"), "adamw");
}

TEST(Config, LoadReadsFileAndAppliesOverrides) {
  finch::test::TempDir dir;
  finch::test::write_text(dir / "r.yaml", "train:\n  epochs: 2\n");
  Config c = Config::load(dir / "r.yaml", {"train.epochs=9"});
  EXPECT_EQ(c.get<int>("train.epochs"), 9);
  EXPECT_THROW(Config::load(dir / "missing.yaml", {}), finch::Error);
}

// Every recipe under configs/ loads (keys and types), names a registered format and builds
// its transform pipelines, so a renamed key or transform cannot leave a recipe broken.
TEST(Config, ShippedRecipesAreValid) {
  size_t recipes = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(finch::test::source_dir() / "configs")) {
    if (entry.path().extension() != ".yaml") continue;
    ++recipes;
    const std::string name = entry.path().filename().string();
    try {
      Config c = Config::load(entry.path(), {});
      finch::data::dataset_format(c.get<std::string>("data.format"));
      finch::data::train_pipeline(c);
      finch::data::eval_pipeline(c);
      // The model section builds (heads, blocks and their options) and the losses parse.
      nlohmann::json spec = finch::yaml_to_json(c.node("model"));
      if (spec.value("num_classes", 0) == 0) spec["num_classes"] = 10;
      finch::models::build_classifier(spec);
      finch::train::parse_losses(c);
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << ": " << e.what();
    }
  }
  EXPECT_GE(recipes, 13u);  // defaults, 2 fashion_mnist, 6 benchmarks, 4 method recipes
}

TEST(YamlJson, ScalarsGetTypes) {
  YAML::Node n = YAML::Load("{a: 1, b: 2.5, c: true, d: text, e: [1, x], f: '3'}");
  nlohmann::json j = finch::yaml_to_json(n);
  EXPECT_TRUE(j["a"].is_number_integer());
  EXPECT_TRUE(j["b"].is_number_float());
  EXPECT_TRUE(j["c"].is_boolean());
  EXPECT_TRUE(j["d"].is_string());
  EXPECT_TRUE(j["f"].is_string());
  EXPECT_EQ(finch::yaml_to_json(finch::json_to_yaml(j)), j);
}

// Command-line values of string keys are taken literally: a root named like YAML syntax
// must not turn into null, a list or a map (a defect found by trying it as a user would).
TEST(Config, StringKeysTakeCommandLineValuesLiterally) {
  Config c = Config::defaults();
  for (const std::string weird : {"#weird", "[a]", "x: y", "null", "yes", "~", "{b: 1}", "3"}) {
    SCOPED_TRACE(weird);
    c.set("data.root", weird);
    EXPECT_EQ(c.get<std::string>("data.root"), weird);
    c.apply_override("data.csv_file=" + weird);  // --set goes the same way
    EXPECT_EQ(c.get<std::string>("data.csv_file"), weird);
  }
  c.set_string("model.pretrained", "a: b");
  EXPECT_EQ(c.get<std::string>("model.pretrained"), "a: b");
  // Keys whose default is not a string still parse YAML.
  c.set("train.epochs", "7");
  EXPECT_EQ(c.get<int>("train.epochs"), 7);
  c.set("data.strict", "yes");
  EXPECT_TRUE(c.get<bool>("data.strict"));
  c.set("data.classes", "[a, b]");
  EXPECT_EQ(c.get<std::vector<std::string>>("data.classes"), (std::vector<std::string>{"a", "b"}));
  c.set("data.class_range", "[1, 3]");
  EXPECT_EQ(c.get<std::vector<int64_t>>("data.class_range"), (std::vector<int64_t>{1, 3}));
  // train.freeze (default "none") still reads a number of stages.
  c.set("train.freeze", "2");
  EXPECT_EQ(c.get<int>("train.freeze"), 2);
  EXPECT_THROW(c.set("data.rooot", "x"), finch::Error);
}

// An integer beyond int64 becomes a float instead of a clamped integer; inf and nan (which
// nlohmann writes as null) stay the text they are.
TEST(YamlJson, NumbersBeyondJsonNeverBecomeWrongValues) {
  nlohmann::json j = finch::yaml_to_json(YAML::Load("{a: 99999999999999999999, b: 1e400, c: nan}"));
  ASSERT_TRUE(j["a"].is_number_float());
  EXPECT_DOUBLE_EQ(j["a"].get<double>(), 1e20);
  EXPECT_EQ(j["b"], "1e400");
  EXPECT_EQ(j["c"], "nan");
  EXPECT_EQ(finch::yaml_to_json(YAML::Load("-9223372036854775808")), INT64_MIN);
}

// An alias that contains itself, an alias expansion without end and non-name keys are
// refused with an error instead of a stack overflow, an endless copy or a YAML exception.
TEST(Config, HostileYamlIsRefused) {
  EXPECT_CONTAINS(finch::test::error_of([] { Config::from_yaml("train: &a [*a]\n", "r.yaml"); }),
                  "r.yaml: the YAML is nested more than 64 levels deep");
  std::string laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'j'; ++c) {
    laughs += std::string(1, c) + ": &" + c + " [";
    for (int k = 0; k < 10; ++k) laughs += std::string(k ? ", *" : "*") + char(c - 1);
    laughs += "]\n";
  }
  EXPECT_CONTAINS(finch::test::error_of([&] { Config::from_yaml(laughs, "laughs.yaml"); }),
                  "more than 100000 values");
  EXPECT_CONTAINS(finch::test::error_of([] { Config::from_yaml("? [a]\n: 1\n", "k.yaml"); }),
                  "k.yaml: config keys must be plain names");
  Config config = Config::defaults();
  EXPECT_CONTAINS(finch::test::error_of([&] { config.set("train.losses", "&a [*a]"); }),
                  "--set train.losses: the YAML is nested");
  // A control character in a value (config_fuzz: `format: x\r` written back in block style
  // loaded as `x`), from a file or from --set, string-typed or not.
  EXPECT_CONTAINS(
      finch::test::error_of([] { Config::from_yaml("data: {format: \"i./usr\\r\"}\n", "c.yaml"); }),
      "c.yaml: the value 'i./usr\r' holds a control character (byte 13)");
  EXPECT_CONTAINS(finch::test::error_of([&] { config.set("data.root", "/data\x01"); }),
                  "--set data.root: the value");
  EXPECT_CONTAINS(finch::test::error_of([&] { config.set("train.epochs", "\"3\\b\""); }),
                  "holds a control character (byte 8)");
  // Tabs and line breaks inside quoted values stay allowed.
  EXPECT_EQ(
      Config::from_yaml("data: {format: \"a\\tb\"}\n", "t.yaml").get<std::string>("data.format"),
      "a\tb");
  // An ordinary anchor still works.
  Config ok = Config::from_yaml("optim: {lr: &lr 0.5}\ntrain: {epochs: 3}\n", "ok.yaml");
  EXPECT_DOUBLE_EQ(ok.get<double>("optim.lr"), 0.5);
}
