#include "finch/core/registry.h"

#include <gtest/gtest.h>

#include "finch/core/config.h"
#include "test_support.h"

namespace {

using Maker = std::function<int()>;

TEST(Registry, FindsEntriesAndNamesTheKnownOnesForAnUnknownName) {
  finch::Registry<Maker> registry("widgets-a", "widget", "test.widget");
  registry.add({"two", "makes two", [] { return 2; }});
  registry.add({"one", "makes one", [] { return 1; }});
  EXPECT_EQ(registry.factory("two")(), 2);
  EXPECT_TRUE(registry.contains("one"));
  EXPECT_EQ(registry.names(), (std::vector<std::string>{"one", "two"}));
  const std::string error = finch::test::error_of([&] { registry.at("three"); });
  EXPECT_CONTAINS(error, "unknown widget 'three' (test.widget; known: one, two;");
  EXPECT_CONTAINS(error, "`finch list widgets-a`");
  // The catalogue (`finch list`) sees it with its descriptions.
  auto listing = finch::registry_catalogue().at("widgets-a")();
  ASSERT_EQ(listing.size(), 2u);
  EXPECT_EQ(listing[0].description, "makes one");
}

TEST(RegistryDeathTest, ANameRegisteredTwiceStopsTheProgramAtLoadTime) {
  ::testing::GTEST_FLAG(death_test_style) = "threadsafe";  // no fork() under running threads
  EXPECT_DEATH(
      {
        finch::Registry<Maker> registry("widgets-b", "widget", "test.widget");
        registry.add({"one", "first", [] { return 1; }});
        registry.add({"one", "second", [] { return 1; }});
      },
      "two widgets are registered under the name 'one'");
}

// The keys an entry owns join the config schema: settable, validated, with their default.
TEST(Registry, OwnedOptionsJoinTheConfigSchema) {
  // Registered by the library at load time: a head's section and an optimizer's key.
  finch::Config config = finch::Config::defaults();
  EXPECT_EQ(config.get<int64_t>("model.wsdan.parts"), 32);
  EXPECT_DOUBLE_EQ(config.get<double>("optim.momentum"), 0.9);
  EXPECT_EQ(config.get<std::string>("data.level"), "variant");
  config.set("model.wsdan.parts", "8");
  EXPECT_EQ(config.get<int64_t>("model.wsdan.parts"), 8);
  EXPECT_CONTAINS(finch::test::error_of([&] { config.set("model.wsdan.partz", "8"); }), "partz");

  finch::Registry<Maker> registry("widgets-c", "widget", "test.widget");
  registry.add({"a", "a", [] { return 1; }, {{"train", "widget_speed: 3   # a's speed"}}});
  EXPECT_EQ(finch::Config::defaults().get<int64_t>("train.widget_speed"), 3);
  // Another entry may share the key only with the same default.
  registry.add({"b", "b", [] { return 1; }, {{"train", "widget_speed: 4"}}});
  EXPECT_CONTAINS(finch::test::error_of([] { finch::Config::defaults(); }),
                  "widget b declares train.widget_speed with another default");
  finch::registered_options().pop_back();  // leave the schema as the library made it
  finch::registered_options().pop_back();
}

}  // namespace
